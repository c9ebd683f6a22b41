//! Shared helpers for the end-to-end CLI tests: writing small Parquet files with arrow-array +
//! `parquet::arrow::ArrowWriter`, running the release `fulcrum` binary with a private cache
//! directory, and checking that a failed run left the cache clean.

#![allow(dead_code)]

pub mod reference;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use assert_cmd::Command;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::WriterProperties;

/// What [`load_model`] loads besides the inputs and the formula.
#[derive(Default, Clone, Copy)]
pub struct LoadOpts<'a> {
    /// `COL=VALUE` row filters.
    pub filters: &'a [(&'a str, &'a str)],
    /// The prior-weights column.
    pub weights: Option<&'a str>,
    /// Rows per chunk (None: fulcrum's default).
    pub chunk_rows: Option<usize>,
}

/// `fulcrum::load` of `inputs` with `formula`, rows with missing values dropped, the cache
/// under `cache`; panics on an error (the tests that call it expect a load to succeed).
pub fn load_model(inputs: &[String], formula: &str, cache: &Path, o: LoadOpts) -> fulcrum::Dataset {
    let m = fulcrum::design::ModelInput {
        formula: formula.into(),
        filters: o.filters.iter().map(|(c, v)| (c.to_string(), v.to_string())).collect(),
        na: fulcrum::design::NaPolicy::Drop,
        weights: o.weights.map(str::to_string),
    };
    let mut io = fulcrum::ingest::IngestOptions {
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    };
    if let Some(r) = o.chunk_rows {
        io.chunk_rows = r;
    }
    fulcrum::load(inputs, &m, &io, &fulcrum::progress::NoProgress).unwrap()
}

/// A scratch directory holding the test's inputs and its cache (`<dir>/cache`).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    /// `<tempdir>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The cache root passed to every run.
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    /// `fulcrum inspect --cache-dir <tempdir>/cache` with no inputs yet.
    pub fn inspect(&self) -> Command {
        let mut c = Command::cargo_bin("fulcrum").expect("the fulcrum binary is built");
        c.arg("inspect").arg("--cache-dir").arg(self.cache());
        // A hang on bad input is a failure too (the run is killed and reports no exit code).
        c.timeout(std::time::Duration::from_secs(120));
        c
    }
}

// ---------------------------------------------------------------------------------------------
// Columns
// ---------------------------------------------------------------------------------------------

pub fn f64s(v: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}

pub fn f64_opt(v: &[Option<f64>]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}

pub fn i64s(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

pub fn strs(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

pub fn bools(v: &[bool]) -> ArrayRef {
    Arc::new(BooleanArray::from(v.to_vec()))
}

/// The item field of a sparse column: `struct<idx: int32, val: float32>`.
pub fn sparse_item_field() -> Arc<Field> {
    let fields = Fields::from(vec![
        Field::new("idx", DataType::Int32, false),
        Field::new("val", DataType::Float32, false),
    ]);
    Arc::new(Field::new("item", DataType::Struct(fields), false))
}

/// The Arrow type of a sparse column: `list<struct<idx: int32, val: float32>>`.
pub fn sparse_type() -> DataType {
    DataType::List(sparse_item_field())
}

/// A sparse column, one `(idx, val)` list per row.
pub fn sparse(rows: &[&[(i32, f32)]]) -> ArrayRef {
    let lens = rows.iter().map(|r| r.len());
    let offsets = OffsetBuffer::<i32>::from_lengths(lens);
    let idx: Vec<i32> = rows.iter().flat_map(|r| r.iter().map(|e| e.0)).collect();
    let val: Vec<f32> = rows.iter().flat_map(|r| r.iter().map(|e| e.1)).collect();
    let DataType::Struct(fields) = sparse_item_field().data_type().clone() else {
        unreachable!()
    };
    let st = StructArray::new(
        fields,
        vec![
            Arc::new(Int32Array::from(idx)) as ArrayRef,
            Arc::new(Float32Array::from(val)) as ArrayRef,
        ],
        None,
    );
    Arc::new(ListArray::new(sparse_item_field(), offsets, Arc::new(st), None))
}

/// A field for `arr` named `name` (nullable).
pub fn field(name: &str, arr: &ArrayRef) -> Field {
    Field::new(name, arr.data_type().clone(), true)
}

/// A batch from named columns, with optional schema-level metadata.
pub fn batch_with_meta(cols: Vec<(&str, ArrayRef)>, meta: &[(&str, &str)]) -> RecordBatch {
    let fields: Vec<Field> = cols.iter().map(|(n, a)| field(n, a)).collect();
    batch_from_fields(fields, cols.into_iter().map(|(_, a)| a).collect(), meta)
}

/// A batch from named columns.
pub fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    batch_with_meta(cols, &[])
}

/// A batch from explicit fields (e.g. with field metadata) and arrays.
pub fn batch_from_fields(fields: Vec<Field>, arrays: Vec<ArrayRef>, meta: &[(&str, &str)]) -> RecordBatch {
    let md: HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, md));
    RecordBatch::try_new(schema, arrays).expect("valid record batch")
}

