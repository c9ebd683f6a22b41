//! Streaming Parquet output: one row group per batch handed in, written under a temporary name
//! and renamed when complete, so a crash never leaves a file that looks finished.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Writes a table of a `u64` id column followed by `f64` columns, batch by batch.
pub struct F64TableWriter {
    path: PathBuf,
    tmp: PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
}

impl F64TableWriter {
    /// Start `path` with columns `id_name` (u64) and `columns` (nullable f64).
    pub fn create(path: &Path, id_name: &str, columns: &[String]) -> Result<F64TableWriter> {
        let mut fields = vec![Field::new(id_name, DataType::UInt64, false)];
        fields.extend(columns.iter().map(|c| Field::new(c, DataType::Float64, true)));
        let schema = Arc::new(Schema::new(fields));
        let tmp = super::temp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        // Dictionary encoding only costs time on continuous f64 values (and ids are unique).
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| Error::Cache {
            path: tmp.clone(),
            msg: e.to_string(),
        })?;
        Ok(F64TableWriter {
            path: path.to_path_buf(),
            tmp,
            schema,
            writer: Some(writer),
        })
    }

    /// Append rows: `ids` and one slice per column (all the same length).
    pub fn write(&mut self, ids: &[u64], columns: &[&[f64]]) -> Result<()> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(ids.to_vec()))];
        arrays.extend(
            columns
                .iter()
                .map(|c| Arc::new(Float64Array::from(c.to_vec())) as ArrayRef),
        );
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

impl Drop for F64TableWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
