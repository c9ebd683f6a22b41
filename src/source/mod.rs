//! Reading Parquet: resolving the input paths (files, directories, globs), loading footers,
//! checking that every file has the same schema, and decoding row groups in parallel with a
//! column projection. String columns are read as dictionaries so categorical levels are
//! interned once per dictionary page, not once per row.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::BooleanArray;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

thread_local! {
    static IN_DECODER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is inside the third-party Parquet decoder. A panic there means the
/// file is corrupt in a way the decoder does not check; `guard_decoder` turns it into an
/// error, and a panic hook can use this to stay silent about it.
pub fn in_decoder() -> bool {
    IN_DECODER.with(|d| d.get())
}

/// Run `f` (a call into the Parquet decoder) and convert a panic inside it into `Err(())`.
fn guard_decoder<T>(f: impl FnOnce() -> T) -> std::result::Result<T, ()> {
    IN_DECODER.with(|d| d.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_DECODER.with(|d| d.set(false));
    r.map_err(|_| ())
}

/// Identity of one input file as it was when read: detects a stale cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    /// Canonical path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
    /// xxh3 of the Parquet footer (metadata) bytes.
    pub footer_xxh3: u64,
    /// Rows in the file (row ids of the next file start after them).
    pub n_rows: u64,
}

/// One opened input file.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Path as resolved.
    pub path: PathBuf,
    /// Footer metadata with the dictionary-preserving schema hint applied.
    pub meta: ArrowReaderMetadata,
    /// Global row id of this file's first row.
    pub first_row_id: u64,
    /// Rows in this file.
    pub n_rows: u64,
    /// Fingerprint for cache validation.
    pub fingerprint: FileFingerprint,
}

/// A unit of parallel decoding: one row group of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupTask {
    /// Index into [`InputSet::files`].
    pub file: usize,
    /// Row group within the file.
    pub row_group: usize,
    /// Row index of the row group's first row within its file.
    pub file_row0: u64,
    /// Rows in the row group.
    pub n_rows: u64,
}

/// Where a decoded batch's rows are in their file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchRows {
    /// Consecutive rows, the first at this file row.
    From(u64),
    /// These file rows, in order: a row selection skipped the others.
    Listed(Vec<u64>),
}

impl BatchRows {
    /// File row of the batch's row `i`.
    #[inline]
    pub fn file_row(&self, i: usize) -> u64 {
        match self {
            BatchRows::From(r0) => r0 + i as u64,
            BatchRows::Listed(rows) => rows[i],
        }
    }
}

/// The resolved, opened inputs; all files share one schema.
#[derive(Debug, Clone)]
pub struct InputSet {
    /// Files in sorted path order.
    pub files: Vec<InputFile>,
    /// The common Arrow schema (strings as dictionaries).
    pub schema: SchemaRef,
}

/// Expand the command-line inputs into a sorted, de-duplicated list of Parquet files. Each
/// argument is a file, a directory (its `*.parquet` files, not recursive) or a glob pattern.
pub fn resolve_paths(inputs: &[String]) -> Result<Vec<PathBuf>> {
    if inputs.is_empty() {
        return Err(Error::Usage("no input files given".into()));
    }
    let mut out = Vec::new();
    for arg in inputs {
        let p = Path::new(arg);
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|q| q.is_file() && q.extension().is_some_and(|x| x.eq_ignore_ascii_case("parquet")))
                .collect();
            if found.is_empty() {
                return Err(Error::File {
                    path: p.to_path_buf(),
                    msg: "directory contains no *.parquet files".into(),
                });
            }
            out.append(&mut found);
        } else if p.exists() {
            out.push(p.to_path_buf());
        } else if arg.contains(['*', '?', '[']) {
            let paths = glob::glob(arg).map_err(|e| Error::Usage(format!("bad glob pattern '{arg}': {e}")))?;
            let mut found: Vec<PathBuf> = paths.filter_map(|r| r.ok()).filter(|q| q.is_file()).collect();
            if found.is_empty() {
                return Err(Error::File {
                    path: p.to_path_buf(),
                    msg: "glob pattern matches no files".into(),
                });
            }
            out.append(&mut found);
        } else {
            return Err(Error::File {
                path: p.to_path_buf(),
                msg: "no such file or directory".into(),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The schema hint: every string column read as `Dictionary(Int32, <string type>)`.
fn dictionary_hint(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => f.as_ref().clone().with_data_type(DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(f.data_type().clone()),
            )),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// A type's family for schema comparison: string encodings compare equal.
fn type_family(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Dictionary(_, v) => type_family(v),
        other => format!("{other}"),
    }
}

fn footer_fingerprint(path: &Path) -> Result<FileFingerprint> {
    let bad = |msg: &str| Error::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    };
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let md = f.metadata().map_err(|e| Error::io(path, e))?;
    let size = md.len();
    if size < 12 {
        return Err(bad(&format!("not a Parquet file: only {size} bytes")));
    }
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8)).map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut tail).map_err(|e| Error::io(path, e))?;
    if &tail[4..] != b"PAR1" {
        return Err(bad(
            "not a Parquet file (no PAR1 magic at the end; truncated or another format)",
        ));
    }
    let flen = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if flen + 12 > size {
        return Err(bad("truncated Parquet file: footer length exceeds the file size"));
    }
    let mut footer = vec![0u8; flen as usize];
    f.seek(SeekFrom::End(-8 - flen as i64))
        .map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut footer).map_err(|e| Error::io(path, e))?;
    let mtime_ns = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(FileFingerprint {
        path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        size,
        mtime_ns,
        footer_xxh3: xxhash_rust::xxh3::xxh3_64(&footer),
        n_rows: 0,
    })
}

