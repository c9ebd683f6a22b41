//! End-to-end catalogue of bad input at the model and output stage (issue 10, item 1), the
//! complement of `bad_input.rs` (which covers unusable files and the design).
//!
//! Each case runs the release binary's `fit` on small Parquet files written here and checks a
//! clean failure: the documented exit code (src/error.rs: 2 usage, 3 input data, 4 numerical,
//! 5 I/O), a message naming the problem (file, column and row where they apply), no panic or
//! abort, no `summary.json` (or any temporary file) in the output directory, and no temporary
//! cache directory. A cache that was fully built before a model-level error is a correct cache
//! of the data and may stay (a later run reuses it).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, ListArray, StringArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field};
use assert_cmd::Command;
use common::*;

const USAGE: i32 = 2;
const INPUT: i32 = 3;
const IO: i32 = 5;

/// `n` rows of a standard-normal-ish `x` (deterministic) and a 0/1 `y` that depends on it.
fn xy(n: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f64 - 50.0) / 29.0).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| ((v + 0.3 * ((i % 7) as f64 - 3.0)) > 0.0) as u8 as f64)
        .collect();
    (x, y)
}

/// `fulcrum fit FILE --formula F --family FAM --out <scratch>/out --cache-dir <scratch>/cache -q`.
fn fit(s: &Scratch, file: &Path, formula: &str, family: &str, extra: &[&str]) -> Command {
    let mut c = Command::cargo_bin("fulcrum").expect("the fulcrum binary is built");
    c.arg("fit")
        .arg(file)
        .args(["--formula", formula, "--family", family, "-q"])
        .arg("--out")
        .arg(s.path("out"))
        .arg("--cache-dir")
        .arg(s.cache())
        .args(extra)
        .timeout(std::time::Duration::from_secs(300));
    c
}

/// Every file under `dir` whose name marks it as temporary or partial.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The run failed cleanly: exit `code`, every word in stderr, no panic or abort, no summary in
/// the output directory and nothing temporary left in it or in the cache.
fn assert_model_failure(r: &Run, code: i32, words: &[&str], s: &Scratch) {
    let mut problems = failure_problems(r, code, words);
    if s.path("out").join("summary.json").exists() {
        problems.push("a failed run left out/summary.json".to_string());
    }
    for t in temporaries(s.dir.path()) {
        problems.push(format!("temporary left behind: {}", t.display()));
    }
    assert!(
        problems.is_empty(),
        "{}\n--- exit {:?}, stderr ---\n{}",
        problems.join("\n"),
        r.code,
        short_stderr(&r.stderr)
    );
}

/// Write `cols` to `<scratch>/<name>`.
fn file(s: &Scratch, name: &str, cols: Vec<(&str, ArrayRef)>) -> PathBuf {
    let p = s.path(name);
    write_parquet(&p, &batch(cols));
    p
}

/// `y` with row `at` replaced by `v`.
fn with_value(mut y: Vec<f64>, at: usize, v: f64) -> Vec<f64> {
    y[at] = v;
    y
}

// -------------------------------------------------------------------------------------------
// The response outside the family's support
// -------------------------------------------------------------------------------------------

#[test]
fn binomial_label_of_three() {
    let s = Scratch::new();
    let (x, y) = xy(50);
    let p = file(
        &s,
        "bin.parquet",
        vec![("y", f64s(&with_value(y, 7, 3.0))), ("x", f64s(&x))],
    );
    let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &[]));
    assert_model_failure(&r, INPUT, &["bin.parquet", "column 'y'", "row 7", "got 3"], &s);
}

#[test]
fn poisson_negative_count() {
    let s = Scratch::new();
    let (x, _) = xy(50);
    let y: Vec<f64> = (0..50).map(|i| (i % 4) as f64).collect();
    let p = file(
        &s,
        "pois.parquet",
        vec![("y", f64s(&with_value(y, 9, -1.0))), ("x", f64s(&x))],
    );
    let r = run(&mut fit(&s, &p, "y ~ x", "poisson", &[]));
    assert_model_failure(&r, INPUT, &["pois.parquet", "column 'y'", "row 9", "non-negative"], &s);
}

#[test]
fn gamma_zero_response() {
    let s = Scratch::new();
    let (x, _) = xy(50);
    let y: Vec<f64> = (0..50).map(|i| 1.0 + (i % 4) as f64).collect();
    let p = file(
        &s,
        "gam.parquet",
        vec![("y", f64s(&with_value(y, 11, 0.0))), ("x", f64s(&x))],
    );
    let r = run(&mut fit(&s, &p, "y ~ x", "gamma", &[]));
    assert_model_failure(&r, INPUT, &["gam.parquet", "column 'y'", "row 11", "positive"], &s);
}

