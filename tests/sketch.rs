//! Influence sketches (issue 6, item 1) against exact leverage and SAS: Σ h* = rank(Z) (k + 1,
//! the intercept outside the projection), h* ≤ h row by row, h* = h once k ≥ rank − 1, Finney's
//! vasoconstriction C-bar (SAS PROC LOGISTIC, via statsmodels' test files:
//! scripts/reference/finney_fixture.py), and bit-identical results with 1 and 2 threads.

mod common;

use common::reference::{fixture, json_f64s, load_fixture as load, reference};
use fulcrum::glm::{fit, Family, Fit, FitOptions};
use fulcrum::influence::{diagnose, sketch, ApproxRows, DiagOptions, Projection, SketchOptions};

fn binomial_fit(ds: &fulcrum::Dataset) -> Fit {
    fit(ds, &FitOptions::new(Family::Binomial, None).unwrap()).unwrap()
}

/// Exact (hat, cbar) per row, in row order.
fn exact(ds: &fulcrum::Dataset, f: &Fit) -> (Vec<f64>, Vec<f64>) {
    let (mut h, mut c) = (Vec::new(), Vec::new());
    diagnose(ds, f, &DiagOptions::default(), |d| {
        h.extend_from_slice(&d.hat);
        c.extend_from_slice(&d.cbar);
        Ok(())
    })
    .unwrap();
    (h, c)
}

fn sketched(ds: &fulcrum::Dataset, f: &Fit, o: &SketchOptions) -> (ApproxRows, fulcrum::influence::SketchSummary) {
    let mut all = ApproxRows::default();
    let s = sketch(ds, f, o, |r| {
        all.row.extend(r.row);
        all.hat.extend(r.hat);
        all.cbar.extend(r.cbar);
        all.cooks_d.extend(r.cooks_d);
        Ok(())
    })
    .unwrap();
    (all, s)
}

#[test]
fn finney_cbar_matches_sas_and_k_equal_rank_minus_one_is_exact() {
    let r = reference("sas_finney_influence.json");
    let tmp = tempfile::tempdir().unwrap();
    let ds = load(
        "finney_constrict.parquet",
        "constrict ~ log_rate + log_volumne",
        &[],
        tmp.path(),
    );
    let f = binomial_fit(&ds);
    let (h, c) = exact(&ds, &f);
    // SAS prints 2-4 significant digits: compare to half a unit in the second.
    let close = |got: f64, want: f64| (got - want).abs() <= 0.5 * 10f64.powf(want.abs().log10().floor() - 1.0);
    for (i, (&want_h, &want_c)) in json_f64s(&r["hat"]).iter().zip(&json_f64s(&r["cbar"])).enumerate() {
        assert!(close(h[i], want_h), "case {}: hat {} vs SAS {want_h}", i + 1, h[i]);
        assert!(close(c[i], want_c), "case {}: cbar {} vs SAS {want_c}", i + 1, c[i]);
    }
    assert!((c[3] - 1.1756).abs() < 1e-4, "case 4 C-bar {}", c[3]);
    // k = rank − 1 = 2 projected columns plus the intercept span the design: the sketch is exact.
    for projection in [Projection::Gaussian, Projection::SparseSign] {
        let (s, sum) = sketched(
            &ds,
            &f,
            &SketchOptions {
                projection,
                k: 2,
                seed: 11,
            },
        );
        if sum.rank < 3 {
            // A sparse-sign Ω can have a zero column; the exactness claim needs full rank.
            continue;
        }
        for (i, (hs, he)) in s.hat.iter().zip(&h).enumerate() {
            assert!((hs - he).abs() < 1e-8, "{projection:?} row {i}: {hs} vs {he}");
        }
        assert!((s.cbar[3] - 1.1756).abs() < 1e-4);
    }
    // k = 1: Σ h* = 2 (the intercept and one direction), each h* ≤ h.
    let (s, sum) = sketched(
        &ds,
        &f,
        &SketchOptions {
            projection: Projection::Gaussian,
            k: 1,
            seed: 3,
        },
    );
    assert_eq!(sum.rank, 2);
    assert!((s.hat.iter().sum::<f64>() - 2.0).abs() < 1e-8);
    for (hs, he) in s.hat.iter().zip(&h) {
        assert!(*hs <= he + 1e-12);
    }
}

#[test]
fn sketch_invariants_on_adult() {
    let tmp = tempfile::tempdir().unwrap();
    let formula = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex";
    let ds = load("adult.parquet", formula, &[("split", "train")], tmp.path());
    let f = binomial_fit(&ds);
    let (h, _) = exact(&ds, &f);
    for projection in [Projection::Gaussian, Projection::SparseSign, Projection::CountSketch] {
        for k in [8, 32] {
            let (s, sum) = sketched(&ds, &f, &SketchOptions { projection, k, seed: 5 });
            let total: f64 = s.hat.iter().sum();
            assert!(
                (total - sum.rank as f64).abs() < 1e-8,
                "{projection:?} k {k}: sum {total} vs rank {}",
                sum.rank
            );
            if projection != Projection::CountSketch {
                assert_eq!(sum.rank, k + 1, "{projection:?} k {k}");
            }
            for (i, (hs, he)) in s.hat.iter().zip(&h).enumerate() {
                assert!(*hs <= he + 1e-12, "{projection:?} k {k} row {i}: {hs} > {he}");
            }
        }
    }
    // k ≥ rank − 1 reproduces the exact leverage.
    let (s, _) = sketched(
        &ds,
        &f,
        &SketchOptions {
            projection: Projection::Gaussian,
            k: f.rank - 1,
            seed: 9,
        },
    );
    let worst = s.hat.iter().zip(&h).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-8, "k = rank - 1: max |h* - h| = {worst}");
}

