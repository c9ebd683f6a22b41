//! `fulcrum diagnose`'s outputs: streams the per-row scores of `influence` (exact and/or
//! sketched leverage) into `DIR/diagnostics.parquet`, DFBETAS of the top rows into
//! `DIR/dfbetas.parquet`, and returns the `diagnostics` block of summary.json (with the
//! sketch's summary and, when both are computed, the accuracy of the sketch against exact).

use std::path::Path;

use crate::error::{Error, Result};
use crate::glm::Fit;
use crate::influence::{accuracy, diagnose, sketch, DiagOptions, RowDiagnostics, SketchOptions, SketchRows};
use crate::ingest::Dataset;
use crate::report::parquet::F64TableWriter;

/// Which leverages to compute.
#[derive(Debug, Clone, Copy)]
pub struct Leverage {
    /// Exact leverage and the classic measures (F⁻¹ over the active set).
    pub exact: bool,
    /// The influence sketch.
    pub sketch: Option<SketchOptions>,
}

/// Write diagnostics.parquet (and dfbetas.parquet with exact leverage) under `out`; return
/// the summary block.
pub fn write_diagnostics(
    ds: &Dataset,
    fit: &Fit,
    opts: &DiagOptions,
    leverage: &Leverage,
    out: &Path,
) -> Result<serde_json::Value> {
    if !leverage.exact && leverage.sketch.is_none() {
        return Err(Error::Usage("--leverage: choose at least one of exact, sketch".into()));
    }
    let mut cols: Vec<String> = Vec::new();
    if leverage.exact {
        cols.extend(RowDiagnostics::COLUMNS.iter().map(|c| c.to_string()));
    }
    if leverage.sketch.is_some() {
        cols.extend(SketchRows::COLUMNS.iter().map(|c| c.to_string()));
    }
    let mut w = F64TableWriter::create(&out.join("diagnostics.parquet"), "row", &cols)?;
    // The sketch first: streamed straight out when alone; otherwise kept per chunk (three
    // columns) to be written beside the exact columns and compared with them.
    let mut sketched: Vec<SketchRows> = Vec::new();
    let sketch_summary = match &leverage.sketch {
        Some(so) => Some(sketch(ds, fit, so, |r| {
            if leverage.exact {
                sketched.push(r);
                Ok(())
            } else {
                w.write_owned(r.row, [r.hat_sketch, r.cbar_sketch, r.cooks_d_sketch])
            }
        })?),
        None => None,
    };
    let mut block = serde_json::Map::new();
    block.insert(
        "leverage".into(),
        serde_json::json!({"exact": leverage.exact, "sketch": leverage.sketch.is_some()}),
    );
    if leverage.exact {
        let both = leverage.sketch.is_some();
        let mut chunks = sketched.into_iter();
        // Exact and sketched (hat, cooks_d), kept only to compare them.
        let (mut h, mut c, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (dsum, dfb) = diagnose(ds, fit, opts, |d| {
            if both {
                h.extend_from_slice(&d.hat);
                c.extend_from_slice(&d.cooks_d);
            }
            let (rows, mut cols) = {
                let (r, c) = d.into_columns();
                (r, c.to_vec())
            };
            if let Some(s) = chunks.next() {
                hs.extend_from_slice(&s.hat_sketch);
                cs.extend_from_slice(&s.cooks_d_sketch);
                cols.extend([s.hat_sketch, s.cbar_sketch, s.cooks_d_sketch]);
            }
            w.write_owned(rows, cols)
        })?;
        w.finish()?;
        let names: Vec<String> = dfb.coefs.iter().map(|&j| ds.design().coef_names[j].clone()).collect();
        let mut wb = F64TableWriter::create(&out.join("dfbetas.parquet"), "row", &names)?;
        // One row group: the values transposed to one column per coefficient.
        let dcols: Vec<Vec<f64>> = (0..names.len())
            .map(|k| dfb.values.iter().map(|r| r[k]).collect())
            .collect();
        wb.write_owned(dfb.rows.clone(), dcols)?;
        wb.finish()?;
        if let serde_json::Value::Object(m) = serde_json::to_value(&dsum).map_err(|e| Error::Usage(e.to_string()))? {
            block.extend(m);
        }
        if both {
            block.insert(
                "accuracy".into(),
                serde_json::to_value(accuracy(&h, &c, &hs, &cs)).map_err(|e| Error::Usage(e.to_string()))?,
            );
        }
    } else {
        w.finish()?;
    }
    if let Some(s) = sketch_summary {
        block.insert(
            "sketch".into(),
            serde_json::to_value(s).map_err(|e| Error::Usage(e.to_string()))?,
        );
    }
    Ok(serde_json::Value::Object(block))
}
