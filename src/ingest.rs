//! Parquet → chunk cache, once. Resolves the inputs and the formula, reuses a valid cache or
//! builds one (row groups decoded and encoded in parallel), and returns a [`Dataset`]: the
//! design plus zero-copy access to its chunks. Every later stage reads the cache, never the
//! Parquet again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use arrow_array::{BooleanArray, RecordBatch};
use parquet::arrow::arrow_reader::RowSelection;
use rayon::prelude::*;

use crate::design::encode::SPARSE_TERM_SHIFT;
use crate::design::{Design, DesignSpec, Encoder, ModelInput};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::{resolve_paths, BatchRows, InputSet, RowGroupTask};
use crate::store::{CacheBuilder, ChunkCache, ChunkEntry, Manifest, RowCounts, Staleness, Verify, FORMAT_VERSION};

/// Rows per chunk (and per decoded Arrow batch): small enough that mid-sized inputs still
/// split into several chunks for the passes' parallelism, large enough to amortise per-chunk work.
pub const DEFAULT_CHUNK_ROWS: usize = 16_384;

/// Where the cache lives and how big chunks are.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Cache root; default `<directory of the first input>/.fulcrum-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// A cache estimated at most this many bytes is built in memory and each chunk file written
    /// once ([`crate::store::CacheBuilder::hold_chunks`]); default
    /// [`crate::store::HELD_CACHE_BYTES`].
    pub held_cache_bytes: u64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            cache_dir: None,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            held_cache_bytes: crate::store::HELD_CACHE_BYTES,
        }
    }
}

/// What happened to the cache on this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// A valid cache was reused.
    Reused,
    /// No cache existed; one was built.
    Built,
    /// A cache existed but was stale or damaged (the reason); it was rebuilt.
    Rebuilt(String),
}

/// Wall-clock seconds of the ingest stages.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct IngestTimings {
    /// Opening footers and resolving the formula.
    pub open_s: f64,
    /// Decoding Parquet and writing chunks (0 when the cache was reused).
    pub build_s: f64,
    /// Mapping and verifying the cache.
    pub map_s: f64,
}

/// A model frame ready for passes: the design and the chunk cache.
#[derive(Debug)]
pub struct Dataset {
    /// The opened cache.
    pub cache: ChunkCache,
    /// Input files, sorted.
    pub inputs: Vec<PathBuf>,
    /// What happened to the cache.
    pub status: CacheStatus,
    /// Stage timings.
    pub timings: IngestTimings,
}

impl Dataset {
    /// The design (levels, layout; coefficient names on demand).
    pub fn design(&self) -> &Design {
        &self.cache.manifest().design
    }
    /// Row bookkeeping.
    pub fn counts(&self) -> RowCounts {
        self.cache.manifest().counts
    }

    /// The same data with some rows' prior weights multiplied by `factor(row_id)` (`None`
    /// leaves a row alone; 0 removes it, as a zero weight does in R's `glm`): refits without a
    /// set of rows, unlearning checks and leave-one-out refits reuse the chunk cache this way.
    /// Returns the dataset and the number of rows changed.
    pub fn reweighted(&self, factor: impl Fn(u64) -> Option<f64> + Sync) -> (Dataset, u64) {
        let (cache, changed) = self.cache.reweighted(factor);
        (
            Dataset {
                cache,
                inputs: self.inputs.clone(),
                status: self.status.clone(),
                timings: self.timings,
            },
            changed,
        )
    }

    /// The same data without the rows whose ids are in `rows` (sorted or not); returns the
    /// dataset and how many of the ids were found.
    pub fn without_rows(&self, rows: &[u64]) -> (Dataset, u64) {
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        self.reweighted(|r| sorted.binary_search(&r).ok().map(|_| 0.0))
    }

