//! The model spec: a formula resolved against a Parquet schema into column roles, and — once the
//! data has been read — the [`Design`]: categorical levels, sparse widths, the column layout and
//! the coefficient names.

use std::path::Path;

use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use super::formula::{Formula, Response, Spanned, Term, Transform};
use crate::error::{Error, Result};

/// How rows with a missing value (null, or NaN in a float column) in any used column are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum NaPolicy {
    /// Drop the row and count it (R's `na.omit`, statsmodels' `missing="drop"`).
    #[default]
    Drop,
    /// Stop with an error naming the file, column and row.
    Error,
}

/// `--filter COL=VALUE`: keep rows whose column, formatted as a string, equals one of `values`.
/// Filters on different columns are combined with AND; several values for one column with OR.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Filter {
    /// Column compared.
    pub column: String,
    /// Accepted values (string comparison).
    pub values: Vec<String>,
}

/// What the user asked for, before it meets the data.
#[derive(Debug, Clone, Default)]
pub struct ModelInput {
    /// The formula text.
    pub formula: String,
    /// `--filter COL=VALUE` pairs, in order.
    pub filters: Vec<(String, String)>,
    /// Missing-value policy.
    pub na: NaPolicy,
    /// Prior-weights column (`--weights`).
    pub weights: Option<String>,
}

/// How an Arrow type can be used in a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnKind {
    /// Integers, floats, decimals: numeric.
    Numeric,
    /// Boolean: categorical (levels false, true); 0/1 as a response.
    Boolean,
    /// Strings or dictionary-encoded strings: categorical.
    String,
    /// `list<struct<idx: int, val: float>>`: a sparse block.
    Sparse,
}

/// Classify an Arrow type, or `None` if fulcrum cannot use it.
pub fn classify(dt: &DataType) -> Option<ColumnKind> {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32 | Float64
        | Decimal128(..) => Some(ColumnKind::Numeric),
        Boolean => Some(ColumnKind::Boolean),
        Utf8 | LargeUtf8 | Utf8View => Some(ColumnKind::String),
        Dictionary(_, v) => match v.as_ref() {
            Utf8 | LargeUtf8 | Utf8View => Some(ColumnKind::String),
            _ => None,
        },
        List(f) | LargeList(f) => sparse_struct_ok(f).then_some(ColumnKind::Sparse),
        _ => None,
    }
}

fn sparse_struct_ok(f: &Field) -> bool {
    let DataType::Struct(fields) = f.data_type() else {
        return false;
    };
    let idx = fields.iter().find(|c| c.name() == "idx");
    let val = fields.iter().find(|c| c.name() == "val");
    matches!(
        idx.map(|c| c.data_type()),
        Some(DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64)
    ) && matches!(
        val.map(|c| c.data_type()),
        Some(DataType::Float32 | DataType::Float64 | DataType::Int32 | DataType::Int64)
    )
}

/// A type as a user of the file would name it: string columns (which fulcrum reads as
/// dictionaries) are "string", everything else as Arrow prints it.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Dictionary(_, v) => type_name(v),
        other => other.to_string(),
    }
}

/// Order in which categorical levels are sorted: bytes for strings, numerically otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LevelKind {
    /// String levels, sorted by bytes.
    String,
    /// Integer levels, sorted numerically.
    Integer,
    /// Float levels, sorted numerically.
    Float,
    /// Boolean levels: false, true.
    Boolean,
}

/// A numeric design column: a column and a transform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NumericTerm {
    /// Source column.
    pub column: String,
    /// Transform applied when encoding.
    pub transform: Transform,
}

impl NumericTerm {
    /// Coefficient name, e.g. `age` or `log(x)`.
    pub fn name(&self) -> String {
        self.transform.name(&self.column)
    }
}

/// A categorical term, one-hot coded with an implicit one-hot (one code per row).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CategoricalTerm {
    /// Source column.
    pub column: String,
    /// How its levels sort.
    pub kind: LevelKind,
}

/// A sparse term: a `list<struct<idx, val>>` column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SparseTerm {
    /// Source column.
    pub column: String,
    /// Width declared in the file's metadata (`p`, `p_hash`, or `<column>_dim`), if any.
    pub declared_width: Option<u64>,
}

