//! Diagnostics invariants (property tests) and the `fulcrum diagnose` command line.

mod common;

use common::*;
use fulcrum::glm::{fit, Family, FitOptions};
use fulcrum::influence::{diagnose, DiagOptions, RowDiagnostics};
use proptest::prelude::*;

fn run_diag(
    s: &Scratch,
    formula: &str,
    family: Family,
    observed: bool,
) -> (fulcrum::glm::Fit, Vec<RowDiagnostics>, f64) {
    let o = LoadOpts {
        chunk_rows: Some(7),
        ..Default::default()
    };
    let ds = load_model(&[s.path("d.parquet").display().to_string()], formula, &s.cache(), o);
    let f = fit(&ds, &FitOptions::new(family, None).unwrap()).unwrap();
    let mut rows = Vec::new();
    let (sum, _) = diagnose(&ds, &f, &DiagOptions { observed, top_k: 5 }, |d| {
        rows.push(d.clone());
        Ok(())
    })
    .unwrap();
    (f, rows, sum.sum_hat)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Σ hat = rank, 0 ≤ hat ≤ 1, and cooks_d = resid_studentized²·hat/((1 − hat)·rank), on random
    /// designs with several chunks, for each family.
    #[test]
    fn leverage_and_cooks_identities(seed in any::<u64>(), fam in 0usize..4, n in 25usize..70) {
        let mut st = seed | 1;
        let mut next = move || { st ^= st << 13; st ^= st >> 7; st ^= st << 17; (st >> 11) as f64 / (1u64 << 53) as f64 };
        let family = [Family::Binomial, Family::Poisson, Family::Gaussian, Family::Gamma][fam];
        let (mut x, mut z, mut g, mut y) = (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let xi = next() * 2.0 - 1.0;
            let zi = next();
            let gi = ["p", "q", "r"][i % 3];
            let eta = 0.2 + 0.5 * xi - 0.3 * zi;
            let u = next();
            let yi = match family {
                Family::Binomial => if u < 1.0 / (1.0 + (-eta).exp()) { 1.0 } else { 0.0 },
                Family::Poisson => (eta.exp() * 3.0 * u).floor(),
                Family::Gaussian => eta + u - 0.5,
                Family::Gamma => (1.0 + eta.exp()) * (0.5 + u),
            };
            x.push(xi); z.push(zi); g.push(gi); y.push(yi);
        }
        y[0] = 0.0; y[1] = 1.0;
        if family == Family::Gamma { y[0] = 0.3; }
        let s = Scratch::new();
        write_parquet(&s.path("d.parquet"), &batch(vec![("y", f64s(&y)), ("x", f64s(&x)), ("z", f64s(&z)), ("g", strs(&g))]));
        let (f, rows, sum_hat) = run_diag(&s, "y ~ x + z + g", family, false);
        prop_assert!((sum_hat - f.rank as f64).abs() < 1e-9, "sum hat {sum_hat} vs rank {}", f.rank);
        let mut count = 0;
        for d in &rows {
            for i in 0..d.row.len() {
                let h = d.hat[i];
                prop_assert!((-1e-12..=1.0 + 1e-12).contains(&h), "hat {h}");
                if h < 1.0 - 1e-10 {
                    let want = d.resid_studentized[i].powi(2) * h / ((1.0 - h) * f.rank as f64);
                    prop_assert!((d.cooks_d[i] - want).abs() <= 1e-10 * (1.0 + want.abs()));
                    prop_assert!((d.cbar[i] - d.resid_pearson[i].powi(2) * h / (1.0 - h)).abs() <= 1e-10 * (1.0 + d.cbar[i].abs()));
                }
                count += 1;
            }
        }
        prop_assert_eq!(count, n);
    }
}

