//! The model spec: a formula resolved against a Parquet schema into column roles, and — once the
//! data has been read — the [`Design`]: categorical levels, sparse widths, the column layout and
//! the coefficient names.

use std::borrow::Cow;
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

/// The design after ingest: spec, levels, widths and layout. Coefficient names are computed on
/// demand ([`Design::coef_name`], [`Design::coef_names`]) rather than stored: a sparse block can
/// be tens of millions of columns wide, and one `String` per column (held here and serialised
/// into the cache manifest) would cost more than everything else the load does.
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
}

/// Name of the intercept coefficient (as in R).
pub const INTERCEPT_NAME: &str = "(Intercept)";

impl Design {
    /// Assemble the design from the spec and what ingest learned. O(number of terms and
    /// levels), whatever the width of the sparse block.
    pub fn new(spec: DesignSpec, levels: Vec<Vec<String>>, sparse_widths: Vec<u64>) -> Design {
        let cat_levels: Vec<u32> = levels.iter().map(|l| l.len() as u32).collect();
        let sparse_total: u64 = sparse_widths.iter().sum();
        let layout = Layout::new(spec.intercept, spec.numeric.len(), &cat_levels, sparse_total as usize);
        Design {
            spec,
            levels,
            sparse_widths,
            layout,
        }
    }

    /// Number of coefficients p.
    pub fn n_params(&self) -> usize {
        self.layout.p
    }

