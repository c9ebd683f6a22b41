//! End-to-end catalogue of bad input for the `fulcrum` CLI (issue 2, item 8).
//!
//! Every test writes its own small Parquet files into a tempdir, runs the release binary with
//! `--cache-dir <tempdir>/cache`, and checks that a failure is clean: the documented exit code
//! (src/error.rs: 2 usage/formula, 3 input data, 4 numerical, 5 I/O or cache), a message on
//! stderr that names the problem (and the file / column / row where that applies), no panic,
//! and no complete-looking cache (`<cache>/<key>/manifest.json`) or `.tmp-` build directory
//! left behind. Positive controls check that good inputs in the same shapes do load.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use parquet::file::metadata::ParquetMetaDataReader;

const FORMULA: &str = "y ~ age + x + region";

/// Write `good_batch(n)` to `<scratch>/<name>` and return its path.
fn good_file(s: &Scratch, name: &str, n: usize) -> std::path::PathBuf {
    let p = s.path(name);
    write_parquet(&p, &good_batch(n));
    p
}

/// Exit codes from src/error.rs.
const USAGE: i32 = 2;
const INPUT: i32 = 3;

// -------------------------------------------------------------------------------------------
// 1-3: unusable files
// -------------------------------------------------------------------------------------------

#[test]
fn missing_file() {
    let s = Scratch::new();
    let p = s.path("nope.parquet");
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
    assert_clean_failure(&r, INPUT, &["nope.parquet", "no such file or directory"], &s.cache());
}

#[test]
fn not_parquet_text_file() {
    let s = Scratch::new();
    let p = s.path("notes.parquet");
    fs::write(&p, "y,age,x,region\n1,20,3,north\n2,21,4,south\n".repeat(20)).unwrap();
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
    assert_clean_failure(&r, INPUT, &["notes.parquet", "not a Parquet file"], &s.cache());

    // A file shorter than the Parquet magic + footer length.
    let q = s.path("tiny.parquet");
    fs::write(&q, "hello\n").unwrap();
    let r = run(s.inspect().arg(&q).args(["--formula", FORMULA]));
    assert_clean_failure(
        &r,
        INPUT,
        &["tiny.parquet", "not a Parquet file", "6 bytes"],
        &s.cache(),
    );
}

#[test]
fn truncated_parquet_cut_in_half() {
    let s = Scratch::new();
    let good = good_file(&s, "good.parquet", 50);
    let bytes = fs::read(&good).unwrap();
    let p = s.path("half.parquet");
    fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
    assert_clean_failure(&r, INPUT, &["half.parquet", "truncated"], &s.cache());
}

#[test]
fn truncated_parquet_data_gone_footer_intact() {
    // The file keeps its leading magic and its footer but lost the column data in between (a
    // bad copy that dropped a middle block): the footer parses, the page offsets point into
    // the footer bytes.
    let s = Scratch::new();
    let good = good_file(&s, "good.parquet", 50);
    let bytes = fs::read(&good).unwrap();
    let flen = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let mut cut = bytes[..4].to_vec();
    cut.extend_from_slice(&bytes[bytes.len() - 8 - flen..]);
    let p = s.path("cut.parquet");
    fs::write(&p, &cut).unwrap();
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
    assert_clean_failure(&r, INPUT, &["cut.parquet"], &s.cache());
}

// -------------------------------------------------------------------------------------------
// 4-6: the formula against the schema
// -------------------------------------------------------------------------------------------

/// The error shows the formula on one line and a `^` under character `pos` (0-based, in
/// characters) on the next.
fn assert_caret(stderr: &str, formula: &str, pos: usize) {
    let lines: Vec<&str> = stderr.lines().collect();
    let k = lines
        .iter()
        .position(|l| l.trim() == formula)
        .unwrap_or_else(|| panic!("no line showing the formula {formula:?}:\n{stderr}"));
    let indent = lines[k].chars().take_while(|c| *c == ' ').count();
    let caret = lines
        .get(k + 1)
        .unwrap_or_else(|| panic!("no caret line after the formula:\n{stderr}"));
    assert_eq!(caret.trim(), "^", "caret line is not a lone '^':\n{stderr}");
    let col = caret.chars().position(|c| c == '^').unwrap();
    assert_eq!(
        col,
        indent + pos,
        "caret under the wrong character of {formula:?} (want offset {pos}):\n{stderr}"
    );
}

