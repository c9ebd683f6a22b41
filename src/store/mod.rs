//! The on-disk chunk cache: one file of aligned little-endian arrays per chunk plus a JSON
//! manifest, built in a temporary directory and renamed into place only when complete, and
//! reopened as zero-copy [`ChunkView`]s through memmap2. A stale or corrupt cache is detected
//! (input fingerprint, spec hash, per-chunk sizes and xxh3 checksums) and never used.
//!
//! Chunk file layout (all little-endian, every array starting at a 64-byte boundary):
//! ```text
//! header (64 bytes): magic "FULCHNK1", version u32, flags u32 (bit 0: has failures),
//!                    n u64, n_dense u64, n_cat u64, nnz u64, 16 bytes reserved
//! row_id u64[n] | y f64[n] | failures f64[n] (if flag) | weight f64[n] | offset f64[n]
//! dense f64[n*n_dense] (column-major) | cat u32[n*n_cat] (column-major)
//! indptr u32[n+1] (only if nnz > 0 or a sparse block exists) | indices u32[nnz] | values f64[nnz]
//! ```

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::chunk::{Chunk, ChunkView};
use crate::design::Design;
use crate::error::{Error, Result};
use crate::source::FileFingerprint;

/// Bumped whenever the chunk file layout or manifest meaning changes. 4: the manifest's
/// `Design` no longer holds the coefficient names (they are computed from the layout). 5: chunk
/// files leave out all-one prior weights and all-zero offsets (header flag bits 2 and 3). Each
/// bump keeps the caches of two versions apart (the version is part of the cache key) instead
/// of an older fulcrum reporting a newer cache as damaged.
pub const FORMAT_VERSION: u32 = 5;
const MAGIC: &[u8; 8] = b"FULCHNK1";
const HEADER: usize = 64;
const ALIGN: usize = 64;
/// Name of the manifest file inside a cache directory.
pub const MANIFEST: &str = "manifest.json";

/// Row bookkeeping of an ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Rows in the input files.
    pub n_rows_read: u64,
    /// Rows removed by `--filter`.
    pub n_filtered_out: u64,
    /// Rows dropped for a missing value (after filtering).
    pub n_dropped: u64,
    /// Rows in the model.
    pub n_obs: u64,
}

/// One chunk file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// File name inside the cache directory.
    pub file: String,
    /// Rows.
    pub n_rows: u64,
    /// Sparse entries.
    pub nnz: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// xxh3-64 of the whole file.
    pub xxh3: u64,
    /// Categorical entries that are design nonzeros (codes of a non-dropped level), summed over
    /// the chunk's categorical columns: recorded at build so `inspect` need not touch the data.
    pub cat_nnz: u64,
}

/// The cache manifest: what was read, how it was encoded, and the chunk list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// fulcrum version that wrote the cache.
    pub fulcrum_version: String,
    /// Input files as they were when read.
    pub inputs: Vec<FileFingerprint>,
    /// Hash of the resolved design spec.
    pub spec_hash: String,
    /// The design: spec, levels, sparse widths, layout — O(terms + levels), nothing per sparse
    /// column.
    pub design: Design,
    /// Row bookkeeping.
    pub counts: RowCounts,
    /// Chunks in row-id order.
    pub chunks: Vec<ChunkEntry>,
}

#[derive(Debug, Clone, Copy)]
struct Header {
    has_failures: bool,
    /// Every prior weight is 1: the weight array is not stored.
    unit_weight: bool,
    /// Every offset is 0: the offset array is not stored.
    zero_offset: bool,
    n: usize,
    n_dense: usize,
    n_cat: usize,
    nnz: usize,
    has_sparse: bool,
}

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Byte ranges of each array, computed from the header alone.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    row_id: usize,
    y: usize,
    failures: Option<usize>,
    weight: usize,
    offset: usize,
    dense: usize,
    cat: usize,
    indptr: usize,
    indices: usize,
    values: usize,
    end: usize,
}

impl Header {
    fn offsets(&self) -> Offsets {
        let n = self.n;
        let mut at = HEADER;
        let mut take = |bytes: usize| {
            let s = at;
            at = align(at + bytes);
            s
        };
        let row_id = take(8 * n);
        let y = take(8 * n);
        let failures = self.has_failures.then(|| take(8 * n));
        let weight = take(if self.unit_weight { 0 } else { 8 * n });
        let offset = take(if self.zero_offset { 0 } else { 8 * n });
        let dense = take(8 * n * self.n_dense);
        let cat = take(4 * n * self.n_cat);
        let indptr = take(if self.has_sparse { 4 * (n + 1) } else { 0 });
        let indices = take(4 * self.nnz);
        let values = take(8 * self.nnz);
        Offsets {
            row_id,
            y,
            failures,
            weight,
            offset,
            dense,
            cat,
            indptr,
            indices,
            values,
            end: at,
        }
    }
}

