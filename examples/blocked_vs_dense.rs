//! Check (not part of the CLI): fit one model twice through the library, with the widest
//! categorical term's block of XᵀWX solved through its Schur complement (the default for a term
//! with ≥ `SCHUR_MIN_LEVELS` columns) and with the dense p×p factorization, for the same number
//! of IRLS iterations, and print how far apart the two fits are as one JSON object. The dense
//! fit of the issue 3 (c) model (p = 20,450) takes minutes per iteration; `--max-iter 3` keeps it
//! to a few.
//!
//! Usage:
//!   cargo run --release --example blocked_vs_dense -- --formula 'y ~ ...' [--family binomial]
//!     [--max-iter 3] [--cache-dir DIR] INPUT...

use std::time::Instant;

use fulcrum::design::{ModelInput, NaPolicy};
use fulcrum::glm::{fit, Family, FitOptions, SCHUR_MIN_LEVELS};
use fulcrum::progress::NoProgress;
use fulcrum::IngestOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut inputs = Vec::new();
    let (mut formula, mut family, mut max_iter, mut cache_dir) = (String::new(), Family::Binomial, 3usize, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--formula" => formula = val()?,
            "--family" => family = Family::parse(&val()?).ok_or("unknown family")?,
            "--max-iter" => max_iter = val()?.parse()?,
            "--cache-dir" => cache_dir = Some(std::path::PathBuf::from(val()?)),
            _ => inputs.push(a),
        }
    }
    if formula.is_empty() || inputs.is_empty() {
        return Err(
            "usage: blocked_vs_dense --formula F [--family NAME] [--max-iter N] [--cache-dir DIR] INPUT...".into(),
        );
    }
    let model = ModelInput {
        formula,
        filters: Vec::new(),
        na: NaPolicy::Drop,
        weights: None,
    };
    let io = IngestOptions {
        cache_dir,
        ..Default::default()
    };
    let ds = fulcrum::load(&inputs, &model, &io, &NoProgress)?;
    let mut fits = Vec::new();
    for schur_min_levels in [SCHUR_MIN_LEVELS, usize::MAX] {
        let mut o = FitOptions::new(family, None)?;
        o.max_iter = max_iter;
        o.schur_min_levels = schur_min_levels;
        let t = Instant::now();
        let f = fit(&ds, &o)?;
        fits.push((f, t.elapsed().as_secs_f64()));
    }
    let ((b, tb), (d, td)) = (&fits[0], &fits[1]);
    let rel = |x: f64, y: f64| (x - y).abs() / (1.0 + y.abs());
    let beta = (0..b.beta.len()).map(|j| rel(b.beta[j], d.beta[j])).fold(0.0, f64::max);
    let se = (0..b.beta.len())
        .filter_map(|j| Some(rel(b.std_error[j]?, d.std_error[j]?)))
        .fold(0.0, f64::max);
    let out = serde_json::json!({
        "n_params": b.n_params,
        "iterations": [b.iterations, d.iterations],
        "converged": [b.converged, d.converged],
        "deviance": [b.deviance, d.deviance],
        "same_aliased": b.aliased == d.aliased,
        "max_rel_diff_beta": beta,
        "max_rel_diff_std_error": se,
        "seconds": [tb, td],
    });
    println!("{out}");
    Ok(())
}