#[test]
fn formula_syntax_errors_point_at_the_offending_character() {
    let s = Scratch::new();
    let p = good_file(&s, "good.parquet", 10);
    // (formula, offset of the offending character, words of the message)
    let cases: &[(&str, usize, &[&str])] = &[
        ("y ~ age + + x", 10, &["expected a term, found '+'"]),
        ("y ~ age $ x", 8, &["unexpected character '$'"]),
        ("y ~ age + foo(x)", 10, &["unknown function 'foo'"]),
        ("y ~ log(age", 11, &["expected ')'", "end of formula"]),
        ("y age", 2, &["expected '~'", "'age'"]),
        ("~ age", 0, &["missing response"]),
        ("y ~ `âge` $ x", 10, &["unexpected character '$'"]),
    ];
    for &(formula, pos, words) in cases {
        let r = run(s.inspect().arg(&p).args(["--formula", formula]));
        let mut all = vec!["formula error"];
        all.extend_from_slice(words);
        assert_clean_failure(&r, USAGE, &all, &s.cache());
        assert_caret(&r.stderr, formula, pos);
    }
}

#[test]
fn unknown_column_suggests_a_close_name() {
    let s = Scratch::new();
    let p = good_file(&s, "good.parquet", 10);

    let formula = "y ~ agee + x";
    let r = run(s.inspect().arg(&p).args(["--formula", formula]));
    assert_clean_failure(&r, USAGE, &["unknown column 'agee'", "did you mean 'age'"], &s.cache());
    assert_caret(&r.stderr, formula, 4);

    // In --weights and --filter too.
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--weights", "agee"]));
    assert_clean_failure(
        &r,
        USAGE,
        &["--weights", "unknown column 'agee'", "did you mean 'age'"],
        &s.cache(),
    );
    let r = run(s
        .inspect()
        .arg(&p)
        .args(["--formula", FORMULA, "--filter", "regoin=north"]));
    assert_clean_failure(
        &r,
        USAGE,
        &["--filter", "unknown column 'regoin'", "did you mean 'region'"],
        &s.cache(),
    );

    // Nothing close: the message lists the columns instead.
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ zzzzzz"]));
    assert_clean_failure(&r, USAGE, &["unknown column 'zzzzzz'", "'age'", "'region'"], &s.cache());
}

#[test]
fn wrong_type_for_role() {
    let s = Scratch::new();
    let p = good_file(&s, "good.parquet", 10);
    let cases: &[(&[&str], &[&str])] = &[
        // A string column as the response.
        (&["--formula", "region ~ age"], &["column 'region'", "response"]),
        // A string column inside log().
        (&["--formula", "y ~ log(region)"], &["column 'region'", "log()"]),
        // A string column as weights.
        (
            &["--formula", FORMULA, "--weights", "region"],
            &["column 'region'", "prior weights"],
        ),
        // A numeric column as a sparse block.
        (&["--formula", "y ~ sparse(age)"], &["column 'age'", "sparse block"]),
        // A string column in cbind.
        (
            &["--formula", "cbind(y, region) ~ age"],
            &["column 'region'", "failures column of cbind"],
        ),
    ];
    for &(args, words) in cases {
        let r = run(s.inspect().arg(&p).args(args));
        let mut all = vec!["good.parquet", "cannot be used as"];
        all.extend_from_slice(words);
        assert_clean_failure(&r, INPUT, &all, &s.cache());
    }
}

// -------------------------------------------------------------------------------------------
// 7, 8, 15: sparse blocks
// -------------------------------------------------------------------------------------------

fn sparse_file(s: &Scratch, name: &str, rows: &[&[(i32, f32)]], schema_meta: &[(&str, &str)]) -> std::path::PathBuf {
    let y: Vec<f64> = (0..rows.len()).map(|i| i as f64).collect();
    let b = batch_with_meta(vec![("y", f64s(&y)), ("feats", sparse(rows))], schema_meta);
    let p = s.path(name);
    write_parquet(&p, &b);
    p
}