impl InputSet {
    /// Open every file's footer and check the schemas agree (same column names and types, in
    /// the same order; string encodings are interchangeable).
    pub fn open(paths: &[PathBuf]) -> Result<InputSet> {
        let mut files = Vec::with_capacity(paths.len());
        let mut schema: Option<SchemaRef> = None;
        let mut first_row_id = 0u64;
        for path in paths {
            let mut fingerprint = footer_fingerprint(path)?;
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let plain = guard_decoder(|| ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()))
                .map_err(|_| Error::File {
                    path: path.clone(),
                    msg: "corrupt Parquet metadata (the decoder failed on it)".into(),
                })?
                .map_err(|e| Error::File {
                    path: path.clone(),
                    msg: format!("cannot read Parquet metadata: {e}"),
                })?;
            let hint = Arc::new(dictionary_hint(plain.schema()));
            let meta =
                ArrowReaderMetadata::try_new(plain.metadata().clone(), ArrowReaderOptions::new().with_schema(hint))
                    .map_err(|e| Error::File {
                        path: path.clone(),
                        msg: format!("cannot map the Parquet schema to Arrow: {e}"),
                    })?;
            if let Some(s0) = &schema {
                check_same_schema(&files[0], s0, path, meta.schema())?;
            } else {
                schema = Some(meta.schema().clone());
            }
            let n_rows = meta.metadata().file_metadata().num_rows().max(0) as u64;
            fingerprint.n_rows = n_rows;
            files.push(InputFile {
                path: path.clone(),
                meta,
                first_row_id,
                n_rows,
                fingerprint,
            });
            first_row_id += n_rows;
        }
        Ok(InputSet {
            files,
            schema: schema.ok_or_else(|| Error::Usage("no input files given".into()))?,
        })
    }

    /// Total rows over all files.
    pub fn n_rows(&self) -> u64 {
        self.files.iter().map(|f| f.n_rows).sum()
    }

    /// Every row group of every file, in row-id order.
    pub fn row_group_tasks(&self) -> Vec<RowGroupTask> {
        let mut v = Vec::new();
        for (fi, f) in self.files.iter().enumerate() {
            let mut r0 = 0u64;
            for (rg, md) in f.meta.metadata().row_groups().iter().enumerate() {
                let n = md.num_rows().max(0) as u64;
                v.push(RowGroupTask {
                    file: fi,
                    row_group: rg,
                    file_row0: r0,
                    n_rows: n,
                });
                r0 += n;
            }
        }
        v
    }

    /// Decode one row group, projected to `columns`, in batches of `batch_rows`; calls
    /// `f(batch, file_row0_of_batch)` for each.
    pub fn read_row_group(
        &self,
        task: RowGroupTask,
        columns: &[String],
        batch_rows: usize,
        mut f: impl FnMut(RecordBatch, u64) -> Result<()>,
    ) -> Result<()> {
        self.read_row_group_split(task, columns, batch_rows, 1, None, |b, rows| f(b, rows.file_row(0)))
    }

    /// The rows of row group `task` that `keep` accepts, as a selection to decode only them with
    /// ([`InputSet::read_row_group_split`]). `columns` (those `keep` reads) are decoded in
    /// batches; `keep(batch)` returns one flag per row. Memory: one bit per row of the row
    /// group, and the selection's runs.
    pub fn row_selection(
        &self,
        task: RowGroupTask,
        columns: &[String],
        mut keep: impl FnMut(&RecordBatch) -> Result<BooleanArray>,
    ) -> Result<RowSelection> {
        let mut flags = Vec::new();
        self.read_row_group(task, columns, 65_536, |batch, _| {
            flags.push(keep(&batch)?);
            Ok(())
        })?;
        Ok(RowSelection::from_filters(&flags))
    }

    /// As [`InputSet::read_row_group`], with the columns split into up to `ways` groups of about
    /// equal compressed size, each decoded by its own reader on the thread pool, and each batch
    /// put back together column by column (in the file's column order, as one reader gives
    /// them). One reader decodes a row group serially: when there are fewer row groups than
    /// threads (a small file), this is where decoding's parallelism comes from.
    pub fn read_row_group_split(
        &self,
        task: RowGroupTask,
        columns: &[String],
        batch_rows: usize,
        ways: usize,
        selection: Option<&RowSelection>,
        mut f: impl FnMut(RecordBatch, BatchRows) -> Result<()>,
    ) -> Result<()> {
        let input = &self.files[task.file];
        let path = &input.path;
        let schema = input.meta.schema();
        let idx: Vec<usize> = columns
            .iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| Error::File {
                    path: path.clone(),
                    msg: format!("column '{c}' is missing"),
                })
            })
            .collect::<Result<_>>()?;
        let corrupt = |r0: u64, e: String| Error::File {
            path: path.clone(),
            msg: format!("corrupt data in row group {} (rows from {r0}): {e}", task.row_group),
        };
        let groups = column_groups(input, task.row_group, &idx, ways);
        let mut readers = Vec::with_capacity(groups.len());
        for g in groups {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mask = ProjectionMask::roots(input.meta.parquet_schema(), g);
            let reader = guard_decoder(|| {
                let b = ParquetRecordBatchReaderBuilder::new_with_metadata(file, input.meta.clone())
                    .with_row_groups(vec![task.row_group])
                    .with_projection(mask)
                    .with_batch_size(batch_rows.max(1));
                match selection {
                    Some(sel) => b.with_row_selection(sel.clone()).build(),
                    None => b.build(),
                }
            })
            .map_err(|_| corrupt(task.file_row0, "the decoder failed on it".into()))?
            .map_err(|e| corrupt(task.file_row0, e.to_string()))?;
            readers.push(reader);
        }
        // The selected rows as (first file row, count) runs, handed out batch by batch.
        let mut runs = selection.map(|sel| {
            let mut at = task.file_row0;
            let mut v = Vec::new();
            for s in sel.iter() {
                if !s.skip && s.row_count > 0 {
                    v.push((at, s.row_count as u64));
                }
                at += s.row_count as u64;
            }
            v.into_iter()
        });
        let mut pending: Option<(u64, u64)> = None;
        let mut r0 = task.file_row0;
        let mut yielded = 0u64;
        loop {
            // One reader: rayon runs the single item inline.
            let parts: Vec<_> = readers.par_iter_mut().map(|r| guard_decoder(|| r.next())).collect();
            let mut batches = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    Err(()) => return Err(corrupt(r0, "the decoder failed on it".into())),
                    Ok(None) => {}
                    Ok(Some(b)) => batches.push(b.map_err(|e| corrupt(r0, e.to_string()))?),
                }
            }
            if batches.is_empty() {
                break;
            }
            let n = batches[0].num_rows();
            if batches.len() != readers.len() || batches.iter().any(|b| b.num_rows() != n) {
                return Err(corrupt(r0, "its columns hold different numbers of rows".into()));
            }
            let batch = if batches.len() == 1 {
                batches.swap_remove(0)
            } else {
                join_columns(schema, batches).map_err(|e| corrupt(r0, e))?
            };
            let rows = match runs.as_mut() {
                None => BatchRows::From(r0),
                Some(runs) => {
                    // The batch's rows: the next n selected rows, as pieces of the runs.
                    let mut pieces: Vec<(u64, u64)> = Vec::new();
                    let mut need = n as u64;
                    while need > 0 {
                        let Some((a, k)) = pending.take().or_else(|| runs.next()) else {
                            return Err(corrupt(r0, "it yielded more rows than were selected".into()));
                        };
                        let take = k.min(need);
                        pieces.push((a, take));
                        if take < k {
                            pending = Some((a + take, k - take));
                        }
                        need -= take;
                    }
                    match pieces.len() {
                        // Within one run of selected rows (a filter keeping a block): no list.
                        0 | 1 => BatchRows::From(pieces.first().map_or(r0, |p| p.0)),
                        _ => BatchRows::Listed(pieces.iter().flat_map(|&(a, k)| a..a + k).collect()),
                    }
                }
            };
            if n > 0 {
                r0 = rows.file_row(n - 1) + 1;
            }
            f(batch, rows)?;
            yielded += n as u64;
        }
        let expected = selection.map_or(task.n_rows, |sel| sel.row_count() as u64);
        if yielded != expected {
            return Err(Error::File {
                path: path.clone(),
                msg: match selection {
                    None => format!(
                        "row group {} yielded {} rows but its metadata says {}",
                        task.row_group, yielded, expected
                    ),
                    Some(_) => format!(
                        "row group {} yielded {} rows but {} were selected",
                        task.row_group, yielded, expected
                    ),
                },
            });
        }
        Ok(())
    }
}

