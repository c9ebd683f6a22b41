//! Group lasso paths: the KKT conditions at every λ, checked here from scratch (the score
//! Xᵀ(a ∘ (y − μ)) recomputed by an independent pass at the returned coefficients), for
//! one-hot groups (exact block updates) and a `group(...)` of correlated numeric columns
//! (majorised updates); plus the elastic-net KKT conditions with the same code.

mod common;

use common::reference::fixture;
use fulcrum::glm::{fit_path, Family, Path, PathOptions, PathPenalty};
use fulcrum::linalg::pass::xt_v_pass;
use fulcrum::linalg::x_beta;

const ADULT: &str = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex";

fn load(formula: &str, tmp: &std::path::Path) -> fulcrum::Dataset {
    let o = common::LoadOpts {
        filters: &[("split", "train")],
        ..Default::default()
    };
    common::load_model(&[fixture("adult.parquet")], formula, tmp, o)
}

/// Largest KKT violation over all λ, from an independent score pass per λ. Zero group g:
/// ‖X̃_gᵀr‖/N ≤ λα w_g; non-zero: X̃_gᵀr/N = λα w_g β̃_g/‖β̃_g‖ + λ(1 − α) f_g β̃_g; the
/// intercept: X₀ᵀr = 0 (X̃ = X·s, β̃ = β/s… on the standardised scale, r = a(y − μ)).
fn kkt(ds: &fulcrum::Dataset, path: &Path, units: &[Vec<usize>], weights: &[f64]) -> f64 {
    let layout = &ds.design().layout;
    let o = &path.options;
    let mut worst: f64 = 0.0;
    for pt in &path.points {
        let mut beta = vec![0.0; layout.p];
        for &(j, b) in &pt.beta {
            beta[j] = b;
        }
        let score = xt_v_pass(&ds.cache, layout, true, |v, u| {
            let mut eta = vec![0.0; v.n];
            x_beta(v, layout, &beta, &mut eta);
            for i in 0..v.n {
                let mu = o.link.inverse(eta[i] + v.offset[i]);
                u[i] = v.y[i] - mu;
            }
        });
        let n = path.sum_weights;
        worst = worst.max((score[0] / n).abs());
        for (g, &w) in units.iter().zip(weights) {
            let gt: Vec<f64> = g.iter().map(|&j| score[j] / (path.scale[j] * n)).collect();
            let bt: Vec<f64> = g.iter().map(|&j| beta[j] * path.scale[j]).collect();
            let nb = bt.iter().map(|x| x * x).sum::<f64>().sqrt();
            if nb == 0.0 {
                let ng = gt.iter().map(|x| x * x).sum::<f64>().sqrt();
                worst = worst.max(ng - pt.lambda * o.alpha * w);
            } else {
                for (gj, bj) in gt.iter().zip(&bt) {
                    let r = gj - pt.lambda * o.alpha * w * bj / nb - pt.lambda * (1.0 - o.alpha) * bj;
                    worst = worst.max(r.abs());
                }
            }
        }
    }
    worst
}

/// Units of the group penalty for this design: the `groups`, then every other non-intercept
/// column alone; weights √size.
fn units_of(p: usize, groups: &[Vec<usize>]) -> (Vec<Vec<usize>>, Vec<f64>) {
    let mut units: Vec<Vec<usize>> = groups.to_vec();
    let grouped: Vec<usize> = groups.iter().flatten().copied().collect();
    units.extend((1..p).filter(|j| !grouped.contains(j)).map(|j| vec![j]));
    let w = units.iter().map(|u| (u.len() as f64).sqrt()).collect();
    (units, w)
}

