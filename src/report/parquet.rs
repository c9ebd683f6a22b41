//! Streaming Parquet output: one row group per batch handed in, written under a temporary name
//! and renamed when complete, so a crash never leaves a file that looks finished.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Rows per row group of the tables fulcrum writes (memory while writing is about one row
/// group).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Writes a Parquet table batch by batch, under a temporary name renamed into place by
/// [`TableWriter::finish`] (removed if dropped unfinished).
pub struct TableWriter {
    path: PathBuf,
    tmp: PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
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
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| Error::Cache {
            path: tmp.clone(),
            msg: e.to_string(),
        })?;
        Ok(TableWriter {
            path: path.to_path_buf(),
            tmp,
            schema,
            writer: Some(writer),
        })
    }

    /// Append one batch: one array per schema field, all the same length.
    pub fn write_arrays(&mut self, arrays: Vec<ArrayRef>) -> Result<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::Cache {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::Usage("writer already closed".into()))?;
        w.write(&batch).map_err(|e| Error::Cache {
            path: self.tmp.clone(),
            msg: format!("write failed: {e}"),
        })
    }

    /// Close the file and rename it into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            let f = w.into_inner().map_err(|e| Error::Cache {
                path: self.tmp.clone(),
                msg: format!("cannot finish the file: {e}"),
            })?;
            f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for TableWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a table of a `u64` id column followed by `f64` columns, batch by batch.
pub struct F64TableWriter(TableWriter);

impl F64TableWriter {
    /// Start `path` with columns `id_name` (u64) and `columns` (nullable f64).
    pub fn create(path: &Path, id_name: &str, columns: &[String]) -> Result<F64TableWriter> {
        let mut fields = vec![Field::new(id_name, DataType::UInt64, false)];
        fields.extend(columns.iter().map(|c| Field::new(c, DataType::Float64, true)));
        Ok(F64TableWriter(TableWriter::create(
            path,
            Arc::new(Schema::new(fields)),
        )?))
    }

    /// Append rows: `ids` and one slice per column (all the same length).
    pub fn write(&mut self, ids: &[u64], columns: &[&[f64]]) -> Result<()> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(ids.to_vec()))];
        arrays.extend(
            columns
                .iter()
                .map(|c| Arc::new(Float64Array::from(c.to_vec())) as ArrayRef),
        );
        self.0.write_arrays(arrays)
    }

    /// Append rows given by value (the vectors become the Arrow arrays without a copy).
    pub fn write_owned(&mut self, ids: Vec<u64>, columns: impl IntoIterator<Item = Vec<f64>>) -> Result<()> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(ids))];
        arrays.extend(columns.into_iter().map(|c| Arc::new(Float64Array::from(c)) as ArrayRef));
        self.0.write_arrays(arrays)
    }

    /// Close the file and rename it into place.
    pub fn finish(self) -> Result<()> {
        self.0.finish()
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
