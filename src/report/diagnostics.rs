//! `fulcrum diagnose`'s outputs: streams the per-row scores of `influence` (exact leverage,
//! the influence sketch, randomized leverage, in any combination) into
//! `DIR/diagnostics.parquet`, DFBETAS of the top rows into `DIR/dfbetas.parquet` (with exact
//! leverage), and returns the `diagnostics` block of summary.json — with each approximation's
//! summary and, when exact leverage is computed too, each approximation's accuracy.

use std::path::Path;

use crate::error::{Error, Result};
use crate::glm::Fit;
use crate::influence::{
    accuracy, diagnose, randomized_leverage, sketch, ApproxRows, DiagOptions, RandomizedOptions, RowDiagnostics,
    SketchOptions,
};
use crate::ingest::Dataset;
use crate::report::parquet::{commit_all, F64TableWriter};

/// `--leverage auto` computes exact leverage up to this many active columns (F⁻¹ then takes
/// 8·p_A² bytes, 3.2 GB at 20,000, and each row O(nnzᵢ²)), randomized leverage beyond.
pub const AUTO_EXACT_MAX: usize = 20_000;

/// Which leverages to compute.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leverage {
    /// Exact leverage and the classic measures (F⁻¹ over the active set).
    pub exact: bool,
    /// The influence sketch.
    pub sketch: Option<SketchOptions>,
    /// Relative-error randomized leverage.
    pub randomized: Option<RandomizedOptions>,
}

fn json(v: impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::Usage(e.to_string()))
}

/// Write diagnostics.parquet (and dfbetas.parquet with exact leverage) under `out`; return
/// the summary block and the seconds spent writing the Parquet files (encoding, compression,
/// file I/O: `timing_s.diagnostics_output`, part of `timing_s.diagnostics`).
pub fn write_diagnostics(
    ds: &Dataset,
    fit: &Fit,
    opts: &DiagOptions,
    leverage: &Leverage,
    out: &Path,
) -> Result<(serde_json::Value, f64)> {
    let methods = leverage.sketch.is_some() as usize + leverage.randomized.is_some() as usize;
    if !leverage.exact && methods == 0 {
        return Err(Error::Usage(
            "--leverage: choose at least one of exact, sketch, randomized".into(),
        ));
    }
    let mut cols: Vec<String> = Vec::new();
    if leverage.exact {
        cols.extend(RowDiagnostics::COLUMNS.iter().map(|c| c.to_string()));
    }
    if leverage.sketch.is_some() {
        cols.extend(ApproxRows::SKETCH_COLUMNS.iter().map(|c| c.to_string()));
    }
    if leverage.randomized.is_some() {
        cols.extend(ApproxRows::APPROX_COLUMNS.iter().map(|c| c.to_string()));
    }
    let mut w = F64TableWriter::create(&out.join("diagnostics.parquet"), "row", &cols)?;
    let mut block = serde_json::Map::new();
    block.insert(
        "leverage".into(),
        serde_json::json!({"exact": leverage.exact, "sketch": leverage.sketch.is_some(), "randomized": leverage.randomized.is_some()}),
    );
    // Approximations first: streamed straight out when alone, otherwise kept per chunk (three
    // columns each) to be written side by side and compared with the exact values.
    let stream = !leverage.exact && methods == 1;
    let mut kept: Vec<(&str, Vec<ApproxRows>)> = Vec::new();
    let mut keep_or_write =
        |name: &'static str, r: ApproxRows, kept: &mut Vec<(&str, Vec<ApproxRows>)>| -> Result<()> {
            if stream {
                return w.write_owned(r.row, [r.hat, r.cbar, r.cooks_d]);
            }
            match kept.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(r),
                None => kept.push((name, vec![r])),
            }
            Ok(())
        };
    if let Some(so) = &leverage.sketch {
        let s = sketch(ds, fit, so, |r| keep_or_write("sketch", r, &mut kept))?;
        block.insert("sketch".into(), json(s)?);
    }
    if let Some(ro) = &leverage.randomized {
        let s = randomized_leverage(ds, fit, ro, |r| keep_or_write("randomized", r, &mut kept))?;
        block.insert("randomized".into(), json(s)?);
    }
    if stream {
        let (file, written) = w.close_timed()?;
        let t = std::time::Instant::now();
        file.commit()?;
        return Ok((serde_json::Value::Object(block), (written + t.elapsed()).as_secs_f64()));
    }
    let mut chunks: Vec<std::vec::IntoIter<ApproxRows>> =
        kept.iter_mut().map(|(_, v)| std::mem::take(v).into_iter()).collect();
    let names: Vec<&str> = kept.iter().map(|(n, _)| *n).collect();
    if !leverage.exact {
        // Several approximations, no exact values: write them side by side.
        loop {
            let parts: Vec<ApproxRows> = chunks.iter_mut().filter_map(Iterator::next).collect();
            if parts.is_empty() {
                break;
            }
            let row = parts[0].row.clone();
            w.write_owned(row, parts.into_iter().flat_map(|p| [p.hat, p.cbar, p.cooks_d]))?;
        }
        let (file, written) = w.close_timed()?;
        let t = std::time::Instant::now();
        file.commit()?;
        return Ok((serde_json::Value::Object(block), (written + t.elapsed()).as_secs_f64()));
    }
    // Exact (hat, cooks_d) and each approximation's, kept only to compare them.
    let (mut h, mut c) = (Vec::new(), Vec::new());
    let mut approx: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); chunks.len()];
    let (dsum, dfb) = diagnose(ds, fit, opts, |d| {
        if !chunks.is_empty() {
            h.extend_from_slice(&d.hat);
            c.extend_from_slice(&d.cooks_d);
        }
        let (rows, exact_cols) = d.into_columns();
        let mut all: Vec<Vec<f64>> = exact_cols.to_vec();
        for (it, (ah, ac)) in chunks.iter_mut().zip(approx.iter_mut()) {
            if let Some(p) = it.next() {
                ah.extend_from_slice(&p.hat);
                ac.extend_from_slice(&p.cooks_d);
                all.extend([p.hat, p.cbar, p.cooks_d]);
            }
        }
        w.write_owned(rows, all)
    })?;
    let (diag_file, written) = w.close_timed()?;
    let coef_names: Vec<String> = dfb
        .coefs
        .iter()
        .map(|&j| ds.design().coef_name(j).into_owned())
        .collect();
    let mut wb = F64TableWriter::create(&out.join("dfbetas.parquet"), "row", &coef_names)?;
    // One row group: the values transposed to one column per coefficient.
    let dcols: Vec<Vec<f64>> = (0..coef_names.len())
        .map(|k| dfb.values.iter().map(|r| r[k]).collect())
        .collect();
    wb.write_owned(dfb.rows.clone(), dcols)?;
    let (dfb_file, dfb_written) = wb.close_timed()?;
    // Both files' fsyncs at once.
    let t = std::time::Instant::now();
    commit_all(vec![diag_file, dfb_file])?;
    let written = written + dfb_written + t.elapsed();
    if let serde_json::Value::Object(m) = json(&dsum)? {
        block.extend(m);
    }
    if !names.is_empty() {
        let mut acc = serde_json::Map::new();
        for (name, (ah, ac)) in names.iter().zip(&approx) {
            acc.insert(name.to_string(), json(accuracy(&h, &c, ah, ac))?);
        }
        block.insert("accuracy".into(), serde_json::Value::Object(acc));
    }
    Ok((serde_json::Value::Object(block), written.as_secs_f64()))
}