#[test]
fn group_lasso_kkt_holds_along_the_path() {
    for (formula, alpha) in [
        (ADULT.to_string(), 1.0),
        (format!("{ADULT} + group(age, education_num, hours_per_week)"), 1.0),
        (ADULT.to_string(), 0.6),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ds = load(&formula, tmp.path());
        let d = ds.design();
        let mut o = PathOptions::new(
            Family::Binomial,
            Family::Binomial.canonical_link(),
            PathPenalty::Group,
            d.n_params(),
        );
        o.groups = d.lasso_groups().unwrap();
        o.alpha = alpha;
        o.nlambda = 30;
        let path = fit_path(&ds, &o).unwrap();
        let (units, w) = units_of(d.n_params(), &o.groups);
        let worst = kkt(&ds, &path, &units, &w);
        eprintln!(
            "{formula} (alpha {alpha}): {} lambdas, {} passes, final df {}, max KKT violation {worst:.2e}",
            path.points.len(),
            path.passes,
            path.points.last().unwrap().df
        );
        assert!(worst < 1e-6, "{formula}: KKT violated by {worst}");
        // Groups enter and leave whole.
        for pt in &path.points {
            for g in &o.groups {
                let nz = g.iter().filter(|j| pt.beta.iter().any(|(k, _)| k == *j)).count();
                assert!(nz == 0 || nz == g.len(), "a group is partly non-zero");
            }
        }
        assert!(path.points.last().unwrap().df > 0);
    }
}

#[test]
fn lasso_kkt_holds_along_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = load(ADULT, tmp.path());
    let p = ds.design().n_params();
    let mut o = PathOptions::new(
        Family::Binomial,
        Family::Binomial.canonical_link(),
        PathPenalty::ElasticNet,
        p,
    );
    o.nlambda = 30;
    o.alpha = 0.8;
    let path = fit_path(&ds, &o).unwrap();
    let (units, _) = units_of(p, &[]);
    let w: Vec<f64> = units.iter().map(|u| path.penalty_factor[u[0]]).collect();
    let worst = kkt(&ds, &path, &units, &w);
    assert!(worst < 1e-6, "KKT violated by {worst}");
}

/// The group lasso against an outside solution: insurance `smoker_yes ~ age + bmi + children +
/// region + sex`, unstandardised, one λ at a time, vs fixtures/reference/grouplasso_insurance_smoker.json
/// (scripts/reference/reference_group_lasso.py): its `coef_refined` (an own proximal-Newton solve
/// to KKT < 1e-15 of the objective of the `group-lasso` package, whose FISTA itself stalls at KKT
/// 1e-5..5e-2) within 1e-6, and asgl 2.2.0 (CVXPY/Clarabel, KKT ~1e-6) within 1e-5.
#[test]
fn group_lasso_matches_the_group_lasso_reference() {
    let r = common::reference::reference("grouplasso_insurance_smoker.json");
    let tmp = tempfile::tempdir().unwrap();
    let ds = common::load_model(
        &[fixture("insurance.parquet")],
        "smoker_yes ~ age + bmi + children + region + sex",
        tmp.path(),
        Default::default(),
    );
    let d = ds.design();
    let names: Vec<_> = d.coef_names().skip(1).collect();
    let want_names: Vec<&str> = r["coef_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, want_names);
    for f in r["fits"].as_array().unwrap() {
        let lambda = f["lambda"].as_f64().unwrap();
        let mut o = PathOptions::new(
            Family::Binomial,
            Family::Binomial.canonical_link(),
            PathPenalty::Group,
            d.n_params(),
        );
        o.groups = d.lasso_groups().unwrap();
        o.standardize = false;
        o.lambda = Some(lambda);
        let path = fit_path(&ds, &o).unwrap();
        let pt = &path.points[0];
        let mut got = vec![0.0; d.n_params()];
        for &(j, b) in &pt.beta {
            got[j] = b;
        }
        let refined: Vec<f64> = std::iter::once(f["intercept_refined"].as_f64().unwrap())
            .chain(
                f["coef_refined"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap()),
            )
            .collect();
        let asgl: Vec<f64> = std::iter::once(f["asgl"]["intercept"].as_f64().unwrap())
            .chain(
                f["asgl"]["coef"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap()),
            )
            .collect();
        for j in 0..got.len() {
            assert!(
                (got[j] - refined[j]).abs() < 1e-6,
                "lambda {lambda}, {}: {} vs {}",
                d.coef_name(j),
                got[j],
                refined[j]
            );
            assert!(
                (got[j] - asgl[j]).abs() < 1e-5,
                "lambda {lambda}, {}: {} vs asgl {}",
                d.coef_name(j),
                got[j],
                asgl[j]
            );
            assert_eq!(
                got[j] == 0.0,
                refined[j] == 0.0,
                "lambda {lambda}: active sets differ at {}",
                d.coef_name(j)
            );
        }
    }
}
