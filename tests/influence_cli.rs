//! End-to-end CLI behaviour of `fulcrum influence` (every task) and `fulcrum prune`: outputs,
//! their columns and signs, agreement with exact refits where the CLI reports both, and clean
//! usage errors (exit code 2).

mod common;

use serde_json::Value;

fn run(cmd: &str, tmp: &std::path::Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    common::adult_cli(cmd, tmp, "out", extra)
}

fn json(tmp: &std::path::Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(tmp.join("out").join(name)).unwrap()).unwrap()
}

fn column(tmp: &std::path::Path, file: &str, name: &str) -> Vec<f64> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt64Type};
    let f = std::fs::File::open(tmp.join("out").join(file)).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        let c = b.column_by_name(name).unwrap();
        if let Some(a) = c.as_primitive_opt::<Float64Type>() {
            out.extend(a.values().iter().copied());
        } else {
            out.extend(c.as_primitive::<UInt64Type>().values().iter().map(|&x| x as f64));
        }
    }
    out
}

#[test]
fn loo_writes_every_row_and_a_cv_summary() {
    let tmp = tempfile::tempdir().unwrap();
    run("influence", tmp.path(), &["--task", "loo"]).success();
    let s = json(tmp.path(), "summary.json");
    let loo = &s["influence"]["loo"];
    let n = loo["n"].as_u64().unwrap();
    assert_eq!(column(tmp.path(), "influence.parquet", "row").len() as u64, n);
    assert!((loo["sum_hat"].as_f64().unwrap() - s["rank"].as_f64().unwrap()).abs() < 1e-6);
    // LOO error exceeds the in-sample error; self-influence is non-negative.
    assert!(loo["deviance"].as_f64().unwrap() > loo["insample_deviance"].as_f64().unwrap());
    assert!(column(tmp.path(), "influence.parquet", "self_influence")
        .iter()
        .all(|&x| x >= 0.0));
    assert_eq!(s["influence"]["curvature"], "fisher");
    assert!(s["influence"]["loo_refinement"].is_null());
    // --loo-refine: the rows with leverage above 0.5 (at most K) are refined by two Fisher steps
    // on the data without them; the rest keep the one-step values. Adult has none above 0.5,
    // so refine those above 0.1.
    let tmp1 = tempfile::tempdir().unwrap();
    run(
        "influence",
        tmp1.path(),
        &["--task", "loo", "--loo-refine", "5", "--loo-refine-above", "0.1"],
    )
    .success();
    let r = &json(tmp1.path(), "summary.json")["influence"]["loo_refinement"];
    assert_eq!(r["steps"], 2);
    let refined: Vec<u64> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let rows = column(tmp1.path(), "influence.parquet", "row");
    let hat = column(tmp1.path(), "influence.parquet", "hat");
    let loo = column(tmp1.path(), "influence.parquet", "loo_eta");
    let loo0 = column(tmp.path(), "influence.parquet", "loo_eta");
    let high = hat.iter().filter(|&&h| h > 0.1 && h < 1.0 - 1e-10).count();
    assert!(high >= 5, "{high} rows with h > 0.1");
    assert_eq!(refined.len(), 5);
    for i in 0..rows.len() {
        let r = rows[i] as u64;
        if refined.contains(&r) {
            assert!(hat[i] > 0.1);
            assert!(
                loo[i].is_finite() && loo[i] != loo0[i],
                "row {r}: {} vs {}",
                loo[i],
                loo0[i]
            );
        } else {
            assert_eq!(loo[i].to_bits(), loo0[i].to_bits(), "row {r}");
        }
    }
    // No row of Adult has h > 0.5: no hint either.
    assert!(s["influence"]["loo_note"].is_null());
}

#[test]
fn cv_along_a_lasso_path_picks_a_lambda() {
    let tmp = tempfile::tempdir().unwrap();
    run(
        "influence",
        tmp.path(),
        &["--task", "cv", "--penalty", "lasso", "--nlambda", "15"],
    )
    .success();
    let s = json(tmp.path(), "summary.json");
    let cv = s["influence"]["alo_cv"].as_array().unwrap();
    assert_eq!(cv.len(), s["path"].as_array().unwrap().len());
    let kmin = s["influence"]["lambda_min_index"].as_u64().unwrap() as usize;
    let k1se = s["influence"]["lambda_1se_index"].as_u64().unwrap() as usize;
    assert!(k1se <= kmin);
    assert!(cv[0]["misclassification"].as_f64().unwrap() > cv[kmin]["misclassification"].as_f64().unwrap());
}