#[test]
fn sparse_index_negative() {
    let s = Scratch::new();
    let p = sparse_file(
        &s,
        "sp.parquet",
        &[&[(0, 1.0)], &[(1, 2.0), (4, 1.0)], &[(-3, 1.0)], &[(2, 1.0)]],
        &[],
    );
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ sparse(feats)"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["sp.parquet", "column 'feats'", "row 2", "sparse index -3 is negative"],
        &s.cache(),
    );
}

#[test]
fn sparse_index_at_or_above_declared_width_schema_metadata() {
    let s = Scratch::new();
    // Control: indices below the declared width load, and the width is the declared one.
    let ok = sparse_file(
        &s,
        "ok.parquet",
        &[&[(0, 1.0)], &[(1, 2.0), (4, 1.0)]],
        &[("feats_dim", "5")],
    );
    let r = run(s.inspect().arg(&ok).args(["--formula", "y ~ sparse(feats)", "--json"]));
    let j = assert_json_success(&r);
    assert_eq!(j["blocks"]["sparse"][0]["width"], 5, "{j}");
    assert_eq!(j["blocks"]["sparse"][0]["declared"], true, "{j}");
    fs::remove_dir_all(s.cache()).unwrap();

    let p = sparse_file(
        &s,
        "sp.parquet",
        &[&[(0, 1.0)], &[(1, 2.0), (5, 1.0)], &[(2, 1.0)]],
        &[("feats_dim", "5")],
    );
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ sparse(feats)"]));
    assert_clean_failure(
        &r,
        INPUT,
        &[
            "sp.parquet",
            "column 'feats'",
            "row 1",
            "sparse index 5 is not below the declared width 5",
        ],
        &s.cache(),
    );
}

#[test]
fn sparse_index_at_or_above_declared_width_field_metadata() {
    let s = Scratch::new();
    let y = f64s(&[0.0, 1.0, 2.0, 3.0]);
    let feats = sparse(&[&[(0, 1.0)], &[(3, 1.0)], &[(1, 1.0), (7, 2.0)], &[]]);
    let fields = vec![field("y", &y), with_field_meta(field("feats", &feats), &[("p", "4")])];
    let b = batch_from_fields(fields, vec![y, feats], &[]);
    let p = s.path("sp.parquet");
    write_parquet(&p, &b);
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ sparse(feats)"]));
    assert_clean_failure(
        &r,
        INPUT,
        &[
            "sp.parquet",
            "column 'feats'",
            "row 2",
            "sparse index 7 is not below the declared width 4",
        ],
        &s.cache(),
    );
}

#[test]
fn sparse_indices_unsorted_within_a_row() {
    let s = Scratch::new();
    let p = sparse_file(&s, "sp.parquet", &[&[(0, 1.0), (2, 1.0)], &[(3, 1.0), (1, 1.0)]], &[]);
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ sparse(feats)"]));
    assert_clean_failure(
        &r,
        INPUT,
        &[
            "sp.parquet",
            "column 'feats'",
            "row 1",
            "strictly increasing",
            "found 1 after 3",
        ],
        &s.cache(),
    );
}

#[test]
fn sparse_indices_duplicated_within_a_row() {
    let s = Scratch::new();
    let p = sparse_file(
        &s,
        "sp.parquet",
        &[&[(0, 1.0)], &[(1, 1.0)], &[(2, 1.0), (2, 5.0)]],
        &[],
    );
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ sparse(feats)"]));
    assert_clean_failure(
        &r,
        INPUT,
        &[
            "sp.parquet",
            "column 'feats'",
            "row 2",
            "strictly increasing",
            "found 2 after 2",
        ],
        &s.cache(),
    );
}

// -------------------------------------------------------------------------------------------
// 9, 10: missing and non-finite values
// -------------------------------------------------------------------------------------------

