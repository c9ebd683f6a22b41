//! End-to-end CLI behaviour of penalised paths: `fulcrum fit --penalty lasso|enet|group` writes
//! the path to summary.json and path.parquet, `--select-lambda` picks the reported point,
//! `fulcrum diagnose` scores rows on the active set, and misuse exits with code 2.

mod common;

use serde_json::Value;

fn run(cmd: &str, tmp: &std::path::Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    common::adult_cli(cmd, tmp, "out", extra)
}

fn summary(tmp: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(tmp.join("out/summary.json")).unwrap()).unwrap()
}

#[test]
fn lasso_path_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    run(
        "fit",
        tmp.path(),
        &["--penalty", "lasso", "--nlambda", "20", "--select-lambda", "10"],
    )
    .success();
    let s = summary(tmp.path());
    let path = s["path"].as_array().unwrap();
    assert!(path.len() > 5 && path.len() <= 20);
    assert_eq!(s["selected_lambda_index"], 10);
    assert_eq!(s["penalty"]["type"], "lasso");
    assert_eq!(s["penalty"]["lambda"], path[10]["lambda"]);
    // λ decreases geometrically from λ_max, where nothing but the intercept is non-zero.
    assert_eq!(path[0]["lambda"], s["lambda_max"]);
    assert_eq!(path[0]["df"], 0);
    let lam: Vec<f64> = path.iter().map(|p| p["lambda"].as_f64().unwrap()).collect();
    for w in lam.windows(2) {
        assert!(w[1] < w[0]);
    }
    // coefficients: the intercept and the non-zero ones at the selected λ, no standard errors.
    let coefs = s["coefficients"].as_array().unwrap();
    let nonzero = path[10]["nonzero"].as_array().unwrap();
    assert_eq!(coefs.len(), nonzero.len() + 1);
    assert_eq!(coefs[0]["name"], "(Intercept)");
    assert!(coefs
        .iter()
        .all(|c| c["std_error"].is_null() && !c["estimate"].is_null()));
    // path.parquet: one row per non-zero coefficient per λ, the same as summary.json's path.
    let f = std::fs::File::open(tmp.path().join("out/path.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(f).unwrap();
    use parquet::file::reader::FileReader;
    let rows = reader.metadata().file_metadata().num_rows() as usize;
    let expected: usize = path.iter().map(|p| p["nonzero"].as_array().unwrap().len() + 1).sum();
    assert_eq!(rows, expected);
    let schema: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(schema, ["lambda_index", "name", "estimate"]);
}

#[test]
fn diagnose_on_the_active_set() {
    let tmp = tempfile::tempdir().unwrap();
    run("diagnose", tmp.path(), &["--penalty", "lasso", "--nlambda", "15"]).success();
    let s = summary(tmp.path());
    let d = &s["diagnostics"];
    // Lasso (no ridge part): F = X_AᵀWX_A over the active set, so Σ hat = |A| (intercept included).
    let active = s["coefficients"].as_array().unwrap().len() as f64;
    assert!((d["sum_hat"].as_f64().unwrap() - active).abs() < 1e-8, "{d}");
    assert!(d["notes"].to_string().contains("penalised fit"));
    assert!(tmp.path().join("out/diagnostics.parquet").exists());
    // Elastic net: the ridge part of the penalty in F shrinks the leverages below |A|.
    let tmp = tempfile::tempdir().unwrap();
    run(
        "diagnose",
        tmp.path(),
        &["--penalty", "enet", "--alpha", "0.3", "--nlambda", "15"],
    )
    .success();
    let s = summary(tmp.path());
    let active = s["coefficients"].as_array().unwrap().len() as f64;
    let sum_hat = s["diagnostics"]["sum_hat"].as_f64().unwrap();
    assert!(sum_hat < active - 1e-3 && sum_hat > 1.0, "{sum_hat} vs {active}");
}

#[test]
fn group_lasso_and_penalty_factors_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    run(
        "fit",
        tmp.path(),
        &[
            "--penalty",
            "group",
            "--nlambda",
            "10",
            "--penalty-factor",
            "age=0",
            "--penalty-factor",
            "sex=2",
        ],
    )
    .success();
    let s = summary(tmp.path());
    assert_eq!(s["penalty"]["type"], "group");
    // age is unpenalised: non-zero from the first λ on.
    let path = s["path"].as_array().unwrap();
    assert!(path[0]["nonzero"].as_array().unwrap().iter().any(|n| n == "age"));
    // A categorical's levels enter together.
    for p in path {
        let nz: Vec<&str> = p["nonzero"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let race = nz.iter().filter(|n| n.starts_with("race[")).count();
        assert!(race == 0 || race == 4, "{nz:?}");
    }
}

#[test]
fn path_misuse_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 5] = [
        &["--alpha", "0.5"],
        &["--penalty", "lasso", "--alpha", "0.5"],
        &["--penalty", "enet", "--alpha", "1.5"],
        &["--penalty", "lasso", "--penalty-factor", "agee=0"],
        &["--penalty", "lasso", "--nlambda", "5", "--select-lambda", "50"],
    ];
    for extra in cases {
        let out = run("fit", tmp.path(), extra).code(2);
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
        assert!(!err.is_empty(), "{extra:?}");
    }
    let out = run("fit", tmp.path(), &["--penalty", "lasso", "--penalty-factor", "agee=0"]).code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("age"));
}