#[test]
fn attribution_to_a_test_set_and_per_test_top_rows() {
    let tmp = tempfile::tempdir().unwrap();
    run(
        "influence",
        tmp.path(),
        &[
            "--task",
            "attribute",
            "--test-filter",
            "split=test",
            "--per-test-top",
            "3",
        ],
    )
    .success();
    let s = json(tmp.path(), "summary.json");
    assert_eq!(s["influence"]["test"]["rows"], 15315);
    let first = column(tmp.path(), "influence.parquet", "influence_on_test");
    let newton = column(tmp.path(), "influence.parquet", "influence_on_test_newton");
    // The Newton correction only stretches (h < 1): same sign, larger magnitude.
    for (a, b) in first.iter().zip(&newton) {
        assert!(a * b >= 0.0 && b.abs() >= a.abs() - 1e-15);
    }
    assert_eq!(column(tmp.path(), "attribution.parquet", "test_row").len(), 15315 * 3);
}

#[test]
fn fairness_ranks_rows_by_parity_gap_reduction() {
    let tmp = tempfile::tempdir().unwrap();
    run("influence", tmp.path(), &["--task", "fairness", "--group-col", "sex"]).success();
    let s = json(tmp.path(), "summary.json");
    let f = &s["influence"]["fairness"];
    assert_eq!(f["groups"]["group_a"], "Female");
    let gap = f["demographic_parity_gap"].as_f64().unwrap();
    assert!(gap < -0.1, "women are predicted >50K less often: {gap}");
    let red = column(tmp.path(), "influence.parquet", "gap_reduction");
    let top = f["top_gap_reducing_rows"][0]["dp_change"].as_f64().unwrap();
    assert!(top * gap < 0.0, "removing the top row moves the gap towards 0");
    assert!(red.iter().cloned().fold(f64::MIN, f64::max) > 0.0);
    // A group column with more than two values needs COL=VALUE.
    let tmp2 = tempfile::tempdir().unwrap();
    run("influence", tmp2.path(), &["--task", "fairness", "--group-col", "race"])
        .failure()
        .code(2);
    run(
        "influence",
        tmp2.path(),
        &["--task", "fairness", "--group-col", "race=White"],
    )
    .success();
}