/// `field` with field-level metadata.
pub fn with_field_meta(f: Field, meta: &[(&str, &str)]) -> Field {
    f.with_metadata(
        meta.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<String, String>>(),
    )
}

// ---------------------------------------------------------------------------------------------
// Parquet files
// ---------------------------------------------------------------------------------------------

/// Writer properties: default (snappy-free, dictionary on) unless overridden.
pub fn default_props() -> WriterProperties {
    WriterProperties::builder().build()
}

/// At most `rows` rows per row group.
pub fn row_group_props(rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows))
        .build()
}

/// Uncompressed, no dictionary, PLAIN encoding, no statistics in page headers: the data pages
/// hold the raw little-endian values, so a byte flip lands in values.
pub fn raw_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_encoding(Encoding::PLAIN)
        .build()
}

/// Write `batches` (same schema) to `path` with `props`.
pub fn write_parquet_with(path: &Path, batches: &[RecordBatch], props: WriterProperties) {
    let file = File::create(path).expect("create parquet file");
    let mut w = ArrowWriter::try_new(file, batches[0].schema(), Some(props)).expect("ArrowWriter");
    for b in batches {
        w.write(b).expect("write batch");
    }
    w.close().expect("close writer");
}

/// Write one batch to `path` with default properties.
pub fn write_parquet(path: &Path, b: &RecordBatch) {
    write_parquet_with(path, std::slice::from_ref(b), default_props());
}

/// A small, valid model frame: `y ~ age + x + region` with `n` rows.
pub fn good_batch(n: usize) -> RecordBatch {
    let y: Vec<f64> = (0..n).map(|i| (i % 3) as f64 + 0.5).collect();
    let age: Vec<f64> = (0..n).map(|i| 20.0 + i as f64).collect();
    let x: Vec<i64> = (0..n).map(|i| (i * 7 % 11) as i64).collect();
    let regions = ["north", "south", "east"];
    let region: Vec<&str> = (0..n).map(|i| regions[i % 3]).collect();
    batch(vec![
        ("y", f64s(&y)),
        ("age", f64s(&age)),
        ("x", i64s(&x)),
        ("region", strs(&region)),
    ])
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// The outcome of one run, decoded.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` and capture everything.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run fulcrum");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every path under `root` (recursively), for diagnostics.
fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if p.is_dir() {
                walk(&p, out);
            }
        }
    }
}

/// Assert that `cache` holds no cache that looks complete (`<cache>/<key>/manifest.json`) and no
/// leftover temporary build directory (`.<key>.tmp-...`).
pub fn assert_cache_clean(cache: &Path) {
    let problems = cache_problems(cache);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What [`assert_cache_clean`] objects to, one line per problem.
pub fn cache_problems(cache: &Path) -> Vec<String> {
    let mut all = Vec::new();
    walk(cache, &mut all);
    let mut problems = Vec::new();
    for p in &all {
        let name = p
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains(".tmp-") {
            problems.push(format!("leftover temporary cache directory {}", p.display()));
        }
        if name == "manifest.json" {
            problems.push(format!("a failed run left a complete-looking cache: {}", p.display()));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("cache tree: {all:#?}"));
    }
    problems
}

/// Assert that `cache` holds exactly one published cache (`<cache>/<key>/manifest.json`).
pub fn assert_cache_published(cache: &Path) {
    let n = std::fs::read_dir(cache)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("manifest.json").is_file())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(n, 1, "expected one published cache under {}", cache.display());
}

/// stderr without a backtrace (the environment may set RUST_BACKTRACE).
pub fn short_stderr(stderr: &str) -> &str {
    stderr.split("stack backtrace:").next().unwrap_or(stderr).trim_end()
}

/// What is wrong with a run that should have failed with exit `code` and an error naming every
/// word of `words`: a panic or allocation abort, another exit code, no `fulcrum: error:` line, a
/// word missing from stderr. Empty when the failure is clean.
pub fn failure_problems(r: &Run, code: i32, words: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if r.stderr.contains("panicked") || r.code == Some(101) || r.stderr.contains("memory allocation") {
        problems.push("fulcrum panicked or aborted".to_string());
    }
    if r.code == Some(0) {
        problems.push("expected failure, got exit 0".to_string());
    } else if r.code != Some(code) {
        problems.push(format!("wrong exit code: want {code}, got {:?}", r.code));
    }
    if !r.stderr.contains("fulcrum: error: ") {
        problems.push("no 'fulcrum: error: ' line on stderr".to_string());
    }
    for w in words {
        if !r.stderr.contains(w) {
            problems.push(format!("stderr does not mention {w:?}"));
        }
    }
    problems
}

