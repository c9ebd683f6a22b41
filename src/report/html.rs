//! `report.html`: one self-contained page (inline SVG and CSS, no scripts, no network) built
//! from an output directory — summary.json, diagnostics.parquet, influence.parquet,
//! path.parquet — and the top rows' original values re-read from the inputs by row id.
//! Plots stay small for any n: every point is drawn up to [`ALL_POINTS`] rows; beyond, the
//! [`KEEP_TOP`] rows with the largest Cook's distance are drawn and the rest binned.

use std::collections::BinaryHeap;
use std::fmt::Write;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::Value;

use super::svg::{esc, fmt_num, Axis, Plot};
use crate::error::{Error, Result};
use crate::source::InputSet;

/// Up to this many rows every point is drawn.
pub const ALL_POINTS: usize = 20_000;
/// Beyond [`ALL_POINTS`], the rows with the largest Cook's distance drawn as points.
pub const KEEP_TOP: usize = 2_000;
/// Rows in the top table (and labelled in the influence plot: the first 10).
pub const TOP_TABLE: usize = 20;

/// Stream a Parquet table's `row` column and f64 columns `cols` (missing columns are None).
fn scan(path: &Path, cols: &[&str], mut f: impl FnMut(&[u64], &[Option<&[f64]>])) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let schema = b.schema().clone();
    let mut want = vec!["row"];
    want.extend(cols.iter().copied());
    let idx: Vec<usize> = want.iter().filter_map(|c| schema.index_of(c).ok()).collect();
    let mask = ProjectionMask::roots(b.parquet_schema(), idx);
    let r = b
        .with_projection(mask)
        .with_batch_size(65_536)
        .build()
        .map_err(|e| Error::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    for batch in r {
        let batch = batch.map_err(|e| Error::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let rows = batch
            .column_by_name("row")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| Error::File {
                path: path.to_path_buf(),
                msg: "no u64 `row` column".into(),
            })?;
        let vals: Vec<Option<&[f64]>> = cols
            .iter()
            .map(|c| {
                batch
                    .column_by_name(c)
                    .and_then(|a| a.as_primitive_opt::<Float64Type>())
                    .map(|a| a.values().as_ref())
            })
            .collect();
        f(rows.values(), &vals);
    }
    Ok(true)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pt {
    cd: f64,
    row: u64,
    pos: u64,
    hat: f64,
    rs: f64,
}
impl Eq for Pt {}
impl PartialOrd for Pt {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pt {
    // Reversed so that the heap's top is the smallest kept Cook's distance.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.cd.total_cmp(&self.cd).then(self.row.cmp(&o.row))
    }
}

/// What the diagnostics plots need, gathered in two streaming reads.
struct DiagData {
    n: u64,
    /// Points drawn individually (all rows, or the top rows by Cook's distance).
    points: Vec<Pt>,
    /// Whether `points` is every row.
    complete: bool,
    hat_max: f64,
    rs_lo: f64,
    rs_hi: f64,
    cd_max: f64,
    /// 2-D counts over (hat, clipped r_stud) of the rows not in `points`.
    grid: Vec<u32>,
    /// Per index bin: max Cook's distance of the rows not in `points`.
    index_max: Vec<f64>,
    /// Leverage histogram.
    hat_hist: Vec<u64>,
    /// (exact hat, approximate hat) samples, and which approximation.
    agree: Vec<(f64, f64)>,
    agree_name: Option<&'static str>,
}

const GX: usize = 120;
const GY: usize = 80;
const IBINS: usize = 1500;
const HBINS: usize = 50;
const RS_CLIP: f64 = 12.0;

fn diag_data(dir: &Path) -> Result<Option<DiagData>> {
    let path = dir.join("diagnostics.parquet");
    let cols = ["hat", "resid_studentized", "cooks_d", "hat_sketch", "hat_approx"];
    let mut n = 0u64;
    let (mut hat_max, mut rs_lo, mut rs_hi, mut cd_max) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut heap: BinaryHeap<Pt> = BinaryHeap::new();
    let mut all: Vec<Pt> = Vec::new();
    let mut agree_name = None;
    let found = scan(&path, &cols, |rows, v| {
        let (Some(h), Some(r), Some(c)) = (v[0], v[1], v[2]) else {
            return;
        };
        if agree_name.is_none() {
            agree_name = if v[3].is_some() {
                Some("hat_sketch")
            } else if v[4].is_some() {
                Some("hat_approx")
            } else {
                None
            };
        }
        for i in 0..rows.len() {
            let p = Pt {
                cd: c[i],
                row: rows[i],
                pos: n,
                hat: h[i],
                rs: r[i],
            };
            n += 1;
            if !(p.hat.is_finite() && p.rs.is_finite() && p.cd.is_finite()) {
                continue;
            }
            hat_max = hat_max.max(p.hat);
            rs_lo = rs_lo.min(p.rs.max(-RS_CLIP));
            rs_hi = rs_hi.max(p.rs.min(RS_CLIP));
            cd_max = cd_max.max(p.cd);
            if all.len() <= ALL_POINTS {
                all.push(p);
            }
            heap.push(p);
            if heap.len() > KEEP_TOP {
                heap.pop();
            }
        }
    })?;
    if !found || n == 0 {
        return Ok(None);
    }
    let complete = n as usize <= ALL_POINTS && all.len() == n as usize;
    let points: Vec<Pt> = if complete { all } else { heap.into_vec() };
    let cut = if complete {
        f64::INFINITY
    } else {
        points.iter().map(|p| p.cd).fold(f64::INFINITY, f64::min)
    };
    let mut grid = vec![0u32; GX * GY];
    let mut index_max = vec![f64::NAN; IBINS];
    let mut hat_hist = vec![0u64; HBINS];
    let mut agree = Vec::new();
    let step = (n as usize / 5_000).max(1);
    let mut pos = 0u64;
    scan(&path, &cols, |_, v| {
        let (Some(h), Some(r), Some(c)) = (v[0], v[1], v[2]) else {
            return;
        };
        let approx = v[3].or(v[4]);
        for i in 0..h.len() {
            let k = pos;
            pos += 1;
            if !h[i].is_finite() {
                continue;
            }
            let hb = ((h[i] / hat_max.max(1e-300)) * HBINS as f64)
                .floor()
                .clamp(0.0, (HBINS - 1) as f64) as usize;
            hat_hist[hb] += 1;
            if let Some(a) = approx {
                if (k as usize).is_multiple_of(step) && h[i] > 0.0 && a[i] > 0.0 {
                    agree.push((h[i], a[i]));
                }
            }
            if complete || c[i].is_nan() || c[i] >= cut || !r[i].is_finite() {
                continue;
            }
            let gx = ((h[i] / hat_max.max(1e-300)) * GX as f64)
                .floor()
                .clamp(0.0, (GX - 1) as f64) as usize;
            let rc = r[i].clamp(-RS_CLIP, RS_CLIP);
            let gy = (((rc - rs_lo) / (rs_hi - rs_lo).max(1e-300)) * GY as f64)
                .floor()
                .clamp(0.0, (GY - 1) as f64) as usize;
            grid[gy * GX + gx] += 1;
            let ib = (k as f64 / n as f64 * IBINS as f64) as usize;
            let m = &mut index_max[ib.min(IBINS - 1)];
            if m.is_nan() || c[i] > *m {
                *m = c[i];
            }
        }
    })?;
    Ok(Some(DiagData {
        n,
        points,
        complete,
        hat_max,
        rs_lo,
        rs_hi,
        cd_max,
        grid,
        index_max,
        hat_hist,
        agree,
        agree_name,
    }))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn influence_plot(d: &DiagData, cut_hat: f64) -> String {
    let mut pl = Plot::new(
        640.0,
        400.0,
        Axis::linear(0.0, d.hat_max.max(cut_hat * 1.05)),
        Axis::linear(d.rs_lo.min(-3.2), d.rs_hi.max(3.2)),
    );
    if !d.complete {
        let max = d.grid.iter().copied().max().unwrap_or(1).max(1) as f64;
        let (w, h) = (d.hat_max / GX as f64, (d.rs_hi - d.rs_lo) / GY as f64);
        for gy in 0..GY {
            for gx in 0..GX {
                let c = d.grid[gy * GX + gx];
                if c > 0 {
                    let op = 0.15 + 0.85 * (c as f64).ln_1p() / max.ln_1p();
                    let (x0, y0) = (gx as f64 * w, d.rs_lo + gy as f64 * h);
                    pl.rect(x0, y0, x0 + w, y0 + h, "bin", op);
                }
            }
        }
    }
    let mut pts = d.points.clone();
    pts.sort_by(|a, b| a.cd.total_cmp(&b.cd));
    let rmax = 14.0;
    for p in &pts {
        let r = (rmax * (p.cd / d.cd_max.max(1e-300)).sqrt()).max(1.2);
        let title = format!(
            "row {}: hat {:.4}, r_stud {:.2}, Cook's D {:.3e}",
            p.row, p.hat, p.rs, p.cd
        );
        pl.circle(p.hat, p.rs.clamp(-RS_CLIP, RS_CLIP), r, "pt", Some(&title));
    }
    pl.vline(cut_hat, "cut", "2p/n");
    pl.hline(3.0, "cut", "+3");
    pl.hline(-3.0, "cut", "−3");
    for p in pts.iter().rev().take(10) {
        pl.label(p.hat, p.rs.clamp(-RS_CLIP, RS_CLIP), 5.0, -5.0, &p.row.to_string());
    }
    pl.finish("leverage (hat)", "studentized residual", "influence plot")
}

fn index_plot(d: &DiagData, cut_cd: f64) -> String {
    let mut pl = Plot::new(640.0, 300.0, Axis::linear(0.0, d.n as f64), Axis::linear(0.0, d.cd_max));
    if !d.complete {
        for (b, &m) in d.index_max.iter().enumerate() {
            if m.is_finite() {
                let x = (b as f64 + 0.5) / IBINS as f64 * d.n as f64;
                pl.line(&[(x, 0.0), (x, m)], "spike");
            }
        }
    }
    let mut pts = d.points.clone();
    pts.sort_by(|a, b| b.cd.total_cmp(&a.cd));
    for p in pts.iter().rev() {
        let title = format!("row {}: Cook's D {:.3e}", p.row, p.cd);
        if d.complete {
            pl.line(&[(p.pos as f64, 0.0), (p.pos as f64, p.cd)], "spike");
        }
        pl.circle(p.pos as f64, p.cd, 1.6, "pt", Some(&title));
    }
    pl.hline(cut_cd, "cut", "4/n");
    for p in pts.iter().take(5) {
        pl.label(p.pos as f64, p.cd, 4.0, -4.0, &p.row.to_string());
    }
    pl.finish("row (input order)", "Cook's distance", "index plot of Cook's distance")
}

fn hat_histogram(d: &DiagData) -> String {
    let max = d.hat_hist.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut pl = Plot::new(640.0, 260.0, Axis::linear(0.0, d.hat_max), Axis::log10(0.8, max));
    let w = d.hat_max / HBINS as f64;
    for (b, &c) in d.hat_hist.iter().enumerate() {
        if c > 0 {
            pl.rect(b as f64 * w, 0.8, (b + 1) as f64 * w, c as f64, "bar", 1.0);
        }
    }
    pl.finish("leverage (hat)", "rows (log scale)", "histogram of leverage")
}

fn agreement_plot(d: &DiagData) -> Option<String> {
    let name = d.agree_name?;
    if d.agree.is_empty() {
        return None;
    }
    let lo = d.agree.iter().map(|p| p.0.min(p.1)).fold(f64::INFINITY, f64::min);
    let hi = d.agree.iter().map(|p| p.0.max(p.1)).fold(0.0, f64::max);
    let mut pl = Plot::new(420.0, 380.0, Axis::log10(lo, hi), Axis::log10(lo, hi));
    for &(a, b) in &d.agree {
        pl.circle(a, b, 1.3, "pt2", None);
    }
    pl.line(&[(lo, lo), (hi, hi)], "diag");
    Some(pl.finish("exact hat", name, "sketch versus exact leverage"))
}

fn path_plots(dir: &Path, summary: &Value) -> Result<Option<String>> {
    let Some(path) = summary["path"].as_array() else {
        return Ok(None);
    };
    let lambdas: Vec<f64> = path.iter().map(|p| num(&p["lambda"])).collect();
    if lambdas.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    // Coefficient paths from path.parquet: (lambda_index, name, estimate).
    let file = dir.join("path.parquet");
    if file.exists() {
        let f = File::open(&file).map_err(|e| Error::io(&file, e))?;
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .map_err(|e| Error::File {
                path: file.clone(),
                msg: e.to_string(),
            })?;
        let mut series: std::collections::BTreeMap<String, Vec<(usize, f64)>> = Default::default();
        for b in r {
            let b = b.map_err(|e| Error::File {
                path: file.clone(),
                msg: e.to_string(),
            })?;
            let (Some(k), Some(nm), Some(e)) = (
                b.column_by_name("lambda_index")
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
                b.column_by_name("name").and_then(|c| c.as_string_opt::<i32>()),
                b.column_by_name("estimate")
                    .and_then(|c| c.as_primitive_opt::<Float64Type>()),
            ) else {
                continue;
            };
            for i in 0..b.num_rows() {
                if nm.value(i) != "(Intercept)" {
                    series
                        .entry(nm.value(i).to_string())
                        .or_default()
                        .push((k.value(i) as usize, e.value(i)));
                }
            }
        }
        // The 25 coefficients largest at the end of the path.
        let last = lambdas.len() - 1;
        let mut names: Vec<(f64, String)> = series
            .iter()
            .map(|(n, v)| (v.iter().find(|x| x.0 == last).map_or(0.0, |x| x.1.abs()), n.clone()))
            .collect();
        names.sort_by(|a, b| b.0.total_cmp(&a.0));
        names.truncate(25);
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        for (_, n) in &names {
            for &(_, e) in &series[n] {
                lo = lo.min(e);
                hi = hi.max(e);
            }
        }
        let lmin = lambdas.iter().copied().fold(f64::INFINITY, f64::min);
        let lmax = lambdas.iter().copied().fold(0.0, f64::max);
        let mut pl = Plot::new(640.0, 320.0, Axis::log10(lmin, lmax), Axis::linear(lo, hi));
        for (rank, (_, n)) in names.iter().enumerate() {
            let mut v = vec![0.0; lambdas.len()];
            for &(k, e) in &series[n] {
                v[k] = e;
            }
            let pts: Vec<(f64, f64)> = lambdas.iter().copied().zip(v).collect();
            pl.line(&pts, "path");
            // Labels for the 8 largest only (more overlap).
            if rank < 8 {
                if let Some(&(k, e)) = series[n].iter().find(|x| x.0 == last) {
                    pl.label(lambdas[k], e, 2.0, 3.0, n);
                }
            }
        }
        let _ = write!(
            out,
            "<figure>{}<figcaption>Coefficient paths (original scale; the 25 largest at the smallest λ, the 8 largest labelled).</figcaption></figure>",
            pl.finish("λ (log scale)", "coefficient", "lambda path")
        );
    }
    if let Some(cv) = summary["influence"]["alo_cv"].as_array() {
        let pts: Vec<(f64, f64, f64)> = cv
            .iter()
            .map(|p| (num(&p["lambda"]), num(&p["deviance"]), num(&p["deviance_se"])))
            .filter(|p| p.0 > 0.0 && p.1.is_finite())
            .collect();
        if pts.len() > 1 {
            let lo = pts.iter().map(|p| p.1 - p.2).fold(f64::INFINITY, f64::min);
            let hi = pts.iter().map(|p| p.1 + p.2).fold(0.0, f64::max);
            let lmin = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            let lmax = pts.iter().map(|p| p.0).fold(0.0, f64::max);
            let mut pl = Plot::new(640.0, 300.0, Axis::log10(lmin, lmax), Axis::linear(lo, hi));
            for p in &pts {
                pl.line(&[(p.0, p.1 - p.2), (p.0, p.1 + p.2)], "err");
            }
            pl.line(&pts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), "cv");
            if let Some(l) = summary["influence"]["lambda_min"].as_f64() {
                pl.vline(l, "cut", "λ_min");
            }
            if let Some(l) = summary["influence"]["lambda_1se"].as_f64() {
                pl.vline(l, "cut2", "λ_1se");
            }
            let _ = write!(
                out,
                "<figure>{}<figcaption>Approximate leave-one-out CV deviance (± 1 s.e.) along the path, from the one fit.</figcaption></figure>",
                pl.finish("λ (log scale)", "ALO-CV deviance", "ALO cross-validation curve")
            );
        }
    }
    Ok(Some(out))
}

/// Column names and, per found row id, its values as strings.
type OriginalRows = (Vec<String>, Vec<(u64, Vec<String>)>);

/// The original input values of `rows` (global row ids), as (column names, values per row).
fn original_rows(inputs: &[PathBuf], rows: &[u64]) -> Result<OriginalRows> {
    let set = InputSet::open(inputs)?;
    let names: Vec<String> = set.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut found: Vec<(u64, Vec<String>)> = Vec::new();
    for task in set.row_group_tasks() {
        let first = set.files[task.file].first_row_id + task.file_row0;
        let want: Vec<u64> = rows
            .iter()
            .copied()
            .filter(|&r| r >= first && r < first + task.n_rows)
            .collect();
        if want.is_empty() {
            continue;
        }
        set.read_row_group(task, &names, 65_536, |batch, r0| {
            let base = set.files[task.file].first_row_id + r0;
            let cols: Vec<Vec<Option<String>>> = batch
                .columns()
                .iter()
                .map(|c| crate::design::encode::filter_strings(c.as_ref()))
                .collect();
            for &r in &want {
                if r >= base && r < base + batch.num_rows() as u64 {
                    let i = (r - base) as usize;
                    found.push((
                        r,
                        cols.iter()
                            .map(|c| c[i].clone().unwrap_or_else(|| "NA".into()))
                            .collect(),
                    ));
                }
            }
            Ok(())
        })?;
    }
    Ok((names, found))
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1080px;margin:0 auto;padding:20px 28px 60px}h1{font-size:24px;margin:8px 0 2px}h2{font-size:18px;margin:30px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 14px}table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{padding:3px 9px;border-bottom:1px solid #e6e9ee;text-align:right;white-space:nowrap}th{background:#f0f2f5;font-weight:600}td.l,th.l{text-align:left}
.warn{background:#fff4e0;border-left:4px solid #e69b00;padding:6px 10px;margin:6px 0}.grid{display:flex;flex-wrap:wrap;gap:18px}figure{margin:8px 0;background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:6px}figcaption{color:#5b6475;font-size:12.5px;max-width:640px;padding:2px 6px 4px}
.scroll{overflow-x:auto;max-width:100%}.coefs{max-height:460px;overflow-y:auto;display:inline-block;border:1px solid #e3e6eb}svg text{font:11px system-ui,sans-serif;fill:#333}svg .ax{font-size:12px;fill:#222}svg .ref{fill:#b3261e;font-size:10.5px}svg .lab{font-size:10.5px;fill:#0b3d91;font-weight:600}
svg .frame{fill:#fff;stroke:#c9ced6}svg .tick{stroke:#9aa1ad}svg .pt{fill:#1f6feb;fill-opacity:.45;stroke:#0b3d91;stroke-width:.5}svg .pt2{fill:#1f6feb;fill-opacity:.35}svg .bin{fill:#5b6475}
svg .cut{stroke:#b3261e;stroke-dasharray:5 4;stroke-width:1.2}svg .cut2{stroke:#e69b00;stroke-dasharray:3 3;stroke-width:1.2}svg .spike{stroke:#1f6feb;stroke-opacity:.55;stroke-width:1}svg .bar{fill:#1f6feb;fill-opacity:.7}
svg .path{fill:none;stroke:#1f6feb;stroke-opacity:.7;stroke-width:1.2}svg .cv{fill:none;stroke:#b3261e;stroke-width:1.6}svg .err{stroke:#999;stroke-width:1}svg .diag{stroke:#b3261e;stroke-dasharray:4 3;fill:none}
.kv td:first-child{text-align:left;color:#5b6475}.note{color:#5b6475;font-size:12.5px}";

/// Build `DIR/report.html` from the outputs in `dir` (written atomically); returns its path.
pub fn write_report(dir: &Path) -> Result<PathBuf> {
    let spath = dir.join("summary.json");
    let text = std::fs::read_to_string(&spath).map_err(|e| Error::io(&spath, e))?;
    let s: Value = serde_json::from_str(&text).map_err(|e| Error::File {
        path: spath.clone(),
        msg: format!("not a fulcrum summary.json: {e}"),
    })?;
    let mut h = String::new();
    let title = format!("fulcrum report: {}", s["formula"].as_str().unwrap_or(""));
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&title)
    );
    let inputs: Vec<String> = s["inputs"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let _ = write!(
        h,
        "<h1>Which rows move this model?</h1><p class=\"sub\"><code>{}</code> — {} / {} on {} rows of {} (fulcrum {})</p>",
        esc(s["formula"].as_str().unwrap_or("")),
        esc(s["family"].as_str().unwrap_or("")),
        esc(s["link"].as_str().unwrap_or("")),
        s["n_obs"],
        esc(&inputs.join(", ")),
        esc(s["fulcrum_version"].as_str().unwrap_or(""))
    );
    // Model summary.
    h.push_str("<h2>Model</h2>");
    if let Some(w) = s["warnings"].as_array() {
        for x in w {
            let _ = write!(h, "<div class=\"warn\">{}</div>", esc(x.as_str().unwrap_or("")));
        }
    }
    let _ = write!(
        h,
        "<table class=\"kv\"><tr><td>deviance</td><td>{}</td><td>null deviance</td><td>{}</td></tr><tr><td>AIC</td><td>{}</td><td>dispersion</td><td>{}</td></tr><tr><td>iterations</td><td>{}</td><td>converged</td><td>{}</td></tr><tr><td>rows read</td><td>{}</td><td>filtered out / dropped (NA)</td><td>{} / {}</td></tr></table>",
        fmt_num(num(&s["deviance"])),
        fmt_num(num(&s["null_deviance"])),
        fmt_num(num(&s["aic"])),
        fmt_num(num(&s["dispersion"])),
        s["iterations"],
        s["converged"],
        s["n_rows_read"],
        s["n_filtered_out"],
        s["n_dropped"]
    );
    let stat = s["test_statistic"].as_str().unwrap_or("z");
    let _ = write!(
        h,
        "<div class=\"scroll coefs\"><table><tr><th class=\"l\">coefficient</th><th>estimate</th><th>std. error</th><th>{stat} value</th><th>Pr(&gt;|{stat}|)</th></tr>"
    );
    let coefs = s["coefficients"].as_array().cloned().unwrap_or_default();
    let shown = 60;
    for c in coefs.iter().take(shown) {
        let f = |k: &str| c[k].as_f64().map_or("—".to_string(), |v| super::signif(v, 5));
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c["name"].as_str().unwrap_or("")),
            if c["estimate"].is_null() {
                "NA (aliased)".into()
            } else {
                f("estimate")
            },
            f("std_error"),
            f(if stat == "t" { "t_value" } else { "z_value" }),
            f("p_value")
        );
    }
    h.push_str("</table></div>");
    if coefs.len() > shown {
        let _ = write!(
            h,
            "<p class=\"note\">{} more coefficients in summary.json.</p>",
            coefs.len() - shown
        );
    }
    // Diagnostics.
    let d = diag_data(dir)?;
    let diag = &s["diagnostics"];
    if let Some(d) = &d {
        let n = d.n as f64;
        let p = num(&s["rank"]);
        let cut_hat = diag["cutoffs"]["hat"].as_f64().unwrap_or(2.0 * p / n);
        let cut_cd = diag["cutoffs"]["cooks_d"].as_f64().unwrap_or(4.0 / n);
        h.push_str("<h2>Influence</h2>");
        let _ = write!(
            h,
            "<p>{} rows with leverage above 2p/n = {}, {} with |studentized residual| &gt; 3, {} with Cook's distance above 4/n = {}.{}</p>",
            diag["n_high_leverage"],
            fmt_num(cut_hat),
            diag["n_large_residual"],
            diag["n_influential"],
            fmt_num(cut_cd),
            if d.complete {
                String::new()
            } else {
                format!(
                    " Plots show the {} rows with the largest Cook's distance as points and the other {} rows binned (shaded by count).",
                    d.points.len(),
                    d.n as usize - d.points.len()
                )
            }
        );
        h.push_str("<div class=\"grid\">");
        let _ = write!(
            h,
            "<figure>{}<figcaption>Influence plot: studentized residual against leverage; point area ∝ Cook's distance; dashed lines at 2p/n and ±3; the 10 most influential rows labelled by row id (hover for values).</figcaption></figure>",
            influence_plot(d, cut_hat)
        );
        let _ = write!(
            h,
            "<figure>{}<figcaption>Cook's distance by row (input order) with the 4/n line.</figcaption></figure>",
            index_plot(d, cut_cd)
        );
        let _ = write!(
            h,
            "<figure>{}<figcaption>Distribution of leverage.</figcaption></figure>",
            hat_histogram(d)
        );
        if let Some(a) = agreement_plot(d) {
            let _ = write!(
                h,
                "<figure>{a}<figcaption>Approximate against exact leverage (a sample of rows; the dashed line is equality).</figcaption></figure>"
            );
        }
        h.push_str("</div>");
        // Top rows with their original values.
        let mut top = d.points.clone();
        top.sort_by(|a, b| b.cd.total_cmp(&a.cd).then(a.row.cmp(&b.row)));
        top.truncate(TOP_TABLE);
        let ids: Vec<u64> = top.iter().map(|p| p.row).collect();
        let mut selfinf: std::collections::HashMap<u64, (f64, f64)> = Default::default();
        scan(
            &dir.join("influence.parquet"),
            &["self_influence", "loo_eta"],
            |rows, v| {
                if let (Some(si), Some(le)) = (v[0], v[1]) {
                    for (i, r) in rows.iter().enumerate() {
                        if ids.contains(r) {
                            selfinf.insert(*r, (si[i], le[i]));
                        }
                    }
                }
            },
        )?;
        let orig = original_rows(&inputs.iter().map(PathBuf::from).collect::<Vec<_>>(), &ids);
        h.push_str("<h2>Most influential rows</h2><div class=\"scroll\"><table><tr><th>row</th><th>Cook's D</th><th>hat</th><th>r_stud</th><th>self-infl.</th><th>LOO η</th>");
        let (names, vals) = match orig {
            Ok(x) => x,
            Err(e) => {
                let _ = write!(
                    h,
                    "<div class=\"warn\">original values unavailable: {}</div>",
                    esc(&e.to_string())
                );
                (Vec::new(), Vec::new())
            }
        };
        for n in &names {
            let _ = write!(h, "<th class=\"l\">{}</th>", esc(n));
        }
        h.push_str("</tr>");
        for p in &top {
            let (si, le) = selfinf.get(&p.row).copied().unwrap_or((f64::NAN, f64::NAN));
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.4e}</td><td>{:.4}</td><td>{:.3}</td><td>{}</td><td>{}</td>",
                p.row,
                p.cd,
                p.hat,
                p.rs,
                if si.is_nan() { "—".into() } else { format!("{si:.3e}") },
                if le.is_nan() { "—".into() } else { format!("{le:.3}") }
            );
            if let Some((_, v)) = vals.iter().find(|(r, _)| *r == p.row) {
                for x in v {
                    let _ = write!(h, "<td class=\"l\">{}</td>", esc(x));
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div><p class=\"note\">Row ids are 0-based positions in the input files (in sorted path order), as in diagnostics.parquet.</p>");
    }
    if let Some(loo) = s["influence"].get("loo") {
        let _ = write!(
            h,
            "<h2>Leave-one-out</h2><p>Approximate leave-one-out deviance {} (± {}) against {} in sample{}; Σ hat = {}. Every row's LOO prediction, loss and self-influence: influence.parquet.</p>",
            fmt_num(num(&loo["deviance"])),
            fmt_num(num(&loo["deviance_se"])),
            fmt_num(num(&loo["insample_deviance"])),
            loo["misclassification"]
                .as_f64()
                .map_or(String::new(), |m| format!("; LOO misclassification {:.2} %", 100.0 * m)),
            fmt_num(num(&loo["sum_hat"]))
        );
        if let Some(r) = s["influence"]["loo_refinement"]["rows"].as_array() {
            let _ = write!(
                h,
                "<p class=\"note\">{} rows with leverage above {} take their values from {} Fisher-scoring steps on the data without them (--loo-refine).</p>",
                r.len(),
                fmt_num(num(&s["influence"]["loo_refinement"]["above"])),
                fmt_num(num(&s["influence"]["loo_refinement"]["steps"]))
            );
        } else if let Some(note) = s["influence"]["loo_note"].as_str() {
            let _ = write!(h, "<p class=\"note\">{}</p>", esc(note));
        }
    }
    if let Some(p) = path_plots(dir, &s)? {
        let _ = write!(h, "<h2>Penalised path</h2><div class=\"grid\">{p}</div>");
    }
    // Timings.
    if let Some(t) = s["timing_s"].as_object() {
        h.push_str("<h2>Timings</h2><table class=\"kv\">");
        for (k, v) in t {
            let _ = write!(h, "<tr><td>{}</td><td>{:.3} s</td></tr>", esc(k), num(v));
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"note\">Generated by fulcrum from the files in this directory; <code>fulcrum report DIR</code> rebuilds it.</p></main></body></html>\n");
    let out = dir.join("report.html");
    super::write_atomic(&out, h.as_bytes())?;
    Ok(out)
}
