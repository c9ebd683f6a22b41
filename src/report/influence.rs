//! `fulcrum influence` and `fulcrum prune` outputs: streams the per-row answers of
//! [`crate::influence::afif`] into `DIR/influence.parquet`, per-test attributions into
//! `DIR/attribution.parquet`, the rows kept by a prune (all input columns) into
//! `DIR/kept_rows.parquet`, and returns the JSON blocks for summary.json / prune.json.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use serde_json::json;

use crate::error::{Error, Result};
use crate::glm::{Fit, Path as GlmPath};
use crate::influence::{
    diagnose, refit_without, Afif, DiagOptions, LooRefinePick, LooRefinement, LooRows, LooSummary, TestRow, TopK,
};
use crate::ingest::Dataset;
use crate::report::parquet::{F64TableWriter, TableWriter};
use crate::source::InputSet;

fn js(v: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The fairness reference set (None: the training rows) and each row id's group (0 = A, 1 = B).
pub type ParityInput<'a> = (Option<&'a [TestRow]>, &'a (dyn Fn(u64) -> Option<u8> + Sync));

/// (row id, value) pairs.
pub type RowValues = Vec<(u64, f64)>;

/// `loo`: write `row, eta, loo_eta, loo_loss, self_influence, hat` to `file`.
pub fn write_loo(afif: &Afif, file: &Path) -> Result<LooSummary> {
    write_loo_seen(afif, file, |_| {})
}

/// [`write_loo`], showing each chunk's rows to `seen` first.
fn write_loo_seen(afif: &Afif, file: &Path, mut seen: impl FnMut(&LooRows)) -> Result<LooSummary> {
    let cols: Vec<String> = ["eta", "loo_eta", "loo_loss", "self_influence", "hat"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut w = F64TableWriter::create(file, "row", &cols)?;
    let s = afif.loo(|o| {
        seen(&o);
        w.write_owned(o.row, [o.eta, o.loo_eta, o.loo_loss, o.self_influence, o.hat])
    })?;
    w.finish()?;
    Ok(s)
}

/// How `--task loo` refines (`--loo-refine K --loo-refine-above H --loo-refine-steps N`).
#[derive(Debug, Clone, Copy)]
pub struct LooRefineOptions {
    /// At most this many rows (0: none).
    pub rows: usize,
    /// Leverage a row must exceed.
    pub above: f64,
    /// Fisher-scoring steps per row.
    pub steps: usize,
}

/// [`write_loo`] with the highest-leverage rows refined ([`Afif::refine_loo_rows`]): the rows
/// are picked while the one-step values are written; when there are any, they are refined and
/// the file is written again (replacing the first, atomically). No extra pass when no row
/// qualifies.
pub fn write_loo_refined(
    afif: &mut Afif,
    file: &Path,
    path: Option<(&GlmPath, usize)>,
    opts: LooRefineOptions,
) -> Result<(LooSummary, Option<LooRefinement>)> {
    if opts.rows == 0 {
        return Ok((write_loo(afif, file)?, None));
    }
    afif.check_refine()?;
    let mut pick = LooRefinePick::new(opts.rows, opts.above);
    let s = write_loo_seen(afif, file, |o| pick.offer(o))?;
    let rows = pick.rows();
    // The one-step file is complete: if refining fails, it must not stay behind looking final.
    let rep = afif
        .refine_loo_rows(path, &rows, opts.above, opts.steps)
        .inspect_err(|_| {
            let _ = std::fs::remove_file(file);
        })?;
    if rows.is_empty() {
        return Ok((s, Some(rep)));
    }
    let s = write_loo(afif, file).inspect_err(|_| {
        let _ = std::fs::remove_file(file);
    })?;
    Ok((s, Some(rep)))
}

/// Per-row effects of a functional with solved `u`: `row, <name>` (first order) and, when M is
/// factored, `<name>_newton`; `extra(first, newton)` may add one more column (e.g. the gap
/// reduction). Returns the top-10 rows by |value| (Newton when present) with both signs.
pub fn write_effects(
    afif: &Afif,
    u: &[f64],
    name: &str,
    extra: Option<(&str, &dyn Fn(f64) -> f64)>,
    file: &Path,
) -> Result<(RowValues, RowValues)> {
    let mut cols = vec![name.to_string()];
    if afif.has_leverage() {
        cols.push(format!("{name}_newton"));
    }
    if let Some((e, _)) = extra {
        cols.push(e.to_string());
    }
    let mut w = F64TableWriter::create(file, "row", &cols)?;
    let (mut hi, mut lo) = (TopK::new(10), TopK::new(10));
    afif.row_effects(u, |ids, first, newton| {
        let best = newton.as_ref().unwrap_or(&first);
        for (&r, &v) in ids.iter().zip(best) {
            hi.push(r, v);
            lo.push(r, -v);
        }
        let mut out = vec![first.clone()];
        let e = extra.map(|(_, f)| best.iter().map(|&v| f(v)).collect::<Vec<f64>>());
        if let Some(n) = newton {
            out.push(n);
        }
        if let Some(e) = e {
            out.push(e);
        }
        w.write_owned(ids.to_vec(), out)
    })?;
    w.finish()?;
    Ok((
        hi.into_sorted(),
        lo.into_sorted().into_iter().map(|(r, v)| (r, -v)).collect(),
    ))
}

/// `attribution.parquet`: `test_row, rank, train_row, influence` for each test row's top rows.
pub fn write_attribution(tests: &[TestRow], top: &[Vec<(u64, f64)>], file: &Path) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("test_row", DataType::UInt64, false),
        Field::new("rank", DataType::UInt64, false),
        Field::new("train_row", DataType::UInt64, false),
        Field::new("influence", DataType::Float64, false),
    ]));
    let mut w = TableWriter::create_numeric(file, schema)?;
    let (mut t, mut r, mut j, mut v) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, list) in tests.iter().zip(top) {
        for (k, &(train, val)) in list.iter().enumerate() {
            t.push(row.row);
            r.push(k as u64);
            j.push(train);
            v.push(val);
        }
    }
    w.write_arrays(vec![
        Arc::new(UInt64Array::from(t)) as ArrayRef,
        Arc::new(UInt64Array::from(r)),
        Arc::new(UInt64Array::from(j)),
        Arc::new(Float64Array::from(v)),
    ])?;
    w.finish()
}