#[test]
fn same_seed_same_bits_with_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = load(
        "adult.parquet",
        "income_gt50k ~ age + education_num + hours_per_week + occupation + sex",
        &[],
        tmp.path(),
    );
    let f = binomial_fit(&ds);
    let o = SketchOptions {
        projection: Projection::Gaussian,
        k: 16,
        seed: 42,
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| sketched(&ds, &f, &o).0)
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.row, b.row);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.hat), bits(&b.hat));
    assert_eq!(bits(&a.cooks_d), bits(&b.cooks_d));
    // A different seed gives a different sketch.
    let c = sketched(&ds, &f, &SketchOptions { seed: 43, ..o }).0;
    assert_ne!(bits(&a.hat), bits(&c.hat));
}

/// `fulcrum diagnose --leverage sketch` and `exact,sketch`: the columns, the summary's sketch
/// and accuracy blocks, and misuse.
#[test]
fn diagnose_cli_with_sketches() {
    use assert_cmd::Command;
    let tmp = tempfile::tempdir().unwrap();
    let run = |lev: &str, out: &str| {
        Command::cargo_bin("fulcrum")
            .unwrap()
            .args(["diagnose", &fixture("adult.parquet"), "--formula"])
            .arg("income_gt50k ~ age + education_num + hours_per_week + occupation + sex")
            .args([
                "--family",
                "binomial",
                "-q",
                "--sketch-dim",
                "8",
                "--seed",
                "3",
                "--leverage",
                lev,
            ])
            .arg("--cache-dir")
            .arg(tmp.path().join("cache"))
            .arg("--out")
            .arg(tmp.path().join(out))
            .assert()
    };
    run("sketch", "s").success();
    let cols = |dir: &str| -> Vec<String> {
        let f = std::fs::File::open(tmp.path().join(dir).join("diagnostics.parquet")).unwrap();
        use parquet::file::reader::FileReader;
        let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
        r.metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    };
    assert_eq!(cols("s"), ["row", "hat_sketch", "cbar_sketch", "cooks_d_sketch"]);
    let summary = |dir: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(tmp.path().join(dir).join("summary.json")).unwrap()).unwrap()
    };
    let s = summary("s");
    assert_eq!(s["diagnostics"]["sketch"]["k"], 8);
    assert!((s["diagnostics"]["sketch"]["sum_hat_sketch"].as_f64().unwrap() - 9.0).abs() < 1e-8);
    assert!(s["diagnostics"].get("accuracy").is_none());
    run("exact,sketch", "b").success();
    let c = cols("b");
    assert!(c.contains(&"cooks_d".to_string()) && c.contains(&"cooks_d_sketch".to_string()));
    let a = &summary("b")["diagnostics"]["accuracy"]["sketch"];
    for key in [
        "spearman_cooks_d",
        "top_1pct_overlap",
        "top_01pct_overlap",
        "hat_rel_error_median",
        "hat_rel_error_p99",
    ] {
        assert!(a[key].as_f64().is_some(), "{key}: {a}");
    }
    run("sketchy", "x").code(2);
}

/// Randomized leverage (Drineas et al. 2012 with a sparse first sketch): relative error of the
/// leverages within ε (median; the guarantee is probabilistic), Σ ≈ rank, and scores that track
/// the exact Cook's distances at the top.
#[test]
fn randomized_leverage_has_relative_error_within_epsilon() {
    let adult = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex";
    check_randomized("adult.parquet", adult, &[("split", "train")]);
    let dense: Vec<String> = (0..20).map(|j| format!("x{j:02}")).collect();
    let synthetic = format!("y ~ {} + C(c20) + C(c500)", dense.join(" + "));
    check_randomized("sparse_20k.parquet", &synthetic, &[]);
}

fn check_randomized(data: &str, formula: &str, filters: &[(&str, &str)]) {
    use fulcrum::influence::{accuracy, randomized_leverage, RandomizedOptions};
    let tmp = tempfile::tempdir().unwrap();
    let ds = load(data, formula, filters, tmp.path());
    let f = binomial_fit(&ds);
    let (h, _) = exact(&ds, &f);
    let mut cooks = Vec::new();
    diagnose(&ds, &f, &DiagOptions::default(), |d| {
        cooks.extend_from_slice(&d.cooks_d);
        Ok(())
    })
    .unwrap();
    for eps in [0.5, 0.3] {
        let mut got = ApproxRows::default();
        let s = randomized_leverage(&ds, &f, &RandomizedOptions { epsilon: eps, seed: 1 }, |r| {
            got.hat.extend(r.hat);
            got.cooks_d.extend(r.cooks_d);
            Ok(())
        })
        .unwrap();
        let a = accuracy(&h, &cooks, &got.hat, &got.cooks_d);
        eprintln!("{data} epsilon {eps}: {s:?}\n  {a:?}");
        assert!(
            a.hat_rel_error_median < eps,
            "epsilon {eps}: median relative error {}",
            a.hat_rel_error_median
        );
        assert!((s.sum_hat_approx - f.rank as f64).abs() < eps * f.rank as f64);
        assert!(a.top_1pct_overlap > 0.8, "{a:?}");
    }
}
