//! How a `parquet_design` fuzz input is read: the first byte picks one of [`FORMULAS`] (its high
//! bit turns on `--na error`, the next one builds the cache as it goes instead of holding a small
//! one in memory), the rest is the Parquet file. Shared by the fuzz target and by
//! tests/fuzz_regressions.rs, which replays the inputs the fuzzer found.

use fulcrum::design::{ModelInput, NaPolicy};
use fulcrum::ingest::IngestOptions;
use fulcrum::progress::NoProgress;

/// The formulas a `parquet_design` input can pick.
pub const FORMULAS: [&str; 6] = [
    "y ~ .",
    "y ~ x",
    "y ~ x + g",
    "y ~ log(x) + C(g) + sparse(feats)",
    "cbind(y, x) ~ g - 1",
    "y ~ x + offset(x) + group(g)",
];

/// Load fuzz input `data` through `fulcrum::load`, with the file and the cache under `dir`
/// (None for an empty input or an unwritable `dir`). A file already holding these bytes is left
/// alone, so loading the same input twice into one `dir` reuses its cache, as a second run would.
pub fn load(data: &[u8], dir: &std::path::Path) -> Option<fulcrum::Result<fulcrum::Dataset>> {
    let (&k, bytes) = data.split_first()?;
    let _ = std::fs::create_dir_all(dir);
    let file = dir.join("in.parquet");
    if std::fs::read(&file).ok().as_deref() != Some(bytes) {
        std::fs::write(&file, bytes).ok()?;
    }
    let model = ModelInput {
        formula: FORMULAS[k as usize % FORMULAS.len()].into(),
        filters: Vec::new(),
        na: if k & 0x80 == 0 { NaPolicy::Drop } else { NaPolicy::Error },
        weights: None,
    };
    let opts = IngestOptions {
        cache_dir: Some(dir.join("cache")),
        chunk_rows: 5,
        // Both ways of building a cache: held in memory and written once, or written as it goes.
        held_cache_bytes: if k & 0x40 == 0 {
            fulcrum::store::HELD_CACHE_BYTES
        } else {
            0
        },
    };
    Some(fulcrum::load(&[file.display().to_string()], &model, &opts, &NoProgress))
}