/// What ranks rows for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankBy {
    /// Cook's distance (exact diagnostics).
    CooksD,
    /// Pregibon's C-bar (exact diagnostics).
    Cbar,
    /// ℓ′²xᵀM⁻¹x.
    SelfInfluence,
    /// Reduction of the demographic-parity gap when removed (needs a group).
    Fairness,
}

impl RankBy {
    /// Parse `cooks_d|cbar|self_influence|fairness`.
    pub fn parse(s: &str) -> Result<RankBy> {
        Ok(match s {
            "cooks_d" => RankBy::CooksD,
            "cbar" => RankBy::Cbar,
            "self_influence" => RankBy::SelfInfluence,
            "fairness" => RankBy::Fairness,
            _ => {
                return Err(Error::Usage(format!(
                    "--by must be cooks_d, cbar, self_influence or fairness, got '{s}'"
                )))
            }
        })
    }
    /// Name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            RankBy::CooksD => "cooks_d",
            RankBy::Cbar => "cbar",
            RankBy::SelfInfluence => "self_influence",
            RankBy::Fairness => "fairness",
        }
    }
}

/// Rows to remove: the `top` largest scores, or every row with score ≥ `threshold`. For
/// fairness the score is the parity-gap reduction (needs `parity`: the reference rows and the
/// group of each row id).
pub fn select_rows(
    afif: &mut Afif,
    by: RankBy,
    top: Option<usize>,
    threshold: Option<f64>,
    parity: Option<ParityInput>,
) -> Result<Vec<(u64, f64)>> {
    let mut keep = Selector::new(top, threshold)?;
    match by {
        RankBy::CooksD | RankBy::Cbar => {
            let opts = DiagOptions {
                observed: false,
                top_k: 0,
            };
            diagnose(afif.ds, afif.fit, &opts, |d| {
                let v = if by == RankBy::CooksD { &d.cooks_d } else { &d.cbar };
                for (&r, &x) in d.row.iter().zip(v) {
                    keep.push(r, x);
                }
                Ok(())
            })?;
        }
        RankBy::SelfInfluence => {
            afif.loo(|o| {
                for (&r, &x) in o.row.iter().zip(&o.self_influence) {
                    keep.push(r, x);
                }
                Ok(())
            })?;
        }
        RankBy::Fairness => {
            let (rows, group) = parity.ok_or_else(|| Error::Usage("--by fairness needs --group-col".into()))?;
            let par = afif.parity_gradient(rows, group)?;
            let u = afif.solve(&par.gradient)?;
            let sign = par.gap.signum();
            afif.row_effects(&u, |ids, first, newton| {
                let best = newton.unwrap_or(first);
                for (&r, &v) in ids.iter().zip(&best) {
                    keep.push(r, -sign * v);
                }
                Ok(())
            })?;
        }
    }
    Ok(keep.finish())
}

