//! IRLS behaviour that no single reference file covers: integer weights equal duplicated rows
//! (property test), aliased columns reported as missing like R's NA, separation warnings, the
//! ridge optimality (KKT) conditions, and the `fulcrum fit` command line.

mod common;

use common::*;
use fulcrum::glm::{fit, Family, Fit, FitOptions, Link, Penalty};
use fulcrum::linalg::pass::x_beta_pass;
use proptest::prelude::*;

fn load(s: &Scratch, file: &str, formula: &str, weights: Option<&str>) -> fulcrum::Dataset {
    let o = LoadOpts {
        weights,
        ..Default::default()
    };
    load_model(&[s.path(file).display().to_string()], formula, &s.cache(), o)
}

fn fit_with(ds: &fulcrum::Dataset, family: Family, link: Option<Link>) -> Fit {
    fit(ds, &FitOptions::new(family, link).unwrap()).unwrap()
}

/// A fit converged far past the default tolerance, for comparing two routes to one optimum
/// (their IRLS paths differ, e.g. through the starting values).
fn fit_tight(ds: &fulcrum::Dataset, family: Family) -> Fit {
    let mut o = FitOptions::new(family, None).unwrap();
    o.tol = 1e-14;
    fit(ds, &o).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / (1.0 + b.abs())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Prior weights k give the same estimates, standard errors and deviance as repeating the
    /// row k times (binomial and Poisson, where the dispersion is fixed).
    #[test]
    fn integer_weights_equal_duplication(seed in any::<u64>(), poisson in any::<bool>(), n in 30usize..80) {
        let mut st = seed | 1;
        let mut next = move || { st ^= st << 13; st ^= st >> 7; st ^= st << 17; st };
        let (mut x, mut g, mut y, mut w) = (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let xi = (next() % 1000) as f64 / 250.0 - 2.0;
            let gi = ["a", "b", "c"][i % 3];
            let eta = 0.3 + 0.8 * xi + if gi == "b" { -0.5 } else { 0.2 };
            let u = (next() % 10_000) as f64 / 10_000.0;
            let yi = if poisson { (eta.exp() * u * 2.0).floor() } else if u < 1.0 / (1.0 + (-eta).exp()) { 1.0 } else { 0.0 };
            x.push(xi); g.push(gi); y.push(yi); w.push((1 + next() % 3) as f64);
        }
        // Make sure both outcomes occur (otherwise the binomial fit separates).
        y[0] = 0.0; y[1] = 1.0;
        let s = Scratch::new();
        write_parquet(&s.path("w.parquet"), &batch(vec![("y", f64s(&y)), ("x", f64s(&x)), ("g", strs(&g)), ("w", f64s(&w))]));
        let (mut xd, mut gd, mut yd) = (vec![], vec![], vec![]);
        for i in 0..n {
            for _ in 0..w[i] as usize { xd.push(x[i]); gd.push(g[i]); yd.push(y[i]); }
        }
        write_parquet(&s.path("d.parquet"), &batch(vec![("y", f64s(&yd)), ("x", f64s(&xd)), ("g", strs(&gd))]));
        let fam = if poisson { Family::Poisson } else { Family::Binomial };
        // Starting values differ (R's binomial mustart uses the weight), so compare converged fits.
        let a = fit_tight(&load(&s, "w.parquet", "y ~ x + g", Some("w")), fam);
        let b = fit_tight(&load(&s, "d.parquet", "y ~ x + g", None), fam);
        for j in 0..a.beta.len() {
            prop_assert!(rel(a.beta[j], b.beta[j]) < 1e-8, "beta {j}: {} vs {}", a.beta[j], b.beta[j]);
            // Standard errors use the weights of the final IRLS step (R's and statsmodels'
        // convention), one step behind β̂; the two routes' last steps differ by ~sqrt(ΔD)
        // ≈ 1e-7 at the deviance floor, so compare SEs at 1e-6.
        prop_assert!(rel(a.std_error[j].unwrap(), b.std_error[j].unwrap()) < 1e-6, "se {j}: {:?} vs {:?}", a.std_error[j], b.std_error[j]);
        }
        prop_assert!(rel(a.deviance, b.deviance) < 1e-9);
        prop_assert!(rel(a.aic, b.aic) < 1e-9, "aic {} vs {}", a.aic, b.aic);
    }
}