/// A formula resolved against a schema: which column plays which role. Hashed into the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DesignSpec {
    /// The formula text as given.
    pub formula: String,
    /// Response column (successes for `cbind`).
    pub response: String,
    /// Failures column of `cbind(successes, failures)`.
    pub failures: Option<String>,
    /// Whether the design has an intercept column.
    pub intercept: bool,
    /// Numeric terms in formula order.
    pub numeric: Vec<NumericTerm>,
    /// Categorical terms in formula order.
    pub categorical: Vec<CategoricalTerm>,
    /// Sparse terms in formula order.
    pub sparse: Vec<SparseTerm>,
    /// `offset(col)` columns (summed).
    pub offsets: Vec<String>,
    /// Prior-weights column.
    pub weights: Option<String>,
    /// `group(a, b, ...)` column groups.
    pub groups: Vec<Vec<String>>,
    /// Row filters.
    pub filters: Vec<Filter>,
    /// Missing-value policy.
    pub na: NaPolicy,
}

impl DesignSpec {
    /// Resolve `model` against `schema` (of `file`, used in messages). Checks every column
    /// exists (suggesting close names when not) and has a type fit for its role.
    pub fn resolve(model: &ModelInput, schema: &Schema, file: &Path) -> Result<DesignSpec> {
        let formula = Formula::parse(&model.formula)?;
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let lookup = |s: &Spanned| -> Result<&Field> {
            schema.field_with_name(&s.name).map_err(|_| Error::Formula {
                msg: unknown_column_msg(&s.name, &names),
                formula: model.formula.clone(),
                pos: s.pos,
            })
        };
        let kind_of = |s: &Spanned| -> Result<Option<ColumnKind>> { Ok(classify(lookup(s)?.data_type())) };
        let wrong_type = |col: &str, role: &str, dt: &DataType| {
            Error::data(
                file,
                col,
                None,
                format!("has type {}, which cannot be used as {role}", type_name(dt)),
            )
        };
        let need_numeric = |s: &Spanned, role: &str| -> Result<()> {
            let f = lookup(s)?;
            match classify(f.data_type()) {
                Some(ColumnKind::Numeric) => Ok(()),
                _ => Err(wrong_type(&s.name, role, f.data_type())),
            }
        };

        // Response.
        let (response, failures) = match &formula.response {
            Response::Column(s) => {
                let f = lookup(s)?;
                match classify(f.data_type()) {
                    Some(ColumnKind::Numeric | ColumnKind::Boolean) => {}
                    _ => {
                        return Err(wrong_type(
                            &s.name,
                            "a response (needs a numeric or boolean column)",
                            f.data_type(),
                        ))
                    }
                }
                (s.name.clone(), None)
            }
            Response::Cbind(a, b) => {
                need_numeric(a, "the successes column of cbind")?;
                need_numeric(b, "the failures column of cbind")?;
                (a.name.clone(), Some(b.name.clone()))
            }
        };
        let mut spec = DesignSpec {
            formula: model.formula.clone(),
            response,
            failures,
            intercept: formula.intercept,
            numeric: vec![],
            categorical: vec![],
            sparse: vec![],
            offsets: vec![],
            weights: None,
            groups: vec![],
            filters: vec![],
            na: model.na,
        };
        if let Some(w) = &model.weights {
            let s = Spanned {
                name: w.clone(),
                pos: 0,
            };
            let f = schema
                .field_with_name(w)
                .map_err(|_| Error::Usage(format!("--weights: {}", unknown_column_msg(w, &names))))?;
            if classify(f.data_type()) != Some(ColumnKind::Numeric) {
                return Err(wrong_type(&s.name, "prior weights", f.data_type()));
            }
            spec.weights = Some(w.clone());
        }
        for (col, val) in &model.filters {
            if schema.field_with_name(col).is_err() {
                return Err(Error::Usage(format!(
                    "--filter {col}={val}: {}",
                    unknown_column_msg(col, &names)
                )));
            }
            match spec.filters.iter_mut().find(|f| &f.column == col) {
                Some(f) => f.values.push(val.clone()),
                None => spec.filters.push(Filter {
                    column: col.clone(),
                    values: vec![val.clone()],
                }),
            }
        }

        // Columns named explicitly anywhere (excluded from `.`).
        let mut explicit: Vec<String> = vec![spec.response.clone()];
        explicit.extend(spec.failures.clone());
        explicit.extend(spec.weights.clone());
        for t in formula.terms.iter().chain(formula.removed.iter()) {
            explicit.extend(t.columns().into_iter().map(|s| s.name.clone()));
        }

        let add_column = |spec: &mut DesignSpec, s: &Spanned, from_dot: bool| -> Result<()> {
            let f = lookup(s)?;
            match classify(f.data_type()) {
                Some(ColumnKind::Numeric) => spec.push_numeric(&s.name, Transform::Identity),
                Some(ColumnKind::Boolean) => spec.push_cat(&s.name, LevelKind::Boolean),
                Some(ColumnKind::String) => spec.push_cat(&s.name, LevelKind::String),
                Some(ColumnKind::Sparse) => spec.push_sparse(&s.name, declared_width(schema, f)),
                None => {
                    let hint = if from_dot {
                        format!("; leave it out with '- {}'", s.name)
                    } else {
                        String::new()
                    };
                    return Err(Error::data(
                        file,
                        &s.name,
                        None,
                        format!(
                            "has type {}, which fulcrum cannot use as a model term{hint}",
                            type_name(f.data_type())
                        ),
                    ));
                }
            }
            Ok(())
        };

        for t in &formula.terms {
            match t {
                Term::Column(s) => add_column(&mut spec, s, false)?,
                Term::Transformed(tr, s) => {
                    need_numeric(s, &format!("the argument of {}", tr.name("")))?;
                    spec.push_numeric(&s.name, *tr);
                }
                Term::Categorical(s) => {
                    let f = lookup(s)?;
                    let kind = match f.data_type() {
                        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
                            LevelKind::Float
                        }
                        dt => match classify(dt) {
                            Some(ColumnKind::Numeric) => LevelKind::Integer,
                            Some(ColumnKind::Boolean) => LevelKind::Boolean,
                            Some(ColumnKind::String) => LevelKind::String,
                            _ => return Err(wrong_type(&s.name, "a categorical (C())", dt)),
                        },
                    };
                    spec.push_cat(&s.name, kind);
                }
                Term::Sparse(s) => {
                    let f = lookup(s)?;
                    if kind_of(s)? != Some(ColumnKind::Sparse) {
                        return Err(wrong_type(
                            &s.name,
                            "a sparse block (needs list<struct<idx: int32, val: float32|float64>>)",
                            f.data_type(),
                        ));
                    }
                    spec.push_sparse(&s.name, declared_width(schema, f));
                }
                Term::Offset(s) => {
                    need_numeric(s, "an offset")?;
                    if !spec.offsets.contains(&s.name) {
                        spec.offsets.push(s.name.clone());
                    }
                }
                Term::Group(cols) => {
                    for s in cols {
                        add_column(&mut spec, s, false)?;
                    }
                    spec.groups.push(cols.iter().map(|s| s.name.clone()).collect());
                }
                Term::Dot(_) => {
                    for f in schema.fields() {
                        let s = Spanned {
                            name: f.name().clone(),
                            pos: 0,
                        };
                        if explicit.contains(f.name()) || formula.is_removed(&Term::Column(s.clone())) {
                            continue;
                        }
                        add_column(&mut spec, &s, true)?;
                    }
                }
            }
        }
        Ok(spec)
    }

    fn push_numeric(&mut self, column: &str, transform: Transform) {
        let t = NumericTerm {
            column: column.to_string(),
            transform,
        };
        if !self.numeric.contains(&t) {
            self.numeric.push(t);
        }
    }
    fn push_cat(&mut self, column: &str, kind: LevelKind) {
        if !self.categorical.iter().any(|c| c.column == column) {
            self.categorical.push(CategoricalTerm {
                column: column.to_string(),
                kind,
            });
        }
    }
    fn push_sparse(&mut self, column: &str, declared_width: Option<u64>) {
        if !self.sparse.iter().any(|c| c.column == column) {
            self.sparse.push(SparseTerm {
                column: column.to_string(),
                declared_width,
            });
        }
    }

    /// Every column the model reads (response, failures, weights, offsets, terms, filters),
    /// without repeats, in first-use order: the Parquet projection.
    pub fn used_columns(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        let mut push = |s: &str| {
            if !v.iter().any(|x| x == s) {
                v.push(s.to_string());
            }
        };
        push(&self.response);
        if let Some(f) = &self.failures {
            push(f);
        }
        if let Some(w) = &self.weights {
            push(w);
        }
        for o in &self.offsets {
            push(o);
        }
        for t in &self.numeric {
            push(&t.column);
        }
        for t in &self.categorical {
            push(&t.column);
        }
        for t in &self.sparse {
            push(&t.column);
        }
        for f in &self.filters {
            push(&f.column);
        }
        v
    }
}

