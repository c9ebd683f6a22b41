//! End-to-end CLI behaviour of `fulcrum inspect` (the issue-2 acceptance command).

use assert_cmd::Command;
use serde_json::Value;

const ADULT: &str = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex + native_country";

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn inspect(cache: &std::path::Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("fulcrum")
        .unwrap()
        .args([
            "inspect",
            &fixture("adult.parquet"),
            "--formula",
            ADULT,
            "--filter",
            "split=train",
            "--cache-dir",
        ])
        .arg(cache)
        .args(extra)
        .assert()
}

#[test]
fn inspect_json_matches_statsmodels_design() {
    let tmp = tempfile::tempdir().unwrap();
    let out = inspect(tmp.path(), &["--json"]).success();
    // stderr is not a terminal here: no progress bar, no noise.
    assert!(
        out.get_output().stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.get_output().stderr)
    );
    let j: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let r: Value =
        serde_json::from_reader(std::fs::File::open(fixture("reference/sm_adult_logistic.json")).unwrap()).unwrap();
    assert_eq!(j["n_obs"], 30162);
    assert_eq!(j["n_params"], 81);
    assert_eq!(j["n_rows_read"], 48842);
    assert_eq!(j["n_dropped"], 2399);
    assert_eq!(j["coef_names"], r["coef_names"]);
    assert_eq!(j["cache"]["status"], "built");
    assert_eq!(j["blocks"]["categorical"][6]["n_levels"], 41);
    // Independently (pyarrow over the same rows): 30162 × (intercept + 5 dense) + 179707
    // non-reference categorical entries.
    assert_eq!(j["nnz"], 360679);
    // Second run reuses the cache and reports the same design.
    let again = inspect(tmp.path(), &["--json"]).success();
    let k: Value = serde_json::from_slice(&again.get_output().stdout).unwrap();
    assert_eq!(k["cache"]["status"], "reused");
    assert_eq!(k["coef_names"], j["coef_names"]);
}

#[test]
fn inspect_text_lists_counts_blocks_and_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let out = inspect(tmp.path(), &[]).success();
    let s = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for want in [
        "rows read     48842",
        "rows used     30162",
        "dropped (NA)  2399",
        "parameters    81",
        "native_country: 41 levels -> 40 columns (reference: Cambodia)",
        "cache ",
        "timings ",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}

#[test]
fn stale_cache_is_announced_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    inspect(tmp.path(), &["--json"]).success();
    let dir = std::fs::read_dir(tmp.path()).unwrap().next().unwrap().unwrap().path();
    std::fs::write(dir.join("manifest.json"), "garbage").unwrap();
    let out = inspect(tmp.path(), &["--json"]).success();
    let err = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(err.contains("was stale") && err.contains("rebuilt"), "{err}");
    let quiet = inspect(tmp.path(), &["--json", "--quiet"]).success();
    assert!(quiet.get_output().stderr.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    Command::cargo_bin("fulcrum")
        .unwrap()
        .args(["inspect", "--formula", "y ~ x"])
        .assert()
        .code(2);
    Command::cargo_bin("fulcrum")
        .unwrap()
        .args(["frobnicate"])
        .assert()
        .code(2);
}

#[test]
fn docs_cli_covers_every_flag() {
    let doc = std::fs::read_to_string(format!("{}/docs/cli.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for cmd in [
        vec!["--help"],
        vec!["inspect", "--help"],
        vec!["fit", "--help"],
        vec!["diagnose", "--help"],
        vec!["influence", "--help"],
        vec!["prune", "--help"],
        vec!["run", "--help"],
        vec!["report", "--help"],
    ] {
        let out = Command::cargo_bin("fulcrum").unwrap().args(&cmd).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for word in help.split_whitespace() {
            let flag = word.trim_end_matches(',').split('=').next().unwrap();
            if flag.starts_with("--") && flag.len() > 2 {
                assert!(doc.contains(flag), "docs/cli.md does not document {flag}");
            }
        }
        for line in help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.is_empty())
        {
            let name = line.split_whitespace().next().unwrap();
            if name != "help" {
                assert!(
                    doc.contains(&format!("fulcrum {name}")),
                    "docs/cli.md does not document the command {name}"
                );
            }
        }
    }
}