/// Top-K or threshold selection over a stream.
struct Selector {
    top: Option<TopK>,
    threshold: Option<f64>,
    over: Vec<(u64, f64)>,
}

impl Selector {
    fn new(top: Option<usize>, threshold: Option<f64>) -> Result<Selector> {
        match (top, threshold) {
            (Some(_), Some(_)) | (None, None) => {
                Err(Error::Usage("give exactly one of --top K and --threshold T".into()))
            }
            (Some(k), None) => Ok(Selector {
                top: Some(TopK::new(k)),
                threshold: None,
                over: Vec::new(),
            }),
            (None, Some(t)) => Ok(Selector {
                top: None,
                threshold: Some(t),
                over: Vec::new(),
            }),
        }
    }
    fn push(&mut self, row: u64, v: f64) {
        if let Some(t) = &mut self.top {
            t.push(row, v);
        } else if self.threshold.is_some_and(|t| v >= t) {
            self.over.push((row, v));
        }
    }
    fn finish(self) -> Vec<(u64, f64)> {
        match self.top {
            Some(t) => t.into_sorted(),
            None => {
                let mut v = self.over;
                v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                v
            }
        }
    }
}

/// Predicted (and optionally actual) effect of removing `rows`: the first-order Δβ, `steps`
/// proximal Fisher steps, and with `verify` the converged refit. Returns the JSON block.
#[allow(clippy::too_many_arguments)]
pub fn unlearn_block(
    afif: &mut Afif,
    path: Option<(&GlmPath, usize)>,
    rows: &[u64],
    steps: usize,
    verify: bool,
    test: Option<&[TestRow]>,
) -> Result<(serde_json::Value, Vec<f64>)> {
    let (ds, fit) = (afif.ds, afif.fit);
    let design = ds.design();
    let mut sorted = rows.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let (reduced, found) = ds.without_rows(&sorted);
    if found as usize != sorted.len() {
        return Err(Error::Usage(format!(
            "{} of the {} rows to remove are not rows of the fitted data (row ids are 0-based input rows)",
            sorted.len() - found as usize,
            sorted.len()
        )));
    }
    let t0 = std::time::Instant::now();
    let first = afif.removal_first_order(|r| sorted.binary_search(&r).is_ok())?;
    let t_first = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let pred = refit_without(&reduced, fit, path, Some(steps))?;
    let t_pred = t1.elapsed().as_secs_f64();
    let p = fit.beta.len();
    let mut first_full = vec![0.0; p];
    for (k, &j) in fit.kept.iter().enumerate() {
        first_full[j] = first[k];
    }
    let actual = if verify {
        let t2 = std::time::Instant::now();
        let r = refit_without(&reduced, fit, path, None)?;
        Some((r, t2.elapsed().as_secs_f64()))
    } else {
        None
    };
    let l2 = |a: &[f64]| a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let d_pred = diff(&pred.beta, &fit.beta);
    let mut coefs = Vec::new();
    for j in 0..p {
        let mut c = json!({
            "name": design.coef_name(j),
            "estimate": fit.beta[j],
            "predicted": pred.beta[j],
            "change": d_pred[j],
            "change_first_order": first_full[j],
        });
        if let Some((a, _)) = &actual {
            c["actual"] = a.beta[j].into();
            c["actual_change"] = (a.beta[j] - fit.beta[j]).into();
        }
        if fit.beta[j] != 0.0 || pred.beta[j] != 0.0 || actual.as_ref().is_some_and(|(a, _)| a.beta[j] != 0.0) {
            coefs.push(c);
        }
    }
    let mut block = json!({
        "removed": sorted.len(),
        "steps": pred.steps,
        "converged": pred.converged,
        "warnings": js(&pred.warnings),
        "deviance_before": fit.deviance,
        "deviance_predicted": pred.deviance,
        "coefficients": coefs,
        "timing_s": {"first_order": t_first, "steps": t_pred},
    });
    if sorted.len() <= 10_000 {
        block["removed_rows"] = js(&sorted);
    }
    if let Some(test) = test {
        block["test_metrics"] = json!({
            "before": test_metrics(fit, &fit.beta, test),
            "predicted": test_metrics(fit, &pred.beta, test),
        });
    }
    if let Some((a, secs)) = &actual {
        let d_act = diff(&a.beta, &fit.beta);
        let denom = l2(&d_act);
        block["deviance_actual"] = a.deviance.into();
        block["refit_warnings"] = js(&a.warnings);
        block["refit_converged"] = a.converged.into();
        block["refit_steps"] = a.steps.into();
        block["timing_s"]["refit"] = (*secs).into();
        block["errors"] = json!({
            "relative_l2_change": l2(&diff(&d_pred, &d_act)) / denom,
            "relative_l2_change_first_order": l2(&diff(&first_full, &d_act)) / denom,
            "deviance": pred.deviance - a.deviance,
        });
        if let Some(test) = test {
            block["test_metrics"]["actual"] = test_metrics(fit, &a.beta, test);
        }
    }
    Ok((block, pred.beta))
}