fn nan_file(s: &Scratch, name: &str) -> std::path::PathBuf {
    let age = [20.0, 21.0, 22.0, f64::NAN, 24.0, 25.0];
    let b = batch(vec![
        ("y", f64s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ("age", f64s(&age)),
        ("x", i64s(&[1, 2, 3, 4, 5, 6])),
        ("region", strs(&["a", "b", "a", "b", "a", "b"])),
    ]);
    let p = s.path(name);
    write_parquet(&p, &b);
    p
}

#[test]
fn nan_with_na_error_names_column_and_row() {
    let s = Scratch::new();
    let p = nan_file(&s, "nan.parquet");
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--na", "error"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["nan.parquet", "column 'age'", "row 3", "missing value", "--na error"],
        &s.cache(),
    );
}

#[test]
fn nan_with_default_na_drop_is_counted() {
    let s = Scratch::new();
    let p = nan_file(&s, "nan.parquet");
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--json"]));
    let j = assert_json_success(&r);
    assert_eq!(j["n_rows_read"], 6, "{j}");
    assert_eq!(j["n_dropped"], 1, "{j}");
    assert_eq!(j["n_obs"], 5, "{j}");
    assert_cache_published(&s.cache());
}

#[test]
fn null_with_na_error_names_column_and_row() {
    let s = Scratch::new();
    let b = batch(vec![
        ("y", f64s(&[1.0, 2.0, 3.0])),
        ("age", f64_opt(&[Some(1.0), Some(2.0), None])),
    ]);
    let p = s.path("null.parquet");
    write_parquet(&p, &b);
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ age", "--na", "error"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["null.parquet", "column 'age'", "row 2", "missing value"],
        &s.cache(),
    );
}