/// The projected root columns `idx` split into at most `ways` groups of about equal compressed
/// size in row group `rg` (largest first, each to the lightest group), each group in file order.
fn column_groups(input: &InputFile, rg: usize, idx: &[usize], ways: usize) -> Vec<Vec<usize>> {
    // A column asked for twice is read once, as one reader's projection mask would.
    let mut idx = idx.to_vec();
    idx.sort_unstable();
    idx.dedup();
    let ways = ways.clamp(1, idx.len().max(1));
    if ways == 1 {
        return vec![idx];
    }
    let md = input.meta.metadata().row_group(rg);
    let pschema = input.meta.parquet_schema();
    let mut weight = vec![0i64; idx.len()];
    for (leaf, c) in md.columns().iter().enumerate() {
        let root = pschema.get_column_root_idx(leaf);
        if let Some(k) = idx.iter().position(|&r| r == root) {
            weight[k] += c.compressed_size();
        }
    }
    let mut order: Vec<usize> = (0..idx.len()).collect();
    order.sort_by_key(|&k| (std::cmp::Reverse(weight[k]), idx[k]));
    let mut groups: Vec<(i64, Vec<usize>)> = vec![(0, Vec::new()); ways];
    for k in order {
        if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
            g.0 += weight[k];
            g.1.push(idx[k]);
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.1.is_empty())
        .map(|(_, mut g)| {
            g.sort_unstable();
            g
        })
        .collect()
}

