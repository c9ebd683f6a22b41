//! Whole-pipeline properties on small random designs (issue 10, item 3): Parquet → cache →
//! fit → per-row diagnostics. Row order, the units of a numeric column, the split of the input
//! into files and the thread count must not change the answer. (Integer weights equal
//! duplicated rows: `fit_behaviour.rs`.)

mod common;

use common::*;
use fulcrum::glm::{fit, Family, Fit, FitOptions};
use fulcrum::influence::{diagnose, DiagOptions};
use proptest::prelude::*;

/// A random model frame: numeric x, z, a 3-level categorical g, and a response for `family`.
struct Frame {
    x: Vec<f64>,
    z: Vec<f64>,
    g: Vec<&'static str>,
    y: Vec<f64>,
}

fn frame(seed: u64, family: Family, n: usize) -> Frame {
    let mut st = seed | 1;
    let mut next = move || {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        (st >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut f = Frame {
        x: vec![],
        z: vec![],
        g: vec![],
        y: vec![],
    };
    for i in 0..n {
        let x = next() * 2.0 - 1.0;
        let z = next() * 3.0;
        let g = ["p", "q", "r"][(i * 7 + (next() * 3.0) as usize) % 3];
        let eta = 0.2 + 0.6 * x - 0.2 * z + if g == "q" { 0.3 } else { 0.0 };
        let u = next();
        let y = match family {
            Family::Binomial => (u < 1.0 / (1.0 + (-eta).exp())) as u8 as f64,
            Family::Poisson => (eta.exp() * 3.0 * u).floor(),
            Family::Gaussian => eta + u - 0.5,
            Family::Gamma => (0.5 + eta.exp()) * (0.5 + u),
        };
        f.x.push(x);
        f.z.push(z);
        f.g.push(g);
        f.y.push(y);
    }
    // Both outcomes for the binomial; positive for the Gamma.
    f.y[0] = if family == Family::Gamma { 0.4 } else { 0.0 };
    f.y[1] = 1.0;
    f
}

fn write(s: &Scratch, name: &str, f: &Frame, rows: &[usize]) {
    let pick = |v: &[f64]| rows.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let g: Vec<&str> = rows.iter().map(|&i| f.g[i]).collect();
    write_parquet(
        &s.path(name),
        &batch(vec![
            ("y", f64s(&pick(&f.y))),
            ("x", f64s(&pick(&f.x))),
            ("z", f64s(&pick(&f.z))),
            ("g", strs(&g)),
        ]),
    );
}

fn load(s: &Scratch, inputs: &[String]) -> fulcrum::Dataset {
    // Small chunks, so that every pass merges several partial results.
    let o = LoadOpts {
        chunk_rows: Some(7),
        ..Default::default()
    };
    load_model(inputs, "y ~ x + z + g", &s.cache(), o)
}

fn fit_tight(ds: &fulcrum::Dataset, family: Family) -> Fit {
    let mut o = FitOptions::new(family, None).unwrap();
    o.tol = 1e-14;
    fit(ds, &o).unwrap()
}

/// (row id, hat, cooks_d) of every row, in the order diagnose streams them.
fn rows(ds: &fulcrum::Dataset, f: &Fit) -> Vec<(u64, f64, f64)> {
    let mut out = Vec::new();
    diagnose(
        ds,
        f,
        &DiagOptions {
            observed: false,
            top_k: 3,
        },
        |d| {
            for i in 0..d.row.len() {
                out.push((d.row[i], d.hat[i], d.cooks_d[i]));
            }
            Ok(())
        },
    )
    .unwrap();
    out
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / (1e-12 + b.abs())
}

/// Whether both fits converged, so that their coefficients estimate one optimum. A small random
/// binomial frame is now and then quasi-separated: the MLE does not exist, some coefficient runs
/// off towards ±∞ until the iteration limit, and where it stops depends on rounding (R's `glm`
/// behaves the same), so two routes to it agree in deviance and warnings but not in β (seen:
/// intercept −15.4725 against −15.4739 after 100 iterations, deviance equal to 7e-11). Such
/// cases are checked for that and then rejected.
fn both_converged(a: &Fit, b: &Fit) -> Result<bool, TestCaseError> {
    if a.converged && b.converged {
        return Ok(true);
    }
    prop_assert_eq!(a.converged, b.converged, "one route converged, the other not");
    prop_assert_eq!(&a.warnings, &b.warnings);
    prop_assert!(
        rel(b.deviance, a.deviance) < 1e-8,
        "deviance {} vs {}",
        b.deviance,
        a.deviance
    );
    Ok(false)
}

const FAMILIES: [Family; 4] = [Family::Binomial, Family::Poisson, Family::Gaussian, Family::Gamma];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Reordering the rows leaves the coefficients and, joined by row, every row's leverage and
    /// Cook's distance unchanged.
    #[test]
    fn row_permutation(seed in any::<u64>(), fam in 0usize..4, n in 30usize..70) {
        let family = FAMILIES[fam];
        let f = frame(seed, family, n);
        let s = Scratch::new();
        let id: Vec<usize> = (0..n).collect();
        // A deterministic shuffle from the seed.
        let mut perm = id.clone();
        let mut st = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        for i in (1..n).rev() {
            st = st.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (st >> 33) as usize % (i + 1));
        }
        write(&s, "a.parquet", &f, &id);
        write(&s, "b.parquet", &f, &perm);
        let da = load(&s, &[s.path("a.parquet").display().to_string()]);
        let db = load(&s, &[s.path("b.parquet").display().to_string()]);
        let (fa, fb) = (fit_tight(&da, family), fit_tight(&db, family));
        prop_assume!(both_converged(&fa, &fb)?);
        for j in 0..fa.beta.len() {
            prop_assert!(rel(fb.beta[j], fa.beta[j]) < 1e-8, "beta {j}: {} vs {}", fb.beta[j], fa.beta[j]);
        }
        let ra = rows(&da, &fa);
        let rb = rows(&db, &fb);
        // Row k of file b is row perm[k] of file a.
        for (k, &(row, h, c)) in rb.iter().enumerate() {
            prop_assert_eq!(row as usize, k);
            let (_, ha, ca) = ra[perm[k]];
            prop_assert!((h - ha).abs() < 1e-8 * (1.0 + ha), "hat row {k}: {h} vs {ha}");
            // A row fitted exactly (h = 1: a level of its own) has a NaN Cook's distance in
            // either order (docs/diagnostics.md, "Leverage 1").
            let both_nan = c.is_nan() && ca.is_nan();
            prop_assert!(both_nan || rel(c, ca) < 1e-6 || (c - ca).abs() < 1e-12, "cooks_d row {k}: {c} vs {ca}");
        }
    }

    /// Measuring x in other units (x·c) divides its coefficient by c and changes nothing else.
    #[test]
    fn rescaling_a_column(seed in any::<u64>(), fam in 0usize..4, n in 30usize..70, lc in -3.0f64..3.0) {
        let family = FAMILIES[fam];
        let c = 10f64.powf(lc);
        let f = frame(seed, family, n);
        let g = Frame { x: f.x.iter().map(|v| v * c).collect(), z: f.z.clone(), g: f.g.clone(), y: f.y.clone() };
        let s = Scratch::new();
        let id: Vec<usize> = (0..n).collect();
        write(&s, "a.parquet", &f, &id);
        write(&s, "b.parquet", &g, &id);
        let fa = fit_tight(&load(&s, &[s.path("a.parquet").display().to_string()]), family);
        let fb = fit_tight(&load(&s, &[s.path("b.parquet").display().to_string()]), family);
        prop_assume!(both_converged(&fa, &fb)?);
        // Columns: (Intercept), x, z, g[q], g[r].
        prop_assert!(rel(fb.beta[1] * c, fa.beta[1]) < 1e-7, "x: {} · {c} vs {}", fb.beta[1], fa.beta[1]);
        for j in [0, 2, 3, 4] {
            prop_assert!((fb.beta[j] - fa.beta[j]).abs() < 1e-7 * (1.0 + fa.beta[j].abs()), "beta {j}");
        }
        prop_assert!(rel(fb.deviance, fa.deviance) < 1e-9);
    }

    /// The same rows split over several files (read as a directory) give the same fit.
    #[test]
    fn splitting_into_files(seed in any::<u64>(), fam in 0usize..4, n in 30usize..70, k in 2usize..5) {
        let family = FAMILIES[fam];
        let f = frame(seed, family, n);
        let s = Scratch::new();
        let id: Vec<usize> = (0..n).collect();
        write(&s, "one.parquet", &f, &id);
        std::fs::create_dir(s.path("parts")).unwrap();
        for p in 0..k {
            let part: Vec<usize> = (p * n / k..(p + 1) * n / k).collect();
            write(&s, &format!("parts/part-{p}.parquet"), &f, &part);
        }
        let da = load(&s, &[s.path("one.parquet").display().to_string()]);
        let db = load(&s, &[s.path("parts").display().to_string()]);
        let (fa, fb) = (fit_tight(&da, family), fit_tight(&db, family));
        prop_assert_eq!(fa.n_obs, fb.n_obs);
        prop_assume!(both_converged(&fa, &fb)?);
        for j in 0..fa.beta.len() {
            prop_assert!(rel(fb.beta[j], fa.beta[j]) < 1e-9, "beta {j}");
        }
        prop_assert!(rel(fb.deviance, fa.deviance) < 1e-12);
        let (ra, rb) = (rows(&da, &fa), rows(&db, &fb));
        prop_assert_eq!(ra.len(), rb.len());
        for (a, b) in ra.iter().zip(&rb) {
            prop_assert_eq!(a.0, b.0);
            prop_assert!((a.1 - b.1).abs() < 1e-9);
        }
    }

    /// One thread or two: the same bits (passes merge partial results in a fixed order).
    #[test]
    fn one_or_two_threads(seed in any::<u64>(), fam in 0usize..4, n in 30usize..70) {
        let family = FAMILIES[fam];
        let f = frame(seed, family, n);
        let s = Scratch::new();
        write(&s, "a.parquet", &f, &(0..n).collect::<Vec<_>>());
        let ds = load(&s, &[s.path("a.parquet").display().to_string()]);
        let pool = |t: usize| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        let (f1, r1) = pool(1).install(|| { let f = fit_tight(&ds, family); let r = rows(&ds, &f); (f, r) });
        let (f2, r2) = pool(2).install(|| { let f = fit_tight(&ds, family); let r = rows(&ds, &f); (f, r) });
        prop_assert_eq!(&f1.beta, &f2.beta);
        prop_assert_eq!(f1.deviance.to_bits(), f2.deviance.to_bits());
        for (a, b) in r1.iter().zip(&r2) {
            prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            prop_assert_eq!(a.2.to_bits(), b.2.to_bits());
        }
    }
}