    /// The values of one input column (any column of the files, used by the model or not), as
    /// strings like `--filter` compares them: the distinct values (sorted) and, per global row
    /// id, the index of its value (`u32::MAX` for null). One projected read of the inputs;
    /// 4 bytes per input row.
    pub fn column_codes(&self, column: &str) -> Result<(Vec<String>, Vec<u32>)> {
        let set = InputSet::open(&self.inputs)?;
        if set.schema.index_of(column).is_err() {
            let names: Vec<&str> = set.schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Error::Usage(crate::design::spec::unknown_column_msg(column, &names)));
        }
        let tasks = set.row_group_tasks();
        let cols = vec![column.to_string()];
        type Part = Result<Vec<(u64, Vec<Option<String>>)>>;
        let parts: Vec<Part> = tasks
            .par_iter()
            .map(|&task| {
                let first = set.files[task.file].first_row_id;
                let mut out = Vec::new();
                set.read_row_group(task, &cols, 65_536, |batch, r0| {
                    out.push((
                        first + r0,
                        crate::design::encode::filter_strings(batch.column(0).as_ref()),
                    ));
                    Ok(())
                })?;
                Ok(out)
            })
            .collect();
        let mut levels: Vec<String> = Vec::new();
        let mut index: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut codes = vec![u32::MAX; set.n_rows() as usize];
        let mut raw = Vec::new();
        for p in parts {
            raw.extend(p?);
        }
        for (_, vals) in &raw {
            for v in vals.iter().flatten() {
                if !index.contains_key(v) {
                    index.insert(v.clone(), 0);
                    levels.push(v.clone());
                }
            }
        }
        levels.sort();
        for (k, l) in levels.iter().enumerate() {
            index.insert(l.clone(), k as u32);
        }
        for (r0, vals) in raw {
            for (k, v) in vals.into_iter().enumerate() {
                if let Some(v) = v {
                    codes[r0 as usize + k] = index[&v];
                }
            }
        }
        Ok((levels, codes))
    }

    /// The input file and 0-based row within it of a global row id (for messages).
    pub fn locate(&self, row_id: u64) -> (PathBuf, u64) {
        let mut first = 0u64;
        for (f, path) in self.cache.manifest().inputs.iter().zip(&self.inputs) {
            if row_id < first + f.n_rows {
                return (path.clone(), row_id - first);
            }
            first += f.n_rows;
        }
        (self.inputs.last().cloned().unwrap_or_default(), row_id)
    }
}

fn hex(x: u64) -> String {
    format!("{x:016x}")
}

/// Hash of everything that determines the cache contents besides the input bytes.
pub fn spec_hash(spec: &DesignSpec, chunk_rows: usize) -> String {
    let text = serde_json::to_string(spec).unwrap_or_default();
    hex(xxhash_rust::xxh3::xxh3_64(
        format!("v{FORMAT_VERSION}|rows{chunk_rows}|{text}").as_bytes(),
    ))
}

/// Load `inputs` under `model`: reuse the cache if valid, else build it.
pub fn load(inputs: &[String], model: &ModelInput, opts: &IngestOptions, progress: &dyn Progress) -> Result<Dataset> {
    let t0 = Instant::now();
    let paths = resolve_paths(inputs)?;
    let set = InputSet::open(&paths)?;
    let spec = DesignSpec::resolve(model, &set.schema, &paths[0])?;
    let shash = spec_hash(&spec, opts.chunk_rows);
    let fps: Vec<_> = set.files.iter().map(|f| f.fingerprint.clone()).collect();
    let key_src: String = fps
        .iter()
        .map(|f| f.path.to_string_lossy().into_owned() + "\n")
        .collect::<String>()
        + &shash;
    let key = hex(xxhash_rust::xxh3::xxh3_64(key_src.as_bytes()));
    let root = match &opts.cache_dir {
        Some(d) => d.clone(),
        None => paths[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .join(".fulcrum-cache"),
    };
    let dir = root.join(&key);
    let open_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let status = match ChunkCache::open(&dir, &fps, &shash, Verify::Checksums) {
        Ok(cache) => {
            let ds = Dataset {
                cache,
                inputs: paths,
                status: CacheStatus::Reused,
                timings: IngestTimings {
                    open_s,
                    build_s: 0.0,
                    map_s: t1.elapsed().as_secs_f64(),
                },
            };
            check_levels(&ds)?;
            return Ok(ds);
        }
        Err(Staleness::Missing) => CacheStatus::Built,
        Err(Staleness::Invalid(reason)) => {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::Cache {
                path: dir.clone(),
                msg: format!("stale cache ({reason}) could not be removed: {e}"),
            })?;
            CacheStatus::Rebuilt(reason)
        }
    };
    build(&set, spec, &shash, &dir, opts, progress)?;
    let build_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let cache = ChunkCache::open(&dir, &fps, &shash, Verify::SizesOnly).map_err(|s| Error::Cache {
        path: dir.clone(),
        msg: format!("freshly built cache failed validation: {s:?}"),
    })?;
    let ds = Dataset {
        cache,
        inputs: paths,
        status,
        timings: IngestTimings {
            open_s,
            build_s,
            map_s: t2.elapsed().as_secs_f64(),
        },
    };
    check_levels(&ds)?;
    Ok(ds)
}