#[test]
fn diagnose_cli_writes_parquet_and_summary_matching_statsmodels() {
    let s = Scratch::new();
    let out = s.path("out");
    let f = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex + native_country";
    let adult = format!("{}/fixtures/adult.parquet", env!("CARGO_MANIFEST_DIR"));
    let r = run(assert_cmd::Command::cargo_bin("fulcrum")
        .unwrap()
        .args([
            "diagnose",
            &adult,
            "--formula",
            f,
            "--filter",
            "split=train",
            "--family",
            "binomial",
            "--top-k",
            "20",
            "--out",
        ])
        .arg(&out)
        .arg("--cache-dir")
        .arg(s.cache()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("Diagnostics (expected information)"), "{}", r.stdout);
    // diagnostics.parquet: a `row` column and one row per observation, joined on row_index.
    let file = std::fs::File::open(out.join("diagnostics.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let reference: serde_json::Value = serde_json::from_reader(
        std::fs::File::open(format!(
            "{}/fixtures/reference/sm_adult_logistic.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let idx: std::collections::HashMap<u64, usize> = reference["row_index"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, v)| (v.as_u64().unwrap(), k))
        .collect();
    let mut n = 0usize;
    let mut nan_rows = vec![];
    for b in reader {
        let b = b.unwrap();
        use arrow_array::cast::AsArray;
        let rows = b
            .column_by_name("row")
            .unwrap()
            .as_primitive::<arrow_array::types::UInt64Type>();
        let col = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<arrow_array::types::Float64Type>()
                .clone()
        };
        let (hat, cooks, rs) = (col("hat"), col("cooks_d"), col("resid_studentized"));
        for c in RowDiagnostics::COLUMNS {
            assert!(b.column_by_name(c).is_some(), "{c}");
        }
        for i in 0..b.num_rows() {
            let k = idx[&rows.value(i)];
            if cooks.value(i).is_nan() {
                nan_rows.push(rows.value(i));
                continue;
            }
            for (got, key) in [
                (hat.value(i), "hat_diag"),
                (cooks.value(i), "cooks_distance"),
                (rs.value(i), "resid_studentized_pearson"),
            ] {
                let want = reference[key][k].as_f64().unwrap();
                let mu = reference["fitted_mu"][k].as_f64().unwrap();
                let tol = 1e-6 + 8.0 * f64::EPSILON / (1.0 - mu);
                let err = if want.abs() < 1e-12 {
                    (got - want).abs()
                } else {
                    ((got - want) / want).abs()
                };
                assert!(err <= tol, "{key} row {}: {got} vs {want}", rows.value(i));
            }
            n += 1;
        }
    }
    // Every row but the documented leverage-one row (Holand-Netherlands, row 19609).
    assert_eq!(nan_rows, [19609]);
    assert_eq!(n + 1, 30162);
    let j: serde_json::Value = serde_json::from_reader(std::fs::File::open(out.join("summary.json")).unwrap()).unwrap();
    let d = &j["diagnostics"];
    assert_eq!(d["information"], "expected");
    assert_eq!(d["n_hat_one"], 1);
    assert!((d["sum_hat"].as_f64().unwrap() - 81.0).abs() < 1e-6);
    assert_eq!(d["top_cooks"].as_array().unwrap().len(), 10);
    // dfbetas.parquet: the top 20 rows by Cook's distance, one column per coefficient.
    let file = std::fs::File::open(out.join("dfbetas.parquet")).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(b.schema().fields().len(), 1 + 81);
    assert_eq!(b.metadata().file_metadata().num_rows(), 20);
}

/// Diagnostics of a fit solved in blocks (a 150-level factor held as a diagonal, one level with
/// no weight) equal those of the dense p×p inverse: every per-row column and the DFBETAS of the
/// top rows.
#[test]
fn blocked_information_gives_the_dense_diagnostics() {
    use fulcrum::glm::Penalty;
    use fulcrum::linalg::block::SchurFactor;
    let s = Scratch::new();
    wide_factor_data(&s, 150, true);
    let o = LoadOpts {
        weights: Some("w"),
        chunk_rows: Some(1000),
        ..Default::default()
    };
    for penalty in [Penalty::None, Penalty::Ridge { lambda: 0.01 }] {
        let ds = load_model(
            &[s.path("wide.parquet").display().to_string()],
            "y ~ x1 + x2 + g",
            &s.cache(),
            o,
        );
        let mut runs = Vec::new();
        for schur_min_levels in [usize::MAX, 100] {
            let mut fo = FitOptions::new(Family::Binomial, None).unwrap();
            fo.penalty = penalty;
            fo.schur_min_levels = schur_min_levels;
            let f = fit(&ds, &fo).unwrap();
            if let Some(b) = &f.information_blocks {
                // The blocked path is taken (no near-aliasing sends it back to the dense one).
                let zero = vec![0.0; ds.design().layout.p];
                assert!(SchurFactor::new(
                    &b.a,
                    &b.slices(),
                    &b.split,
                    &f.kept,
                    &zero,
                    fulcrum::linalg::chol::ALIAS_TOL
                )
                .unwrap()
                .is_some());
            }
            assert_eq!(f.information_blocks.is_some(), schur_min_levels == 100);
            let mut rows: Vec<RowDiagnostics> = Vec::new();
            let (summary, dfb) = diagnose(
                &ds,
                &f,
                &DiagOptions {
                    observed: false,
                    top_k: 20,
                },
                |d| {
                    rows.push(d);
                    Ok(())
                },
            )
            .unwrap();
            runs.push((rows, summary, dfb));
        }
        let ((dr, ds_, dd), (br, bs, bd)) = (&runs[0], &runs[1]);
        let close = |a: f64, b: f64| (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * (1.0 + b.abs());
        assert!(
            close(bs.sum_hat, ds_.sum_hat),
            "{penalty:?}: sum hat {} vs {}",
            bs.sum_hat,
            ds_.sum_hat
        );
        for (d, b) in dr.iter().zip(br) {
            assert_eq!(d.row, b.row);
            for (name, x, y) in [
                ("hat", &b.hat, &d.hat),
                ("cooks_d", &b.cooks_d, &d.cooks_d),
                ("resid_studentized", &b.resid_studentized, &d.resid_studentized),
                ("dffits", &b.dffits, &d.dffits),
            ] {
                for i in 0..x.len() {
                    assert!(
                        close(x[i], y[i]),
                        "{penalty:?} {name} row {}: {} vs {}",
                        d.row[i],
                        x[i],
                        y[i]
                    );
                }
            }
        }
        assert_eq!(bd.rows, dd.rows, "{penalty:?}: the same top rows");
        for (vb, vd) in bd.values.iter().zip(&dd.values) {
            for (x, y) in vb.iter().zip(vd) {
                assert!(close(*x, *y), "{penalty:?} dfbetas {x} vs {y}");
            }
        }
    }
}
