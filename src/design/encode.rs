//! Encoding: one Arrow `RecordBatch` → one [`Chunk`] of the split design, applying filters and
//! the missing-value policy, checking every value, and interning categorical levels.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{AnyDictionaryArray, Array, ArrayRef, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::DataType;

use super::formula::Transform;
use super::spec::{DesignSpec, LevelKind, NaPolicy};
use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::source::BatchRows;

/// Bits reserved for the within-term index when several sparse terms share the block; the top
/// bits hold the term number until `store` rewrites indices to final columns.
pub const SPARSE_TERM_SHIFT: u32 = 28;

/// A categorical level as read: strings by bytes, numbers by value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LevelKey {
    Str(Box<str>),
    Int(i64),
    Float(u64),
    Bool(bool),
}

impl LevelKey {
    fn name(&self) -> String {
        match self {
            LevelKey::Str(s) => s.to_string(),
            LevelKey::Int(v) => v.to_string(),
            LevelKey::Float(b) => f64::from_bits(*b).to_string(),
            LevelKey::Bool(b) => b.to_string(),
        }
    }
    fn cmp_key(&self, o: &Self) -> std::cmp::Ordering {
        match (self, o) {
            (LevelKey::Str(a), LevelKey::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (LevelKey::Int(a), LevelKey::Int(b)) => a.cmp(b),
            (LevelKey::Float(a), LevelKey::Float(b)) => f64::from_bits(*a).total_cmp(&f64::from_bits(*b)),
            (LevelKey::Bool(a), LevelKey::Bool(b)) => a.cmp(b),
            _ => std::cmp::Ordering::Equal,
        }
    }
}

/// Thread-safe interner of one categorical column's levels. Rows get provisional codes in
/// first-seen order; [`LevelInterner::finish`] sorts the levels and returns the remap to final
/// codes (level 0 = first in sorted order = the reference).
#[derive(Debug, Default)]
pub struct LevelInterner {
    state: Mutex<(HashMap<LevelKey, u32>, Vec<LevelKey>)>,
}

impl LevelInterner {
    fn intern(&self, k: LevelKey) -> u32 {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&c) = g.0.get(&k) {
            return c;
        }
        let c = g.1.len() as u32;
        g.1.push(k.clone());
        g.0.insert(k, c);
        c
    }

    /// Number of distinct levels seen so far.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1.len()
    }

    /// Whether no level has been seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorted level names and the map provisional code → final code.
    pub fn finish(&self) -> (Vec<String>, Vec<u32>) {
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let keys = &g.1;
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_by(|&a, &b| keys[a as usize].cmp_key(&keys[b as usize]));
        let mut remap = vec![0u32; keys.len()];
        for (fin, &prov) in order.iter().enumerate() {
            remap[prov as usize] = fin as u32;
        }
        (order.iter().map(|&i| keys[i as usize].name()).collect(), remap)
    }
}

/// Row counts of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Rows in the batch.
    pub read: u64,
    /// Rows removed by `--filter`.
    pub filtered_out: u64,
    /// Rows dropped for a missing value.
    pub dropped: u64,
}

/// The result of encoding one batch.
#[derive(Debug)]
pub struct EncodedBatch {
    /// The chunk of kept rows (may be empty).
    pub chunk: Chunk,
    /// Row counts.
    pub counts: BatchCounts,
    /// Largest sparse index seen per sparse term (None if no entries).
    pub max_sparse_idx: Vec<Option<u64>>,
}

/// Encodes record batches for one [`DesignSpec`]; shared by all ingest threads.
#[derive(Debug)]
pub struct Encoder<'a> {
    spec: &'a DesignSpec,
    /// One interner per categorical term.
    pub interners: Vec<LevelInterner>,
}