/// Memory a model holds per coefficient whatever it is: the p-length vectors of coefficients,
/// scores, standard errors and per-thread pass accumulators (measured order of magnitude; the
/// load itself holds nothing per column).
const BYTES_PER_COLUMN: f64 = 256.0;

/// Refuse a design whose number of columns cannot even be held: a sparse index of 2³⁰ (or a
/// declared width of 10¹²) would otherwise have any fit ask the allocator for tens of gigabytes
/// of p-length vectors and abort the process.
fn check_width(spec: &DesignSpec, levels: &[Vec<String>], widths: &[u64], max_idx: &[Option<u64>]) -> Result<()> {
    let p = spec.intercept as u64
        + spec.numeric.len() as u64
        + levels.iter().map(|l| l.len() as u64).sum::<u64>()
        + widths.iter().sum::<u64>();
    let need = p as f64 * BYTES_PER_COLUMN;
    let avail = crate::linalg::chol::available_memory().map_or(u32::MAX as f64 * BYTES_PER_COLUMN, |a| a as f64);
    if need <= avail {
        return Ok(());
    }
    let why = spec
        .sparse
        .iter()
        .zip(widths.iter().zip(max_idx))
        .max_by_key(|(_, (w, _))| **w)
        .map(|(t, (w, m))| match (t.declared_width, m) {
            (Some(d), _) => format!("column '{}' declares a sparse width of {d} in its metadata", t.column),
            (None, Some(m)) => format!(
                "column '{}' has a sparse index of {m}, so its block is {w} columns wide",
                t.column
            ),
            (None, None) => String::new(),
        })
        .unwrap_or_default();
    Err(Error::Input(format!(
        "the design would have {p} columns ({why}): their coefficients, scores and accumulators alone need \
         about {:.1} GiB, more than the {:.1} GiB available. Hash the features into fewer columns, \
         or declare the width you meant in the field's metadata (`p`)",
        need / f64::from(1u32 << 30),
        avail / f64::from(1u32 << 30)
    )))
}

/// A categorical term needs at least 2 levels among the rows modelled (R: "contrasts can be
/// applied only to factors with 2 or more levels"). Checked on every load, built or reused: the
/// cache of such data is a correct cache, the model is what cannot be formed.
fn check_levels(ds: &Dataset) -> Result<()> {
    let design = ds.design();
    for (t, l) in design.spec.categorical.iter().zip(&design.levels) {
        if l.len() < 2 {
            return Err(Error::Input(format!(
                "column '{}' has a single level{} in the {} rows modelled: a categorical term needs at least 2 levels",
                t.column,
                l.first().map(|v| format!(" ('{v}')")).unwrap_or_default(),
                ds.counts().n_obs
            )));
        }
    }
    Ok(())
}