/// The sparse width declared in metadata: the field's `p`/`p_hash`, or the schema's
/// `<column>_dim`, `<column>.p`, or (for a file's only sparse column) `p`/`p_hash`.
fn declared_width(schema: &Schema, field: &Field) -> Option<u64> {
    let parse = |s: &String| s.trim().parse::<u64>().ok();
    let fm = field.metadata();
    if let Some(v) = fm.get("p").or_else(|| fm.get("p_hash")).and_then(parse) {
        return Some(v);
    }
    let sm = schema.metadata();
    let name = field.name();
    if let Some(v) = sm
        .get(&format!("{name}_dim"))
        .or_else(|| sm.get(&format!("{name}.p")))
        .and_then(parse)
    {
        return Some(v);
    }
    let n_sparse = schema
        .fields()
        .iter()
        .filter(|f| classify(f.data_type()) == Some(ColumnKind::Sparse))
        .count();
    if n_sparse == 1 {
        return sm.get("p").or_else(|| sm.get("p_hash")).and_then(parse);
    }
    None
}

/// "unknown column 'agee'; did you mean 'age'?" with up to three close names.
pub fn unknown_column_msg(name: &str, names: &[&str]) -> String {
    let mut scored: Vec<(f64, &str)> = names
        .iter()
        .map(|c| (strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(s, _)| *s >= 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let close: Vec<String> = scored.iter().take(3).map(|(_, c)| format!("'{c}'")).collect();
    if close.is_empty() {
        let mut shown: Vec<String> = names.iter().take(20).map(|c| format!("'{c}'")).collect();
        if names.len() > 20 {
            shown.push(format!("... ({} columns)", names.len()));
        }
        format!("unknown column '{name}'; the input has {}", shown.join(", "))
    } else {
        format!("unknown column '{name}'; did you mean {}?", close.join(" or "))
    }
}

/// One categorical block of the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatBlock {
    /// First global column of this block.
    pub offset: usize,
    /// Number of levels (codes 0..n_levels).
    pub n_levels: u32,
    /// Whether level 0 (the reference) has no column.
    pub drop_first: bool,
}

impl CatBlock {
    /// Number of design columns.
    pub fn width(&self) -> usize {
        self.n_levels as usize - self.drop_first as usize
    }
    /// Global column of level `code`, or `None` for the dropped reference level.
    #[inline]
    pub fn column(&self, code: u32) -> Option<usize> {
        if self.drop_first {
            (code > 0).then(|| self.offset + code as usize - 1)
        } else {
            Some(self.offset + code as usize)
        }
    }
}

/// Where each block's columns sit in the coefficient vector:
/// `[intercept][dense ...][categorical blocks ...][sparse ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Layout {
    /// Whether column 0 is the intercept.
    pub intercept: bool,
    /// Number of dense columns (they start at `intercept as usize`).
    pub n_dense: usize,
    /// Categorical blocks in order.
    pub cats: Vec<CatBlock>,
    /// First global column of the sparse block.
    pub sparse_offset: usize,
    /// Width of the sparse block (all sparse terms side by side).
    pub sparse_width: usize,
    /// Total number of columns p.
    pub p: usize,
}

