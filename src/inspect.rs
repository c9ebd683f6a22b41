//! `fulcrum inspect`: what the design looks like after ingest — row counts, blocks, levels,
//! nnz, coefficient names, cache location and timings.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

use crate::design::Design;
use crate::ingest::{CacheStatus, Dataset, IngestTimings};

/// The coefficient names of a design in layout order, serialised as a list of strings. They are
/// computed while being serialised or iterated, never held: the text report does not show them,
/// and a sparse block can be tens of millions of columns wide.
#[derive(Debug, Clone)]
pub struct CoefNames(Design);

impl CoefNames {
    /// Number of names (p).
    pub fn len(&self) -> usize {
        self.0.n_params()
    }

    /// Whether the design has no columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names in layout order (see [`Design::coef_name`]).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Cow<'_, str>> + '_ {
        self.0.coef_names()
    }
}

impl Serialize for CoefNames {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// One categorical term in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CategoricalInfo {
    /// Column name.
    pub column: String,
    /// Number of levels present in the rows used.
    pub n_levels: usize,
    /// Design columns it contributes (levels minus the dropped reference).
    pub n_columns: usize,
    /// Reference level (dropped), if any.
    pub reference: Option<String>,
    /// All levels, sorted.
    pub levels: Vec<String>,
}

/// One sparse term in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SparseInfo {
    /// Column name.
    pub column: String,
    /// Width (declared in metadata, else max index + 1).
    pub width: u64,
    /// Whether the width came from the file's metadata.
    pub declared: bool,
}

/// Per-block sizes.
#[derive(Debug, Clone, Serialize)]
pub struct Blocks {
    /// Whether the design has an intercept.
    pub intercept: bool,
    /// Dense (numeric) columns, by coefficient name.
    pub dense: Vec<String>,
    /// Categorical terms.
    pub categorical: Vec<CategoricalInfo>,
    /// Sparse terms.
    pub sparse: Vec<SparseInfo>,
}

/// Cache facts.
#[derive(Debug, Clone, Serialize)]
pub struct CacheInfo {
    /// Cache directory.
    pub path: String,
    /// `reused`, `built`, or `rebuilt: <reason>`.
    pub status: String,
    /// Number of chunk files.
    pub chunks: usize,
    /// Bytes of chunk files.
    pub bytes: u64,
}

/// Everything `fulcrum inspect` reports; serialised as its `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// Input files, sorted.
    pub inputs: Vec<String>,
    /// The formula.
    pub formula: String,
    /// Rows in the input files.
    pub n_rows_read: u64,
    /// Rows removed by `--filter`.
    pub n_filtered_out: u64,
    /// Rows dropped for missing values.
    pub n_dropped: u64,
    /// Rows in the model.
    pub n_obs: u64,
    /// Number of coefficients.
    pub n_params: usize,
    /// Stored nonzeros of the sparse block.
    pub sparse_nnz: u64,
    /// Nonzeros of the whole design X (intercept and dense entries, non-reference categorical
    /// entries, and sparse entries).
    pub nnz: u64,
    /// Per-block sizes.
    pub blocks: Blocks,
    /// Coefficient names in design order (computed when serialised).
    pub coef_names: CoefNames,
    /// The chunk cache.
    pub cache: CacheInfo,
    /// Timings, seconds.
    pub timings: IngestTimings,
}