#[test]
fn aliased_column_is_reported_like_r_na() {
    let s = Scratch::new();
    let n = 60;
    let x1: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let x2: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
    let x3: Vec<f64> = x1.iter().zip(&x2).map(|(a, b)| 2.0 * a - b).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| 1.0 + x1[i] - 0.5 * x2[i] + ((i * 7919) % 13) as f64 / 13.0)
        .collect();
    write_parquet(
        &s.path("a.parquet"),
        &batch(vec![
            ("y", f64s(&y)),
            ("x1", f64s(&x1)),
            ("x2", f64s(&x2)),
            ("x3", f64s(&x3)),
        ]),
    );
    let with = fit_with(&load(&s, "a.parquet", "y ~ x1 + x2 + x3", None), Family::Gaussian, None);
    let without = fit_with(&load(&s, "a.parquet", "y ~ x1 + x2", None), Family::Gaussian, None);
    assert_eq!(with.aliased, [false, false, false, true]);
    assert_eq!(with.rank, 3);
    assert!(with.std_error[3].is_none());
    for j in 0..3 {
        assert!(rel(with.beta[j], without.beta[j]) < 1e-10);
        assert!(rel(with.std_error[j].unwrap(), without.std_error[j].unwrap()) < 1e-10);
    }
    assert!(rel(with.dispersion, without.dispersion) < 1e-12, "df uses the rank");
    assert!(
        with.warnings
            .iter()
            .any(|w| w.contains("singularities") && w.contains("x3")),
        "{:?}",
        with.warnings
    );
}

#[test]
fn separation_is_reported_not_hidden() {
    let s = Scratch::new();
    // Perfectly separated: y = 1 exactly when x > 0.
    let x: Vec<f64> = (0..40).map(|i| i as f64 - 19.5).collect();
    let y: Vec<f64> = x.iter().map(|&v| if v > 0.0 { 1.0 } else { 0.0 }).collect();
    write_parquet(&s.path("s.parquet"), &batch(vec![("y", f64s(&y)), ("x", f64s(&x))]));
    let f = fit_with(&load(&s, "s.parquet", "y ~ x", None), Family::Binomial, None);
    assert!(
        f.warnings
            .iter()
            .any(|w| w.contains("fitted probabilities numerically 0 or 1")),
        "{:?}",
        f.warnings
    );
    assert!(
        f.warnings.iter().any(|w| w.contains("perfect separation")),
        "{:?}",
        f.warnings
    );
    assert!(f.deviance < 1e-6);
    // The real quasi-separated case: Adult's single Holand-Netherlands row.
    let adult = format!("{}/fixtures/adult.parquet", env!("CARGO_MANIFEST_DIR"));
    let o = LoadOpts {
        filters: &[("split", "train")],
        ..Default::default()
    };
    let ds = load_model(&[adult], "income_gt50k ~ age + native_country", &s.cache(), o);
    let f = fit_with(&ds, Family::Binomial, None);
    assert!(
        f.warnings
            .iter()
            .any(|w| w.contains("quasi-complete separation") && w.contains("Holand-Netherlands")),
        "{:?}",
        f.warnings
    );
}

#[test]
fn non_convergence_is_reported() {
    let s = Scratch::new();
    write_parquet(&s.path("g.parquet"), &good_batch(50));
    let ds = load(&s, "g.parquet", "y ~ age", None);
    let mut o = FitOptions::new(Family::Gamma, Some(Link::Log)).unwrap();
    o.max_iter = 2;
    let f = fit(&ds, &o).unwrap();
    assert!(!f.converged);
    assert!(
        f.warnings
            .iter()
            .any(|w| w.contains("did not converge in 2 iterations")),
        "{:?}",
        f.warnings
    );
}