/// Values per piece when [`CacheBuilder::finish`] rewrites a chunk file's codes in place
/// (64 KiB of `u32`s).
const REWRITE_PIECE: usize = 16_384;

/// Zeros for padding each array to [`ALIGN`].
static PAD: [u8; ALIGN] = [0u8; ALIGN];

/// A chunk's header in the chunk file layout.
fn chunk_header(chunk: &Chunk) -> [u8; HEADER] {
    let has_sparse = !chunk.indptr.is_empty();
    let mut h = [0u8; HEADER];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let flags: u32 = chunk.failures.is_some() as u32
        | ((has_sparse as u32) << 1)
        | ((chunk.weight.is_empty() as u32) << 2)
        | ((chunk.offset.is_empty() as u32) << 3);
    h[12..16].copy_from_slice(&flags.to_le_bytes());
    for (k, v) in [chunk.n_rows(), chunk.n_dense, chunk.n_cat, chunk.indices.len()]
        .iter()
        .enumerate()
    {
        h[16 + 8 * k..24 + 8 * k].copy_from_slice(&(*v as u64).to_le_bytes());
    }
    h
}

/// The bytes of `chunk`'s file, in order, as slices of the header `h` and the chunk's arrays
/// (no copy), with the file size.
fn chunk_parts<'a>(h: &'a [u8; HEADER], chunk: &'a Chunk) -> (Vec<std::io::IoSlice<'a>>, u64) {
    let b = bytemuck::cast_slice::<u64, u8>;
    let fb = bytemuck::cast_slice::<f64, u8>;
    let ub = bytemuck::cast_slice::<u32, u8>;
    // An absent failures column takes no space (the header's flag says so), nor do unit
    // weights and zero offsets (empty, flagged); every other array is written, empty ones
    // included, each padded to ALIGN.
    let arrays: [Option<&[u8]>; 10] = [
        Some(b(&chunk.row_id)),
        Some(fb(&chunk.y)),
        chunk.failures.as_deref().map(fb),
        Some(fb(&chunk.weight)),
        Some(fb(&chunk.offset)),
        Some(fb(&chunk.dense)),
        Some(ub(&chunk.cat)),
        Some(ub(&chunk.indptr)),
        Some(ub(&chunk.indices)),
        Some(fb(&chunk.values)),
    ];
    let mut pos = HEADER;
    let mut parts: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(1 + 2 * arrays.len());
    parts.push(std::io::IoSlice::new(h));
    for a in arrays.iter().flatten() {
        pos += a.len();
        let pad = align(pos) - pos;
        pos += pad;
        for part in [*a, &PAD[..pad]] {
            if !part.is_empty() {
                parts.push(std::io::IoSlice::new(part));
            }
        }
    }
    (parts, pos as u64)
}

/// Write `chunk` to `path` in the chunk file layout. Returns the file size.
///
/// The arrays go to the kernel straight from the chunk's buffers (one vectored write, no copy
/// through a user-space buffer: a 1 MiB `BufWriter` was ~250 fresh pages per chunk file).
pub fn write_chunk_file(path: &Path, chunk: &Chunk) -> Result<u64> {
    let h = chunk_header(chunk);
    let (parts, size) = chunk_parts(&h, chunk);
    write_parts(path, parts)?;
    Ok(size)
}

/// Create `path` and write `parts` to it, in order.
fn write_parts(path: &Path, mut parts: Vec<std::io::IoSlice<'_>>) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut rest = &mut parts[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(Error::io(path, std::io::ErrorKind::WriteZero.into())),
            Ok(k) => std::io::IoSlice::advance_slices(&mut rest, k),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    parse_header_len(bytes, bytes.len())
}