/// Build the report for a loaded dataset (from the manifest alone).
pub fn inspect(ds: &Dataset) -> InspectReport {
    let d = ds.design();
    let layout = &d.layout;
    let counts = ds.counts();
    // From the manifest (counted at build): inspect never touches the mapped chunk data.
    let chunks = &ds.cache.manifest().chunks;
    let sparse_nnz: u64 = chunks.iter().map(|c| c.nnz).sum();
    let cat_nz: u64 = chunks.iter().map(|c| c.cat_nnz).sum();
    let dense_nz = counts.n_obs * (layout.intercept as u64 + layout.n_dense as u64);
    let categorical = d
        .spec
        .categorical
        .iter()
        .zip(&d.levels)
        .zip(&layout.cats)
        .map(|((t, lv), blk)| CategoricalInfo {
            column: t.column.clone(),
            n_levels: lv.len(),
            n_columns: blk.width(),
            reference: if blk.drop_first { lv.first().cloned() } else { None },
            levels: lv.clone(),
        })
        .collect();
    let sparse = d
        .spec
        .sparse
        .iter()
        .zip(&d.sparse_widths)
        .map(|(t, &w)| SparseInfo {
            column: t.column.clone(),
            width: w,
            declared: t.declared_width.is_some(),
        })
        .collect();
    InspectReport {
        inputs: ds.inputs.iter().map(|p| p.display().to_string()).collect(),
        formula: d.spec.formula.clone(),
        n_rows_read: counts.n_rows_read,
        n_filtered_out: counts.n_filtered_out,
        n_dropped: counts.n_dropped,
        n_obs: counts.n_obs,
        n_params: d.n_params(),
        sparse_nnz,
        nnz: dense_nz + cat_nz + sparse_nnz,
        blocks: Blocks {
            intercept: layout.intercept,
            dense: d.spec.numeric.iter().map(|t| t.name()).collect(),
            categorical,
            sparse,
        },
        coef_names: CoefNames(d.clone()),
        cache: CacheInfo {
            path: ds.cache.dir().display().to_string(),
            status: match &ds.status {
                CacheStatus::Reused => "reused".into(),
                CacheStatus::Built => "built".into(),
                CacheStatus::Rebuilt(r) => format!("rebuilt: {r}"),
            },
            chunks: ds.cache.n_chunks(),
            bytes: ds.cache.bytes(),
        },
        timings: ds.timings,
    }
}

impl InspectReport {
    /// Human-readable rendering for the terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "inputs        {}", self.inputs.join(", "));
        let _ = writeln!(s, "formula       {}", self.formula);
        let _ = writeln!(s, "rows read     {}", self.n_rows_read);
        let _ = writeln!(s, "filtered out  {}", self.n_filtered_out);
        let _ = writeln!(s, "dropped (NA)  {}", self.n_dropped);
        let _ = writeln!(s, "rows used     {}", self.n_obs);
        let _ = writeln!(s, "parameters    {}", self.n_params);
        let _ = writeln!(s, "nnz           {} (sparse block {})", self.nnz, self.sparse_nnz);
        let _ = writeln!(s, "blocks");
        let _ = writeln!(s, "  intercept   {}", if self.blocks.intercept { "yes" } else { "no" });
        let _ = writeln!(
            s,
            "  dense       {} column(s){}",
            self.blocks.dense.len(),
            list_some(&self.blocks.dense)
        );
        for c in &self.blocks.categorical {
            let _ = writeln!(
                s,
                "  categorical {}: {} levels -> {} columns (reference: {}){}",
                c.column,
                c.n_levels,
                c.n_columns,
                c.reference.as_deref().unwrap_or("none"),
                list_some(&c.levels)
            );
        }
        for c in &self.blocks.sparse {
            let _ = writeln!(
                s,
                "  sparse      {}: width {} ({})",
                c.column,
                c.width,
                if c.declared { "from metadata" } else { "max index + 1" }
            );
        }
        let _ = writeln!(
            s,
            "cache         {} ({}; {} chunks, {} bytes)",
            self.cache.path, self.cache.status, self.cache.chunks, self.cache.bytes
        );
        let _ = writeln!(
            s,
            "timings       open {:.3} s, build {:.3} s, map+verify {:.3} s",
            self.timings.open_s, self.timings.build_s, self.timings.map_s
        );
        s
    }
}

fn list_some(v: &[String]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = v.iter().take(8).map(String::as_str).collect();
    let more = if v.len() > 8 {
        format!(", ... ({} more)", v.len() - 8)
    } else {
        String::new()
    };
    format!(": {}{more}", shown.join(", "))
}