#[test]
fn binomial_label_all_one_class() {
    let s = Scratch::new();
    let (x, _) = xy(50);
    for (v, word) in [(1.0, "is 1"), (0.0, "is 0")] {
        let p = file(&s, "one.parquet", vec![("y", f64s(&[v; 50])), ("x", f64s(&x))]);
        let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &[]));
        assert_model_failure(&r, INPUT, &["column 'y'", "50 rows", word, "both outcomes"], &s);
        // The same through the path (glmnet refuses it too).
        let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &["--penalty", "lasso"]));
        assert_model_failure(&r, INPUT, &["column 'y'", "both outcomes"], &s);
    }
}

// -------------------------------------------------------------------------------------------
// Prior weights
// -------------------------------------------------------------------------------------------

fn weighted(s: &Scratch, name: &str, w: Vec<f64>) -> PathBuf {
    let (x, y) = xy(w.len());
    file(s, name, vec![("y", f64s(&y)), ("x", f64s(&x)), ("w", f64s(&w))])
}

#[test]
fn weight_nan_is_missing_like_r_and_an_error_under_na_error() {
    let s = Scratch::new();
    let p = weighted(&s, "wnan.parquet", with_value(vec![1.0; 50], 5, f64::NAN));
    let r = run(&mut fit(
        &s,
        &p,
        "y ~ x",
        "binomial",
        &["--weights", "w", "--na", "error"],
    ));
    assert_model_failure(&r, INPUT, &["wnan.parquet", "column 'w'", "row 5"], &s);
    // Default (R's na.omit): the row is dropped and counted.
    let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &["--weights", "w"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let sm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("out").join("summary.json")).unwrap()).unwrap();
    assert_eq!(sm["n_dropped"], 1);
    assert_eq!(sm["n_obs"], 49);
}

#[test]
fn weight_infinite() {
    let s = Scratch::new();
    let p = weighted(&s, "winf.parquet", with_value(vec![1.0; 50], 5, f64::INFINITY));
    let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &["--weights", "w"]));
    assert_model_failure(&r, INPUT, &["winf.parquet", "column 'w'", "row 5", "not finite"], &s);
}

#[test]
fn weight_negative() {
    let s = Scratch::new();
    let p = weighted(&s, "wneg.parquet", with_value(vec![1.0; 50], 5, -1.0));
    let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &["--weights", "w"]));
    assert_model_failure(&r, INPUT, &["wneg.parquet", "column 'w'", "row 5", "negative"], &s);
}

#[test]
fn weights_all_zero() {
    let s = Scratch::new();
    let p = weighted(&s, "wzero.parquet", vec![0.0; 50]);
    let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &["--weights", "w"]));
    assert_model_failure(&r, INPUT, &["column 'w'", "every row has zero weight"], &s);
}

// -------------------------------------------------------------------------------------------
// Column types and levels
// -------------------------------------------------------------------------------------------

#[test]
fn sparse_term_on_a_list_of_strings() {
    let s = Scratch::new();
    let (x, y) = xy(20);
    let values: ArrayRef = Arc::new(StringArray::from(vec!["a"; 40]));
    let offsets = OffsetBuffer::from_lengths(vec![2usize; 20]);
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    let feats: ArrayRef = Arc::new(ListArray::new(item, offsets, values, None));
    let p = file(
        &s,
        "lists.parquet",
        vec![("y", f64s(&y)), ("x", f64s(&x)), ("feats", feats)],
    );
    let r = run(&mut fit(&s, &p, "y ~ x + sparse(feats)", "binomial", &[]));
    assert_model_failure(&r, INPUT, &["lists.parquet", "column 'feats'", "list<struct"], &s);
}

#[test]
fn categorical_with_a_single_level() {
    let s = Scratch::new();
    let (x, y) = xy(30);
    let p = file(
        &s,
        "one.parquet",
        vec![("y", f64s(&y)), ("x", f64s(&x)), ("g", strs(&["a"; 30]))],
    );
    let r = run(&mut fit(&s, &p, "y ~ x + g", "binomial", &[]));
    assert_model_failure(
        &r,
        INPUT,
        &["column 'g'", "single level ('a')", "at least 2 levels"],
        &s,
    );
    // The data's cache is valid and stays; a second run reuses it and refuses the model again.
    let r = run(&mut fit(&s, &p, "y ~ x + g", "binomial", &[]));
    assert_model_failure(&r, INPUT, &["column 'g'", "single level ('a')"], &s);
    // Also when a filter leaves one level.
    let g: Vec<&str> = (0..30).map(|i| if i % 2 == 0 { "a" } else { "b" }).collect();
    let k: Vec<&str> = (0..30).map(|i| if i % 2 == 0 { "keep" } else { "drop" }).collect();
    let q = file(
        &s,
        "two.parquet",
        vec![("y", f64s(&y)), ("x", f64s(&x)), ("g", strs(&g)), ("k", strs(&k))],
    );
    let r = run(&mut fit(&s, &q, "y ~ x + g", "binomial", &["--filter", "k=keep"]));
    assert_model_failure(&r, INPUT, &["column 'g'", "single level"], &s);
}