/// Parse the header in `bytes` (at least its first 64 bytes) of a file of `len` bytes.
fn parse_header_len(bytes: &[u8], len: usize) -> std::result::Result<Header, String> {
    if bytes.len() < HEADER || &bytes[0..8] != MAGIC {
        return Err("not a fulcrum chunk file".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
    if u32_at(8) != FORMAT_VERSION {
        return Err(format!(
            "chunk format version {} (expected {FORMAT_VERSION})",
            u32_at(8)
        ));
    }
    let flags = u32_at(12);
    let h = Header {
        has_failures: flags & 1 != 0,
        has_sparse: flags & 2 != 0,
        unit_weight: flags & 4 != 0,
        zero_offset: flags & 8 != 0,
        n: u64_at(16) as usize,
        n_dense: u64_at(24) as usize,
        n_cat: u64_at(32) as usize,
        nnz: u64_at(40) as usize,
    };
    if h.n > (1 << 40) || h.n_dense > (1 << 24) || h.n_cat > (1 << 24) || h.nnz > (1 << 40) {
        return Err("implausible header".into());
    }
    if h.offsets().end != len {
        return Err(format!(
            "size {len} does not match its header ({} expected)",
            h.offsets().end
        ));
    }
    Ok(h)
}

/// A chunk file mapped into memory, with its validated layout.
struct MappedChunk {
    map: Mmap,
    header: Header,
    offsets: Offsets,
    /// The chunk's rows grouped by level tuple, once a pass has needed it.
    groups: crate::linalg::combos::GroupingMemo,
}

impl MappedChunk {
    fn view(&self) -> ChunkView<'_> {
        let (h, o, m) = (&self.header, &self.offsets, &self.map[..]);
        let n = h.n;
        // Sizes and 64-byte alignment were validated by `parse_header`; the mapping is
        // page-aligned, so these casts cannot fail.
        let f64s = |at: usize, len: usize| -> &[f64] { bytemuck::cast_slice(&m[at..at + 8 * len]) };
        let u32s = |at: usize, len: usize| -> &[u32] { bytemuck::cast_slice(&m[at..at + 4 * len]) };
        ChunkView {
            n,
            row_id: bytemuck::cast_slice(&m[o.row_id..o.row_id + 8 * n]),
            y: f64s(o.y, n),
            failures: o.failures.map(|a| f64s(a, n)),
            weight: crate::chunk::weights_or_ones((!h.unit_weight).then(|| f64s(o.weight, n)), n),
            offset: crate::chunk::offsets_or_zeros((!h.zero_offset).then(|| f64s(o.offset, n)), n),
            n_dense: h.n_dense,
            dense: f64s(o.dense, n * h.n_dense),
            n_cat: h.n_cat,
            cat: u32s(o.cat, n * h.n_cat),
            indptr: u32s(o.indptr, if h.has_sparse { n + 1 } else { 0 }),
            indices: u32s(o.indices, h.nnz),
            values: f64s(o.values, h.nnz),
            groups: Some(&self.groups),
        }
    }
}

fn map_file(path: &Path) -> Result<Mmap> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: cache files are written once under a temporary directory and renamed into place;
    // fulcrum never modifies a published cache file. Outside tampering is caught by the
    // checksum verified right after mapping.
    unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))
}

/// Caches up to this size stay fully mapped between passes; larger ones are released chunk by
/// chunk (see [`ChunkCache::release`]).
pub const RESIDENT_CACHE_BYTES: u64 = 256 << 20;

/// An opened, validated chunk cache.
pub struct ChunkCache {
    dir: PathBuf,
    manifest: Arc<Manifest>,
    chunks: Arc<Vec<MappedChunk>>,
    /// Whether passes drop each chunk's pages after use (large caches).
    release_pages: bool,
    /// Prior weights replacing the stored ones, for the chunks that have any (see
    /// [`ChunkCache::reweighted`]); empty for the cache as built.
    weights: Arc<Vec<Option<Vec<f64>>>>,
    /// Where passes report their progress (rows), if anywhere.
    progress: Option<Arc<dyn crate::progress::Progress + Send>>,
    /// Passes run so far over this cache (for progress labels).
    passes: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("dir", &self.dir)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

/// Why an existing cache could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// No cache at that location.
    Missing,
    /// A cache exists but does not match the inputs or spec, or is damaged: the reason.
    Invalid(String),
}

/// How much of a cache [`ChunkCache::open`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Sizes, headers and every chunk's xxh3 (any cache found on disk).
    Checksums,
    /// Sizes and headers only (a cache this process has just built and checksummed).
    SizesOnly,
}

/// xxh3-64 of a file, streamed through a buffer.
fn file_xxh3(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    // 64 KiB: small enough to stay in the L2 cache and to cost only 16 fresh pages (a page
    // fault is ~1.2–1.4 µs here, `scripts/page_fault_cost.c`). With a 1 MiB buffer (256 fresh
    // pages per file) opening Adult's cache took 1.0 ms, with 64 KiB 0.44 ms
    // (`scripts/ab_timing.py --case adult-open`).
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    Ok(h.digest())
}

/// Deterministic number of groups a fold is split into (independent of the thread count, so
/// floating-point results are identical with 1 or N threads).
pub const FOLD_GROUPS: usize = 8;