/// A numeric column's values, read in place from its Arrow array and converted to f64 as they
/// are read (booleans, decimals and f16 are converted once into `Owned`). Reading in place
/// spares each batch a copy of every numeric column: ~0.13 MB of fresh pages per column per
/// 16,384-row batch, at ~1.6 µs a page on the benchmark VM.
enum NumValues<'b> {
    F64(&'b [f64]),
    F32(&'b [f32]),
    I64(&'b [i64]),
    I32(&'b [i32]),
    I16(&'b [i16]),
    I8(&'b [i8]),
    U64(&'b [u64]),
    U32(&'b [u32]),
    U16(&'b [u16]),
    U8(&'b [u8]),
    Owned(Vec<f64>),
}

/// Evaluate `$body` with `$s` bound to the values' slice, whatever its element type.
macro_rules! with_slice {
    ($v:expr, $s:ident => $body:expr) => {
        match $v {
            NumValues::F64($s) => $body,
            NumValues::F32($s) => $body,
            NumValues::I64($s) => $body,
            NumValues::I32($s) => $body,
            NumValues::I16($s) => $body,
            NumValues::I8($s) => $body,
            NumValues::U64($s) => $body,
            NumValues::U32($s) => $body,
            NumValues::U16($s) => $body,
            NumValues::U8($s) => $body,
            NumValues::Owned(v) => {
                let $s = &v[..];
                $body
            }
        }
    };
}

impl<'b> NumValues<'b> {
    /// The values of a numeric (or boolean) array; None for other types.
    fn new(arr: &'b dyn Array) -> Option<Self> {
        macro_rules! prim {
            ($t:ty) => {
                arr.as_primitive::<$t>().values()
            };
        }
        Some(match arr.data_type() {
            DataType::Float64 => NumValues::F64(prim!(Float64Type)),
            DataType::Float32 => NumValues::F32(prim!(Float32Type)),
            DataType::Int64 => NumValues::I64(prim!(Int64Type)),
            DataType::Int32 => NumValues::I32(prim!(Int32Type)),
            DataType::Int16 => NumValues::I16(prim!(Int16Type)),
            DataType::Int8 => NumValues::I8(prim!(Int8Type)),
            DataType::UInt64 => NumValues::U64(prim!(UInt64Type)),
            DataType::UInt32 => NumValues::U32(prim!(UInt32Type)),
            DataType::UInt16 => NumValues::U16(prim!(UInt16Type)),
            DataType::UInt8 => NumValues::U8(prim!(UInt8Type)),
            _ => NumValues::Owned(to_f64(arr)?),
        })
    }

    /// Whether a value can be NaN (only floating-point values can).
    fn may_be_nan(&self) -> bool {
        matches!(self, NumValues::F64(_) | NumValues::F32(_) | NumValues::Owned(_))
    }

    /// Value `i` as f64.
    #[inline]
    #[allow(clippy::unnecessary_cast)] // `as f64` is instantiated for every element type, f64 too
    fn get(&self, i: usize) -> f64 {
        with_slice!(self, s => s[i] as f64)
    }

    /// The values at `rows`, transformed, appended to `out`.
    #[allow(clippy::unnecessary_cast)] // as in `get`
    fn gather(&self, t: Transform, rows: &[usize], out: &mut Vec<f64>) {
        with_slice!(self, s => match t {
            Transform::Identity => out.extend(rows.iter().map(|&i| s[i] as f64)),
            Transform::Log => out.extend(rows.iter().map(|&i| (s[i] as f64).ln())),
            Transform::Log1p => out.extend(rows.iter().map(|&i| (s[i] as f64).ln_1p())),
        })
    }
}

/// A numeric column of a batch, with its validity.
struct NumCol<'b> {
    name: String,
    values: NumValues<'b>,
    may_be_nan: bool,
    nulls: Option<NullBuffer>,
}

impl NumCol<'_> {
    #[inline]
    fn is_na(&self, i: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(i)) || (self.may_be_nan && self.values.get(i).is_nan())
    }
}

/// A dictionary array's keys, read in place as indices into its values (read through
/// `with_slice!`; a key out of range, as a null slot's may be, is clamped to the last value, as
/// arrow's `normalized_keys` does).
struct DictKeys<'b>(NumValues<'b>);

impl<'b> DictKeys<'b> {
    /// The keys of `d` and the index of its last value (0 for an empty dictionary).
    fn new(d: &'b dyn AnyDictionaryArray) -> (Self, usize) {
        let k = d.keys();
        // Arrow's dictionary keys are integers, which `NumValues` reads in place; the fallback
        // (every key 0) is never taken.
        let keys = NumValues::new(k).unwrap_or_else(|| NumValues::Owned(vec![0.0; k.len()]));
        (DictKeys(keys), d.values().len().saturating_sub(1))
    }
}

fn column<'b>(batch: &'b RecordBatch, name: &str, file: &Path) -> Result<&'b ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::data(file, name, None, "column missing from this file"))
}

/// Convert a numeric (or boolean) Arrow array to f64 values; nulls are left as 0 (see nulls).
fn to_f64(arr: &dyn Array) -> Option<Vec<f64>> {
    macro_rules! prim {
        ($t:ty) => {
            arr.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
    }
    Some(match arr.data_type() {
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float16 => arr
            .as_primitive::<Float16Type>()
            .values()
            .iter()
            .map(|v| v.to_f64())
            .collect(),
        DataType::Float32 => prim!(Float32Type),
        DataType::Float64 => arr.as_primitive::<Float64Type>().values().to_vec(),
        DataType::Decimal128(_, s) => {
            let scale = 10f64.powi(*s as i32);
            arr.as_primitive::<Decimal128Type>()
                .values()
                .iter()
                .map(|&v| v as f64 / scale)
                .collect()
        }
        DataType::Boolean => {
            let b = arr.as_boolean();
            (0..b.len()).map(|i| if b.value(i) { 1.0 } else { 0.0 }).collect()
        }
        _ => return None,
    })
}

/// Each row's value formatted as the string `--filter` compares against (None for null).
pub fn filter_strings(arr: &dyn Array) -> Vec<Option<String>> {
    let n = arr.len();
    if let Some(d) = arr.as_any_dictionary_opt() {
        let vals = filter_strings(d.values().as_ref());
        if vals.is_empty() {
            return vec![None; n];
        }
        let keys = d.normalized_keys();
        return (0..n)
            .map(|i| if d.is_null(i) { None } else { vals[keys[i]].clone() })
            .collect();
    }
    let get = |i: usize| -> Option<String> {
        if arr.is_null(i) {
            return None;
        }
        Some(match arr.data_type() {
            DataType::Utf8 => arr.as_string::<i32>().value(i).to_string(),
            DataType::LargeUtf8 => arr.as_string::<i64>().value(i).to_string(),
            DataType::Utf8View => arr.as_string_view().value(i).to_string(),
            DataType::Boolean => arr.as_boolean().value(i).to_string(),
            DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
                to_f64(&arr.slice(i, 1))?[0].to_string()
            }
            _ => match to_f64(&arr.slice(i, 1)) {
                Some(v) => format!("{}", v[0] as i128),
                None => return None,
            },
        })
    };
    (0..n).map(get).collect()
}

/// For each row, whether its value, formatted as [`filter_strings`] formats it, is one of
/// `values` (nulls never match). Strings are compared in place, a dictionary's values once each
/// rather than once per row, booleans and integers as values: a `--filter` on a string,
/// dictionary, boolean or integer column costs a comparison per row, not a string allocation.
pub fn filter_matches(arr: &dyn Array, values: &[String]) -> Vec<bool> {
    let n = arr.len();
    if let Some(d) = arr.as_any_dictionary_opt() {
        let hit = filter_matches(d.values().as_ref(), values);
        if hit.is_empty() {
            return vec![false; n];
        }
        // One loop per key type (not a match per row): Adult's 48,842-row `split` column took
        // 0.15 ms through `DictKeys::get`.
        let (keys, max) = DictKeys::new(d);
        let mut out: Vec<bool> = with_slice!(&keys.0, s => s.iter().map(|&k| hit[(k as usize).min(max)]).collect());
        // The validity walk only where a key is null: Parquet's reader can give a nullable
        // column a validity buffer without a null in it (Adult's `split`), and walking its bits
        // cost more than the lookups (callgrind, a cold Adult fit: this and taking the first
        // filter's flags as they are in `filter_mask`, 200.9 M → 199.7 M instructions).
        if let Some(nb) = d.nulls().filter(|nb| nb.null_count() > 0) {
            for (o, valid) in out.iter_mut().zip(nb.iter()) {
                *o &= valid;
            }
        }
        return out;
    }
    let any = |s: &str| values.iter().any(|w| w == s);
    match arr.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            (0..n).map(|i| arr.is_valid(i) && any(dict_str(arr, i))).collect()
        }
        DataType::Boolean => {
            let (t, f) = (any("true"), any("false"));
            let b = arr.as_boolean();
            (0..n)
                .map(|i| b.is_valid(i) && if b.value(i) { t } else { f })
                .collect()
        }
        dt if dt.is_integer() => {
            // `filter_strings` formats an integer through f64 as a whole number; the values that
            // can equal such a string are those that parse as an integer and print back the same.
            let targets: Vec<i128> = values
                .iter()
                .filter_map(|w| w.parse::<i128>().ok().filter(|v| v.to_string() == *w))
                .collect();
            match NumValues::new(arr) {
                Some(v) => (0..n)
                    .map(|i| arr.is_valid(i) && targets.contains(&(v.get(i) as i128)))
                    .collect(),
                None => vec![false; n],
            }
        }
        _ => filter_strings(arr)
            .iter()
            .map(|v| v.as_deref().is_some_and(any))
            .collect(),
    }
}

/// String value `j` of a string array (a dictionary's values, or a plain string column).
fn dict_str(values: &dyn Array, j: usize) -> &str {
    match values.data_type() {
        DataType::Utf8 => values.as_string::<i32>().value(j),
        DataType::LargeUtf8 => values.as_string::<i64>().value(j),
        DataType::Utf8View => values.as_string_view().value(j),
        _ => "",
    }
}

/// Reads the `idx`/`val` children of a sparse list column.
struct SparseCol<'b> {
    name: &'b str,
    offsets: Vec<usize>,
    list_nulls: Option<NullBuffer>,
    idx: Vec<i64>,
    idx_nulls: Option<NullBuffer>,
    val: Vec<f64>,
    val_nulls: Option<NullBuffer>,
    declared: Option<u64>,
}