#[test]
fn nan_row_is_file_relative_across_row_groups_and_batches() {
    // Row groups of 4 rows, decoded in batches of 2: the message must still give the row
    // within the file, and name the second of two files.
    let s = Scratch::new();
    let dir = s.path("data");
    fs::create_dir(&dir).unwrap();
    write_parquet_with(&dir.join("a.parquet"), &[good_batch(10)], row_group_props(4));
    let mut age: Vec<f64> = (0..10).map(|i| 20.0 + i as f64).collect();
    age[9] = f64::NAN;
    let b = batch(vec![
        ("y", f64s(&[1.0; 10])),
        ("age", f64s(&age)),
        ("x", i64s(&[1; 10])),
        ("region", strs(&["a"; 10])),
    ]);
    write_parquet_with(&dir.join("b.parquet"), &[b], row_group_props(4));
    let r = run(s
        .inspect()
        .arg(&dir)
        .args(["--formula", FORMULA, "--na", "error", "--chunk-rows", "2"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["b.parquet", "column 'age'", "row 9", "missing value"],
        &s.cache(),
    );
}

#[test]
fn infinity_is_an_error_even_in_drop_mode() {
    let s = Scratch::new();
    let b = batch(vec![
        ("y", f64s(&[1.0, 2.0, 3.0, 4.0])),
        ("age", f64s(&[20.0, 21.0, 22.0, f64::INFINITY])),
        ("x", i64s(&[1, 2, 3, 4])),
        ("region", strs(&["a", "b", "a", "b"])),
    ]);
    let p = s.path("inf.parquet");
    write_parquet(&p, &b);
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
    assert_clean_failure(
        &r,
        INPUT,
        &["inf.parquet", "column 'age'", "row 3", "inf", "not finite"],
        &s.cache(),
    );

    // -inf in the response.
    let b = batch(vec![
        ("y", f64s(&[1.0, f64::NEG_INFINITY, 3.0])),
        ("age", f64s(&[20.0, 21.0, 22.0])),
    ]);
    let q = s.path("neginf.parquet");
    write_parquet(&q, &b);
    let r = run(s.inspect().arg(&q).args(["--formula", "y ~ age", "--na", "drop"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["neginf.parquet", "column 'y'", "row 1", "-inf", "not finite"],
        &s.cache(),
    );
}

// -------------------------------------------------------------------------------------------
// 11: nothing left
// -------------------------------------------------------------------------------------------

#[test]
fn transform_of_an_out_of_range_value() {
    // log(0) is -inf: the message names the term, the column, the row and the value.
    let s = Scratch::new();
    let b = batch(vec![("y", f64s(&[1.0, 2.0, 3.0])), ("x", f64s(&[1.0, 0.0, 2.0]))]);
    let p = s.path("log0.parquet");
    write_parquet(&p, &b);
    let r = run(s.inspect().arg(&p).args(["--formula", "y ~ log(x)"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["log0.parquet", "column 'x'", "row 1", "log(x)", "-inf"],
        &s.cache(),
    );
}

#[test]
fn first_bad_row_in_file_order_is_reported() {
    // Row groups are decoded in parallel; with two bad rows in different row groups the
    // message must still be about the first one, every time.
    let s = Scratch::new();
    let mut age: Vec<f64> = (0..12).map(|i| 20.0 + i as f64).collect();
    age[1] = f64::NAN;
    age[10] = f64::NAN;
    let b = batch(vec![
        ("y", f64s(&[1.0; 12])),
        ("age", f64s(&age)),
        ("x", i64s(&[1; 12])),
        ("region", strs(&["a"; 12])),
    ]);
    let p = s.path("two.parquet");
    write_parquet_with(&p, &[b], row_group_props(3));
    for _ in 0..5 {
        let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--na", "error"]));
        assert_clean_failure(&r, INPUT, &["two.parquet", "column 'age'", "row 1:"], &s.cache());
    }
}

#[test]
fn stale_cache_is_not_used_when_the_file_turns_bad() {
    // A good run publishes a cache; then the file is overwritten with a version holding a NaN.
    // The cache key does not change (same path, same formula), so the stale cache must be
    // detected, removed, and the rebuild's failure reported; no complete-looking cache may
    // remain.
    let s = Scratch::new();
    let p = good_file(&s, "data.parquet", 6);
    let r = run(s
        .inspect()
        .arg(&p)
        .args(["--formula", FORMULA, "--na", "error", "--json"]));
    assert_json_success(&r);
    assert_cache_published(&s.cache());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = batch(vec![
        ("y", f64s(&[1.0, 2.0, f64::NAN, 4.0, 5.0, 6.0])),
        ("age", f64s(&[20.0, 21.0, 22.0, 23.0, 24.0, 25.0])),
        ("x", i64s(&[1, 2, 3, 4, 5, 6])),
        ("region", strs(&["a", "b", "a", "b", "a", "b"])),
    ]);
    write_parquet(&p, &b);
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--na", "error"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["data.parquet", "column 'y'", "row 2", "missing value"],
        &s.cache(),
    );
}

#[test]
fn zero_rows_after_filtering() {
    let s = Scratch::new();
    let p = good_file(&s, "good.parquet", 6);
    let r = run(s
        .inspect()
        .arg(&p)
        .args(["--formula", FORMULA, "--filter", "region=west"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["no rows left", "6 rows read", "6 removed by --filter"],
        &s.cache(),
    );

    // Every row dropped for missing values.
    let b = batch(vec![("y", f64s(&[f64::NAN, f64::NAN])), ("age", f64s(&[1.0, 2.0]))]);
    let q = s.path("allnan.parquet");
    write_parquet(&q, &b);
    let r = run(s.inspect().arg(&q).args(["--formula", "y ~ age"]));
    assert_clean_failure(&r, INPUT, &["no rows left", "2 dropped for missing values"], &s.cache());

    // A file with a schema but no rows at all.
    let e = s.path("empty.parquet");
    let b = batch(vec![("y", f64s(&[])), ("age", f64s(&[]))]);
    write_parquet(&e, &b);
    let r = run(s.inspect().arg(&e).args(["--formula", "y ~ age"]));
    assert_clean_failure(&r, INPUT, &["no rows left", "0 rows read"], &s.cache());
}

// -------------------------------------------------------------------------------------------
// 12, 13: sets of files
// -------------------------------------------------------------------------------------------

#[test]
fn files_with_differing_schemas() {
    let s = Scratch::new();
    let a = s.path("a.parquet");
    write_parquet(&a, &batch(vec![("y", f64s(&[1.0, 2.0])), ("x", f64s(&[1.0, 2.0]))]));

    // Same column, different type.
    let b = s.path("b.parquet");
    write_parquet(&b, &batch(vec![("y", f64s(&[1.0, 2.0])), ("x", strs(&["p", "q"]))]));
    let r = run(s.inspect().arg(&a).arg(&b).args(["--formula", "y ~ x"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["a.parquet", "b.parquet", "schema differs", "column 'x'", "Float64"],
        &s.cache(),
    );

    // Column missing from the second file.
    let c = s.path("c.parquet");
    write_parquet(&c, &batch(vec![("y", f64s(&[1.0, 2.0]))]));
    let r = run(s.inspect().arg(&a).arg(&c).args(["--formula", "y ~ x"]));
    assert_clean_failure(
        &r,
        INPUT,
        &["a.parquet", "c.parquet", "column 'x' is missing"],
        &s.cache(),
    );

    // An extra column in the second file.
    let d = s.path("d.parquet");
    write_parquet(
        &d,
        &batch(vec![
            ("y", f64s(&[1.0, 2.0])),
            ("x", f64s(&[1.0, 2.0])),
            ("z", f64s(&[0.0, 0.0])),
        ]),
    );
    let r = run(s.inspect().arg(&a).arg(&d).args(["--formula", "y ~ x"]));
    assert_clean_failure(&r, INPUT, &["a.parquet", "d.parquet", "extra column 'z'"], &s.cache());
}

#[test]
fn directory_without_parquet_files() {
    let s = Scratch::new();
    let dir = s.path("empty");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("README.txt"), "nothing here\n").unwrap();
    let r = run(s.inspect().arg(&dir).args(["--formula", FORMULA]));
    assert_clean_failure(
        &r,
        INPUT,
        &["empty", "directory contains no *.parquet files"],
        &s.cache(),
    );
}

#[test]
fn glob_matching_nothing() {
    let s = Scratch::new();
    good_file(&s, "good.parquet", 4);
    let pat = format!("{}/part-*.parquet", s.dir.path().display());
    let r = run(s.inspect().arg(&pat).args(["--formula", FORMULA]));
    assert_clean_failure(
        &r,
        INPUT,
        &["part-*.parquet", "glob pattern matches no files"],
        &s.cache(),
    );
}

// -------------------------------------------------------------------------------------------
// 14: flags
// -------------------------------------------------------------------------------------------

#[test]
fn bad_filter_syntax() {
    let s = Scratch::new();
    let p = good_file(&s, "good.parquet", 6);
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--filter", "region"]));
    assert_clean_failure(&r, USAGE, &["--filter expects COL=VALUE", "'region'"], &s.cache());
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--filter", "=north"]));
    assert_clean_failure(&r, USAGE, &["--filter expects COL=VALUE", "'=north'"], &s.cache());
}

// -------------------------------------------------------------------------------------------
// 16: corrupted pages
// -------------------------------------------------------------------------------------------

/// An uncompressed, dictionary-free, PLAIN-encoded file and the (offset, length) of each
/// column chunk, in schema order (`y`, `age`, `x`, `region`).
fn raw_file(s: &Scratch, name: &str, n: usize) -> (std::path::PathBuf, Vec<u8>, Vec<(usize, usize)>) {
    let p = s.path(name);
    write_parquet_with(&p, &[good_batch(n)], raw_props());
    let md = ParquetMetaDataReader::new()
        .parse_and_finish(&fs::File::open(&p).unwrap())
        .unwrap();
    assert_eq!(md.num_row_groups(), 1);
    let chunks = md
        .row_group(0)
        .columns()
        .iter()
        .map(|c| {
            assert!(c.dictionary_page_offset().is_none(), "dictionary page written");
            (c.data_page_offset() as usize, c.compressed_size() as usize)
        })
        .collect();
    let bytes = fs::read(&p).unwrap();
    (p, bytes, chunks)
}

/// The run did not panic; if it failed, it failed cleanly (exit 3, the file named, cache clean).
fn assert_no_panic_clean_if_failed(r: &Run, file: &str, cache: &Path, what: &str) {
    let ctx = format!("{what}: exit {:?}\n--- stderr ---\n{}", r.code, short_stderr(&r.stderr));
    assert!(
        !r.stderr.contains("panicked") && r.code != Some(101),
        "fulcrum panicked on {ctx}"
    );
    if r.code != Some(0) {
        assert_clean_failure(r, INPUT, &[file], cache);
    }
}

#[test]
fn corrupted_values_in_a_plain_page_cannot_be_detected() {
    // Flipping every bit of 8 bytes in the middle of the `x` (INT64, PLAIN, uncompressed)
    // values turns one integer into another valid integer. Parquet pages carry no redundancy
    // over their values: the optional page CRC is neither written by ArrowWriter by default nor
    // checked by the reader (the parquet crate's `crc` feature is off in this build), so no
    // reader can tell the corrupted file from a good one. All we can require is no panic, and
    // a clean failure if something downstream does object.
    let s = Scratch::new();
    let (p, mut bytes, chunks) = raw_file(&s, "raw.parquet", 64);
    let (off, len) = chunks[2];
    let mid = off + len / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0xFF;
    }
    fs::write(&p, &bytes).unwrap();
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA, "--json"]));
    assert_no_panic_clean_if_failed(&r, "raw.parquet", &s.cache(), "flipped values");
}

#[test]
fn corrupted_page_header_is_a_clean_error() {
    // The first byte of the first data page header of `age` is the Thrift field header of the
    // page type; flipping it makes the page header unreadable.
    let s = Scratch::new();
    let (p, mut bytes, chunks) = raw_file(&s, "raw.parquet", 64);
    let (off, _) = chunks[1];
    bytes[off] ^= 0xFF;
    fs::write(&p, &bytes).unwrap();
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
    assert_clean_failure(&r, INPUT, &["raw.parquet", "corrupt data in row group 0"], &s.cache());
}

#[test]
fn corrupted_definition_levels_is_a_clean_error() {
    // In a data page of a nullable column with no nulls, the values are preceded by the
    // definition levels: a 4-byte length (3) and one RLE run "64 times level 1" =
    // [0x80, 0x01] [0x01]. Flipping the run header (0x80 -> 0x7F) turns it into a bit-packed
    // run claiming 504 levels backed by one byte. The decoder must report that, not panic.
    let s = Scratch::new();
    let (p, mut bytes, chunks) = raw_file(&s, "raw.parquet", 64);
    let (off, len) = chunks[1];
    let pat = [3u8, 0, 0, 0, 0x80, 0x01, 0x01];
    let at = bytes[off..off + len]
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|i| off + i + 4)
        .expect("definition-level run of the `age` page");
    bytes[at] ^= 0xFF;
    fs::write(&p, &bytes).unwrap();
    let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
    assert_clean_failure(&r, INPUT, &["raw.parquet", "corrupt data in row group 0"], &s.cache());
}

#[test]
fn no_single_byte_corruption_of_a_column_chunk_panics() {
    // Flip each byte of the `y` column chunk (page header, definition levels, values) in turn.
    // Most flips land in values and go unnoticed (see above); the rest must fail cleanly.
    let s = Scratch::new();
    let (p, bytes, chunks) = raw_file(&s, "raw.parquet", 64);
    let (off, len) = chunks[0];
    let mut panics = Vec::new();
    for i in off..off + len {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        fs::write(&p, &b).unwrap();
        let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
        if r.stderr.contains("panicked") || r.code == Some(101) {
            let line = r
                .stderr
                .lines()
                .skip_while(|l| !l.contains("panicked"))
                .take(2)
                .collect::<Vec<_>>()
                .join(" / ");
            let cache = cache_problems(&s.cache());
            let cache = if cache.is_empty() {
                "cache clean".to_string()
            } else {
                cache.join("; ")
            };
            panics.push(format!("byte {} (chunk offset {}): {line} [{cache}]", i, i - off));
        } else if r.code != Some(0) {
            assert_clean_failure(&r, INPUT, &["raw.parquet"], &s.cache());
        }
        let _ = fs::remove_dir_all(s.cache());
    }
    assert!(
        panics.is_empty(),
        "{} single-byte corruptions panicked:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

#[test]
fn no_single_byte_corruption_of_the_footer_panics() {
    // Flip each byte of the footer (Thrift FileMetaData: schema, row groups, column chunk
    // offsets and sizes, statistics, the embedded Arrow schema) in turn. Each run must either
    // load (the byte was in something fulcrum does not use) or fail cleanly.
    let s = Scratch::new();
    let (p, bytes, _) = raw_file(&s, "raw.parquet", 64);
    let flen = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let start = bytes.len() - 8 - flen;
    let mut problems = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<Option<i32>, usize>::new();
    for i in start..bytes.len() - 8 {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        fs::write(&p, &b).unwrap();
        let r = run(s.inspect().arg(&p).args(["--formula", FORMULA]));
        *outcomes.entry(r.code).or_default() += 1;
        let bad = r.stderr.contains("panicked")
            || r.stderr.contains("internal error")
            || !matches!(r.code, Some(0) | Some(3));
        let cache = if r.code == Some(0) {
            vec![]
        } else {
            cache_problems(&s.cache())
        };
        if bad || !cache.is_empty() || (r.code == Some(3) && !r.stderr.contains("raw.parquet")) {
            problems.push(format!(
                "footer byte {} (exit {:?}): {} {}",
                i - start,
                r.code,
                short_stderr(&r.stderr).lines().take(2).collect::<Vec<_>>().join(" / "),
                cache.join("; ")
            ));
        }
        let _ = fs::remove_dir_all(s.cache());
    }
    eprintln!("footer flips: {} bytes, outcomes {outcomes:?}", flen);
    assert!(
        problems.is_empty(),
        "{} footer corruptions failed badly:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// -------------------------------------------------------------------------------------------
// Positive controls
// -------------------------------------------------------------------------------------------

#[test]
fn good_files_several_row_groups_in_a_directory() {
    let s = Scratch::new();
    let dir = s.path("data");
    fs::create_dir(&dir).unwrap();
    write_parquet_with(&dir.join("part-0.parquet"), &[good_batch(10)], row_group_props(4));
    write_parquet_with(&dir.join("part-1.parquet"), &[good_batch(7)], row_group_props(3));
    fs::write(dir.join("_SUCCESS"), "").unwrap();
    let md = ParquetMetaDataReader::new()
        .parse_and_finish(&fs::File::open(dir.join("part-0.parquet")).unwrap())
        .unwrap();
    assert_eq!(md.num_row_groups(), 3, "test setup: expected several row groups");

    let r = run(s.inspect().arg(&dir).args(["--formula", FORMULA, "--json"]));
    let j = assert_json_success(&r);
    assert_eq!(j["n_rows_read"], 17, "{j}");
    assert_eq!(j["n_obs"], 17, "{j}");
    assert_eq!(j["n_dropped"], 0, "{j}");
    assert_eq!(j["inputs"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["cache"]["status"], "built", "{j}");
    assert_cache_published(&s.cache());

    // Second run reuses the cache.
    let r = run(s.inspect().arg(&dir).args(["--formula", FORMULA, "--json"]));
    let j = assert_json_success(&r);
    assert_eq!(j["n_rows_read"], 17, "{j}");
    assert_eq!(j["cache"]["status"], "reused", "{j}");
}

#[test]
fn glob_pattern_input() {
    let s = Scratch::new();
    let dir = s.path("data");
    fs::create_dir(&dir).unwrap();
    write_parquet_with(&dir.join("part-0.parquet"), &[good_batch(10)], row_group_props(4));
    write_parquet_with(&dir.join("part-1.parquet"), &[good_batch(7)], row_group_props(3));
    write_parquet(&dir.join("other.parquet"), &good_batch(100));
    let pat = format!("{}/part-*.parquet", dir.display());
    let r = run(s.inspect().arg(&pat).args(["--formula", FORMULA, "--json"]));
    let j = assert_json_success(&r);
    assert_eq!(j["n_rows_read"], 17, "{j}");
    let inputs: Vec<&str> = j["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(inputs.len(), 2, "{j}");
    assert!(
        inputs[0].ends_with("part-0.parquet") && inputs[1].ends_with("part-1.parquet"),
        "{j}"
    );
    assert_cache_published(&s.cache());
}