    /// The name of coefficient `j`, like R/statsmodels: `(Intercept)`, `age`, `log(x)`,
    /// `workclass[Private]`, `tokens[17]`. Computed, not stored, so a wide sparse block costs
    /// nothing until its names are asked for. Panics if `j >= p`, as indexing would.
    pub fn coef_name(&self, j: usize) -> Cow<'_, str> {
        let l = &self.layout;
        assert!(j < l.p, "coefficient {j} of a design with {} columns", l.p);
        if l.intercept && j == 0 {
            return Cow::Borrowed(INTERCEPT_NAME);
        }
        let d0 = l.dense_offset();
        if j < d0 + l.n_dense {
            return Cow::Owned(self.spec.numeric[j - d0].name());
        }
        if j < l.sparse_offset {
            // The block holding j: the last one starting at or before it.
            let k = l.cats.partition_point(|b| b.offset <= j) - 1;
            let blk = &l.cats[k];
            let level = &self.levels[k][j - blk.offset + blk.drop_first as usize];
            return Cow::Owned(format!("{}[{level}]", self.spec.categorical[k].column));
        }
        let mut s = (j - l.sparse_offset) as u64;
        for (t, &w) in self.spec.sparse.iter().zip(&self.sparse_widths) {
            if s < w {
                return Cow::Owned(format!("{}[{s}]", t.column));
            }
            s -= w;
        }
        unreachable!("the sparse widths sum to the sparse block's width")
    }

    /// All coefficient names in layout order (see [`Design::coef_name`]), for output that lists
    /// every coefficient. O(p): callers that need a few names ask for those.
    pub fn coef_names(&self) -> impl ExactSizeIterator<Item = Cow<'_, str>> + '_ {
        (0..self.layout.p).map(|j| self.coef_name(j))
    }

    /// The names an unknown-name message picks suggestions from: every coefficient name while
    /// the sparse block is at most [`Design::SUGGEST_ALL_SPARSE_NAMES`] columns wide; beyond
    /// that the names outside it and the sparse terms' columns, so a typo never costs a name
    /// per sparse column.
    pub fn names_for_suggestions(&self) -> Vec<Cow<'_, str>> {
        if self.layout.sparse_width <= Self::SUGGEST_ALL_SPARSE_NAMES {
            return self.coef_names().collect();
        }
        self.named_columns()
            .map(|(_, n)| n)
            .chain(self.spec.sparse.iter().map(|t| Cow::Borrowed(t.column.as_str())))
            .collect()
    }

    /// Widest sparse block whose column names [`Design::names_for_suggestions`] lists one by one.
    pub const SUGGEST_ALL_SPARSE_NAMES: usize = 100_000;

    /// The coefficient names of every column outside the sparse block (intercept, numeric and
    /// categorical columns), in layout order: the names that cannot be parsed back into a
    /// column and so are matched by comparison.
    fn named_columns(&self) -> impl Iterator<Item = (usize, Cow<'_, str>)> + '_ {
        (0..self.layout.sparse_offset).map(|j| (j, self.coef_name(j)))
    }

    /// The sparse column named `name` (`feats[17]`): its term's column, `[`, a decimal index
    /// written as [`Design::coef_name`] writes it (no sign, no leading zeros) below the term's
    /// width, `]`. Parsed, so a lookup does not depend on the block's width.
    fn sparse_column_named(&self, name: &str) -> Option<usize> {
        let mut start = self.layout.sparse_offset;
        for (t, &w) in self.spec.sparse.iter().zip(&self.sparse_widths) {
            let idx = name
                .strip_prefix(t.column.as_str())
                .and_then(|r| r.strip_prefix('['))
                .and_then(|r| r.strip_suffix(']'));
            if let Some(idx) = idx {
                let canonical =
                    !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) && (idx == "0" || !idx.starts_with('0'));
                if let Some(i) = idx.parse::<u64>().ok().filter(|&i| canonical && i < w) {
                    return Some(start + i as usize);
                }
            }
            start += w as usize;
        }
        None
    }

    /// The coefficient columns of `name`: a coefficient name (`sex[Male]`, `feats[17]`), or a
    /// term — a numeric column (`age`, `log(x)`), a categorical (all its levels) or a sparse
    /// block. Coefficient names win over terms, earlier columns over later ones.
    pub fn columns_of(&self, name: &str) -> Option<Vec<usize>> {
        if let Some((j, _)) = self.named_columns().find(|(_, c)| c == name) {
            return Some(vec![j]);
        }
        if let Some(j) = self.sparse_column_named(name) {
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
                    return Err(format!("column {} is in two group(...) terms", self.coef_name(j)));
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
    use crate::design::Transform;

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

    /// `y ~ age + log(x) + g + h + sparse(feats) + sparse(bag)`, with a level of `h` that looks
    /// like a sparse name and one with brackets inside.
    fn design(intercept: bool, feats_width: u64) -> Design {
        let num = |c: &str, transform| NumericTerm {
            column: c.into(),
            transform,
        };
        let cat = |c: &str| CategoricalTerm {
            column: c.into(),
            kind: LevelKind::String,
        };
        let sp = |c: &str| SparseTerm {
            column: c.into(),
            declared_width: None,
        };
        let spec = DesignSpec {
            formula: String::new(),
            response: "y".into(),
            failures: None,
            intercept,
            numeric: vec![num("age", Transform::Identity), num("x", Transform::Log)],
            categorical: vec![cat("g"), cat("h")],
            sparse: vec![sp("feats"), sp("bag")],
            offsets: vec![],
            weights: None,
            groups: vec![],
            filters: vec![],
            na: NaPolicy::Drop,
        };
        let levels = vec![
            vec!["a".into(), "b".into(), "c".into()],
            vec!["1]x[2".into(), "p[q]".into(), "r".into()],
        ];
        Design::new(spec, levels, vec![feats_width, 2])
    }

    #[test]
    fn coefficient_names_are_computed_like_r() {
        let d = design(true, 3);
        let names: Vec<_> = d.coef_names().collect();
        assert_eq!(
            names,
            [
                "(Intercept)",
                "age",
                "log(x)",
                "g[b]",
                "g[c]",
                "h[p[q]]",
                "h[r]",
                "feats[0]",
                "feats[1]",
                "feats[2]",
                "bag[0]",
                "bag[1]"
            ]
        );
        assert_eq!(d.coef_names().len(), d.n_params());
        // Without an intercept the first categorical keeps its reference level.
        let d = design(false, 1);
        let names: Vec<_> = d.coef_names().collect();
        assert_eq!(names[..5], ["age", "log(x)", "g[a]", "g[b]", "g[c]"]);
        assert_eq!(names[5], "h[p[q]]");
    }

    #[test]
    fn a_wide_sparse_block_costs_nothing_until_named() {
        let d = design(true, 1 << 40);
        let j = d.layout.sparse_offset + 83_886_087;
        assert_eq!(d.coef_name(j), "feats[83886087]");
        assert_eq!(d.columns_of("feats[83886087]"), Some(vec![j]));
        assert_eq!(d.coef_name(d.n_params() - 1), "bag[1]");
        assert_eq!(d.columns_of("bag[1]"), Some(vec![d.n_params() - 1]));
        let s = d.names_for_suggestions();
        assert!(s.len() < 20 && s.contains(&"feats".into()), "{s:?}");
    }

    #[test]
    fn columns_of_resolves_names_and_terms() {
        let d = design(true, 3);
        for (j, name) in d.coef_names().enumerate() {
            assert_eq!(d.columns_of(&name), Some(vec![j]), "{name}");
        }
        assert_eq!(d.columns_of("age"), Some(vec![1]));
        assert_eq!(d.columns_of("x"), Some(vec![2]));
        assert_eq!(d.columns_of("g"), Some(vec![3, 4]));
        assert_eq!(d.columns_of("h"), Some(vec![5, 6]));
        assert_eq!(d.columns_of("feats"), Some(vec![7, 8, 9]));
        assert_eq!(d.columns_of("bag"), Some(vec![10, 11]));
        // Level names with brackets are matched whole, the reference level has no column.
        assert_eq!(d.columns_of("h[p[q]]"), Some(vec![5]));
        assert_eq!(d.columns_of("h[1]x[2]"), None);
        // Only indices written as coef_name writes them, inside the block, name a column.
        for bad in [
            "feats[3]",
            "feats[03]",
            "feats[+1]",
            "feats[]",
            "feats[-0]",
            "feats[1",
            "feats1]",
            "feats[ 1]",
            "bag[2]",
            "feat[1]",
        ] {
            assert_eq!(d.columns_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        let m = unknown_column_msg("agee", &["age", "sex", "income"]);
        assert!(m.contains("did you mean 'age'"), "{m}");
    }
}
