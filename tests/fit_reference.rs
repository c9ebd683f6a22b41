//! IRLS fits against the outside oracles in fixtures/reference (statsmodels 0.15 `GLM.fit`,
//! produced by scripts/reference/reference.py and extra_reference.py): coefficients, standard
//! errors, deviance, null deviance and dispersion within 1e-6 relative (1e-6 absolute below 1e-3).

mod common;

use common::reference::{load, model_of, reference, reference_name};
use fulcrum::glm::{fit, FitOptions, SCHUR_MIN_LEVELS};

fn close(got: f64, want: f64) -> bool {
    if want.abs() < 1e-3 {
        (got - want).abs() <= 1e-6
    } else {
        (got - want).abs() <= 1e-6 * want.abs()
    }
}

/// Fit the model of `name` with default options and compare; `skip` lists coefficients whose
/// maximum-likelihood estimate is infinite (documented per test). Models with a categorical
/// term are fitted twice: with the dense p×p information (the default at these sizes) and with
/// the widest term's block held diagonal and solved through its Schur complement
/// (`schur_min_levels = 1`), which must reproduce the same oracle.
fn check(name: &str, skip: &[&str]) {
    let r = reference(name);
    let m = model_of(&r);
    let tmp = tempfile::tempdir().unwrap();
    let ds = load(&m, tmp.path());
    let has_cat = !ds.design().layout.cats.is_empty();
    for schur_min_levels in [SCHUR_MIN_LEVELS, 1] {
        if schur_min_levels == 1 && !has_cat {
            continue;
        }
        let mut opts = FitOptions::new(m.family, m.link).unwrap();
        opts.schur_min_levels = schur_min_levels;
        check_fit(name, &r, &ds, &opts, skip);
    }
    // Every iteration a full pass (no tail), the same oracle.
    let mut opts = FitOptions::new(m.family, m.link).unwrap();
    opts.tail = false;
    check_fit(name, &r, &ds, &opts, skip);
}

fn check_fit(name: &str, r: &serde_json::Value, ds: &fulcrum::ingest::Dataset, opts: &FitOptions, skip: &[&str]) {
    let name = &format!(
        "{name} (schur_min_levels {}, tail {})",
        opts.schur_min_levels, opts.tail
    );
    let f = fit(ds, opts).unwrap();
    let names: Vec<String> = ds.design().coef_names().map(|n| reference_name(&n, r)).collect();
    let want_names: Vec<String> = r["coef_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, want_names, "{name}");
    let mut bad = Vec::new();
    for (j, coef) in names.iter().enumerate() {
        if skip.contains(&coef.as_str()) {
            continue;
        }
        let (b, se) = (r["coef"][j].as_f64().unwrap(), r["bse"][j].as_f64().unwrap());
        let got_se = f.std_error[j].unwrap();
        if !close(f.beta[j], b) || !close(got_se, se) {
            bad.push(format!("{coef}: beta {} vs {b}, se {got_se} vs {se}", f.beta[j]));
        }
    }
    for (what, got, key) in [
        ("deviance", f.deviance, "deviance"),
        ("null deviance", f.null_deviance, "null_deviance"),
        ("dispersion", f.dispersion, "scale"),
    ] {
        let want = r[key].as_f64().unwrap();
        if !close(got, want) {
            bad.push(format!("{what} {got} vs {want}"));
        }
    }
    assert_eq!(f.n_obs, r["n_obs"].as_u64().unwrap());
    eprintln!(
        "{name}: {} iterations, converged {}, warnings {:?}",
        f.iterations, f.converged, f.warnings
    );
    assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
}

#[test]
fn star98_binomial_counts() {
    check("sm_star98_binomial.json", &[]);
}

#[test]
fn cpunish_poisson_log_covariate() {
    check("sm_cpunish_poisson.json", &[]);
}

#[test]
fn scotland_gamma_inverse() {
    check("sm_scotland_gamma.json", &[]);
}

#[test]
fn insurance_gamma_log() {
    check("sm_insurance_charges_gamma.json", &[]);
}

#[test]
fn insurance_poisson() {
    check("sm_insurance_children_poisson.json", &[]);
}

#[test]
fn insurance_logistic() {
    check("sm_insurance_smoker_logistic.json", &[]);
}

#[test]
fn communities_logistic() {
    check("sm_communities_logistic.json", &[]);
}

#[test]
fn adult_logistic_nocountry() {
    check("sm_adult_logistic_nocountry.json", &[]);
}

#[test]
fn adult_logistic() {
    // Includes the three quasi-separated coefficients: same stopping iteration as statsmodels.
    check("sm_adult_logistic.json", &[]);
}

/// Adult's fit runs its last iterations on the 29 rows of its three separated levels (14
/// `Without-pay`, 1 `Holand-Netherlands`, 14 `Outlying-US(Guam-USVI-etc)`, counted with pandas),
/// the other rows held at their quadratic model, and lands where full passes land: the same
/// iteration count, coefficients within 1e-9 relative and standard errors within 1e-10 (the
/// settled rows' information from the final full pass, not their model's), the same deviance.
#[test]
fn adult_tail_matches_full_passes() {
    let r = reference("sm_adult_logistic.json");
    let m = model_of(&r);
    let tmp = tempfile::tempdir().unwrap();
    let ds = load(&m, tmp.path());
    let mut opts = FitOptions::new(m.family, m.link).unwrap();
    let with = fit(&ds, &opts).unwrap();
    opts.tail = false;
    let without = fit(&ds, &opts).unwrap();
    let tail = with.tail.expect("Adult's fit enters the tail");
    assert_eq!(tail.rows, 29);
    assert!(tail.iterations >= 5, "{tail:?}");
    assert_eq!(without.tail, None);
    assert_eq!(with.iterations, without.iterations);
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-3);
    for j in 0..with.beta.len() {
        let (a, b) = (with.beta[j], without.beta[j]);
        assert!(rel(a, b) < 1e-9, "coefficient {j}: {a} vs {b}");
        let (a, b) = (with.std_error[j].unwrap(), without.std_error[j].unwrap());
        assert!(rel(a, b) < 1e-10, "standard error {j}: {a} vs {b}");
    }
    assert!(rel(with.deviance, without.deviance) < 1e-12);
    assert!(rel(with.pearson_chi2, without.pearson_chi2) < 1e-9);
    assert_eq!(with.warnings, without.warnings);
}

#[test]
fn probit_and_cloglog() {
    check("sm_extra_insurance_smoker_probit.json", &[]);
    check("sm_extra_insurance_smoker_cloglog.json", &[]);
    check("sm_extra_star98_cloglog.json", &[]);
}

#[test]
fn adult_probit_with_a_separated_level() {
    // All 14 `Without-pay` rows have income <= 50K: that coefficient's MLE is -infinity, so its
    // value and SE depend only on when each tool stopped (statsmodels: -8.27 at tol 1e-12).
    check("sm_extra_adult_probit_nocountry.json", &["workclass[Without-pay]"]);
}

#[test]
fn gaussian_identity_and_log() {
    check("sm_extra_insurance_charges_gaussian.json", &[]);
    check("sm_extra_insurance_charges_gaussian_log.json", &[]);
}

#[test]
fn poisson_with_offset_and_weighted_gamma() {
    check("sm_extra_insurance_children_poisson_offset.json", &[]);
    check("sm_extra_insurance_charges_gamma_weighted.json", &[]);
    check("sm_extra_cpunish_poisson_nolog.json", &[]);
}
