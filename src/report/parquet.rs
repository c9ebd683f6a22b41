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
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Rows per row group of the tables fulcrum writes (memory while writing is about one row
/// group).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Writes a Parquet table batch by batch, under a temporary name renamed into place by
/// [`TableWriter::finish`] (removed if dropped unfinished). Each batch's columns are encoded in
/// parallel (one arrow-rs `ArrowColumnWriter` per column, on the rayon pool): encoding and
/// compressing the columns is most of the cost of writing diagnostics, and the scoring that
/// produces them leaves the pool idle meanwhile.
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
    /// Start `path` with `schema`.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<TableWriter> {
        let tmp = super::temp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        // Dictionary encoding only costs time on continuous f64 values (and ids are unique).
        // Row groups of at most ROW_GROUP_ROWS rows: the writer buffers a whole row group in
        // memory (the default, 1M rows, would be ~90 MB for diagnostics.parquet).
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
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
    pub fn finish(mut self) -> Result<()> {
        let r = self.close_and_rename();
        if r.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        r
    }

    fn close_and_rename(&mut self) -> Result<()> {
        self.close_group()?;
        if let Some(w) = self.writer.take() {
            let f = w
                .into_inner()
                .map_err(|e| write_error(&self.tmp, "cannot finish the file", e))?;
            f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
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
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a table of a `u64` id column followed by `f64` columns, batch by batch, and keeps
/// the time spent in it (encoding, compression, file I/O), so callers can report what their
/// output cost apart from the computing.
pub struct F64TableWriter {
    table: TableWriter,
    busy: Duration,
}

impl F64TableWriter {
    /// Start `path` with columns `id_name` (u64) and `columns` (nullable f64).
    pub fn create(path: &Path, id_name: &str, columns: &[String]) -> Result<F64TableWriter> {
        let t = Instant::now();
        let mut fields = vec![Field::new(id_name, DataType::UInt64, false)];
        fields.extend(columns.iter().map(|c| Field::new(c, DataType::Float64, true)));
        let table = TableWriter::create(path, Arc::new(Schema::new(fields)))?;
        Ok(F64TableWriter {
            table,
            busy: t.elapsed(),
        })
    }

    /// Append rows: `ids` and one slice per column (all the same length).
    pub fn write(&mut self, ids: &[u64], columns: &[&[f64]]) -> Result<()> {
        self.write_owned(ids.to_vec(), columns.iter().map(|c| c.to_vec()))
    }

    /// Append rows given by value (the vectors become the Arrow arrays without a copy).
    pub fn write_owned(&mut self, ids: Vec<u64>, columns: impl IntoIterator<Item = Vec<f64>>) -> Result<()> {
        let t = Instant::now();
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(ids))];
        arrays.extend(columns.into_iter().map(|c| Arc::new(Float64Array::from(c)) as ArrayRef));
        let r = self.table.write_arrays(arrays);
        self.busy += t.elapsed();
        r
    }

    /// Close the file and rename it into place.
    pub fn finish(self) -> Result<()> {
        self.finish_timed().map(|_| ())
    }

    /// [`F64TableWriter::finish`], returning the whole time spent writing the table (creation,
    /// every batch, closing).
    pub fn finish_timed(self) -> Result<Duration> {
        let t = Instant::now();
        self.table.finish()?;
        Ok(self.busy + t.elapsed())
    }
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
}
