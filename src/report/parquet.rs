//! Streaming Parquet output: one row group per batch handed in, written under a temporary name
//! and renamed when complete, so a crash never leaves a file that looks finished.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{DoubleType, Int64Type};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use parquet::schema::types::Type;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Rows per row group of the tables fulcrum writes (memory while writing is about one row
/// group).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Writes a Parquet table of any Arrow columns (`prune`'s kept rows in the inputs' own schema, a
/// path's coefficients, `attribution.parquet`) batch by batch, under a temporary name renamed into
/// place by [`TableWriter::finish`] (removed if dropped unfinished). Each batch's columns are
/// encoded in parallel (one arrow-rs `ArrowColumnWriter` per column, on the rayon pool), which
/// pays on large outputs. Tables of an id and doubles go through [`F64TableWriter`] instead.
pub struct TableWriter {
    path: PathBuf,
    tmp: PathBuf,
    schema: SchemaRef,
    writer: Option<SerializedFileWriter<File>>,
    factory: ArrowRowGroupWriterFactory,
    /// The open row group's column writers (None between row groups) and its row count.
    group: Option<Vec<ArrowColumnWriter>>,
    group_rows: usize,
    groups_written: usize,
}

impl TableWriter {
    /// Start `path` with `schema`: a table of the user's own columns (`prune`'s rows), every
    /// column Snappy-compressed.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<TableWriter> {
        let props = base_properties().set_compression(Compression::SNAPPY).build();
        TableWriter::with_properties(path, schema, props)
    }

    /// Start `path` with `schema`: a table of numbers fulcrum computed. `f64` columns are
    /// stored uncompressed (Snappy shrinks continuous doubles by ~5 %, not worth compressing
    /// every page for), `u64` columns (row ids, ranks, indices: mostly increasing)
    /// delta-encoded, which stores a run of consecutive ids in a few bytes.
    pub fn create_numeric(path: &Path, schema: SchemaRef) -> Result<TableWriter> {
        let ids = schema.fields().iter().filter(|f| f.data_type() == &DataType::UInt64);
        let props = numeric_properties(ids.map(|f| f.name().as_str()));
        TableWriter::with_properties(path, schema, props)
    }

    fn with_properties(path: &Path, schema: SchemaRef, props: WriterProperties) -> Result<TableWriter> {
        let tmp = super::temp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        // ArrowWriter sets up the Parquet schema and the Arrow schema metadata; its lower-level
        // parts then take the columns one by one.
        let (writer, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .and_then(|w| w.into_serialized_writer())
            .map_err(|e| write_error(&tmp, "cannot start the file", e))?;
        Ok(TableWriter {
            path: path.to_path_buf(),
            tmp,
            schema,
            writer: Some(writer),
            factory,
            group: None,
            group_rows: 0,
            groups_written: 0,
        })
    }

    /// Append one batch: one array per schema field, all the same length.
    pub fn write_arrays(&mut self, arrays: Vec<ArrayRef>) -> Result<()> {
        // Checks the arrays against the schema (types, equal lengths).
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::Cache {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        if self.writer.is_none() {
            return Err(Error::Usage("writer already closed".into()));
        }
        let mut at = 0;
        while at < batch.num_rows() {
            // Never more than ROW_GROUP_ROWS rows in a group: split the batch at the boundary.
            let take = (ROW_GROUP_ROWS - self.group_rows).min(batch.num_rows() - at);
            let part = batch.slice(at, take);
            if self.group.is_none() {
                let w = self
                    .factory
                    .create_column_writers(self.groups_written)
                    .map_err(|e| write_error(&self.tmp, "write failed", e))?;
                self.group = Some(w);
            }
            let mut leaves = Vec::new();
            for (field, arr) in self.schema.fields().iter().zip(part.columns()) {
                leaves.extend(compute_leaves(field, arr).map_err(|e| write_error(&self.tmp, "write failed", e))?);
            }
            let writers = self.group.as_mut().expect("opened above");
            writers
                .par_iter_mut()
                .zip(leaves.par_iter())
                .try_for_each(|(w, leaf)| w.write(leaf))
                .map_err(|e| write_error(&self.tmp, "write failed", e))?;
            self.group_rows += take;
            at += take;
            if self.group_rows == ROW_GROUP_ROWS {
                self.close_group()?;
            }
        }
        Ok(())
    }

    /// Close the open row group's column writers (in parallel: compression of the last pages)
    /// and append the chunks to the file.
    fn close_group(&mut self) -> Result<()> {
        let Some(writers) = self.group.take() else {
            return Ok(());
        };
        let chunks: Vec<ArrowColumnChunk> = writers
            .into_par_iter()
            .map(|w| w.close())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| write_error(&self.tmp, "write failed", e))?;
        let file = self.writer.as_mut().expect("open while a group is");
        let append = |file: &mut SerializedFileWriter<File>| -> parquet::errors::Result<()> {
            let mut rg = file.next_row_group()?;
            for c in chunks {
                c.append_to_row_group(&mut rg)?;
            }
            rg.close().map(|_| ())
        };
        append(file).map_err(|e| write_error(&self.tmp, "write failed", e))?;
        self.group_rows = 0;
        self.groups_written += 1;
        Ok(())
    }

    /// Close the file (footer, fsync) and rename it into place; on failure the temporary file
    /// is removed.
    pub fn finish(self) -> Result<()> {
        self.close()?.commit()
    }

    /// Write the last row group and the footer: the table is complete under its temporary name,
    /// to be made durable and renamed by [`Written::commit`] or [`commit_all`].
    pub fn close(mut self) -> Result<Written> {
        let r = self.close_group().and_then(|()| {
            let w = self.writer.take().expect("open until closed");
            w.into_inner()
                .map_err(|e| write_error(&self.tmp, "cannot finish the file", e))
        });
        match r {
            Ok(file) => Ok(Written {
                path: std::mem::take(&mut self.path),
                tmp: std::mem::take(&mut self.tmp),
                file: Some(file),
            }),
            Err(e) => {
                self.writer = None;
                let _ = std::fs::remove_file(&self.tmp);
                Err(e)
            }
        }
    }
}