/// Decode row group `task` (only the rows `selection` selects, if given) and pass each batch,
/// with where its rows are in the file and its number, to `work`, which
/// returns what the batch yields (if anything); the yields come back in batch order. A row
/// group decodes serially, so batches are handed to the pool while the next one decodes; when
/// `max_waiting` batches already wait, the decoding thread does the next itself, so memory stays
/// bounded by the batch size whatever the row group's. After a batch fails no more are read,
/// and the error returned is the first failing batch's, as a serial read would give.
#[allow(clippy::too_many_arguments)]
fn pipelined<T: Send>(
    set: &InputSet,
    task: RowGroupTask,
    columns: &[String],
    batch_rows: usize,
    decode_ways: usize,
    max_waiting: usize,
    selection: Option<&RowSelection>,
    work: impl Fn(RecordBatch, BatchRows, usize) -> Result<Option<T>> + Sync,
) -> Result<Vec<T>> {
    let done: Mutex<Vec<(usize, Result<Option<T>>)>> = Mutex::new(Vec::new());
    let waiting = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let finish_one = |no: usize, r: Result<Option<T>>| {
        if r.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        done.lock().unwrap_or_else(|e| e.into_inner()).push((no, r));
    };
    let (work, finish_one, waiting) = (&work, &finish_one, &waiting);
    let read = rayon::scope(|s| {
        let mut batch_no = 0usize;
        set.read_row_group_split(task, columns, batch_rows, decode_ways, selection, |batch, rows| {
            if failed.load(Ordering::Relaxed) {
                // Stops the read; the failing batch's own error is returned below.
                return Err(Error::Input(String::new()));
            }
            let no = batch_no;
            batch_no += 1;
            if waiting.fetch_add(1, Ordering::AcqRel) >= max_waiting {
                waiting.fetch_sub(1, Ordering::AcqRel);
                finish_one(no, work(batch, rows, no));
            } else {
                s.spawn(move |_| {
                    finish_one(no, work(batch, rows, no));
                    waiting.fetch_sub(1, Ordering::AcqRel);
                });
            }
            Ok(())
        })
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|d| d.0);
    let mut out = Vec::with_capacity(done.len());
    for (_, r) in done {
        out.extend(r?);
    }
    read?;
    Ok(out)
}

fn design_filters(spec: &DesignSpec) -> Vec<String> {
    spec.filters
        .iter()
        .flat_map(|f| f.values.iter().map(move |v| format!("--filter {}={v}", f.column)))
        .collect()
}

/// Whether decoding only the rows `sel` keeps, of a row group of `n_rows`, beats decoding them
/// all and letting the encoder drop the rest: when it keeps none, or skips at least a quarter
/// of the rows in few runs (at most one per 1,024 rows: blocks, as a sorted or partition-like
/// filter column gives). A scattered selection saves little decoding (arrow-rs then decodes the
/// pages whole and masks them) and costs a list of row numbers per batch: on the 1M-row
/// synthetic file, `--filter planted=false` (99.4 % kept, scattered) took `timing_s.ingest`
/// 0.20 s decoding everything and 0.24 s through the selection.
fn worth_skipping(sel: &RowSelection, n_rows: u64) -> bool {
    let kept = sel.row_count() as u64;
    let runs = sel.iter().filter(|s| !s.skip && s.row_count > 0).count() as u64;
    kept == 0 || ((n_rows - kept) * 4 >= n_rows && runs * 1024 <= n_rows.max(1024))
}

/// Decode every row group in parallel, encode, write chunks, then finalize levels and publish.
fn build(
    set: &InputSet,
    spec: DesignSpec,
    shash: &str,
    dir: &Path,
    opts: &IngestOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let mut builder = CacheBuilder::new(dir)?;
    // A small cache (Adult's is 2.5 MB) is held in memory and each file written once, final.
    // Its size, from the rows read (an upper bound: filters and missing values only remove
    // rows): row id and y, the failures, weights and offsets that are stored, the dense and
    // categorical blocks. Sparse entries cannot be counted before decoding, so such a design is
    // never held.
    let stored = |present: bool| present as u64;
    let row_bytes = 8
        * (2 + stored(spec.failures.is_some())
            + stored(spec.weights.is_some())
            + stored(!spec.offsets.is_empty())
            + spec.numeric.len() as u64)
        + 4 * spec.categorical.len() as u64;
    builder.hold_chunks(spec.sparse.is_empty() && set.n_rows().saturating_mul(row_bytes) <= opts.held_cache_bytes);
    let columns = spec.used_columns();
    let encoder = Encoder::new(&spec);
    let tasks = set.row_group_tasks();
    let n_sparse = spec.sparse.len();
    progress.start("ingest", set.n_rows());
    let totals = Mutex::new((RowCounts::default(), vec![None::<u64>; n_sparse]));
    let max_waiting = rayon::current_num_threads();
    // Fewer row groups than threads (a small file, or one written as a single row group): each
    // row group's columns are also split between readers, so that there is a reader per thread.
    let decode_ways = max_waiting.div_ceil(tasks.len().max(1));
    let filter_columns: Vec<String> = {
        let mut c: Vec<String> = spec.filters.iter().map(|f| f.column.clone()).collect();
        c.sort();
        c.dedup();
        c
    };
    let results: Vec<Result<Vec<ChunkEntry>>> = tasks
        .par_iter()
        .map(|&task| {
            let first = set.files[task.file].first_row_id;
            let path = &set.files[task.file].path;
            let encode_one = |batch: RecordBatch, rows: BatchRows, batch_no: usize| -> Result<Option<ChunkEntry>> {
                let enc = encoder.encode(&batch, first, path, &rows)?;
                drop(batch);
                progress.advance(enc.counts.read);
                {
                    let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                    t.0.n_rows_read += enc.counts.read;
                    t.0.n_filtered_out += enc.counts.filtered_out;
                    t.0.n_dropped += enc.counts.dropped;
                    t.0.n_obs += enc.chunk.n_rows() as u64;
                    for (m, x) in t.1.iter_mut().zip(&enc.max_sparse_idx) {
                        if let Some(x) = x {
                            *m = Some(m.map_or(*x, |y| y.max(*x)));
                        }
                    }
                }
                if enc.chunk.n_rows() == 0 {
                    return Ok(None);
                }
                let name = format!("chunk-{:05}-{:06}-{:05}.bin", task.file, task.row_group, batch_no);
                builder.write_chunk(&name, enc.chunk).map(Some)
            };
            // A `--filter` is pushed down: its columns are decoded first, and the others only
            // for the rows it keeps (the encoder checks them again), where that pays.
            let selection = if filter_columns.is_empty() {
                None
            } else {
                let sel = set.row_selection(task, &filter_columns, |batch| {
                    Ok(BooleanArray::from(encoder.filter_mask(batch, path)?))
                })?;
                worth_skipping(&sel, task.n_rows).then_some(sel)
            };
            if let Some(sel) = &selection {
                let skipped = task.n_rows - sel.row_count() as u64;
                progress.advance(skipped);
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                t.0.n_rows_read += skipped;
                t.0.n_filtered_out += skipped;
                if !sel.selects_any() {
                    return Ok(Vec::new());
                }
            }
            pipelined(
                set,
                task,
                &columns,
                opts.chunk_rows,
                decode_ways,
                max_waiting,
                selection.as_ref(),
                encode_one,
            )
        })
        .collect();
    progress.finish();
    let mut chunks = Vec::new();
    for r in results {
        chunks.extend(r?);
    }
    let (counts, max_idx) = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    if counts.n_obs == 0 {
        let filters: Vec<String> = design_filters(&spec);
        return Err(Error::Input(format!(
            "no rows left to model: {} rows read, {} removed by --filter{}, {} dropped for missing values",
            counts.n_rows_read,
            counts.n_filtered_out,
            if filters.is_empty() {
                String::new()
            } else {
                format!(" ({})", filters.join(" "))
            },
            counts.n_dropped
        )));
    }
    let mut levels = Vec::new();
    let mut cat_remap = Vec::new();
    for it in &encoder.interners {
        let (l, r) = it.finish();
        levels.push(l);
        cat_remap.push(r);
    }
    let widths: Vec<u64> = spec
        .sparse
        .iter()
        .zip(&max_idx)
        .map(|(t, m)| t.declared_width.unwrap_or(m.map_or(0, |x| x + 1)))
        .collect();
    check_width(&spec, &levels, &widths, &max_idx)?;
    let design = Design::new(spec, levels, widths.clone());
    let term_offsets: Vec<u32> = widths
        .iter()
        .scan(0u64, |acc, &w| {
            let o = *acc;
            *acc += w;
            Some(o as u32)
        })
        .collect();
    let mask = (1u32 << SPARSE_TERM_SHIFT) - 1;
    let remap_sparse = move |j: u32| term_offsets[(j >> SPARSE_TERM_SHIFT) as usize] + (j & mask);
    if widths.iter().sum::<u64>() > u32::MAX as u64 {
        return Err(Error::Input("the sparse block is wider than 2^32 columns".into()));
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        fulcrum_version: env!("CARGO_PKG_VERSION").to_string(),
        inputs: set.files.iter().map(|f| f.fingerprint.clone()).collect(),
        spec_hash: shash.to_string(),
        design,
        counts,
        chunks,
    };
    let sparse_remap: Option<&(dyn Fn(u32) -> u32 + Sync)> = if n_sparse > 1 { Some(&remap_sparse) } else { None };
    let drop_first: Vec<bool> = manifest.design.layout.cats.iter().map(|c| c.drop_first).collect();
    builder.finish(manifest, &cat_remap, &drop_first, sparse_remap)?;
    Ok(())
}
