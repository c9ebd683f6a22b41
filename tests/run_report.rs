//! `fulcrum run` end to end (every output exists, parses and agrees with `diagnose` and
//! `influence --task loo` run separately), `report.html` (self-contained, the expected plots and
//! row ids, bounded size at a million rows, rebuilt identically by `fulcrum report`), and a
//! headless-Chromium rendering that must not be blank.

mod common;

use std::path::Path;
use std::sync::Arc;

use assert_cmd::Command;
use common::reference::fixture;
use common::ADULT_FORMULA as ADULT;
use serde_json::Value;

fn fulcrum(cmd: &str, tmp: &Path, out: &str, extra: &[&str]) {
    common::adult_cli(cmd, tmp, out, extra).success();
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn n_rows(p: &Path) -> i64 {
    use parquet::file::reader::FileReader;
    let r = parquet::file::serialized_reader::SerializedFileReader::new(std::fs::File::open(p).unwrap()).unwrap();
    r.metadata().file_metadata().num_rows()
}

/// Tags that must open and close in pairs in a well-formed page.
fn balanced(html: &str, tag: &str) -> bool {
    html.matches(&format!("<{tag}")).count() == html.matches(&format!("</{tag}>")).count()
}

#[test]
fn run_writes_every_output_and_agrees_with_the_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    fulcrum("run", t, "run", &[]);
    fulcrum("diagnose", t, "diag", &[]);
    fulcrum("influence", t, "loo", &["--task", "loo"]);
    let run = json(&t.join("run/summary.json"));
    let diag = json(&t.join("diag/summary.json"));
    let loo = json(&t.join("loo/summary.json"));
    for f in [
        "summary.json",
        "diagnostics.parquet",
        "dfbetas.parquet",
        "influence.parquet",
        "report.html",
    ] {
        assert!(t.join("run").join(f).exists(), "{f} missing");
    }
    let n = run["n_obs"].as_i64().unwrap();
    assert_eq!(n_rows(&t.join("run/diagnostics.parquet")), n);
    assert_eq!(n_rows(&t.join("run/influence.parquet")), n);
    assert_eq!(run["coefficients"], diag["coefficients"]);
    for k in ["sum_hat", "n_high_leverage", "n_influential", "top_cooks"] {
        assert_eq!(run["diagnostics"][k], diag["diagnostics"][k], "{k}");
    }
    assert_eq!(run["influence"]["loo"], loo["influence"]["loo"]);
    assert_eq!(
        std::fs::read(t.join("run/influence.parquet")).unwrap().len(),
        std::fs::read(t.join("loo/influence.parquet")).unwrap().len()
    );

    let html = std::fs::read_to_string(t.join("run/report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for tag in ["svg", "table", "figure", "main", "h2"] {
        assert!(balanced(&html, tag), "unbalanced <{tag}>");
    }
    for aria in [
        "influence plot",
        "index plot of Cook's distance",
        "histogram of leverage",
    ] {
        assert!(html.contains(&format!("aria-label=\"{aria}\"")), "{aria}");
    }
    // Self-contained: no scripts, no external resources.
    assert!(!html.contains("<script"));
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "the only URLs are SVG namespaces"
    );
    // The most influential rows by Cook's distance are labelled and tabulated with their data.
    for top in run["diagnostics"]["top_cooks"].as_array().unwrap().iter().take(5) {
        let row = top["row"].as_u64().unwrap().to_string();
        assert!(html.contains(&format!(">{row}</text>")), "row {row} not labelled");
        assert!(
            html.contains(&format!("<tr><td>{row}</td>")),
            "row {row} not in the table"
        );
    }
    assert!(
        html.contains("Self-emp-not-inc") || html.contains("Private"),
        "original values shown"
    );

    // `fulcrum report DIR` rebuilds the same page.
    let before = std::fs::read(t.join("run/report.html")).unwrap();
    std::fs::remove_file(t.join("run/report.html")).unwrap();
    Command::cargo_bin("fulcrum")
        .unwrap()
        .arg("report")
        .arg(t.join("run"))
        .assert()
        .success();
    assert_eq!(std::fs::read(t.join("run/report.html")).unwrap(), before);
}

#[test]
fn penalised_run_adds_the_path_and_alo_cv() {
    let tmp = tempfile::tempdir().unwrap();
    fulcrum("run", tmp.path(), "run", &["--penalty", "lasso", "--nlambda", "12"]);
    let s = json(&tmp.path().join("run/summary.json"));
    assert_eq!(
        s["influence"]["alo_cv"].as_array().unwrap().len(),
        s["path"].as_array().unwrap().len()
    );
    let html = std::fs::read_to_string(tmp.path().join("run/report.html")).unwrap();
    assert!(html.contains("aria-label=\"lambda path\""));
    assert!(html.contains("aria-label=\"ALO cross-validation curve\""));
}