#[test]
fn ridge_satisfies_its_optimality_conditions() {
    let s = Scratch::new();
    let n = 400;
    let x1: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0).collect();
    let x2: Vec<f64> = (0..n).map(|i| ((i * 53) % 97) as f64 / 40.0 - 1.2).collect();
    let g: Vec<&str> = (0..n).map(|i| ["u", "v", "w", "z"][(i * 7) % 4]).collect();
    let y: Vec<f64> = (0..n)
        .map(|i| {
            if ((i * 7919) % 100) as f64 / 100.0 < 1.0 / (1.0 + (-(x1[i] - x2[i])).exp()) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    write_parquet(
        &s.path("r.parquet"),
        &batch(vec![
            ("y", f64s(&y)),
            ("x1", f64s(&x1)),
            ("x2", f64s(&x2)),
            ("g", strs(&g)),
        ]),
    );
    let ds = load(&s, "r.parquet", "y ~ x1 + x2 + g", None);
    let layout = ds.design().layout.clone();
    for lambda in [0.0, 0.01, 0.3] {
        let mut o = FitOptions::new(Family::Binomial, None).unwrap();
        o.penalty = Penalty::Ridge { lambda };
        let f = fit(&ds, &o).unwrap();
        // Gradient of (1/n)·Σ dev/2 + λ/2·‖β‖² (canonical link): −(1/n)·Xᵀ(y − μ) + λβ (no λ on the intercept).
        let beta = f.beta.clone();
        let grads = x_beta_pass(&ds.cache, &layout, &beta, |v, eta| {
            let x = fulcrum::linalg::materialize(v, &layout);
            let mut gr = vec![0.0; layout.p];
            for (i, r) in x.iter().enumerate() {
                let mu = 1.0 / (1.0 + (-eta[i]).exp());
                for j in 0..layout.p {
                    gr[j] += r[j] * (v.y[i] - mu);
                }
            }
            gr
        });
        for j in 0..layout.p {
            let score: f64 = grads.iter().map(|gr| gr[j]).sum::<f64>() / n as f64;
            let pen = if j == 0 { 0.0 } else { lambda * beta[j] };
            assert!(
                (score - pen).abs() < 1e-7,
                "lambda {lambda}, coefficient {j}: score {score} vs {pen}"
            );
        }
        if lambda > 0.0 {
            assert!(
                f.std_error.iter().all(|s| s.is_none()),
                "no standard errors for a penalised fit"
            );
        }
    }
}

#[test]
fn fit_cli_writes_summary_and_table() {
    let s = Scratch::new();
    let out = s.path("out");
    let f = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex + native_country";
    let adult = format!("{}/fixtures/adult.parquet", env!("CARGO_MANIFEST_DIR"));
    let fit_cli = |out: &std::path::Path, extra: &[&str]| {
        run(assert_cmd::Command::cargo_bin("fulcrum")
            .unwrap()
            .args([
                "fit",
                &adult,
                "--formula",
                f,
                "--filter",
                "split=train",
                "--family",
                "binomial",
            ])
            .args(extra)
            .arg("--out")
            .arg(out)
            .arg("--cache-dir")
            .arg(s.cache()))
    };
    let r = fit_cli(&out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("Estimate") && r.stdout.contains("Pr(>|z|)") && r.stdout.contains("AIC: 19713.6"),
        "{}",
        r.stdout
    );
    let j: serde_json::Value = serde_json::from_reader(std::fs::File::open(out.join("summary.json")).unwrap()).unwrap();
    let reference: serde_json::Value = serde_json::from_reader(
        std::fs::File::open(format!(
            "{}/fixtures/reference/sm_adult_logistic.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    for key in [
        "family",
        "link",
        "n_obs",
        "n_params",
        "rank",
        "coefficients",
        "deviance",
        "null_deviance",
        "aic",
        "dispersion",
        "iterations",
        "converged",
        "warnings",
        "timing_s",
    ] {
        assert!(j.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(j["n_obs"], 30162);
    assert_eq!(j["rank"], 81);
    for (k, c) in j["coefficients"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["name"], reference["coef_names"][k]);
        let (got, want) = (c["estimate"].as_f64().unwrap(), reference["coef"][k].as_f64().unwrap());
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
            "{}: {got} vs {want}",
            c["name"]
        );
        for key in ["std_error", "z_value", "p_value"] {
            assert!(c[key].is_f64(), "{key}");
        }
    }
    assert!((j["aic"].as_f64().unwrap() - reference["aic"].as_f64().unwrap()).abs() < 1e-6);
    // No temporary files left beside the summary.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["summary.json"]);
    // The last iterations ran on the separated levels' 29 rows; `--full-passes` makes every
    // iteration a pass over all rows, to the same estimates.
    assert_eq!(j["iterations_tail"]["rows"], 29, "{}", j["iterations_tail"]);
    let full = s.path("full");
    let r = fit_cli(&full, &["--full-passes"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let k: serde_json::Value =
        serde_json::from_reader(std::fs::File::open(full.join("summary.json")).unwrap()).unwrap();
    assert!(k["iterations_tail"].is_null());
    assert_eq!(k["iterations"], j["iterations"]);
    assert!(k["passes_fit"].as_u64() > j["passes_fit"].as_u64());
    for (a, b) in j["coefficients"]
        .as_array()
        .unwrap()
        .iter()
        .zip(k["coefficients"].as_array().unwrap())
    {
        let (a, b) = (a["estimate"].as_f64().unwrap(), b["estimate"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-3), "{a} vs {b}");
    }
}

#[test]
fn fit_cli_usage_errors() {
    let s = Scratch::new();
    write_parquet(&s.path("g.parquet"), &good_batch(20));
    let g = s.path("g.parquet").display().to_string();
    let base = |extra: &[&str]| {
        let mut c = assert_cmd::Command::cargo_bin("fulcrum").unwrap();
        c.args(["fit", &g, "--formula", "y ~ age + region", "--cache-dir"])
            .arg(s.cache())
            .args(extra);
        run(&mut c)
    };
    let out = s.path("o");
    let o = out.display().to_string();
    for (args, words) in [
        (vec!["--family", "poison", "--out", &o], "unknown --family 'poison'"),
        (
            vec!["--family", "poisson", "--link", "probit", "--out", &o],
            "link 'probit' is not available for the poisson family",
        ),
        (
            vec!["--penalty", "ridge", "--out", &o],
            "--penalty ridge needs --lambda",
        ),
    ] {
        let r = base(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(words), "{}", r.stderr);
    }
    // --out is an existing file.
    std::fs::write(s.path("file"), "x").unwrap();
    let r = base(&["--out", &s.path("file").display().to_string()]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("is not a directory"), "{}", r.stderr);
    // A response outside the family's support names the file, column and row.
    let r = base(&["--family", "binomial", "--out", &o]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr.contains("g.parquet") && r.stderr.contains("column 'y', row 1"),
        "{}",
        r.stderr
    );
    assert!(!out.join("summary.json").exists());
}

fn fit_blocked(ds: &fulcrum::Dataset, penalty: Penalty, schur_min_levels: usize) -> Fit {
    let mut o = FitOptions::new(Family::Binomial, None).unwrap();
    o.penalty = penalty;
    o.schur_min_levels = schur_min_levels;
    fit(ds, &o).unwrap()
}

/// The blocked (Schur-complement) solve of a wide factor gives the dense solve's fit:
/// estimates, standard errors, iterations, the information kept for diagnostics, and the same
/// aliased columns as R's column order, both for a zero column (a level with no weight) and,
/// through the dense fallback, for a group-level covariate that the factor explains.
#[test]
fn blocked_solve_of_a_wide_factor_matches_the_dense_solve() {
    let s = Scratch::new();
    wide_factor_data(&s, 150, true);
    for (formula, penalty) in [
        ("y ~ x1 + x2 + g", Penalty::None),
        ("y ~ x1 + x2 + g", Penalty::Ridge { lambda: 0.01 }),
        ("y ~ x1 + g + x2", Penalty::None),
        ("y ~ x1 + zg + g", Penalty::None),
        ("y ~ x1 + x3 + g", Penalty::None),
    ] {
        let ds = load(&s, "wide.parquet", formula, Some("w"));
        let dense = fit_blocked(&ds, penalty, usize::MAX);
        let blocked = fit_blocked(&ds, penalty, 100);
        let what = format!("{formula} {penalty:?}");
        assert_eq!(dense.aliased, blocked.aliased, "{what}");
        assert_eq!(dense.iterations, blocked.iterations, "{what}");
        assert_eq!(dense.kept, blocked.kept, "{what}");
        let dead = ds.design().coef_names().position(|n| n == "g[L0075]").unwrap();
        // Under a ridge penalty nothing is aliased (the penalty makes every column's curvature
        // positive).
        let ridge = penalty != Penalty::None;
        assert_eq!(dense.aliased[dead], !ridge, "{what}: the zero column is aliased");
        if ridge {
            assert!(dense.aliased.iter().all(|&a| !a), "{what}");
        } else if formula.contains("zg") || formula.contains("x3") {
            // zg is a function of g (and x3 of x1 and g): in R's column order the last level of
            // g is aliased.
            let last = ds.design().layout.p - 1;
            assert!(dense.aliased[last], "{what}: {:?}", dense.warnings);
            assert_eq!(dense.aliased.iter().filter(|&&a| a).count(), 2, "{what}");
        } else {
            assert_eq!(dense.aliased.iter().filter(|&&a| a).count(), 1, "{what}");
        }
        for j in 0..dense.beta.len() {
            assert!(
                rel(blocked.beta[j], dense.beta[j]) < 1e-9,
                "{what} beta {j}: {} vs {} ({:?})",
                blocked.beta[j],
                dense.beta[j],
                dense.warnings
            );
            if let (Some(a), Some(b)) = (blocked.std_error[j], dense.std_error[j]) {
                assert!(rel(a, b) < 1e-9, "{what} se {j}: {a} vs {b}");
            } else {
                assert_eq!(blocked.std_error[j], dense.std_error[j], "{what} se {j}");
            }
        }
        assert!(rel(blocked.deviance, dense.deviance) < 1e-12, "{what}");
        // The information at β̂: dense, or kept in blocks (then no p×p matrix is stored).
        let m = dense.kept.len();
        let info = blocked.information_matrix();
        let diag = blocked.information_diagonal();
        for a in 0..m {
            assert!(
                (diag[a] - dense.information[a * m + a]).abs() <= 1e-9 * (1.0 + diag[a].abs()),
                "{what} diagonal {a}"
            );
            for b in 0..m {
                let (x, y) = (info[b * m + a], dense.information[b * m + a]);
                assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()), "{what} information ({a}, {b})");
            }
        }
        let solved_in_blocks = blocked.information_blocks.is_some();
        assert_eq!(
            solved_in_blocks,
            !formula.contains("zg") && !formula.contains("x3"),
            "{what}"
        );
        assert_eq!(blocked.information.is_empty(), solved_in_blocks, "{what}");
        assert_eq!(blocked.cov_unscaled.nrows() == 0, solved_in_blocks, "{what}");
        assert_eq!(dense.cov_unscaled.nrows(), m, "{what}");
    }
}

/// IRLS's tail on data spread over many chunks: a Poisson fit with an offset and prior weights
/// whose level `e` has only zero counts, and a logistic fit whose sparse token 7 occurs only on
/// rows labelled 0. Each estimate runs to −∞, so the last iterations move that column alone; they
/// run on its rows (collected from every chunk) and land where full passes land.
#[test]
fn tail_iterations_match_full_passes() {
    let n = 3000;
    let mut st = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        (st % 10_000) as f64 / 10_000.0
    };
    let (mut x, mut g, mut t, mut w, mut count, mut label) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut tokens: Vec<Vec<(i32, f32)>> = vec![];
    for i in 0..n {
        let xi = 4.0 * next() - 2.0;
        let gi = if i % 75 == 3 { "e" } else { ["a", "b", "c", "d"][i % 4] };
        let ti = 0.5 + next();
        let eta = 0.2 + 0.5 * xi + if gi == "b" { 0.4 } else { 0.0 };
        let mu = ti * f64::exp(eta);
        // A Poisson draw by inversion.
        let (u, mut k, mut p) = (next(), 0.0, f64::exp(-mu));
        let mut cdf = p;
        while u > cdf && k < 50.0 {
            k += 1.0;
            p *= mu / k;
            cdf += p;
        }
        let yb = (next() < 1.0 / (1.0 + f64::exp(-eta))) as u8 as f64;
        let mut row = vec![((i % 5) as i32, 1.0f32)];
        if i % 60 == 7 {
            row.push((7, 2.0));
        }
        x.push(xi);
        g.push(gi);
        t.push(ti.ln());
        w.push((1 + i % 3) as f64);
        count.push(if gi == "e" { 0.0 } else { k });
        label.push(if i % 60 == 7 { 0.0 } else { yb });
        tokens.push(row);
    }
    let refs: Vec<&[(i32, f32)]> = tokens.iter().map(|r| r.as_slice()).collect();
    let s = Scratch::new();
    let cols = vec![
        ("count", f64s(&count)),
        ("label", f64s(&label)),
        ("x", f64s(&x)),
        ("g", strs(&g)),
        ("lt", f64s(&t)),
        ("w", f64s(&w)),
        ("tokens", sparse(&refs)),
    ];
    write_parquet(&s.path("tail.parquet"), &batch(cols));
    let cases = [
        ("count ~ x + g + offset(lt)", Family::Poisson, Some("w"), n / 75),
        ("label ~ x + g + sparse(tokens)", Family::Binomial, None, n / 60),
    ];
    for (k, (formula, family, weights, rows)) in cases.into_iter().enumerate() {
        let o = LoadOpts {
            weights,
            chunk_rows: Some(256),
            ..Default::default()
        };
        let cache = s.path(&format!("cache{k}"));
        let ds = load_model(&[s.path("tail.parquet").display().to_string()], formula, &cache, o);
        let mut opts = FitOptions::new(family, None).unwrap();
        let with = fit(&ds, &opts).unwrap();
        opts.tail = false;
        let without = fit(&ds, &opts).unwrap();
        let tail = with.tail.unwrap_or_else(|| panic!("{formula}: no tail"));
        assert_eq!(tail.rows, rows, "{formula}");
        assert!(tail.iterations >= 3, "{formula}: {tail:?}");
        assert_eq!(with.iterations, without.iterations, "{formula}");
        for j in 0..with.beta.len() {
            let (a, b) = (with.beta[j], without.beta[j]);
            assert!(rel(a, b) < 1e-9, "{formula}: coefficient {j}: {a} vs {b}");
            if let (Some(a), Some(b)) = (with.std_error[j], without.std_error[j]) {
                assert!(rel(a, b) < 1e-10, "{formula}: standard error {j}: {a} vs {b}");
            }
        }
        assert!(rel(with.deviance, without.deviance) < 1e-12, "{formula}");
        assert_eq!(with.warnings, without.warnings, "{formula}");
        // Stopped by --max-iter inside the tail: the same unconverged answer as full passes,
        // standard errors included.
        opts.max_iter = with.iterations - 1;
        let cut = fit(&ds, &opts).unwrap();
        opts.tail = true;
        let cut_tail = fit(&ds, &opts).unwrap();
        assert!(
            cut_tail.tail.is_some() && !cut_tail.converged && !cut.converged,
            "{formula}"
        );
        for j in 0..cut.beta.len() {
            assert!(
                rel(cut_tail.beta[j], cut.beta[j]) < 1e-9,
                "{formula}: cut coefficient {j}"
            );
            if let (Some(a), Some(b)) = (cut_tail.std_error[j], cut.std_error[j]) {
                assert!(rel(a, b) < 1e-10, "{formula}: cut standard error {j}: {a} vs {b}");
            }
        }
        assert!(rel(cut_tail.deviance, cut.deviance) < 1e-12, "{formula}");
    }
}