/// One batch from the same rows of several readers' batches, its columns in the file's order.
fn join_columns(schema: &SchemaRef, batches: Vec<RecordBatch>) -> std::result::Result<RecordBatch, String> {
    let mut cols: Vec<(usize, Arc<Field>, arrow_array::ArrayRef)> = Vec::new();
    for b in &batches {
        for (field, col) in b.schema().fields().iter().zip(b.columns()) {
            let at = schema.index_of(field.name()).map_err(|e| e.to_string())?;
            cols.push((at, field.clone(), col.clone()));
        }
    }
    cols.sort_by_key(|c| c.0);
    let fields: Vec<Arc<Field>> = cols.iter().map(|c| c.1.clone()).collect();
    let arrays = cols.into_iter().map(|c| c.2).collect();
    let joined = Schema::new_with_metadata(fields, batches[0].schema().metadata().clone());
    RecordBatch::try_new(Arc::new(joined), arrays).map_err(|e| e.to_string())
}

fn check_same_schema(first: &InputFile, s0: &Schema, path: &Path, s: &Schema) -> Result<()> {
    let mismatch = |msg: String| Error::File {
        path: path.to_path_buf(),
        msg: format!("schema differs from {}: {msg}", first.path.display()),
    };
    for f0 in s0.fields() {
        match s.field_with_name(f0.name()) {
            Err(_) => return Err(mismatch(format!("column '{}' is missing", f0.name()))),
            Ok(f) if type_family(f.data_type()) != type_family(f0.data_type()) => {
                return Err(mismatch(format!(
                    "column '{}' has type {} here but {} there",
                    f0.name(),
                    crate::design::spec::type_name(f.data_type()),
                    crate::design::spec::type_name(f0.data_type())
                )))
            }
            Ok(_) => {}
        }
    }
    if let Some(extra) = s.fields().iter().find(|f| s0.field_with_name(f.name()).is_err()) {
        return Err(mismatch(format!("extra column '{}'", extra.name())));
    }
    Ok(())
}