#[test]
fn report_stays_small_for_a_million_rows() {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt64Array};
    use arrow_schema::{DataType, Field, Schema};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let n = 1_000_000usize;
    let names = ["hat", "resid_studentized", "cooks_d"];
    let mut fields = vec![Field::new("row", DataType::UInt64, false)];
    fields.extend(names.iter().map(|c| Field::new(*c, DataType::Float64, true)));
    let schema = Arc::new(Schema::new(fields));
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dir.join("diagnostics.parquet")).unwrap(),
        schema.clone(),
        None,
    )
    .unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut u = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for start in (0..n).step_by(100_000) {
        let m = 100_000;
        let row: Vec<u64> = (start as u64..(start + m) as u64).collect();
        let hat: Vec<f64> = (0..m).map(|_| 1e-5 + 1e-3 * u() * u()).collect();
        let rs: Vec<f64> = (0..m).map(|_| 4.0 * (u() - 0.5)).collect();
        let cd: Vec<f64> = hat.iter().zip(&rs).map(|(h, r)| r * r * h / 500.0).collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(row)),
            Arc::new(Float64Array::from(hat)),
            Arc::new(Float64Array::from(rs)),
            Arc::new(Float64Array::from(cd)),
        ];
        w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap()).unwrap();
    }
    w.close().unwrap();
    let summary = serde_json::json!({
        "formula": "y ~ x", "family": "binomial", "link": "logit", "n_obs": n, "rank": 500,
        "inputs": [dir.join("missing.parquet").display().to_string()],
        "coefficients": [], "warnings": [], "timing_s": {"fit_total": 1.0},
        "diagnostics": {"cutoffs": {"hat": 0.001, "cooks_d": 4e-6}, "n_high_leverage": 1, "n_large_residual": 0, "n_influential": 2}
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    let out = fulcrum::report::html::write_report(dir).unwrap();
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(size < 3_000_000, "report.html is {size} bytes for 1M rows");
    let html = std::fs::read_to_string(out).unwrap();
    assert!(html.contains("binned"));
    assert!(
        html.contains("original values unavailable"),
        "a missing input is reported, not fatal"
    );
}

/// Chromium, installing Debian's package when it is missing and we may (CI runs as root).
fn chromium() -> Option<String> {
    for c in ["chromium", "chromium-browser"] {
        if std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c.to_string());
        }
    }
    let ok = std::process::Command::new("sh")
        .args(["-c", "command -v apt-get >/dev/null && (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1))"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| "chromium".to_string())
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED report_renders_in_headless_chromium: chromium is not installed and could not be installed (apt-get install chromium)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    fulcrum("run", tmp.path(), "run", &[]);
    let png = tmp.path().join("shot.png");
    let out = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", tmp.path().join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", tmp.path().join("run/report.html").display()))
        .output()
        .unwrap();
    assert!(png.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // A blank 1200×2400 page compresses to a few kilobytes; tables and plots do not.
    assert!(bytes.len() > 60_000, "screenshot looks blank ({} bytes)", bytes.len());
}

#[test]
fn json_log_format_reports_passes_and_errors_as_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("fulcrum")
        .unwrap()
        .args([
            "fit",
            &fixture("adult.parquet"),
            "--formula",
            ADULT,
            "--filter",
            "split=train",
        ])
        .args(["--family", "binomial", "--log-format", "json", "--cache-dir"])
        .arg(tmp.path().join("cache"))
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(lines.iter().any(|l| l["event"] == "start" && l["stage"] == "ingest"));
    let passes = lines
        .iter()
        .filter(|l| l["event"] == "finish" && l["stage"].as_str().unwrap().starts_with("pass"))
        .count();
    assert!(passes >= 5, "{passes} passes logged");
    assert!(lines
        .iter()
        .all(|l| l["event"] != "finish" || l["rows_per_s"].is_number()));
    let bad = Command::cargo_bin("fulcrum")
        .unwrap()
        .args([
            "fit",
            &fixture("adult.parquet"),
            "--formula",
            "income_gt50k ~ agee",
            "--log-format",
            "json",
        ])
        .arg("--out")
        .arg(tmp.path().join("out2"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let e: Value = serde_json::from_str(String::from_utf8_lossy(&bad.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(e["event"], "error");
    assert_eq!(e["exit_code"], 2);
    assert!(e["message"].as_str().unwrap().contains("agee"));
}

#[test]
fn readme_first_command_runs_as_written() {
    // The first ```sh block of the README is `cargo run --release -- run ...`: run the same
    // arguments with the built binary (cargo needs `default-run` to pick it), into a temp dir.
    let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let block = readme.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let cmd = block
        .lines()
        .find(|l| l.starts_with("cargo run --release -- run "))
        .expect("first command is `run`");
    let cargo = std::fs::read_to_string(format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(
        cargo.contains("default-run = \"fulcrum\""),
        "cargo run needs default-run with two binaries"
    );
    // Split like a shell would for this command: single-quoted words stay whole.
    let mut args = Vec::new();
    let mut rest = cmd.trim_start_matches("cargo run --release -- ");
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'').unwrap();
            args.push(r[..end].to_string());
            rest = &r[end + 1..];
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            args.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let out_pos = args.iter().position(|a| a == "--out").unwrap();
    args[out_pos + 1] = tmp.path().join("adult").display().to_string();
    Command::cargo_bin("fulcrum")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(&args)
        .args(["-q", "--cache-dir"])
        .arg(tmp.path().join("cache"))
        .assert()
        .success();
    assert!(tmp.path().join("adult/report.html").exists());
}
