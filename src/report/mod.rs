//! Writing results: atomic file writes, `summary.json`, and the R-style coefficient table.
//! Computes no statistics of its own: it formats what `glm` and `influence` return.

pub mod diagnostics;
pub mod html;
pub mod influence;
pub mod parquet;
pub mod svg;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::glm::{Fit, FitOptions, Penalty};
use crate::ingest::Dataset;

/// The temporary name `path` is written under before it is renamed into place:
/// `.<name>.tmp-<pid>` in the same directory (so the rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`. A crash leaves either the old file or none, never half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Create the output directory (or check an existing one is a writable directory), and remove
/// the temporaries a killed earlier run left in it ([`crate::store::remove_stale_temps`]).
pub fn prepare_out_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Usage(format!(
            "--out {} exists and is not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Temporaries of a run that was killed while writing here are removed (never renamed).
    crate::store::remove_stale_temps(dir);
    Ok(dir.to_path_buf())
}

/// One row of the coefficient table.
#[derive(Debug, Clone, Serialize)]
pub struct CoefRow {
    /// Coefficient name.
    pub name: String,
    /// Estimate (None when aliased).
    pub estimate: Option<f64>,
    /// Standard error (None when aliased or penalised).
    pub std_error: Option<f64>,
    /// Estimate / standard error (a t value when the dispersion is estimated).
    pub z_value: Option<f64>,
    /// Two-sided p-value (normal, or Student t with the residual df).
    pub p_value: Option<f64>,
}

/// Whether the fit is a point of a lasso / elastic-net / group-lasso path.
fn on_path(fit: &Fit) -> bool {
    matches!(fit.penalty, Penalty::ElasticNet { .. } | Penalty::Group { .. })
}

/// The coefficient table of a fit (for a path point: the intercept and the non-zero
/// coefficients only).
pub fn coefficients(ds: &Dataset, fit: &Fit) -> Vec<CoefRow> {
    let sparse = on_path(fit);
    let d = ds.design();
    (0..d.n_params())
        .filter(|j| !sparse || fit.kept.binary_search(j).is_ok())
        .map(|j| CoefRow {
            name: d.coef_name(j).into_owned(),
            estimate: (!fit.aliased[j]).then_some(fit.beta[j]),
            std_error: fit.std_error[j],
            z_value: fit.z_value(j),
            p_value: fit.p_value(j),
        })
        .collect()
}

/// The `penalty` block of `summary.json`: type, λ, α and the objective in words.
fn penalty_json(p: &Penalty) -> serde_json::Value {
    match *p {
        Penalty::None => serde_json::json!({"type": "none"}),
        Penalty::Ridge { lambda } => {
            serde_json::json!({"type": "ridge", "lambda": lambda, "objective": "(1/sum(w)) * sum(w_i * dev_i) / 2 + lambda/2 * ||beta||^2, intercept unpenalised, no standardisation"})
        }
        Penalty::ElasticNet { lambda, alpha } => {
            serde_json::json!({"type": if alpha == 1.0 { "lasso" } else { "enet" }, "lambda": lambda, "alpha": alpha, "objective": "glmnet's: (1/sum(w)) * sum(w_i * dev_i) / 2 + lambda * sum_j pf_j * ((1 - alpha)/2 * b_j^2 + alpha * |b_j|), b_j = s_j * beta_j on the standardised scale, intercept unpenalised"})
        }
        Penalty::Group { lambda, alpha } => {
            serde_json::json!({"type": "group", "lambda": lambda, "alpha": alpha, "objective": "(1/sum(w)) * sum(w_i * dev_i) / 2 + lambda * sum_g ((1 - alpha)/2 * pf_g * ||b_g||^2 + alpha * sqrt(|g|) * pf_g * ||b_g||_2), b = s * beta on the standardised scale, intercept unpenalised"})
        }
    }
}

/// The `path` list of `summary.json`: per λ, its value, df, deviance ratio, passes, KKT
/// residual and the names of the non-zero coefficients.
pub fn path_json(ds: &Dataset, path: &crate::glm::Path) -> serde_json::Value {
    let d = ds.design();
    let intercept = d.layout.intercept;
    serde_json::Value::Array(
        path.points
            .iter()
            .map(|pt| {
                serde_json::json!({
                    "lambda": pt.lambda,
                    "df": pt.df,
                    "dev_ratio": pt.dev_ratio,
                    "deviance": pt.deviance,
                    "iterations": pt.iterations,
                    "converged": pt.converged,
                    "kkt_max": pt.kkt_max,
                    "nonzero": pt.beta.iter().filter(|(j, _)| !(intercept && *j == 0)).map(|(j, _)| d.coef_name(*j)).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// `summary.json` of a fit.
pub fn fit_summary(ds: &Dataset, fit: &Fit, opts: &FitOptions, extra_timing: &[(&str, f64)]) -> serde_json::Value {
    let d = ds.design();
    let counts = ds.counts();
    let mut timing = serde_json::Map::new();
    timing.insert(
        "ingest".into(),
        (ds.timings.open_s + ds.timings.build_s + ds.timings.map_s).into(),
    );
    for (k, v) in &fit.timing {
        timing.insert(k.clone(), (*v).into());
    }
    for (k, v) in extra_timing {
        timing.insert(k.to_string(), (*v).into());
    }
    serde_json::json!({
        "fulcrum_version": env!("CARGO_PKG_VERSION"),
        "inputs": ds.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "formula": d.spec.formula,
        "family": fit.family.name(),
        "link": fit.link.name(),
        "penalty": penalty_json(&fit.penalty),
        "n_rows_read": counts.n_rows_read,
        "n_filtered_out": counts.n_filtered_out,
        "n_dropped": counts.n_dropped,
        "n_obs": fit.n_obs,
        "n_params": fit.n_params,
        "rank": fit.rank,
        "coefficients": coefficients(ds, fit),
        "test_statistic": if fit.uses_t() { "t" } else { "z" },
        "deviance": fit.deviance,
        "null_deviance": fit.null_deviance,
        "df_residual": fit.df_residual,
        "df_null": fit.df_null,
        "pearson_chi2": fit.pearson_chi2,
        "aic": fit.aic,
        "dispersion": fit.dispersion,
        "iterations": fit.iterations,
        "iterations_tail": fit.tail.map(|t| serde_json::json!({"iterations": t.iterations, "rows": t.rows})),
        "converged": fit.converged,
        "tol": opts.tol,
        "max_iter": opts.max_iter,
        "warnings": fit.warnings,
        "timing_s": timing,
    })
}

/// Format to `sig` significant digits the way R's `format` prints coefficient tables.
pub(crate) fn signif(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-4..6).contains(&mag) {
        format!("{:.*e}", sig - 1, x)
    } else {
        let decimals = (sig as i32 - 1 - mag).max(0) as usize;
        format!("{:.*}", decimals, x)
    }
}

fn stars(p: f64) -> &'static str {
    if p < 0.001 {
        "***"
    } else if p < 0.01 {
        "**"
    } else if p < 0.05 {
        "*"
    } else if p < 0.1 {
        "."
    } else {
        ""
    }
}

/// R `summary.glm`-style text: coefficient table, dispersion, deviances, AIC, iterations, warnings.
pub fn fit_text(ds: &Dataset, fit: &Fit) -> String {
    use std::fmt::Write as _;
    let rows = coefficients(ds, fit);
    let stat = if fit.uses_t() { "t" } else { "z" };
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).clamp(4, 60);
    let mut s = String::new();
    let _ = writeln!(s, "Formula: {}", ds.design().spec.formula);
    let _ = writeln!(s, "Family: {} (link: {})", fit.family.name(), fit.link.name());
    match fit.penalty {
        Penalty::None => {}
        Penalty::Ridge { lambda } => {
            let _ = writeln!(
                s,
                "Penalty: ridge, lambda = {lambda} (glmnet scaling; no standard errors)"
            );
        }
        Penalty::ElasticNet { lambda, alpha } | Penalty::Group { lambda, alpha } => {
            let kind = if matches!(fit.penalty, Penalty::Group { .. }) {
                "group lasso"
            } else if alpha == 1.0 {
                "lasso"
            } else {
                "elastic net"
            };
            let _ = writeln!(
                s,
                "Penalty: {kind}, lambda = {lambda:.6e}, alpha = {alpha} (glmnet scaling; non-zero coefficients only, no standard errors)"
            );
        }
    }
    let _ = writeln!(s, "\nCoefficients:");
    let _ = writeln!(
        s,
        "{:<w$} {:>12} {:>12} {:>9} {:>10}",
        "",
        "Estimate",
        "Std. Error",
        format!("{stat} value"),
        format!("Pr(>|{stat}|)")
    );
    for r in &rows {
        let est = r.estimate.map_or("NA".into(), |x| signif(x, 6));
        let se = r.std_error.map_or("NA".into(), |x| signif(x, 6));
        let z = r.z_value.map_or("NA".into(), |x| format!("{x:.3}"));
        let (pv, st) = match r.p_value {
            Some(p) if p < 2e-16 => ("< 2e-16".to_string(), stars(p)),
            Some(p) => (signif(p, 3), stars(p)),
            None => ("NA".into(), ""),
        };
        let _ = writeln!(s, "{:<w$} {:>12} {:>12} {:>9} {:>10} {st}", r.name, est, se, z, pv);
    }
    let _ = writeln!(s, "---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1");
    let n_alias = fit.aliased.iter().filter(|&&a| a).count();
    if n_alias > 0 {
        let _ = writeln!(s, "({n_alias} not defined because of singularities)");
    }
    if fit.family.fixed_dispersion() {
        let _ = writeln!(
            s,
            "\n(Dispersion parameter for {} family taken to be 1)",
            fit.family.name()
        );
    } else {
        let _ = writeln!(
            s,
            "\n(Dispersion parameter for {} family taken to be {})",
            fit.family.name(),
            signif(fit.dispersion, 7)
        );
    }
    let _ = writeln!(
        s,
        "\n    Null deviance: {:.1}  on {} degrees of freedom",
        fit.null_deviance, fit.df_null
    );
    let _ = writeln!(
        s,
        "Residual deviance: {:.1}  on {} degrees of freedom",
        fit.deviance, fit.df_residual
    );
    if fit.aic.is_finite() {
        let _ = writeln!(s, "AIC: {:.1}", fit.aic);
    }
    // A penalised fit's count is the whole path's passes over the data, not R's IRLS count.
    let what = match fit.penalty {
        Penalty::ElasticNet { .. } | Penalty::Group { .. } => "Passes over the data (whole path)",
        _ => "Number of Fisher Scoring iterations",
    };
    let _ = writeln!(
        s,
        "\n{what}: {}{}",
        fit.iterations,
        if fit.converged { "" } else { " (not converged)" }
    );
    for wmsg in &fit.warnings {
        let _ = writeln!(s, "Warning: {wmsg}");
    }
    s
}

/// The diagnostics block as text: cut-off counts and the top rows by Cook's distance (exact),
/// each approximation's summary, and its accuracy against exact when both were computed.
pub fn diagnostics_text(block: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if let Some(sum_hat) = block["sum_hat"].as_f64() {
        let _ = writeln!(
            s,
            "\nDiagnostics ({} information): sum(hat) = {:.4}; {} rows with hat > 2p/n, {} with |studentized residual| > 3, {} with Cook's D > 4/n",
            block["information"].as_str().unwrap_or(""),
            sum_hat,
            block["n_high_leverage"],
            block["n_large_residual"],
            block["n_influential"]
        );
        for t in block["top_cooks"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  row {:>10}  cooks_d {:.4e}  hat {:.4}  resid_studentized {:.3}",
                t["row"],
                t["cooks_d"].as_f64().unwrap_or(f64::NAN),
                t["hat"].as_f64().unwrap_or(f64::NAN),
                t["resid_studentized"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    if let Some(sk) = block.get("sketch") {
        let _ = writeln!(
            s,
            "\nInfluence sketch ({}, k = {}, seed {}): sum(hat_sketch) = {:.4} (= rank of the sketch; exact leverage sums to the model's rank)",
            sk["projection"].as_str().unwrap_or(""),
            sk["k"],
            sk["seed"],
            sk["sum_hat_sketch"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if let Some(r) = block.get("randomized") {
        let _ = writeln!(
            s,
            "\nRandomized leverage (epsilon {}, sketch {} rows, JL dimension {}): sum(hat_approx) = {:.4}",
            r["epsilon"],
            r["sketch_rows"],
            r["jl_dim"],
            r["sum_hat_approx"].as_f64().unwrap_or(f64::NAN)
        );
    }
    for (name, a) in block.get("accuracy").and_then(|a| a.as_object()).into_iter().flatten() {
        let _ = writeln!(
            s,
            "{name} vs exact: top-1% overlap {:.3}, top-0.1% overlap {:.3}, Spearman(cooks_d) {:.4}, hat relative error median {:.3} / p99 {:.3}",
            a["top_1pct_overlap"].as_f64().unwrap_or(f64::NAN),
            a["top_01pct_overlap"].as_f64().unwrap_or(f64::NAN),
            a["spearman_cooks_d"].as_f64().unwrap_or(f64::NAN),
            a["hat_rel_error_median"].as_f64().unwrap_or(f64::NAN),
            a["hat_rel_error_p99"].as_f64().unwrap_or(f64::NAN)
        );
    }
    s
}