#[test]
fn categorical_with_a_million_levels_is_a_memory_message_not_an_abort() {
    let s = Scratch::new();
    let n = 1_000_000;
    let names: Vec<String> = (0..n).map(|i| format!("L{i}")).collect();
    let g: ArrayRef = Arc::new(StringArray::from(names.iter().map(String::as_str).collect::<Vec<_>>()));
    let y: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
    let p = file(&s, "wide.parquet", vec![("y", f64s(&y)), ("g", g)]);
    let r = run(&mut fit(&s, &p, "y ~ g", "binomial", &[]));
    assert_model_failure(
        &r,
        USAGE,
        &[
            "1000000 × 1000000 information matrix",
            "'g', has 1000000 levels",
            "--penalty lasso",
        ],
        &s,
    );
}

#[test]
fn column_named_like_a_formula_operator() {
    let s = Scratch::new();
    let (x, y) = xy(40);
    let p = file(&s, "ops.parquet", vec![("y", f64s(&y)), ("a+b", f64s(&x))]);
    // Unquoted, `a+b` is two terms: the error suggests the real column.
    let r = run(&mut fit(&s, &p, "y ~ a+b", "binomial", &[]));
    assert_model_failure(&r, USAGE, &["unknown column 'a'", "did you mean 'a+b'?"], &s);
    // Backticks quote it, as in R.
    let r = run(&mut fit(&s, &p, "y ~ `a+b`", "binomial", &[]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let sm = std::fs::read_to_string(s.path("out").join("summary.json")).unwrap();
    assert!(sm.contains("\"a+b\""), "{sm}");
}

// -------------------------------------------------------------------------------------------
// Output and disk
// -------------------------------------------------------------------------------------------

#[test]
fn output_directory_is_a_file_or_under_one() {
    let s = Scratch::new();
    let (x, y) = xy(30);
    let p = file(&s, "ok.parquet", vec![("y", f64s(&y)), ("x", f64s(&x))]);
    std::fs::write(s.path("out"), "not a directory\n").unwrap();
    let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &[]));
    assert!(
        r.code == Some(USAGE) && r.stderr.contains("exists and is not a directory"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(s.path("out")).unwrap(), "not a directory\n");
    let mut c = Command::cargo_bin("fulcrum").unwrap();
    c.arg("fit")
        .arg(&p)
        .args(["--formula", "y ~ x", "--family", "binomial", "-q", "--out"])
        .arg(s.path("out").join("sub"))
        .arg("--cache-dir")
        .arg(s.cache());
    let r = run(&mut c);
    assert!(
        r.code == Some(IO) && r.stderr.contains("Not a directory"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"));
}

#[cfg(unix)]
#[test]
fn file_size_limit_reached_while_writing_the_cache() {
    // `ulimit -f 100` (100 KiB per file) stands in for a full disk: the first chunk file is
    // larger, so the write fails with EFBIG. fulcrum ignores SIGXFSZ, reports the error and
    // removes its temporary cache directory.
    let s = Scratch::new();
    let n = 50_000;
    let (x, y) = xy(n);
    let z: Vec<f64> = (0..n).map(|i| (i % 13) as f64).collect();
    let p = file(
        &s,
        "big.parquet",
        vec![("y", f64s(&y)), ("x", f64s(&x)), ("z", f64s(&z))],
    );
    let bin = assert_cmd::cargo::cargo_bin("fulcrum");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 100; exec \"$0\" \"$@\"")
        .arg(&bin)
        .args([
            "fit",
            p.to_str().unwrap(),
            "--formula",
            "y ~ x + z",
            "--family",
            "binomial",
            "-q",
        ])
        .arg("--out")
        .arg(s.path("out"))
        .arg("--cache-dir")
        .arg(s.cache())
        .output()
        .unwrap();
    let r = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(r.code.is_some(), "killed by a signal: {:?}", out.status);
    assert_model_failure(&r, IO, &["File too large"], &s);
    assert_cache_clean(&s.cache());
}

// -------------------------------------------------------------------------------------------
// The cache between and across runs
// -------------------------------------------------------------------------------------------

fn deviance(dir: &Path) -> f64 {
    let sm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    sm["deviance"].as_f64().unwrap()
}

#[test]
fn concurrent_runs_on_one_cache() {
    let s = Scratch::new();
    let n = 60_000;
    let (x, y) = xy(n);
    let g: Vec<&str> = (0..n).map(|i| ["p", "q", "r", "s"][i % 4]).collect();
    let p = file(
        &s,
        "shared.parquet",
        vec![("y", f64s(&y)), ("x", f64s(&x)), ("g", strs(&g))],
    );
    // A reference run with a cache of its own.
    let r = run(&mut fit(&s, &p, "y ~ x + g", "binomial", &[]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let bin = assert_cmd::cargo::cargo_bin("fulcrum");
    // Four runs started together on one empty cache directory: each builds, the first rename
    // publishes, the others find the published cache or publish the same bytes.
    let children: Vec<_> = (0..4)
        .map(|k| {
            std::process::Command::new(&bin)
                .args([
                    "fit",
                    p.to_str().unwrap(),
                    "--formula",
                    "y ~ x + g",
                    "--family",
                    "binomial",
                    "-q",
                ])
                .arg("--out")
                .arg(s.path(&format!("par{k}")))
                .arg("--cache-dir")
                .arg(s.path("cache2"))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut devs = Vec::new();
    for (k, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "run {k}: {}", String::from_utf8_lossy(&o.stderr));
        devs.push(deviance(&s.path(&format!("par{k}"))));
    }
    assert!(devs.iter().all(|d| *d == devs[0]), "{devs:?}");
    assert_eq!(devs[0], deviance(&s.path("out")));
    assert_cache_published(&s.path("cache2"));
    assert!(
        temporaries(&s.path("cache2")).is_empty(),
        "{:?}",
        temporaries(&s.path("cache2"))
    );
}

#[test]
fn cache_tampered_between_runs_is_rebuilt() {
    let s = Scratch::new();
    let (x, y) = xy(3000);
    let p = file(&s, "t.parquet", vec![("y", f64s(&y)), ("x", f64s(&x))]);
    let r = run(&mut fit(&s, &p, "y ~ x", "binomial", &[]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let d0 = deviance(&s.path("out"));
    // Flip bytes in the middle of every chunk file.
    let key = std::fs::read_dir(s.cache())
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    for e in std::fs::read_dir(&key).unwrap().flatten() {
        let f = e.path();
        if f.extension().is_some_and(|x| x == "bin") {
            let mut b = std::fs::read(&f).unwrap();
            let m = b.len() / 2;
            for v in &mut b[m..m + 8] {
                *v ^= 0xFF;
            }
            std::fs::write(&f, b).unwrap();
        }
    }
    // Not quiet: the rebuild is announced.
    let mut c = Command::cargo_bin("fulcrum").unwrap();
    c.arg("fit")
        .arg(&p)
        .args(["--formula", "y ~ x", "--family", "binomial", "--out"])
        .arg(s.path("out"))
        .arg("--cache-dir")
        .arg(s.cache());
    let r = run(&mut c);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("was stale") && r.stderr.contains("rebuilt"),
        "{}",
        r.stderr
    );
    assert_eq!(deviance(&s.path("out")), d0, "a damaged cache was used");
    assert_cache_published(&s.cache());
}

#[test]
fn sparse_index_of_two_to_the_thirty() {
    // Without a declared width the block is as wide as the largest index: 2³⁰ + 1 columns
    // cannot be held (found by the parquet_design fuzzer as an out-of-memory abort).
    let s = Scratch::new();
    let (x, y) = xy(10);
    let rows: Vec<Vec<(i32, f32)>> = (0..10)
        .map(|i| vec![(i, 1.0), (if i == 3 { 1 << 30 } else { 20 }, 2.0)])
        .collect();
    let refs: Vec<&[(i32, f32)]> = rows.iter().map(Vec::as_slice).collect();
    let p = file(
        &s,
        "wide.parquet",
        vec![("y", f64s(&y)), ("x", f64s(&x)), ("feats", sparse(&refs))],
    );
    let r = run(&mut fit(&s, &p, "y ~ x + sparse(feats)", "binomial", &[]));
    assert_model_failure(
        &r,
        INPUT,
        &["column 'feats' has a sparse index of 1073741824", "Hash the features"],
        &s,
    );
    assert_cache_clean(&s.cache());
}