fn sparse_col<'b>(arr: &ArrayRef, name: &'b str, declared: Option<u64>, file: &Path) -> Result<SparseCol<'b>> {
    let (offsets, values, list_nulls): (Vec<usize>, ArrayRef, Option<NullBuffer>) = match arr.data_type() {
        DataType::List(_) => {
            let l = arr.as_list::<i32>();
            (
                l.value_offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
                l.nulls().cloned(),
            )
        }
        DataType::LargeList(_) => {
            let l = arr.as_list::<i64>();
            (
                l.value_offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
                l.nulls().cloned(),
            )
        }
        dt => {
            return Err(Error::data(
                file,
                name,
                None,
                format!("has type {dt}, expected list<struct<idx, val>>"),
            ))
        }
    };
    let st = values
        .as_struct_opt()
        .ok_or_else(|| Error::data(file, name, None, "list items are not struct<idx, val>"))?;
    let idx_arr = st
        .column_by_name("idx")
        .ok_or_else(|| Error::data(file, name, None, "list items have no 'idx' field"))?;
    let val_arr = st
        .column_by_name("val")
        .ok_or_else(|| Error::data(file, name, None, "list items have no 'val' field"))?;
    let idx: Vec<i64> = match idx_arr.data_type() {
        DataType::Int32 => idx_arr
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::Int64 => idx_arr.as_primitive::<Int64Type>().values().to_vec(),
        DataType::UInt32 => idx_arr
            .as_primitive::<UInt32Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        DataType::UInt64 => idx_arr
            .as_primitive::<UInt64Type>()
            .values()
            .iter()
            .map(|&v| i64::try_from(v).unwrap_or(i64::MAX))
            .collect(),
        dt => {
            return Err(Error::data(
                file,
                name,
                None,
                format!("'idx' has type {dt}, expected an integer"),
            ))
        }
    };
    let val = match val_arr.data_type() {
        DataType::Float32 | DataType::Float64 | DataType::Int32 | DataType::Int64 => {
            to_f64(val_arr.as_ref()).unwrap_or_default()
        }
        dt => {
            return Err(Error::data(
                file,
                name,
                None,
                format!("'val' has type {dt}, expected a float"),
            ))
        }
    };
    let mut idx_nulls = idx_arr.nulls().cloned();
    let mut val_nulls = val_arr.nulls().cloned();
    if let Some(sn) = st.nulls() {
        // A null struct entry counts as null in both children.
        idx_nulls = NullBuffer::union(idx_nulls.as_ref(), Some(sn));
        val_nulls = NullBuffer::union(val_nulls.as_ref(), Some(sn));
    }
    Ok(SparseCol {
        name,
        offsets,
        list_nulls,
        idx,
        idx_nulls,
        val,
        val_nulls,
        declared,
    })
}