#[test]
fn unlearn_and_prune_predict_the_refit() {
    let tmp = tempfile::tempdir().unwrap();
    // Rows with moderate influence (no separation after removal): the prediction tracks the refit.
    run(
        "prune",
        tmp.path(),
        &[
            "--by",
            "self_influence",
            "--threshold",
            "0.02",
            "--verify",
            "--steps",
            "1",
        ],
    )
    .success();
    let p = json(tmp.path(), "prune.json");
    let removed = p["removed"].as_u64().unwrap();
    assert!(removed > 0);
    let e1 = p["errors"]["relative_l2_change"].as_f64().unwrap();
    let e0 = p["errors"]["relative_l2_change_first_order"].as_f64().unwrap();
    assert!(e1.is_finite() && e0.is_finite());
    let kept = {
        let f = std::fs::File::open(tmp.path().join("out/kept_rows.parquet")).unwrap();
        parquet::file::reader::FileReader::metadata(
            &parquet::file::serialized_reader::SerializedFileReader::new(f).unwrap(),
        )
        .file_metadata()
        .num_rows() as u64
    };
    assert_eq!(kept + removed, 30718);
    // --steps 3 gets closer to the refit than one step.
    let tmp3 = tempfile::tempdir().unwrap();
    run(
        "prune",
        tmp3.path(),
        &[
            "--by",
            "self_influence",
            "--threshold",
            "0.02",
            "--verify",
            "--steps",
            "3",
        ],
    )
    .success();
    let e3 = json(tmp3.path(), "prune.json")["errors"]["relative_l2_change"]
        .as_f64()
        .unwrap();
    assert!(e3 <= e1 + 1e-12, "3 steps {e3} vs 1 step {e1}");

    // unlearn with a row list.
    let rows = tmp.path().join("rows.parquet");
    common::write_parquet(&rows, &common::batch(vec![("row", common::i64s(&[3, 10, 25]))]));
    let tmp4 = tempfile::tempdir().unwrap();
    run(
        "influence",
        tmp4.path(),
        &["--task", "unlearn", "--remove", rows.to_str().unwrap()],
    )
    .success();
    let u = &json(tmp4.path(), "summary.json")["influence"]["unlearn"];
    assert_eq!(u["removed"], 3);
    // One step is not the optimum, and says so without a "did not converge" warning; the
    // full fit's own separation (workclass[Without-pay]) is still reported.
    assert_eq!(u["converged"], false);
    let warns: Vec<&str> = u["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(!warns.iter().any(|w| w.contains("did not converge")), "{warns:?}");
    assert!(
        warns
            .iter()
            .any(|w| w.contains("separation") && w.contains("workclass[Without-pay]")),
        "{warns:?}"
    );

    // Row 25799 is the only positive of occupation = Armed-Forces: the refit without it
    // converges with that coefficient running off (no finite estimate), and says so.
    let one = tmp.path().join("row25799.parquet");
    common::write_parquet(&one, &common::batch(vec![("row", common::i64s(&[25799]))]));
    let tmp5 = tempfile::tempdir().unwrap();
    run(
        "influence",
        tmp5.path(),
        &["--task", "unlearn", "--remove", one.to_str().unwrap(), "--steps", "100"],
    )
    .success();
    let u = &json(tmp5.path(), "summary.json")["influence"]["unlearn"];
    assert_eq!(u["converged"], true);
    assert!(u["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("occupation[Armed-Forces]")));
    assert!(u["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["predicted"].is_number()));
}

#[test]
fn misuse_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    // loo needs every leverage: Cholesky only.
    run("influence", tmp.path(), &["--task", "loo", "--solver", "cg"])
        .failure()
        .code(2);
    run("influence", tmp.path(), &["--task", "attribute"]).failure().code(2);
    run("influence", tmp.path(), &["--task", "unlearn"]).failure().code(2);
    run("influence", tmp.path(), &["--task", "loo", "--loo-refine-steps", "0"])
        .failure()
        .code(2);
    run("influence", tmp.path(), &["--task", "loo", "--loo-refine-above", "1.5"])
        .failure()
        .code(2);
    // Refined rows are same-λ refits: a penalised fit under the fixed-penalty convention is
    // refused before any output is left behind.
    run(
        "influence",
        tmp.path(),
        &[
            "--penalty",
            "lasso",
            "--lambda",
            "0.001",
            "--task",
            "loo",
            "--loo-refine",
            "5",
            "--removal-penalty",
            "fixed",
        ],
    )
    .failure()
    .code(2);
    assert!(!tmp.path().join("out/influence.parquet").exists());
    run("prune", tmp.path(), &["--by", "cooks_d"]).failure().code(2);
    run("prune", tmp.path(), &["--by", "leverage", "--top", "3"])
        .failure()
        .code(2);
    let a = run(
        "influence",
        tmp.path(),
        &["--task", "fairness", "--group-col", "no_such_col"],
    )
    .failure()
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(!err.contains("panicked") && err.contains("no_such_col"), "{err}");
    assert!(!tmp.path().join("out/prune.json").exists());
}

#[test]
fn penalised_unlearning_a_whole_level_drops_its_column() {
    // The nine training rows with occupation = Armed-Forces: without them the column is
    // constant, leaves the refit (as in glmnet), and the prediction says so.
    let tmp = tempfile::tempdir().unwrap();
    let rows = tmp.path().join("rows.parquet");
    common::write_parquet(
        &rows,
        &common::batch(vec![(
            "row",
            common::i64s(&[442, 1300, 14613, 16111, 18034, 18644, 18769, 25799, 32316]),
        )]),
    );
    let tmp2 = tempfile::tempdir().unwrap();
    run(
        "influence",
        tmp2.path(),
        &[
            "--penalty",
            "lasso",
            "--lambda",
            "0.0004",
            "--task",
            "unlearn",
            "--steps",
            "3",
            "--remove",
            rows.to_str().unwrap(),
        ],
    )
    .success();
    let u = &json(tmp2.path(), "summary.json")["influence"]["unlearn"];
    let af = u["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "occupation[Armed-Forces]")
        .unwrap();
    assert_eq!(af["predicted"], 0.0);
}

#[test]
fn attribution_signs_on_a_constructed_case_match_exact_refits() {
    // 300 rows of a logistic model in (x1, x2), then two rows next to five test points that
    // are all positives: row 300 agrees with them (y = 1), row 301 is a mislabelled copy
    // (y = 0). Removing 300 should raise the test loss (it helps: influence_on_test > 0),
    // removing 301 should lower it (it harms: < 0, and the most harmful row); the signs and
    // sizes are checked against exact refits without each row.
    let tmp = tempfile::tempdir().unwrap();
    let mut state: u64 = 20240607;
    let mut unif = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut x1, mut x2, mut y) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..300 {
        let (a, b) = (4.0 * unif() - 2.0, 4.0 * unif() - 2.0);
        let p = 1.0 / (1.0 + (-(0.5 + a + b)).exp());
        x1.push(a);
        x2.push(b);
        y.push(if unif() < p { 1.0 } else { 0.0 });
    }
    for (a, b, c) in [(2.5, 2.5, 1.0), (2.4, 2.6, 0.0)] {
        x1.push(a);
        x2.push(b);
        y.push(c);
    }
    let train = tmp.path().join("train.parquet");
    common::write_parquet(
        &train,
        &common::batch(vec![
            ("x1", common::f64s(&x1)),
            ("x2", common::f64s(&x2)),
            ("y", common::f64s(&y)),
        ]),
    );
    let tx = [(2.5, 2.5), (2.6, 2.4), (2.4, 2.5), (2.5, 2.6), (2.7, 2.7)];
    let test = tmp.path().join("test.parquet");
    common::write_parquet(
        &test,
        &common::batch(vec![
            ("x1", common::f64s(&tx.map(|t| t.0))),
            ("x2", common::f64s(&tx.map(|t| t.1))),
            ("y", common::f64s(&[1.0; 5])),
        ]),
    );
    let out = tmp.path().join("out");
    assert_cmd::Command::cargo_bin("fulcrum")
        .unwrap()
        .arg("influence")
        .arg(&train)
        .args([
            "--formula",
            "y ~ x1 + x2",
            "--family",
            "binomial",
            "--task",
            "attribute",
            "-q",
        ])
        .arg("--test")
        .arg(&test)
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let rows = column(tmp.path(), "influence.parquet", "row");
    let first = column(tmp.path(), "influence.parquet", "influence_on_test");
    let newton = column(tmp.path(), "influence.parquet", "influence_on_test_newton");
    let at = |v: &[f64], r: f64| v[rows.iter().position(|&x| x == r).unwrap()];
    assert!(at(&first, 300.0) > 0.0 && at(&newton, 300.0) > 0.0);
    assert!(at(&first, 301.0) < 0.0 && at(&newton, 301.0) < 0.0);
    let most_harmful = rows[(0..rows.len())
        .min_by(|&a, &b| newton[a].total_cmp(&newton[b]))
        .unwrap()];
    assert_eq!(most_harmful, 301.0);

    // Exact: refit without the row, test loss after minus before.
    let ds = common::load_model(
        &[train.to_string_lossy().to_string()],
        "y ~ x1 + x2",
        &tmp.path().join("cache2"),
        common::LoadOpts::default(),
    );
    let f = fulcrum::glm::fit(
        &ds,
        &fulcrum::glm::FitOptions::new(fulcrum::glm::Family::Binomial, None).unwrap(),
    )
    .unwrap();
    let test_loss = |b: &[f64]| -> f64 {
        tx.iter()
            .map(|&(a, c)| {
                let eta = b[0] + b[1] * a + b[2] * c;
                (1.0 + eta.exp()).ln() - eta
            })
            .sum()
    };
    for r in [300u64, 301] {
        let (reduced, _) = ds.without_rows(&[r]);
        let rf = fulcrum::influence::refit_without(&reduced, &f, None, None).unwrap();
        let exact = test_loss(&rf.beta) - test_loss(&f.beta);
        let approx = at(&newton, r as f64);
        assert!(
            exact * approx > 0.0 && ((approx - exact) / exact).abs() < 0.25,
            "row {r}: Newton {approx} vs exact {exact} (first order {})",
            at(&first, r as f64)
        );
    }
}