/// Assert the run failed cleanly: exit `code`, every word of `words` in stderr, no panic,
/// and no complete-looking or temporary cache left in `cache`. Reports every problem at once.
pub fn assert_clean_failure(r: &Run, code: i32, words: &[&str], cache: &Path) {
    if std::env::var_os("BAD_INPUT_SHOW").is_some() {
        // `BAD_INPUT_SHOW=1 cargo test --release --test bad_input -- --nocapture --test-threads 1`
        // prints every message the catalogue checks, for review.
        eprintln!("[exit {:?}] {}", r.code, short_stderr(&r.stderr));
    }
    let mut problems = failure_problems(r, code, words);
    problems.extend(cache_problems(cache));
    assert!(
        problems.is_empty(),
        "{}\n--- exit {:?}, stderr ---\n{}\n--- stdout ---\n{}",
        problems.join("\n"),
        r.code,
        short_stderr(&r.stderr),
        r.stdout
    );
}

/// Assert success and parse the `--json` report (serde_json is a regular dependency of the
/// crate, so integration tests can use it).
pub fn assert_json_success(r: &Run) -> serde_json::Value {
    let ctx = format!(
        "exit {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        r.code, r.stderr, r.stdout
    );
    assert!(!r.stderr.contains("panicked"), "fulcrum panicked:\n{ctx}");
    assert_eq!(r.code, Some(0), "expected success:\n{ctx}");
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{ctx}"))
}

/// The Adult logistic model of the CLI tests (training rows, `--filter split=train`).
pub const ADULT_FORMULA: &str = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex";

/// `fulcrum <cmd> fixtures/adult.parquet` with [`ADULT_FORMULA`] on the training rows (logistic,
/// quiet), a private cache in `tmp/cache`, output to `tmp/<out>`, then `extra` flags.
pub fn adult_cli(cmd: &str, tmp: &Path, out: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("fulcrum")
        .unwrap()
        .args([
            cmd,
            &reference::fixture("adult.parquet"),
            "--formula",
            ADULT_FORMULA,
            "--filter",
            "split=train",
        ])
        .args(["--family", "binomial", "-q", "--cache-dir"])
        .arg(tmp.join("cache"))
        .arg("--out")
        .arg(tmp.join(out))
        .args(extra)
        .assert()
}

/// Pearson correlation.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Median (upper middle for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A logistic data set with a wide factor `g` (`levels` levels), a group-level covariate `zg`
/// (a function of `g`, so aliased with it), two row-level covariates, `x3 = x1 + zg` (aliased
/// with x1 and g together, not with g alone) and, with `dead_level`,
/// one level whose rows all have prior weight 0 (a zero column). Written to `wide.parquet`;
/// used by the blocked-solve tests (fit and diagnostics).
pub fn wide_factor_data(s: &Scratch, levels: usize, dead_level: bool) {
    let n = 40 * levels;
    let mut st = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        (st % 1_000_000) as f64 / 1_000_000.0
    };
    let names: Vec<String> = (0..levels).map(|l| format!("L{l:04}")).collect();
    let effect: Vec<f64> = (0..levels).map(|_| next() * 2.0 - 1.0).collect();
    let (mut x1, mut x2, mut g, mut zg, mut y, mut w) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..n {
        // Uneven level sizes, so the diagonal block is not a multiple of the identity.
        let u = next();
        let l = ((u + u * u) / 2.0 * levels as f64) as usize % levels;
        let a = next() * 2.0 - 1.0;
        let b = next() * 3.0;
        let eta = -0.3 + 0.8 * a - 0.2 * b + effect[l];
        y.push(if next() < 1.0 / (1.0 + (-eta).exp()) { 1.0 } else { 0.0 });
        x1.push(a);
        x2.push(b);
        g.push(names[l].as_str());
        zg.push((l as f64 * 0.37).sin());
        w.push(if dead_level && l == levels / 2 {
            0.0
        } else {
            1.0 + (i % 3) as f64
        });
    }
    write_parquet(
        &s.path("wide.parquet"),
        &batch(vec![
            ("y", f64s(&y)),
            ("x1", f64s(&x1)),
            ("x2", f64s(&x2)),
            ("zg", f64s(&zg)),
            ("x3", f64s(&x1.iter().zip(&zg).map(|(a, b)| a + b).collect::<Vec<_>>())),
            ("g", strs(&g)),
            ("w", f64s(&w)),
        ]),
    );
}