/// `c` at `rows`, transformed, appended to `out`; every value must be finite. The fast path
/// checks the whole batch at once; only on failure is the first bad row looked up.
fn gather_checked(
    c: &NumCol,
    t: Transform,
    rows: &[usize],
    out: &mut Vec<f64>,
    file: &Path,
    rows_at: &BatchRows,
) -> Result<()> {
    let start = out.len();
    c.values.gather(t, rows, out);
    if out[start..].iter().fold(true, |ok, x| ok & x.is_finite()) {
        return Ok(());
    }
    for &i in rows {
        let raw = c.values.get(i);
        let x = t.apply(raw);
        let row = Some(rows_at.file_row(i));
        if !raw.is_finite() {
            return Err(Error::data(file, &c.name, row, format!("value {raw} is not finite")));
        }
        if !x.is_finite() {
            return Err(Error::data(
                file,
                &c.name,
                row,
                format!("{} is {x} for the value {raw}", t.name(&c.name)),
            ));
        }
    }
    Ok(())
}

impl SparseCol<'_> {
    /// The largest index allowed: the declared width, and the encoding's limit.
    fn limit(&self, multi: bool) -> i64 {
        let enc: i64 = if multi { 1 << SPARSE_TERM_SHIFT } else { u32::MAX as i64 };
        self.declared.map_or(enc, |w| (w.min(i64::MAX as u64) as i64).min(enc))
    }

    /// Whether entries `a..b` (one row) are valid: no nulls, indices in range and strictly
    /// increasing, values finite.
    #[inline]
    fn row_ok(&self, a: usize, b: usize, multi: bool) -> bool {
        let (idx, val) = (&self.idx[a..b], &self.val[a..b]);
        let no_nulls = |nb: &Option<NullBuffer>| nb.as_ref().is_none_or(|nb| (a..b).all(|e| nb.is_valid(e)));
        no_nulls(&self.idx_nulls)
            && no_nulls(&self.val_nulls)
            && idx.first().is_none_or(|&f| f >= 0)
            && idx.last().is_none_or(|&l| l < self.limit(multi))
            && idx.windows(2).fold(true, |ok, w| ok & (w[0] < w[1]))
            && val.iter().fold(true, |ok, x| ok & x.is_finite())
    }

    /// What is wrong with entries `a..b` (called only when [`SparseCol::row_ok`] is false).
    fn explain_row(&self, a: usize, b: usize, multi: bool) -> String {
        let mut prev: i64 = -1;
        for e in a..b {
            if self.idx_nulls.as_ref().is_some_and(|nb| nb.is_null(e))
                || self.val_nulls.as_ref().is_some_and(|nb| nb.is_null(e))
            {
                return format!("entry {} has a null idx or val", e - a);
            }
            let (j, v) = (self.idx[e], self.val[e]);
            if j < 0 {
                return format!("sparse index {j} is negative");
            }
            if let Some(w) = self.declared {
                if j as u64 >= w {
                    return format!("sparse index {j} is not below the declared width {w}");
                }
            }
            if j >= self.limit(multi) {
                return format!("sparse index {j} is too large (limit {})", self.limit(multi));
            }
            if j <= prev {
                return format!("sparse indices must be strictly increasing within a row (found {j} after {prev})");
            }
            if !v.is_finite() {
                return format!("sparse value {v} at index {j} is not finite");
            }
            prev = j;
        }
        "invalid sparse entries".into()
    }
}