impl Layout {
    /// Build the layout from block sizes. Without an intercept, the first categorical keeps
    /// all its levels and the others drop their reference (R's full-rank rule).
    pub fn new(intercept: bool, n_dense: usize, cat_levels: &[u32], sparse_width: usize) -> Layout {
        let mut off = intercept as usize + n_dense;
        let mut cats = Vec::with_capacity(cat_levels.len());
        for (k, &nl) in cat_levels.iter().enumerate() {
            let drop_first = intercept || k > 0;
            let b = CatBlock {
                offset: off,
                n_levels: nl,
                drop_first,
            };
            off += b.width();
            cats.push(b);
        }
        Layout {
            intercept,
            n_dense,
            cats,
            sparse_offset: off,
            sparse_width,
            p: off + sparse_width,
        }
    }

    /// First global column of the dense block.
    #[inline]
    pub fn dense_offset(&self) -> usize {
        self.intercept as usize
    }
}

/// The design after ingest: spec, levels, widths, layout and coefficient names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    /// The resolved spec.
    pub spec: DesignSpec,
    /// Levels of each categorical term, sorted (level 0 is the reference).
    pub levels: Vec<Vec<String>>,
    /// Width of each sparse term.
    pub sparse_widths: Vec<u64>,
    /// Column layout.
    pub layout: Layout,
    /// Coefficient names, in layout order, named like R/statsmodels:
    /// `(Intercept)`, `age`, `log(x)`, `workclass[Private]`, `tokens[17]`.
    pub coef_names: Vec<String>,
}