/// A table whose bytes are all written, under its temporary name. Dropped without
/// [`Written::commit`], the temporary file is removed.
pub struct Written {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl Written {
    /// Flush the file to disk (fsync) and rename it into place; on failure the temporary file
    /// is removed.
    pub fn commit(self) -> Result<()> {
        commit_all(vec![self])
    }

    fn sync(&mut self) -> Result<()> {
        let f = self.file.take().expect("synced once");
        f.sync_all().map_err(|e| Error::io(&self.tmp, e))
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Commit several tables: their fsyncs run side by side (each waits on the disk, not the
/// CPU), then each is renamed into place, in order. On failure no temporary file is left;
/// tables renamed before the failure stay.
pub fn commit_all(mut tables: Vec<Written>) -> Result<()> {
    tables.par_iter_mut().map(Written::sync).collect::<Result<Vec<()>>>()?;
    for mut t in tables {
        let tmp = std::mem::take(&mut t.tmp);
        std::fs::rename(&tmp, &t.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&t.path, e)
        })?;
    }
    Ok(())
}

/// What every table fulcrum writes shares: no dictionary encoding (it only costs time on
/// continuous values and unique ids), and row groups of at most [`ROW_GROUP_ROWS`] rows (the
/// writer buffers a whole row group in memory; the default, 1M rows, would be ~90 MB for
/// diagnostics.parquet).
fn base_properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// The properties of a table of numbers fulcrum computed: uncompressed, and the `u64` columns
/// `ids` delta-encoded (see [`TableWriter::create_numeric`]).
fn numeric_properties<'a>(ids: impl IntoIterator<Item = &'a str>) -> WriterProperties {
    let mut b = base_properties().set_compression(Compression::UNCOMPRESSED);
    for id in ids {
        b = b.set_column_encoding(ColumnPath::from(id), Encoding::DELTA_BINARY_PACKED);
    }
    b.build()
}

/// An error writing the temporary file `tmp`.
fn write_error(tmp: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Cache {
        path: tmp.to_path_buf(),
        msg: format!("{what}: {e}"),
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        // Unfinished (an error, or never closed): nothing that looks like a table is left.
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a table of a `u64` id column followed by `f64` columns, batch by batch, and keeps
/// the time spent in it (encoding, file I/O), so callers can report what their output cost
/// apart from the computing.
///
/// It writes through parquet's typed column writers, straight from the caller's slices: the
/// Arrow path ([`TableWriter`]) builds an index vector per column, gathers the values through
/// it and buffers every encoded page before appending it, ~4 copies of each column through
/// fresh memory, which on Adult's diagnostics took most of the writing's time. Batches are held
/// (not copied) until a row group of [`ROW_GROUP_ROWS`] rows is complete, then written column
/// by column: the same row groups, encodings (doubles plain and uncompressed, ids
/// delta-encoded) and logical types (`row` UInt64, the rest Float64, none nullable) as before.
pub struct F64TableWriter {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<SerializedFileWriter<File>>,
    n_cols: usize,
    /// Batches held for the open row group: ids and columns; the first `front` rows of the
    /// first batch are already written.
    pending: std::collections::VecDeque<(Vec<u64>, Vec<Vec<f64>>)>,
    front: usize,
    pending_rows: usize,
    busy: Duration,
}

impl F64TableWriter {
    /// Start `path` with columns `id_name` (u64) and `columns` (f64; undefined values are
    /// NaN, never null).
    pub fn create(path: &Path, id_name: &str, columns: &[String]) -> Result<F64TableWriter> {
        let t = Instant::now();
        let tmp = super::temp_path(path);
        let schema = f64_table_schema(id_name, columns).map_err(|e| write_error(&tmp, "cannot start the file", e))?;
        let props = numeric_properties([id_name]);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = match SerializedFileWriter::new(file, schema, Arc::new(props)) {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(write_error(&tmp, "cannot start the file", e));
            }
        };
        Ok(F64TableWriter {
            path: path.to_path_buf(),
            tmp,
            writer: Some(writer),
            n_cols: columns.len(),
            pending: Default::default(),
            front: 0,
            pending_rows: 0,
            busy: t.elapsed(),
        })
    }

    /// Append rows: `ids` and one slice per column (all the same length).
    pub fn write(&mut self, ids: &[u64], columns: &[&[f64]]) -> Result<()> {
        self.write_owned(ids.to_vec(), columns.iter().map(|c| c.to_vec()))
    }

    /// Append rows given by value (held until their row group is written, never copied).
    pub fn write_owned(&mut self, ids: Vec<u64>, columns: impl IntoIterator<Item = Vec<f64>>) -> Result<()> {
        let t = Instant::now();
        let columns: Vec<Vec<f64>> = columns.into_iter().collect();
        if columns.len() != self.n_cols || columns.iter().any(|c| c.len() != ids.len()) {
            return Err(Error::Cache {
                path: self.path.clone(),
                msg: format!(
                    "a batch of {} ids has {} columns of lengths {:?}; the table has {} columns",
                    ids.len(),
                    columns.len(),
                    columns.iter().map(Vec::len).collect::<Vec<_>>(),
                    self.n_cols
                ),
            });
        }
        if self.writer.is_none() {
            return Err(Error::Usage("writer already closed".into()));
        }
        self.pending_rows += ids.len();
        self.pending.push_back((ids, columns));
        let mut r = Ok(());
        while r.is_ok() && self.pending_rows >= ROW_GROUP_ROWS {
            r = self.write_group(ROW_GROUP_ROWS);
        }
        self.busy += t.elapsed();
        r
    }

    /// Write the first `rows` held rows as one row group, column by column.
    fn write_group(&mut self, rows: usize) -> Result<()> {
        let writer = self.writer.as_mut().expect("open while rows are held");
        // The held batches' pieces that make up the group: (batch, from, to).
        let mut pieces = Vec::new();
        let (mut need, mut from) = (rows, self.front);
        for (b, (ids, _)) in self.pending.iter().enumerate() {
            if need == 0 {
                break;
            }
            let to = ids.len().min(from + need);
            pieces.push((b, from, to));
            need -= to - from;
            from = 0;
        }
        let pending = &self.pending;
        let write = |writer: &mut SerializedFileWriter<File>| -> parquet::errors::Result<()> {
            let mut rg = writer.next_row_group()?;
            for k in 0..=self.n_cols {
                let mut col = rg
                    .next_column()?
                    .ok_or_else(|| parquet::errors::ParquetError::General("fewer columns than the schema".into()))?;
                for &(b, from, to) in &pieces {
                    let (ids, cols) = &pending[b];
                    if k == 0 {
                        let ids: &[i64] = bytemuck::cast_slice(&ids[from..to]);
                        col.typed::<Int64Type>().write_batch(ids, None, None)?;
                    } else {
                        col.typed::<DoubleType>()
                            .write_batch(&cols[k - 1][from..to], None, None)?;
                    }
                }
                col.close()?;
            }
            rg.close().map(|_| ())
        };
        write(writer).map_err(|e| write_error(&self.tmp, "write failed", e))?;
        // Drop the batches the group used up.
        let last = pieces.last().copied();
        if let Some((b, _, to)) = last {
            let full = to == self.pending[b].0.len();
            let drop_n = if full { b + 1 } else { b };
            self.pending.drain(..drop_n);
            self.front = if full { 0 } else { to };
        }
        self.pending_rows -= rows;
        Ok(())
    }

    /// Close the file and rename it into place.
    pub fn finish(self) -> Result<()> {
        self.close_timed()?.0.commit()
    }

    /// Write the last row group and the footer: the table is complete under its temporary name,
    /// to be made durable and renamed by [`Written::commit`] or [`commit_all`]. Returns also the
    /// whole time spent writing the table so far (creation, every batch, closing).
    pub fn close_timed(mut self) -> Result<(Written, Duration)> {
        let t = Instant::now();
        let r = if self.pending_rows > 0 {
            self.write_group(self.pending_rows)
        } else {
            Ok(())
        };
        let r = r.and_then(|()| {
            let w = self.writer.take().expect("open until closed");
            w.into_inner()
                .map_err(|e| write_error(&self.tmp, "cannot finish the file", e))
        });
        match r {
            Ok(file) => {
                let written = Written {
                    path: std::mem::take(&mut self.path),
                    tmp: std::mem::take(&mut self.tmp),
                    file: Some(file),
                };
                Ok((written, self.busy + t.elapsed()))
            }
            Err(e) => {
                self.writer = None;
                let _ = std::fs::remove_file(&self.tmp);
                Err(e)
            }
        }
    }
}

impl Drop for F64TableWriter {
    fn drop(&mut self) {
        // Unfinished (an error, or never closed): nothing that looks like a table is left.
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The Parquet schema of an [`F64TableWriter`] table: a required unsigned 64-bit integer
/// `id_name`, then required doubles.
fn f64_table_schema(id_name: &str, columns: &[String]) -> parquet::errors::Result<Arc<Type>> {
    let mut fields = vec![Arc::new(
        Type::primitive_type_builder(id_name, PhysicalType::INT64)
            .with_repetition(Repetition::REQUIRED)
            .with_logical_type(Some(LogicalType::integer(64, false)))
            .build()?,
    )];
    for c in columns {
        fields.push(Arc::new(
            Type::primitive_type_builder(c, PhysicalType::DOUBLE)
                .with_repetition(Repetition::REQUIRED)
                .build()?,
        ));
    }
    Ok(Arc::new(
        Type::group_type_builder("schema").with_fields(fields).build()?,
    ))
}

/// Write `DIR/path.parquet` of a penalised path: `lambda_index` (u64, 0-based, as in
/// summary.json's `path`), `name`, `estimate` — the non-zero coefficients at each λ, intercept
/// included.
pub fn write_path(file: &Path, design: &crate::design::Design, path: &crate::glm::Path) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("lambda_index", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("estimate", DataType::Float64, false),
    ]));
    let mut w = TableWriter::create(file, schema)?;
    let (mut idx, mut name, mut est) = (Vec::new(), Vec::new(), Vec::new());
    for (k, pt) in path.points.iter().enumerate() {
        for &(j, b) in &pt.beta {
            idx.push(k as u64);
            name.push(design.coef_name(j));
            est.push(b);
        }
    }
    w.write_arrays(vec![
        Arc::new(UInt64Array::from(idx)),
        Arc::new(StringArray::from_iter_values(name)),
        Arc::new(Float64Array::from(est)),
    ])?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Batches that straddle the row-group boundary come back whole and in order, in row groups
    /// of ROW_GROUP_ROWS rows (the last one shorter), with the schema as written.
    #[test]
    fn batches_round_trip_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let cols = vec!["a".to_string(), "b".to_string()];
        let mut w = F64TableWriter::create(&path, "row", &cols).unwrap();
        let sizes = [40_000usize, 50_000, 10];
        let mut start = 0u64;
        for &n in &sizes {
            let ids: Vec<u64> = (start..start + n as u64).collect();
            let a: Vec<f64> = ids.iter().map(|&i| i as f64 * 0.5).collect();
            let b: Vec<f64> = ids
                .iter()
                .map(|&i| if i.is_multiple_of(7) { f64::NAN } else { -(i as f64) })
                .collect();
            w.write_owned(ids, [a, b]).unwrap();
            start += n as u64;
        }
        assert!(!path.exists(), "visible before finish");
        w.finish().unwrap();
        let total: usize = sizes.iter().sum();
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let md = b.metadata().clone();
        assert_eq!(md.num_row_groups(), 2);
        assert_eq!(md.row_group(0).num_rows() as usize, ROW_GROUP_ROWS);
        assert_eq!(md.file_metadata().num_rows() as usize, total);
        let schema = b.schema().clone();
        assert_eq!(schema.field(0).name(), "row");
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        assert!(!schema.field(2).is_nullable(), "NaN marks undefined values, never null");
        // Ids delta-encoded, doubles plain and uncompressed.
        let rg = md.row_group(0);
        assert!(rg.column(0).encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED));
        assert!(
            rg.column(0).compressed_size() < 8 * 1024,
            "consecutive ids take a few bytes each block"
        );
        assert_eq!(rg.column(1).compression(), Compression::UNCOMPRESSED);
        let mut i = 0u64;
        for batch in b.build().unwrap() {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
            let a = batch.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
            let bb = batch.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
            for k in 0..batch.num_rows() {
                assert_eq!(ids.value(k), i);
                assert_eq!(a.value(k), i as f64 * 0.5);
                let want = if i.is_multiple_of(7) { f64::NAN } else { -(i as f64) };
                assert_eq!(bb.value(k).to_bits(), want.to_bits());
                i += 1;
            }
        }
        assert_eq!(i as usize, total);
    }

    /// Tables committed together are all renamed into place; a closed table dropped before its
    /// commit leaves nothing behind.
    #[test]
    fn commit_all_renames_and_dropped_tables_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let cols = ["a".to_string()];
        let close = |name: &str, v: f64| {
            let mut w = F64TableWriter::create(&dir.path().join(name), "row", &cols).unwrap();
            w.write_owned(vec![7], [vec![v]]).unwrap();
            w.close_timed().unwrap().0
        };
        let (a, b) = (close("a.parquet", 1.0), close("b.parquet", 2.0));
        assert!(!dir.path().join("a.parquet").exists());
        commit_all(vec![a, b]).unwrap();
        for (name, v) in [("a.parquet", 1.0), ("b.parquet", 2.0)] {
            let r = ParquetRecordBatchReaderBuilder::try_new(File::open(dir.path().join(name)).unwrap())
                .unwrap()
                .build()
                .unwrap();
            let batch = r.into_iter().next().unwrap().unwrap();
            let col = batch.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
            assert_eq!(col.value(0), v);
        }
        drop(close("c.parquet", 3.0));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "only a and b");
    }

    /// A writer dropped before `finish` leaves neither the file nor its temporary.
    #[test]
    fn unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut w = F64TableWriter::create(&path, "row", &["a".to_string()]).unwrap();
        w.write_owned(vec![1, 2], [vec![0.5, 1.5]]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A batch whose columns do not match the table (count or length) is an error, not a
    /// panic or a short column, and the table is still cleaned up when dropped.
    #[test]
    fn mismatched_batches_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let cols = ["a".to_string(), "b".to_string()];
        let mut w = F64TableWriter::create(&path, "row", &cols).unwrap();
        let short = w.write_owned(vec![1, 2], [vec![0.5, 1.5], vec![2.5]]).unwrap_err();
        assert!(short.to_string().contains("lengths [2, 1]"), "{short}");
        let missing = w.write_owned(vec![1], [vec![0.5]]).unwrap_err();
        assert!(missing.to_string().contains("the table has 2 columns"), "{missing}");
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