impl<'a> Encoder<'a> {
    /// An encoder for `spec`, with empty level interners.
    pub fn new(spec: &'a DesignSpec) -> Self {
        Encoder {
            spec,
            interners: spec.categorical.iter().map(|_| LevelInterner::default()).collect(),
        }
    }

    /// Whether each row of `batch` passes every `--filter` (the spec's filter columns must be in
    /// the batch).
    pub fn filter_mask(&self, batch: &RecordBatch, file: &Path) -> Result<Vec<bool>> {
        let mut keep: Option<Vec<bool>> = None;
        for f in &self.spec.filters {
            let hit = filter_matches(column(batch, &f.column, file)?.as_ref(), &f.values);
            match &mut keep {
                None => keep = Some(hit),
                Some(k) => {
                    for (k, h) in k.iter_mut().zip(hit) {
                        *k &= h;
                    }
                }
            }
        }
        Ok(keep.unwrap_or_else(|| vec![true; batch.num_rows()]))
    }

    /// Encode `batch`, whose rows are at `rows` in `file` (file rows, as messages give them);
    /// `file_first_row_id` is the global input row id of the file's row 0.
    pub fn encode(
        &self,
        batch: &RecordBatch,
        file_first_row_id: u64,
        file: &Path,
        rows_at: &BatchRows,
    ) -> Result<EncodedBatch> {
        let spec = self.spec;
        let n = batch.num_rows();
        let mut counts = BatchCounts {
            read: n as u64,
            ..Default::default()
        };
        let row_of = |i: usize| Some(rows_at.file_row(i));

        // 1. Filters (rows a pushed-down selection kept pass them again).
        let mut keep = self.filter_mask(batch, file)?;
        counts.filtered_out = keep.iter().filter(|k| !**k).count() as u64;

        // 2. Gather every used column.
        let num = |name: &str| -> Result<NumCol> {
            let a = column(batch, name, file)?;
            let values = NumValues::new(a.as_ref()).ok_or_else(|| {
                Error::data(
                    file,
                    name,
                    None,
                    format!("has type {}, expected a number", super::spec::type_name(a.data_type())),
                )
            })?;
            Ok(NumCol {
                name: name.to_string(),
                may_be_nan: values.may_be_nan(),
                values,
                nulls: a.logical_nulls().filter(|nb| nb.null_count() > 0),
            })
        };
        let y = num(&spec.response)?;
        let failures = spec.failures.as_deref().map(num).transpose()?;
        let weights = spec.weights.as_deref().map(num).transpose()?;
        let offsets = spec.offsets.iter().map(|o| num(o)).collect::<Result<Vec<_>>>()?;
        let dense = spec
            .numeric
            .iter()
            .map(|t| num(&t.column))
            .collect::<Result<Vec<_>>>()?;
        let cats: Vec<&ArrayRef> = spec
            .categorical
            .iter()
            .map(|t| column(batch, &t.column, file))
            .collect::<Result<_>>()?;
        let sparse: Vec<SparseCol> = spec
            .sparse
            .iter()
            .map(|t| sparse_col(column(batch, &t.column, file)?, &t.column, t.declared_width, file))
            .collect::<Result<_>>()?;

        // 3. Missing values (logical nulls: a dictionary's null values count too).
        // Null buffers without a null are left out, so that a batch in which no value can be
        // missing (integer and string columns without nulls) skips the row loop.
        let cat_nulls: Vec<Option<NullBuffer>> = cats
            .iter()
            .map(|a| a.logical_nulls().filter(|nb| nb.null_count() > 0))
            .collect();
        let value_cols: Vec<&NumCol> = std::iter::once(&y)
            .chain(failures.iter())
            .chain(weights.iter())
            .chain(offsets.iter())
            .chain(dense.iter())
            .collect();
        let may_miss = value_cols.iter().any(|c| c.nulls.is_some() || c.may_be_nan)
            || cat_nulls.iter().any(Option::is_some)
            || sparse.iter().any(|s| s.list_nulls.is_some());
        let checked = if may_miss { keep.len() } else { 0 };
        for (i, kept) in keep.iter_mut().enumerate().take(checked) {
            if !*kept {
                continue;
            }
            let mut na: Option<&str> = value_cols.iter().find(|c| c.is_na(i)).map(|c| c.name.as_str());
            if na.is_none() {
                na = cat_nulls
                    .iter()
                    .zip(&spec.categorical)
                    .find(|(nb, _)| nb.as_ref().is_some_and(|nb| nb.is_null(i)))
                    .map(|(_, t)| t.column.as_str());
            }
            if na.is_none() {
                na = sparse
                    .iter()
                    .find(|s| s.list_nulls.as_ref().is_some_and(|nb| nb.is_null(i)))
                    .map(|s| s.name);
            }
            if let Some(col) = na {
                match spec.na {
                    NaPolicy::Drop => {
                        *kept = false;
                        counts.dropped += 1;
                    }
                    NaPolicy::Error => {
                        return Err(Error::data(
                            file,
                            col,
                            row_of(i),
                            "missing value (null or NaN) and --na error was given",
                        ))
                    }
                }
            }
        }
        let rows: Vec<usize> = (0..n).filter(|&i| keep[i]).collect();
        let m = rows.len();

        // 4. Values of kept rows, checked in bulk (the exact row is looked up only on failure),
        // and 5. the categorical codes, side by side: on a small input (Adult's last batch),
        // the other thread is otherwise idle while one encodes; in a pipeline that keeps every
        // thread busy, the join runs both in turn on this one. A numeric column's error is
        // reported before a categorical one's, as in column order.
        let numeric = || -> Result<Chunk> {
            let gather = |c: &NumCol, t: Transform, out: &mut Vec<f64>| gather_checked(c, t, &rows, out, file, rows_at);
            let mut chunk = Chunk {
                row_id: rows.iter().map(|&i| file_first_row_id + rows_at.file_row(i)).collect(),
                n_dense: dense.len(),
                n_cat: cats.len(),
                ..Default::default()
            };
            gather(&y, Transform::Identity, &mut chunk.y)?;
            if let Some(f) = &failures {
                let mut v = Vec::with_capacity(m);
                gather(f, Transform::Identity, &mut v)?;
                chunk.failures = Some(v);
            }
            // Without `--weights` and `offset()` terms, the chunk stores neither (all 1, all 0).
            if let Some(w) = &weights {
                gather(w, Transform::Identity, &mut chunk.weight)?;
            }
            if !offsets.is_empty() {
                chunk.offset = vec![0.0; m];
            }
            let mut tmp = Vec::with_capacity(m);
            for o in &offsets {
                tmp.clear();
                gather(o, Transform::Identity, &mut tmp)?;
                for (dst, v) in chunk.offset.iter_mut().zip(&tmp) {
                    *dst += v;
                }
            }
            chunk.dense.reserve(m * dense.len());
            for (c, t) in dense.iter().zip(&spec.numeric) {
                gather(c, t.transform, &mut chunk.dense)?;
            }
            Ok(chunk)
        };
        let categorical = || -> Result<Vec<u32>> {
            let mut codes = Vec::with_capacity(m * cats.len());
            for (k, (arr, t)) in cats.iter().zip(&spec.categorical).enumerate() {
                self.encode_cat(k, arr.as_ref(), t.kind, &rows, &mut codes, file, &t.column, rows_at)?;
            }
            Ok(codes)
        };
        let (numeric, categorical) = if cats.is_empty() {
            (numeric(), Ok(Vec::new()))
        } else {
            rayon::join(numeric, categorical)
        };
        let mut chunk = numeric?;
        chunk.cat = categorical?;

        // 6. Sparse block: each row's slice is validated in bulk and copied in one go.
        let mut max_idx: Vec<Option<u64>> = vec![None; sparse.len()];
        let multi = sparse.len() > 1;
        if !sparse.is_empty() {
            let total: usize = sparse.iter().map(|s| s.offsets[n] - s.offsets[0]).sum();
            chunk.indptr.reserve(m + 1);
            chunk.indices.reserve(total);
            chunk.values.reserve(total);
            chunk.indptr.push(0);
            for &i in &rows {
                for (t, s) in sparse.iter().enumerate() {
                    let (a, b) = (s.offsets[i], s.offsets[i + 1]);
                    let (idx, val) = (&s.idx[a..b], &s.val[a..b]);
                    if !s.row_ok(a, b, multi) {
                        return Err(Error::data(file, s.name, row_of(i), s.explain_row(a, b, multi)));
                    }
                    if multi {
                        let tag = (t as u32) << SPARSE_TERM_SHIFT;
                        chunk.indices.extend(idx.iter().map(|&j| tag | j as u32));
                    } else {
                        chunk.indices.extend(idx.iter().map(|&j| j as u32));
                    }
                    chunk.values.extend_from_slice(val);
                    if let Some(&last) = idx.last() {
                        max_idx[t] = Some(max_idx[t].map_or(last as u64, |x| x.max(last as u64)));
                    }
                }
                let nnz = u32::try_from(chunk.indices.len()).map_err(|_| {
                    Error::Input(format!(
                        "{}: too many sparse entries in one batch; lower the batch size",
                        file.display()
                    ))
                })?;
                chunk.indptr.push(nnz);
            }
        }
        Ok(EncodedBatch {
            chunk,
            counts,
            max_sparse_idx: max_idx,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn encode_cat(
        &self,
        k: usize,
        arr: &dyn Array,
        kind: LevelKind,
        rows: &[usize],
        out: &mut Vec<u32>,
        file: &Path,
        col: &str,
        rows_at: &BatchRows,
    ) -> Result<()> {
        let interner = &self.interners[k];
        if let Some(d) = arr.as_any_dictionary_opt() {
            let values = d.values();
            if !matches!(
                values.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                return Err(Error::data(
                    file,
                    col,
                    None,
                    format!("dictionary of {} is not supported", values.data_type()),
                ));
            }
            if values.is_empty() {
                // Every row is null, and null rows were dropped above.
                return Ok(());
            }
            let (keys, max) = DictKeys::new(d);
            let mut local = vec![u32::MAX; values.len()];
            out.reserve(rows.len());
            // One loop per key type (not a match per row).
            with_slice!(&keys.0, s => {
                for &i in rows {
                    let j = (s[i] as usize).min(max);
                    if local[j] == u32::MAX {
                        local[j] = interner.intern(LevelKey::Str(dict_str(values.as_ref(), j).into()));
                    }
                    out.push(local[j]);
                }
            });
            return Ok(());
        }
        let mut local: HashMap<LevelKey, u32> = HashMap::new();
        let mut push = |key: LevelKey, out: &mut Vec<u32>| {
            let c = match local.get(&key) {
                Some(&c) => c,
                None => {
                    let c = interner.intern(key.clone());
                    local.insert(key, c);
                    c
                }
            };
            out.push(c);
        };
        match (arr.data_type(), kind) {
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, _) => {
                for &i in rows {
                    push(LevelKey::Str(dict_str(arr, i).into()), out);
                }
            }
            (DataType::Boolean, _) => {
                let b = arr.as_boolean();
                for &i in rows {
                    push(LevelKey::Bool(b.value(i)), out);
                }
            }
            (_, LevelKind::Float) => {
                let v = to_f64(arr).ok_or_else(|| Error::data(file, col, None, "cannot be read as categorical"))?;
                for &i in rows {
                    let x = v[i];
                    if x.is_nan() {
                        return Err(Error::data(file, col, Some(rows_at.file_row(i)), "NaN is not a level"));
                    }
                    push(LevelKey::Float((x + 0.0).to_bits()), out);
                }
            }
            _ => {
                let v = to_f64(arr).ok_or_else(|| Error::data(file, col, None, "cannot be read as categorical"))?;
                let exact: Option<Vec<i64>> = match arr.data_type() {
                    DataType::Int64 => Some(arr.as_primitive::<Int64Type>().values().to_vec()),
                    DataType::UInt64 => Some(
                        arr.as_primitive::<UInt64Type>()
                            .values()
                            .iter()
                            .map(|&x| x as i64)
                            .collect(),
                    ),
                    _ => None,
                };
                for &i in rows {
                    let key = exact.as_ref().map_or(v[i] as i64, |e| e[i]);
                    push(LevelKey::Int(key), out);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, DictionaryArray, Int64Array, LargeStringArray, StringArray, StringViewArray};
    use std::sync::Arc;

    /// `filter_matches` agrees with comparing `filter_strings`' per-row strings, for every
    /// array kind `--filter` meets, nulls (in keys and in a dictionary's values) included.
    #[test]
    fn filter_matches_agrees_with_filter_strings() {
        let strs = [Some("train"), None, Some("test"), Some("train"), Some("")];
        let dict_values = StringArray::from(vec![Some("test"), None, Some("train")]);
        let keys = arrow_array::Int32Array::from(vec![Some(2), Some(0), None, Some(1), Some(2), Some(0)]);
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(strs.to_vec())),
            Arc::new(LargeStringArray::from(strs.to_vec())),
            Arc::new(StringViewArray::from(strs.to_vec())),
            Arc::new(DictionaryArray::new(keys, Arc::new(dict_values))),
            Arc::new(Int64Array::from(vec![
                Some(1),
                None,
                Some(2),
                Some(-3),
                Some((1 << 53) + 1),
            ])),
            Arc::new(arrow_array::Int8Array::from(vec![Some(1), Some(-3), None, Some(7)])),
            Arc::new(arrow_array::UInt64Array::from(vec![Some(1), Some(u64::MAX), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        ];
        let wanted: [&[&str]; 9] = [
            &["train"],
            &["test", "train"],
            &[""],
            &["1", "-3"],
            &["true"],
            &["false", "true"],
            &["01", "+1", "1.0", " 1", "-0"],
            &["9007199254740992", "18446744073709551616"],
            &["7", "x"],
        ];
        for arr in &arrays {
            for want in wanted {
                let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
                let expect: Vec<bool> = filter_strings(arr.as_ref())
                    .iter()
                    .map(|v| v.as_ref().is_some_and(|v| want.contains(v)))
                    .collect();
                assert_eq!(
                    filter_matches(arr.as_ref(), &want),
                    expect,
                    "{:?} {want:?}",
                    arr.data_type()
                );
            }
        }
        // The dictionary rows: train, test, null key, null value, train, test.
        let hit = filter_matches(arrays[3].as_ref(), &["train".to_string()]);
        assert_eq!(hit, [true, false, false, false, true, false]);
    }
}