impl Design {
    /// Assemble the design from the spec and what ingest learned.
    pub fn new(spec: DesignSpec, levels: Vec<Vec<String>>, sparse_widths: Vec<u64>) -> Design {
        let cat_levels: Vec<u32> = levels.iter().map(|l| l.len() as u32).collect();
        let sparse_total: u64 = sparse_widths.iter().sum();
        let layout = Layout::new(spec.intercept, spec.numeric.len(), &cat_levels, sparse_total as usize);
        let mut names = Vec::with_capacity(layout.p);
        if spec.intercept {
            names.push("(Intercept)".to_string());
        }
        names.extend(spec.numeric.iter().map(|t| t.name()));
        for (k, t) in spec.categorical.iter().enumerate() {
            let skip = layout.cats[k].drop_first as usize;
            names.extend(levels[k].iter().skip(skip).map(|l| format!("{}[{l}]", t.column)));
        }
        for (t, &w) in spec.sparse.iter().zip(&sparse_widths) {
            names.extend((0..w).map(|j| format!("{}[{j}]", t.column)));
        }
        Design {
            spec,
            levels,
            sparse_widths,
            layout,
            coef_names: names,
        }
    }

    /// Number of coefficients p.
    pub fn n_params(&self) -> usize {
        self.layout.p
    }

    /// The coefficient columns of `name`: a coefficient name (`sex[Male]`), or a term — a
    /// numeric column (`age`, `log(x)`), a categorical (all its levels) or a sparse block.
    pub fn columns_of(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(j) = self.coef_names.iter().position(|c| c == name) {
            return Some(vec![j]);
        }
        let l = &self.layout;
        if let Some(k) = self
            .spec
            .numeric
            .iter()
            .position(|t| t.column == name || t.name() == name)
        {
            return Some(vec![l.dense_offset() + k]);
        }
        if let Some(k) = self.spec.categorical.iter().position(|t| t.column == name) {
            let blk = &l.cats[k];
            return Some((blk.offset..blk.offset + blk.width()).collect());
        }
        let mut start = l.sparse_offset;
        for (t, &w) in self.spec.sparse.iter().zip(&self.sparse_widths) {
            if t.column == name {
                return Some((start..start + w as usize).collect());
            }
            start += w as usize;
        }
        None
    }

    /// The groups of the group lasso: each categorical term's levels, and each `group(...)`
    /// term's columns together (which then are not also a categorical's group). Columns in no
    /// group are left out (they are penalised one by one). Errors if a column is in two
    /// `group(...)` terms.
    pub fn lasso_groups(&self) -> std::result::Result<Vec<Vec<usize>>, String> {
        let mut owner = vec![usize::MAX; self.layout.p];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for g in &self.spec.groups {
            let mut cols = Vec::new();
            for name in g {
                cols.extend(self.columns_of(name).unwrap_or_default());
            }
            cols.sort_unstable();
            cols.dedup();
            for &j in &cols {
                if owner[j] != usize::MAX {
                    return Err(format!("column {} is in two group(...) terms", self.coef_names[j]));
                }
                owner[j] = groups.len();
            }
            groups.push(cols);
        }
        for blk in &self.layout.cats {
            let cols: Vec<usize> = (blk.offset..blk.offset + blk.width())
                .filter(|&j| owner[j] == usize::MAX)
                .collect();
            if !cols.is_empty() {
                groups.push(cols);
            }
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_full_rank_rule() {
        let l = Layout::new(true, 2, &[3, 2], 5);
        assert_eq!(l.cats[0].column(0), None);
        assert_eq!(l.cats[0].column(1), Some(3));
        assert_eq!(l.cats[1].offset, 5);
        assert_eq!(l.sparse_offset, 6);
        assert_eq!(l.p, 11);
        let l = Layout::new(false, 0, &[3, 2], 0);
        assert_eq!(l.cats[0].column(0), Some(0));
        assert_eq!(l.cats[1].column(0), None);
        assert_eq!(l.p, 4);
    }

    #[test]
    fn suggestions() {
        let m = unknown_column_msg("agee", &["age", "sex", "income"]);
        assert!(m.contains("did you mean 'age'"), "{m}");
    }
}