/// Test-set metrics at β: mean deviance (per unit weight) and, for the binomial, the
/// misclassification rate.
pub fn test_metrics(fit: &Fit, beta: &[f64], test: &[TestRow]) -> serde_json::Value {
    let (mut dev, mut wrong, mut sa) = (0.0, 0.0, 0.0);
    for r in test {
        if r.a == 0.0 {
            continue;
        }
        let eta: f64 = r.x.iter().map(|&(j, x)| x * beta[j]).sum::<f64>() + r.offset;
        let mu = fit.link.inverse(eta);
        dev += r.a * fit.family.unit_deviance(r.y, mu);
        if (mu > 0.5) != (r.y > 0.5) {
            wrong += r.a;
        }
        sa += r.a;
    }
    let mut v = json!({"n": test.len(), "deviance": dev / sa});
    if fit.family == crate::glm::Family::Binomial {
        v["misclassification"] = (wrong / sa).into();
    }
    v
}

/// Write every fitted row of the inputs except `removed` (all input columns, input order) to
/// `file`, atomically: the data a user refits elsewhere.
pub fn write_kept_rows(ds: &Dataset, removed: &[u64], file: &Path) -> Result<u64> {
    let mut fitted: Vec<u64> = ds
        .cache
        .par_map(|_, v| {
            (0..v.n)
                .filter(|&i| crate::glm::irls::response(&v, i).1 > 0.0)
                .map(|i| v.row_id[i])
                .collect::<Vec<u64>>()
        })
        .into_iter()
        .flatten()
        .collect();
    fitted.sort_unstable();
    let mut rm = removed.to_vec();
    rm.sort_unstable();
    let keep = |r: u64| fitted.binary_search(&r).is_ok() && rm.binary_search(&r).is_err();
    let set = InputSet::open(&ds.inputs)?;
    let cols: Vec<String> = set.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut writer: Option<TableWriter> = None;
    let mut written = 0u64;
    for task in set.row_group_tasks() {
        let first = set.files[task.file].first_row_id;
        set.read_row_group(task, &cols, 65_536, |batch, r0| {
            let w = match &mut writer {
                Some(w) => w,
                // The inputs' own schema, metadata included (a sparse column's declared width
                // lives there), so the kept rows read back exactly like the inputs.
                None => writer.insert(TableWriter::create(file, set.schema.clone())?),
            };
            let n = batch.num_rows();
            let mut i = 0;
            while i < n {
                if !keep(first + r0 + i as u64) {
                    i += 1;
                    continue;
                }
                let s = i;
                while i < n && keep(first + r0 + i as u64) {
                    i += 1;
                }
                let part = batch.slice(s, i - s);
                written += part.num_rows() as u64;
                w.write_arrays(part.columns().to_vec())?;
            }
            Ok(())
        })?;
    }
    match writer {
        Some(w) => w.finish()?,
        None => return Err(Error::Input("no input rows to write".into())),
    }
    Ok(written)
}