impl ChunkCache {
    /// Open the cache at `dir` if it is complete and matches `inputs` and `spec_hash`.
    /// Every chunk's size and header are checked; with [`Verify::Checksums`] its xxh3 too (read
    /// through the file, in parallel, so verification does not leave the cache resident).
    pub fn open(
        dir: &Path,
        inputs: &[FileFingerprint],
        spec_hash: &str,
        verify: Verify,
    ) -> std::result::Result<ChunkCache, Staleness> {
        let mpath = dir.join(MANIFEST);
        if !mpath.exists() {
            return Err(Staleness::Missing);
        }
        let inv = |m: String| Staleness::Invalid(m);
        let text = fs::read_to_string(&mpath).map_err(|e| inv(format!("manifest unreadable: {e}")))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| inv(format!("manifest is damaged: {e}")))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(inv(format!(
                "cache format {} (this fulcrum writes {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        if manifest.spec_hash != spec_hash {
            return Err(inv("the model spec changed".into()));
        }
        if manifest.inputs.len() != inputs.len() {
            return Err(inv("the set of input files changed".into()));
        }
        for (a, b) in manifest.inputs.iter().zip(inputs) {
            if a != b {
                return Err(inv(format!(
                    "input {} changed since the cache was built",
                    b.path.display()
                )));
            }
        }
        let chunks: Vec<std::result::Result<MappedChunk, String>> = manifest
            .chunks
            .par_iter()
            .map(|e| {
                let p = dir.join(&e.file);
                let map = map_file(&p).map_err(|err| err.to_string())?;
                if map.len() as u64 != e.bytes {
                    return Err(format!("{} has {} bytes, manifest says {}", e.file, map.len(), e.bytes));
                }
                // The header is read through the file, not the mapping, so opening a cache
                // faults in none of its pages (they come in as passes read them).
                let mut head = [0u8; HEADER];
                {
                    use std::os::unix::fs::FileExt;
                    let f = File::open(&p).map_err(|err| format!("{}: {err}", e.file))?;
                    f.read_exact_at(&mut head, 0)
                        .map_err(|err| format!("{}: {err}", e.file))?;
                }
                let header = parse_header_len(&head, map.len()).map_err(|m| format!("{}: {m}", e.file))?;
                if header.n as u64 != e.n_rows || header.nnz as u64 != e.nnz {
                    return Err(format!("{}: header disagrees with the manifest", e.file));
                }
                if verify == Verify::Checksums && file_xxh3(&p).map_err(|err| err.to_string())? != e.xxh3 {
                    return Err(format!("{}: checksum mismatch (file damaged or modified)", e.file));
                }
                let offsets = header.offsets();
                Ok(MappedChunk {
                    map,
                    header,
                    offsets,
                    groups: Default::default(),
                })
            })
            .collect();
        let chunks = chunks
            .into_iter()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(inv)?;
        let total: u64 = manifest.chunks.iter().map(|c| c.bytes).sum();
        Ok(ChunkCache {
            dir: dir.to_path_buf(),
            manifest: Arc::new(manifest),
            chunks: Arc::new(chunks),
            release_pages: total > RESIDENT_CACHE_BYTES,
            weights: Arc::new(Vec::new()),
            progress: None,
            passes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of chunks.
    pub fn n_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Report every later pass's progress (rows done, as `pass N`) to `p`.
    pub fn set_progress(&mut self, p: Arc<dyn crate::progress::Progress + Send>) {
        self.progress = Some(p);
    }

    /// Passes run over this cache so far.
    pub fn passes(&self) -> usize {
        self.passes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Start a pass: count it and announce it to the progress sink (done by the drivers below;
    /// public for passes that walk the chunks themselves, in order).
    pub fn begin_pass(&self) {
        let k = self.passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(p) = &self.progress {
            p.start(&format!("pass {k}"), self.manifest.counts.n_obs);
        }
    }

    /// Report `rows` more rows done in the current pass.
    pub fn chunk_done(&self, rows: usize) {
        if let Some(p) = &self.progress {
            p.advance(rows as u64);
        }
    }

    /// End the current pass.
    pub fn end_pass(&self) {
        if let Some(p) = &self.progress {
            p.finish();
        }
    }

    /// Zero-copy view of chunk `i`.
    pub fn view(&self, i: usize) -> ChunkView<'_> {
        let mut v = self.chunks[i].view();
        if let Some(Some(w)) = self.weights.get(i) {
            v.weight = w;
        }
        v
    }

    /// The same cache with some rows' prior weights multiplied by a factor (0 removes a row, as
    /// a zero prior weight does in R): `factor(row_id)` is called for every row and returns
    /// `None` to leave it alone. The mapped chunks are shared, not copied; only the weights of
    /// chunks with a changed row are held in RAM (8 bytes per row of those chunks). Returns the
    /// new cache and the number of rows changed.
    pub fn reweighted(&self, factor: impl Fn(u64) -> Option<f64> + Sync) -> (ChunkCache, u64) {
        let per: Vec<(Option<Vec<f64>>, u64)> = (0..self.chunks.len())
            .into_par_iter()
            .map(|i| {
                let v = self.view(i);
                let mut out: Option<Vec<f64>> = None;
                let mut changed = 0u64;
                for (k, &r) in v.row_id.iter().enumerate() {
                    if let Some(f) = factor(r) {
                        let w = out.get_or_insert_with(|| v.weight.to_vec());
                        w[k] *= f;
                        changed += 1;
                    }
                }
                (out, changed)
            })
            .collect();
        let changed = per.iter().map(|x| x.1).sum();
        let weights = per.into_iter().map(|x| x.0).collect();
        (
            ChunkCache {
                dir: self.dir.clone(),
                manifest: Arc::clone(&self.manifest),
                chunks: Arc::clone(&self.chunks),
                release_pages: self.release_pages,
                weights: Arc::new(weights),
                progress: self.progress.clone(),
                passes: Arc::clone(&self.passes),
            },
            changed,
        )
    }

    /// Drop chunk `i`'s pages from this process's resident set once a pass is done with it
    /// (they stay in the OS page cache; the next pass maps them back with minor faults). Only
    /// for caches larger than [`RESIDENT_CACHE_BYTES`], so that resident memory stays
    /// independent of n; smaller caches stay mapped.
    pub fn release(&self, i: usize) {
        if self.release_pages {
            // SAFETY: the mapping is a read-only shared mapping of a file nobody modifies
            // (see `map_file`): MADV_DONTNEED only drops the page-table entries, and a later
            // access re-reads the same bytes from the page cache. No view of it is invalidated.
            let _ = unsafe { self.chunks[i].map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    /// Total bytes of chunk files.
    pub fn bytes(&self) -> u64 {
        self.manifest.chunks.iter().map(|c| c.bytes).sum()
    }

    /// A pass: fold every chunk into an accumulator and merge the partial results.
    /// Chunks are split into `FOLD_GROUPS` contiguous groups folded in parallel; the group
    /// results are merged in order, so the result does not depend on the thread count.
    pub fn par_fold<A, I, F, M>(&self, init: I, fold: F, merge: M) -> A
    where
        A: Send,
        I: Fn() -> A + Sync + Send,
        F: Fn(A, ChunkView<'_>) -> A + Sync + Send,
        M: Fn(A, A) -> A + Sync + Send,
    {
        self.par_fold_groups(FOLD_GROUPS, init, fold, merge)
    }

    /// [`ChunkCache::par_fold`] with an explicit number of groups (each group holds one
    /// accumulator: lower it for very large accumulators).
    pub fn par_fold_groups<A, I, F, M>(&self, groups: usize, init: I, fold: F, merge: M) -> A
    where
        A: Send,
        I: Fn() -> A + Sync + Send,
        F: Fn(A, ChunkView<'_>) -> A + Sync + Send,
        M: Fn(A, A) -> A + Sync + Send,
    {
        let n = self.chunks.len();
        let g = groups.clamp(1, n.max(1));
        self.begin_pass();
        let parts: Vec<A> = crate::pool::run_groups(g, |k| {
            let (a, b) = (k * n / g, (k + 1) * n / g);
            (a..b).fold(init(), |acc, i| self.visit(i, |v| fold(acc, v)))
        });
        self.end_pass();
        parts.into_iter().reduce(merge).unwrap_or_else(init)
    }

    /// Map every chunk to a value, in parallel, returning the values in chunk order.
    pub fn par_map<T: Send>(&self, f: impl Fn(usize, ChunkView<'_>) -> T + Sync + Send) -> Vec<T> {
        self.begin_pass();
        let out = crate::pool::run_groups(self.chunks.len(), |i| self.visit(i, |v| f(i, v)));
        self.end_pass();
        out
    }

    /// `f` on chunk `i`'s view within a pass: then its pages are released (large caches) and
    /// its rows counted as done.
    fn visit<T>(&self, i: usize, f: impl FnOnce(ChunkView<'_>) -> T) -> T {
        let v = self.view(i);
        let rows = v.n;
        let out = f(v);
        self.release(i);
        self.chunk_done(rows);
        out
    }
}

/// Remove, from `dir`, the temporaries of processes that no longer exist: entries named
/// `.<name>.tmp-<pid>` or `.<name>.tmp-<pid>-<nonce>` (a cache being built, an output being
/// written) whose process was killed before it could rename or clean them up. Entries of live
/// processes — another run at work in the same directory — are left alone; so is anything whose
/// process cannot be checked (non-Unix). Best effort: errors are ignored. Returns how many were
/// removed.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name) else {
            continue;
        };
        if process_alive(pid) != Some(false) {
            continue;
        }
        let p = e.path();
        let ok = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        removed += ok.is_ok() as usize;
    }
    removed
}

/// The pid in a temporary's name `.<name>.tmp-<pid>[-<nonce>]`, if it is one.
fn temp_owner(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let rest = &name[name.rfind(".tmp-")? + 5..];
    rest.split('-').next()?.parse().ok()
}

/// Whether process `pid` exists (None: cannot tell on this platform).
fn process_alive(pid: u32) -> Option<bool> {
    #[cfg(unix)]
    {
        let pid = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let r = unsafe { libc::kill(pid, 0) };
        if r == 0 {
            return Some(true);
        }
        Some(std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        None
    }
}

/// Builds a cache in a temporary directory next to its final location; removed on drop unless
/// [`CacheBuilder::finish`] publishes it.
pub struct CacheBuilder {
    tmp: PathBuf,
    target: PathBuf,
    done: bool,
    /// Whether chunks are held in memory until [`CacheBuilder::finish`] (a small cache, see
    /// [`CacheBuilder::hold_chunks`]), and those held, by file name.
    hold: bool,
    held: std::sync::Mutex<HashMap<String, Chunk>>,
}

/// A cache whose chunks take at most this many bytes is built in memory and written once, by
/// [`CacheBuilder::finish`], with its final codes (see [`CacheBuilder::hold_chunks`]).
pub const HELD_CACHE_BYTES: u64 = 64 << 20;

impl CacheBuilder {
    /// Start a cache that will live at `target`.
    pub fn new(target: &Path) -> Result<CacheBuilder> {
        let parent = target.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| Error::Cache {
            path: parent.to_path_buf(),
            msg: format!("cannot create the cache directory ({e}); choose another with --cache-dir"),
        })?;
        // Half-built caches of runs that were killed (SIGKILL, power loss) are recovered here.
        remove_stale_temps(parent);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = target
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.tmp-{}-{nonce}", std::process::id()));
        fs::create_dir(&tmp).map_err(|e| Error::Cache {
            path: tmp.clone(),
            msg: format!("cannot create ({e}); choose another location with --cache-dir"),
        })?;
        Ok(CacheBuilder {
            tmp,
            target: target.to_path_buf(),
            done: false,
            hold: false,
            held: Default::default(),
        })
    }

    /// Hold the chunks in memory until [`CacheBuilder::finish`] instead of writing each as it
    /// comes: for a cache of at most [`HELD_CACHE_BYTES`], which the caller estimates. Finishing
    /// then rewrites the categorical codes and checksums each chunk in memory and writes its file
    /// once, instead of writing the provisional file, rewriting its codes in place and reading it
    /// back for the checksum. The files are the same either way.
    pub fn hold_chunks(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// Write (or hold, see [`CacheBuilder::hold_chunks`]) one chunk under `name`; returns its
    /// (provisional) manifest entry.
    pub fn write_chunk(&self, name: &str, chunk: Chunk) -> Result<ChunkEntry> {
        let entry = |bytes| ChunkEntry {
            file: name.to_string(),
            n_rows: chunk.n_rows() as u64,
            nnz: chunk.indices.len() as u64,
            bytes,
            xxh3: 0,
            cat_nnz: 0,
        };
        if self.hold {
            let h = chunk_header(&chunk);
            let e = entry(chunk_parts(&h, &chunk).1);
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), chunk);
            return Ok(e);
        }
        let e = entry(write_chunk_file(&self.tmp.join(name), &chunk)?);
        Ok(e)
    }

    /// Rewrite provisional categorical codes (`cat_remap[k][provisional] = final`) and sparse
    /// indices (`sparse_remap(provisional) = final`) in place, count each chunk's categorical
    /// nonzeros (level 0 of block k is a design zero when `cat_drop_first[k]`), checksum every
    /// chunk, write the manifest, and atomically publish the directory. If another process
    /// published the same cache first, that one is kept.
    pub fn finish(
        mut self,
        mut manifest: Manifest,
        cat_remap: &[Vec<u32>],
        cat_drop_first: &[bool],
        sparse_remap: Option<&(dyn Fn(u32) -> u32 + Sync)>,
    ) -> Result<PathBuf> {
        let tmp = self.tmp.clone();
        let sums: Vec<Result<(u64, u64)>> = manifest
            .chunks
            .par_iter()
            .map(|e| {
                let p = tmp.join(&e.file);
                let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&e.file);
                if let Some(chunk) = held {
                    return finish_held(&p, chunk, cat_remap, cat_drop_first, sparse_remap);
                }
                // Plain positioned reads and writes, no mapping: finishing never makes the cache
                // resident in this process.
                use std::os::unix::fs::FileExt;
                let f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .map_err(|er| Error::io(&p, er))?;
                let io = |er| Error::io(&p, er);
                let len = f.metadata().map_err(io)?.len() as usize;
                let mut head = [0u8; HEADER];
                f.read_exact_at(&mut head, 0).map_err(io)?;
                let h = parse_header_len(&head, len).map_err(|m| Error::Cache {
                    path: p.clone(),
                    msg: m,
                })?;
                let o = h.offsets();
                // Read, map and write back `count` u32s from `at`, a piece at a time through one
                // small buffer (a buffer of the whole array would be that many fresh pages);
                // `f_map(first, piece)` gets each piece with the index of its first value.
                let mut buf = vec![0u32; REWRITE_PIECE.min((h.n * h.n_cat).max(h.nnz))];
                let mut rewrite = |at: usize, count: usize, f_map: &mut dyn FnMut(usize, &mut [u32])| -> Result<()> {
                    let mut done = 0;
                    while done < count {
                        let piece = &mut buf[..(count - done).min(REWRITE_PIECE)];
                        let pos = (at + 4 * done) as u64;
                        f.read_exact_at(bytemuck::cast_slice_mut(piece), pos).map_err(io)?;
                        f_map(done, piece);
                        f.write_all_at(bytemuck::cast_slice(piece), pos).map_err(io)?;
                        done += piece.len();
                    }
                    Ok(())
                };
                let mut cat_nnz = 0u64;
                if h.n_cat > 0 && !cat_remap.is_empty() {
                    let n = h.n.max(1);
                    rewrite(o.cat, h.n * h.n_cat, &mut |first, codes: &mut [u32]| {
                        cat_nnz += remap_codes(codes, first, n, cat_remap, cat_drop_first);
                    })?;
                }
                if let Some(remap) = sparse_remap {
                    rewrite(o.indices, h.nnz, &mut |_, idx: &mut [u32]| {
                        for j in idx {
                            *j = remap(*j);
                        }
                    })?;
                }
                // No fsync here: the kernel writes the pages back; a cache cut short by a crash
                // fails its checksums on the next open and is rebuilt.
                drop(f);
                Ok((file_xxh3(&p)?, cat_nnz))
            })
            .collect();
        for (e, s) in manifest.chunks.iter_mut().zip(sums) {
            (e.xxh3, e.cat_nnz) = s?;
        }
        let mpath = self.tmp.join(MANIFEST);
        let text = serde_json::to_string(&manifest).map_err(|e| Error::Cache {
            path: mpath.clone(),
            msg: e.to_string(),
        })?;
        fs::write(&mpath, text).map_err(|e| Error::io(&mpath, e))?;
        match fs::rename(&self.tmp, &self.target) {
            Ok(()) => {
                self.done = true;
            }
            Err(_) if self.target.join(MANIFEST).exists() => {
                // Someone else published first; ours is removed on drop and theirs is validated by the caller.
            }
            Err(e) => {
                return Err(Error::Cache {
                    path: self.target.clone(),
                    msg: format!("cannot publish the cache: {e}"),
                })
            }
        }
        Ok(self.target.clone())
    }
}

/// Rewrite provisional categorical codes to final ones (`cat_remap[k][provisional]`) in
/// `codes`, values `first..` of a chunk's column-major codes of `n` rows (value `first + i` is
/// row `(first + i) % n` of categorical column `(first + i) / n`); returns how many are design
/// nonzeros (level 0 of column k is a design zero when `cat_drop_first[k]`, by default).
fn remap_codes(codes: &mut [u32], first: usize, n: usize, cat_remap: &[Vec<u32>], cat_drop_first: &[bool]) -> u64 {
    let mut nnz = 0u64;
    let mut i = 0;
    while i < codes.len() {
        let k = (first + i) / n;
        let end = ((k + 1) * n - first).min(codes.len());
        let r = &cat_remap[k];
        let drop = cat_drop_first.get(k).copied().unwrap_or(true);
        for c in &mut codes[i..end] {
            *c = r[*c as usize];
            nnz += (!drop || *c != 0) as u64;
        }
        i = end;
    }
    nnz
}

/// [`CacheBuilder::finish`] for a held chunk: its codes rewritten in memory (as the file path
/// rewrites them in the file), its checksum taken over the bytes the file will hold, then the
/// file written. Returns the checksum and the categorical nonzeros.
fn finish_held(
    path: &Path,
    mut chunk: Chunk,
    cat_remap: &[Vec<u32>],
    cat_drop_first: &[bool],
    sparse_remap: Option<&(dyn Fn(u32) -> u32 + Sync)>,
) -> Result<(u64, u64)> {
    let mut cat_nnz = 0u64;
    if chunk.n_cat > 0 && !cat_remap.is_empty() {
        let n = chunk.n_rows().max(1);
        cat_nnz = remap_codes(&mut chunk.cat, 0, n, cat_remap, cat_drop_first);
    }
    if let Some(remap) = sparse_remap {
        for j in &mut chunk.indices {
            *j = remap(*j);
        }
    }
    let h = chunk_header(&chunk);
    let (parts, _) = chunk_parts(&h, &chunk);
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    for part in &parts {
        hash.update(part);
    }
    write_parts(path, parts)?;
    Ok((hash.digest(), cat_nnz))
}

impl Drop for CacheBuilder {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_owner_reads_the_pid_of_temporary_names() {
        assert_eq!(temp_owner(".abc123.tmp-4242-1795362761051742047"), Some(4242));
        assert_eq!(temp_owner(".diagnostics.parquet.tmp-77"), Some(77));
        assert_eq!(temp_owner("diagnostics.parquet"), None);
        assert_eq!(temp_owner(".hidden"), None);
        assert_eq!(temp_owner(".x.tmp-notapid"), None);
    }

    /// The chunk file at `p`, of `bytes` bytes, mapped and its header parsed.
    fn mapped(p: &Path, bytes: u64) -> MappedChunk {
        let map = map_file(p).unwrap();
        assert_eq!(map.len() as u64, bytes);
        let header = parse_header(&map).unwrap();
        MappedChunk {
            offsets: header.offsets(),
            header,
            map,
            groups: Default::default(),
        }
    }

    #[test]
    fn chunk_file_round_trip() {
        let chunk = Chunk {
            row_id: vec![3, 5, 9],
            y: vec![1.0, 0.0, 1.0],
            failures: Some(vec![2.0, 3.0, 4.0]),
            weight: vec![1.0, 2.0, 1.0],
            offset: vec![0.0, 0.5, 0.0],
            n_dense: 2,
            dense: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            n_cat: 1,
            cat: vec![0, 2, 1],
            indptr: vec![0, 1, 1, 3],
            indices: vec![4, 0, 7],
            values: vec![1.5, 2.0, -1.0],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.bin");
        let bytes = write_chunk_file(&p, &chunk).unwrap();
        let m = mapped(&p, bytes);
        let v = m.view();
        let w = chunk.view();
        assert_eq!(v.row_id, w.row_id);
        assert_eq!(v.failures, w.failures);
        assert_eq!(v.dense, w.dense);
        assert_eq!(v.cat, w.cat);
        assert_eq!(v.indptr, w.indptr);
        assert_eq!(v.values, w.values);
        // A truncated file is rejected.
        assert!(parse_header(&fs::read(&p).unwrap()[..(bytes as usize - 64)]).is_err());
    }

    #[test]
    fn unit_weights_and_zero_offsets_are_not_stored() {
        let explicit = Chunk {
            row_id: (0..100).collect(),
            y: (0..100).map(|i| (i % 2) as f64).collect(),
            weight: vec![1.0; 100],
            offset: vec![0.0; 100],
            n_dense: 1,
            dense: (0..100).map(|i| i as f64 / 7.0).collect(),
            ..Default::default()
        };
        let implicit = Chunk {
            weight: Vec::new(),
            offset: Vec::new(),
            ..explicit.clone()
        };
        let dir = tempfile::tempdir().unwrap();
        let (pe, pi) = (dir.path().join("e.bin"), dir.path().join("i.bin"));
        let (be, bi) = (
            write_chunk_file(&pe, &explicit).unwrap(),
            write_chunk_file(&pi, &implicit).unwrap(),
        );
        // 100 f64s of weights and of offsets, each array padded to 64 bytes.
        assert_eq!(be - bi, 2 * 832);
        for (p, bytes) in [(&pe, be), (&pi, bi)] {
            let m = mapped(p, bytes);
            let v = m.view();
            assert_eq!(v.weight, &[1.0; 100][..]);
            assert_eq!(v.offset, &[0.0; 100][..]);
            assert_eq!(v.y, &explicit.y[..]);
            assert_eq!(v.dense, &explicit.dense[..]);
        }
        let v = implicit.view();
        assert_eq!((v.weight.len(), v.offset.len()), (100, 100));
        assert!(v.weight.iter().all(|&w| w == 1.0) && v.offset.iter().all(|&o| o == 0.0));
        // A longer chunk after a shorter one still gets as many ones and zeros as rows.
        assert_eq!(crate::chunk::unit_weights(100_000).len(), 100_000);
        assert_eq!(crate::chunk::zero_offsets(3), &[0.0; 3][..]);
    }
}
