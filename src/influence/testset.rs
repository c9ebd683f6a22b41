//! A test (or reference) set encoded under the *training* design, for attribution and fairness:
//! the test rows are ingested with the same formula, then each row is mapped into the training
//! coefficient space (categorical levels matched by value, sparse indices by term). A level the
//! training data never saw is an error, as in R's `predict` ("factor has new levels").

use crate::error::{Error, Result};
use crate::ingest::Dataset;

/// One test row in training coordinates.
#[derive(Debug, Clone)]
pub struct TestRow {
    /// Row id in the test inputs.
    pub row: u64,
    /// Response as the family sees it.
    pub y: f64,
    /// Prior weight.
    pub a: f64,
    /// Offset.
    pub offset: f64,
    /// Non-zero entries (training column, value), increasing column.
    pub x: Vec<(usize, f64)>,
}

/// Map every row of `test` (ingested with the same model spec) into `train`'s columns.
pub fn map_test_rows(train: &Dataset, test: &Dataset) -> Result<Vec<TestRow>> {
    let (td, sd) = (train.design(), test.design());
    let (tl, sl) = (&td.layout, &sd.layout);
    if tl.intercept != sl.intercept || tl.n_dense != sl.n_dense || td.levels.len() != sd.levels.len() {
        return Err(Error::Usage(
            "the test set does not have the training model's terms".into(),
        ));
    }
    // Test level code → training column (None: the training reference level), per term.
    let mut cat_map: Vec<Vec<std::result::Result<Option<usize>, String>>> = Vec::new();
    for (k, levels) in sd.levels.iter().enumerate() {
        let train_levels = &td.levels[k];
        cat_map.push(
            levels
                .iter()
                .map(|l| match train_levels.binary_search(l) {
                    Ok(c) => Ok(tl.cats[k].column(c as u32)),
                    Err(_) => Err(l.clone()),
                })
                .collect(),
        );
    }
    let off = |w: &[u64]| -> Vec<usize> {
        let mut o = vec![0usize];
        for x in w {
            o.push(o.last().copied().unwrap_or(0) + *x as usize);
        }
        o
    };
    let (t_off, s_off) = (off(&td.sparse_widths), off(&sd.sparse_widths));
    let per: Vec<Result<Vec<TestRow>>> = test.cache.par_map(|_, v| {
        let mut out = Vec::with_capacity(v.n);
        for i in 0..v.n {
            let (y, a) = crate::glm::irls::response(&v, i);
            let mut x = Vec::new();
            if tl.intercept {
                x.push((0, 1.0));
            }
            for j in 0..tl.n_dense {
                x.push((tl.dense_offset() + j, v.dense_col(j)[i]));
            }
            for (k, map) in cat_map.iter().enumerate() {
                match &map[v.cat_col(k)[i] as usize] {
                    Ok(Some(j)) => x.push((*j, 1.0)),
                    Ok(None) => {}
                    Err(level) => {
                        let (file, r) = test.locate(v.row_id[i]);
                        return Err(Error::data(
                            file,
                            &sd.spec.categorical[k].column,
                            Some(r),
                            format!("level '{level}' does not occur in the training data (R: factor has new levels)"),
                        ));
                    }
                }
            }
            let (idx, val) = v.sparse_row(i);
            for (&s, &a) in idx.iter().zip(val) {
                let s = s as usize;
                let t = s_off.partition_point(|&o| o <= s) - 1;
                let j = s - s_off[t];
                if j >= td.sparse_widths[t] as usize {
                    let (file, r) = test.locate(v.row_id[i]);
                    return Err(Error::data(
                        file,
                        &sd.spec.sparse[t].column,
                        Some(r),
                        format!("index {j} is beyond the training data's width {}", td.sparse_widths[t]),
                    ));
                }
                x.push((tl.sparse_offset + t_off[t] + j, a));
            }
            x.sort_by_key(|e| e.0);
            out.push(TestRow {
                row: v.row_id[i],
                y,
                a,
                offset: v.offset[i],
                x,
            });
        }
        Ok(out)
    });
    let mut rows = Vec::new();
    for p in per {
        rows.extend(p?);
    }
    Ok(rows)
}
