//! Ingest end to end through the library: the design matches statsmodels' (outside oracle in
//! fixtures/reference), values match an independent plain Arrow read, row ids follow the
//! input, several files equal one, and the cache is reused, invalidated and rebuilt correctly.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, Int8Type};
use arrow_array::{Array, RecordBatch};
use fulcrum::design::{ModelInput, NaPolicy};
use fulcrum::ingest::{CacheStatus, IngestOptions};
use fulcrum::linalg::pass::{sandwich_pass, x_beta_pass, xt_v_pass};
use fulcrum::linalg::{materialize, ColumnSubset};
use fulcrum::progress::NoProgress;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

const ADULT: &str = "income_gt50k ~ age + education_num + capital_gain + capital_loss + hours_per_week + workclass + marital_status + occupation + relationship + race + sex + native_country";

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn reference(name: &str) -> Value {
    serde_json::from_reader(File::open(fixture(&format!("reference/{name}"))).unwrap()).unwrap()
}

fn model(formula: &str, filters: &[(&str, &str)]) -> ModelInput {
    ModelInput {
        formula: formula.into(),
        filters: filters.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        na: NaPolicy::Drop,
        weights: None,
    }
}

fn load(inputs: &[String], m: &ModelInput, cache: &Path) -> fulcrum::Dataset {
    let opts = IngestOptions {
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    };
    fulcrum::load(inputs, m, &opts, &NoProgress).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The whole file through the plain (non-dictionary) Arrow reader.
fn read_all(path: &str) -> RecordBatch {
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = b.map(|r| r.unwrap()).collect();
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "fixtures are read in one batch");
    batches[0].clone()
}

fn str_at(b: &RecordBatch, col: &str, i: usize) -> Option<String> {
    let a = b.column_by_name(col).unwrap();
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        arrow_schema::DataType::LargeUtf8 => a.as_string::<i64>().value(i).to_string(),
        _ => a.as_string::<i32>().value(i).to_string(),
    })
}

#[test]
fn adult_design_matches_statsmodels() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = load(
        &[fixture("adult.parquet")],
        &model(ADULT, &[("split", "train")]),
        tmp.path(),
    );
    let r = reference("sm_adult_logistic.json");
    let d = ds.design();
    assert_eq!(d.coef_names().collect::<Vec<_>>(), strings(&r["coef_names"]));
    assert_eq!(d.n_params(), 81);
    assert_eq!(ds.counts().n_obs, 30162);
    assert_eq!(ds.counts().n_obs, r["n_obs"].as_u64().unwrap());
    assert_eq!(ds.counts().n_rows_read, 48842);
    assert_eq!(
        ds.counts().n_rows_read - ds.counts().n_filtered_out,
        r["n_rows_after_filter"].as_u64().unwrap()
    );
    for (t, lv) in d.spec.categorical.iter().zip(&d.levels) {
        assert_eq!(
            lv,
            &strings(&r["design"]["categorical_levels"][&t.column]),
            "{}",
            t.column
        );
    }
    // Row ids: the statsmodels row_index (0-based position in the file) of every kept row.
    let ids: Vec<u64> = (0..ds.cache.n_chunks())
        .flat_map(|i| ds.cache.view(i).row_id.to_vec())
        .collect();
    let want: Vec<u64> = r["row_index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, want);

    // Values against an independent plain read of the file.
    let raw = read_all(&fixture("adult.parquet"));
    let age = raw.column_by_name("age").unwrap().as_primitive::<Int64Type>();
    let y = raw.column_by_name("income_gt50k").unwrap().as_primitive::<Int8Type>();
    let layout = &d.layout;
    let mut checked = 0;
    for c in 0..ds.cache.n_chunks() {
        let v = ds.cache.view(c);
        let x = materialize(&v, layout);
        for (i, xi) in x.iter().enumerate() {
            let row = v.row_id[i] as usize;
            assert_eq!(v.y[i], y.value(row) as f64);
            assert_eq!(v.dense_col(0)[i], age.value(row) as f64);
            assert_eq!(v.weight[i], 1.0);
            // The one-hot of occupation names the raw string.
            let occ = str_at(&raw, "occupation", row).unwrap();
            let hot: Vec<_> = d
                .coef_names()
                .zip(xi)
                .filter(|(n, &val)| n.starts_with("occupation[") && val == 1.0)
                .map(|(n, _)| n)
                .collect();
            if occ == d.levels[2][0] {
                assert!(hot.is_empty());
            } else {
                assert_eq!(hot, [format!("occupation[{occ}]")]);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 30162);
}

#[test]
fn cbind_log_and_sparse_terms() {
    let tmp = tempfile::tempdir().unwrap();
    // star98: binomial counts through cbind; names match statsmodels.
    let r = reference("sm_star98_binomial.json");
    let num = strings(&r["design"]["numeric"]);
    let f = format!("cbind(NABOVE, NBELOW) ~ {}", num.join(" + "));
    let ds = load(&[fixture("sm_star98.parquet")], &model(&f, &[]), tmp.path());
    assert_eq!(ds.design().coef_names().collect::<Vec<_>>(), strings(&r["coef_names"]));
    let v = ds.cache.view(0);
    let raw = read_all(&fixture("sm_star98.parquet"));
    let nb = raw.column_by_name("NBELOW").unwrap().as_primitive::<Float64Type>();
    assert_eq!(v.failures.unwrap()[5], nb.value(5));

    // cpunish: log(VC100k96) is the natural log of the column.
    let ds = load(
        &[fixture("sm_cpunish.parquet")],
        &model(
            "EXECUTIONS ~ INCOME + PERPOVERTY + PERBLACK + log(VC100k96) + SOUTH + DEGREE",
            &[],
        ),
        tmp.path(),
    );
    assert_eq!(ds.design().coef_name(4), "log(VC100k96)");
    let raw = read_all(&fixture("sm_cpunish.parquet"));
    let vc = raw.column_by_name("VC100k96").unwrap().as_primitive::<Float64Type>();
    let v = ds.cache.view(0);
    for i in 0..v.n {
        assert_eq!(v.dense_col(3)[i], vc.value(i).ln());
    }

    // sms_spam: a sparse bag of words, width from the file's `bow_dim` metadata.
    let ds = load(
        &[fixture("sms_spam.parquet")],
        &model("is_spam ~ sparse(bow)", &[]),
        tmp.path(),
    );
    let d = ds.design();
    assert_eq!(d.n_params(), 1 + 4325);
    assert_eq!(d.coef_name(1), "bow[0]");
    assert_eq!(d.coef_name(4325), "bow[4324]");
    assert_eq!(d.columns_of("bow[4324]"), Some(vec![4325]));
    let raw = read_all(&fixture("sms_spam.parquet"));
    let bow = raw.column_by_name("bow").unwrap().as_list::<i32>();
    let total: usize = (0..bow.len()).map(|i| bow.value_length(i) as usize).sum();
    let nnz: usize = (0..ds.cache.n_chunks()).map(|i| ds.cache.view(i).nnz()).sum();
    assert_eq!(nnz, total);
}

#[test]
fn no_intercept_dot_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    // Without an intercept the first categorical keeps every level (R's rule), later ones drop the first.
    let ds = load(
        &[fixture("insurance.parquet")],
        &model("charges ~ sex + region + age - 1", &[]),
        tmp.path(),
    );
    let names: Vec<_> = ds.design().coef_names().collect();
    assert_eq!(names[0], "age");
    assert_eq!(&names[1..3], ["sex[female]", "sex[male]"]);
    assert_eq!(names[3], "region[northwest]");
    // `.` is every other column; `- col` removes one.
    let ds = load(
        &[fixture("insurance.parquet")],
        &model("charges ~ . - smoker_yes - children", &[]),
        tmp.path(),
    );
    assert_eq!(
        ds.design().coef_names().collect::<Vec<_>>(),
        [
            "(Intercept)",
            "age",
            "bmi",
            "sex[male]",
            "smoker[yes]",
            "region[northwest]",
            "region[southeast]",
            "region[southwest]"
        ]
    );
    // Two values of one filter column are OR'd.
    let ds = load(
        &[fixture("insurance.parquet")],
        &model(
            "charges ~ age + region",
            &[("region", "southeast"), ("region", "northwest")],
        ),
        tmp.path(),
    );
    assert_eq!(ds.design().levels[0], ["northwest", "southeast"]);
    assert_eq!(ds.counts().n_obs, 364 + 325);
}

/// Split a fixture into several files with small row groups, in a new directory `dir`.
fn split_file(src: &str, dir: &Path, parts: usize, rg_rows: usize) -> Vec<PathBuf> {
    std::fs::create_dir(dir).unwrap();
    let all = read_all(src);
    let n = all.num_rows();
    let mut out = Vec::new();
    for k in 0..parts {
        let (a, b) = (k * n / parts, (k + 1) * n / parts);
        let p = dir.join(format!("part-{k:02}.parquet"));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rg_rows))
            .build();
        let mut w = ArrowWriter::try_new(File::create(&p).unwrap(), all.schema(), Some(props)).unwrap();
        w.write(&all.slice(a, b - a)).unwrap();
        w.close().unwrap();
        out.push(p);
    }
    out
}

#[test]
fn several_files_equal_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    split_file(&fixture("adult.parquet"), &data, 3, 5000);
    let m = model(ADULT, &[("split", "train")]);
    let one = load(&[fixture("adult.parquet")], &m, &tmp.path().join("c1"));
    for inputs in [
        vec![data.display().to_string()],
        vec![format!("{}/part-*.parquet", data.display())],
        vec![
            data.join("part-02.parquet").display().to_string(),
            data.join("part-00.parquet").display().to_string(),
            data.join("part-01.parquet").display().to_string(),
        ],
    ] {
        let many = load(&inputs, &m, &tmp.path().join("c2"));
        assert_eq!(many.design(), one.design());
        assert_eq!(many.counts(), one.counts());
        assert!(many.cache.n_chunks() > 3, "several row groups become several chunks");
        let cat = |ds: &fulcrum::Dataset| -> (Vec<u64>, Vec<f64>, Vec<u32>) {
            let mut r = (vec![], vec![], vec![]);
            for i in 0..ds.cache.n_chunks() {
                let v = ds.cache.view(i);
                r.0.extend_from_slice(v.row_id);
                r.1.extend_from_slice(v.dense_col(4));
                r.2.extend_from_slice(v.cat_col(6));
            }
            r
        };
        assert_eq!(cat(&many), cat(&one));
    }
}

#[test]
fn passes_match_dense_and_are_thread_count_independent() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = IngestOptions {
        cache_dir: Some(tmp.path().to_path_buf()),
        chunk_rows: 4096,
        ..Default::default()
    };
    let ds = fulcrum::load(
        &[fixture("adult.parquet")],
        &model(ADULT, &[("split", "train")]),
        &opts,
        &NoProgress,
    )
    .unwrap();
    assert!(ds.cache.n_chunks() >= 8);
    let layout = ds.design().layout.clone();
    let p = layout.p;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let g = xt_v_pass(&ds.cache, &layout, true, |v, buf| {
                for (b, &y) in buf.iter_mut().zip(v.y) {
                    *b = y - 0.25;
                }
            });
            let s = sandwich_pass(&ds.cache, &layout, &ColumnSubset::all(p), |v, w| {
                for (i, wi) in w.iter_mut().enumerate() {
                    *wi = 0.1 + (v.row_id[i] % 7) as f64;
                }
            });
            (g, s)
        })
    };
    let (g1, s1) = run(1);
    let (g2, s2) = run(2);
    assert_eq!(g1, g2, "bit-identical with 1 and 2 threads");
    assert!(s1 == s2);
    // Against the dense computation.
    let mut g = vec![0.0; p];
    let mut s = vec![vec![0.0; p]; p];
    for c in 0..ds.cache.n_chunks() {
        let v = ds.cache.view(c);
        for (i, row) in materialize(&v, &layout).iter().enumerate() {
            let w = 0.1 + (v.row_id[i] % 7) as f64;
            for a in 0..p {
                g[a] += row[a] * (v.y[i] - 0.25);
                for b in 0..p {
                    s[a][b] += w * row[a] * row[b];
                }
            }
        }
    }
    for a in 0..p {
        assert!((g[a] - g1[a]).abs() <= 1e-9 * (1.0 + g[a].abs()), "g[{a}]");
        for b in 0..p {
            assert!(
                (s[a][b] - s1[(a, b)]).abs() <= 1e-9 * (1.0 + s[a][b].abs()),
                "S[{a},{b}]"
            );
        }
    }
    // X·β pass: η = Xβ + offset, chunk order preserved.
    let beta: Vec<f64> = (0..p).map(|j| (j as f64).sin()).collect();
    let etas = x_beta_pass(&ds.cache, &layout, &beta, |_, eta| eta.to_vec());
    let v0 = ds.cache.view(0);
    let x0 = materialize(&v0, &layout);
    let want: f64 = x0[3].iter().zip(&beta).map(|(a, b)| a * b).sum();
    assert!((etas[0][3] - want).abs() < 1e-10);
}

#[test]
fn cache_is_reused_and_rebuilt_when_stale_or_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in.parquet");
    std::fs::copy(fixture("sm_star98.parquet"), &src).unwrap();
    let inputs = [src.display().to_string()];
    let m = model("NABOVE ~ LOWINC + PERASIAN", &[]);
    let cache = tmp.path().join("cache");
    let a = load(&inputs, &m, &cache);
    assert_eq!(a.status, CacheStatus::Built);
    let dir = a.cache.dir().to_path_buf();
    drop(a);
    let b = load(&inputs, &m, &cache);
    assert_eq!(b.status, CacheStatus::Reused);
    drop(b);
    // Flip one byte of a chunk file: detected by checksum, rebuilt.
    let chunk = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "bin"))
        .unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    let k = bytes.len() - 9;
    bytes[k] ^= 0x40;
    std::fs::write(&chunk, bytes).unwrap();
    let c = load(&inputs, &m, &cache);
    match &c.status {
        CacheStatus::Rebuilt(r) => assert!(r.contains("checksum"), "{r}"),
        s => panic!("expected a rebuild, got {s:?}"),
    }
    drop(c);
    // Damaged manifest: rebuilt.
    std::fs::write(dir.join("manifest.json"), "{ not json").unwrap();
    assert!(matches!(load(&inputs, &m, &cache).status, CacheStatus::Rebuilt(_)));
    // The input changes (rewritten with other rows): rebuilt with the new rows.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let raw = read_all(&fixture("sm_star98.parquet"));
    let mut w = ArrowWriter::try_new(File::create(&src).unwrap(), raw.schema(), None).unwrap();
    w.write(&raw.slice(0, 100)).unwrap();
    w.close().unwrap();
    let d = load(&inputs, &m, &cache);
    match &d.status {
        CacheStatus::Rebuilt(r) => assert!(r.contains("changed"), "{r}"),
        s => panic!("expected a rebuild, got {s:?}"),
    }
    assert_eq!(d.counts().n_obs, 100);
    // Nothing but the published cache is left behind (no temporary build directories).
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// A row group's batches are encoded on other threads while the next decodes; a bad value must
/// still be reported at the first bad row of the file, as a serial read would, with one thread
/// or two, and leave no cache behind. Here one row group of 400 rows, 10-row batches, and
/// infinite values at rows 157, 171 and 343 (batches 15, 17 and 34: the later ones may be in
/// flight, or done first, when batch 15 fails).
#[test]
fn the_first_bad_row_is_reported_when_batches_encode_in_parallel() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 400;
    let mut x: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
    x[157] = f64::INFINITY;
    x[171] = f64::INFINITY;
    x[343] = f64::NEG_INFINITY;
    let y: Vec<f64> = (0..n).map(|i| (i % 5) as f64).collect();
    let g: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
    let path = tmp.path().join("bad.parquet");
    common::write_parquet(
        &path,
        &common::batch(vec![
            ("y", common::f64s(&y)),
            ("x", common::f64s(&x)),
            ("g", common::strs(&g)),
        ]),
    );
    let input = [path.display().to_string()];
    for threads in [1, 2, 2, 2, 2, 2] {
        let cache = tmp.path().join(format!("cache-{threads}"));
        let opts = IngestOptions {
            cache_dir: Some(cache.clone()),
            chunk_rows: 10,
            ..Default::default()
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let err = pool
            .install(|| fulcrum::load(&input, &model("y ~ x + g", &[]), &opts, &NoProgress))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 157") && err.contains("column 'x'"),
            "{threads} threads: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(&cache)
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{threads} threads: a failed build left {left:?}");
    }
}

/// Decoding a row group's columns with two or three readers and joining their batches gives
/// the batches one reader gives: same schema (columns in file order, dictionary types kept),
/// same values, same row offsets. Adult (17 columns, one row group, 16 batches of 3,000 rows)
/// and a file with a nested sparse column, several row groups, a batch size that does not
/// divide them and a column asked for twice. Also with a row selection (runs of 5 selected, 7
/// skipped): the batches' file rows are the selected ones (the sparse file's `x` column is its
/// row number), with any number of readers.
#[test]
fn split_column_decoding_equals_one_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 1000;
    let rows: Vec<Vec<(i32, f32)>> = (0..n)
        .map(|i| {
            (0..(i % 4))
                .map(|k| ((i * 7 + k) as i32 % 50, k as f32 + 0.5))
                .collect()
        })
        .collect();
    let refs: Vec<&[(i32, f32)]> = rows.iter().map(|r| r.as_slice()).collect();
    let b = common::batch(vec![
        ("y", common::f64s(&(0..n).map(|i| (i % 2) as f64).collect::<Vec<_>>())),
        ("tokens", common::sparse(&refs)),
        (
            "g",
            common::strs(&(0..n).map(|i| ["a", "b", "c"][i % 3]).collect::<Vec<_>>()),
        ),
        ("x", common::i64s(&(0..n as i64).collect::<Vec<_>>())),
    ]);
    let sp = tmp.path().join("sparse.parquet");
    common::write_parquet_with(&sp, &[b], common::row_group_props(300));
    for (path, cols, batch_rows) in [
        (PathBuf::from(fixture("adult.parquet")), None, 3000),
        (sp, Some(vec!["x", "tokens", "y", "g", "x"]), 128),
    ] {
        let set = fulcrum::source::InputSet::open(std::slice::from_ref(&path)).unwrap();
        let names: Vec<String> = match cols {
            Some(c) => c.iter().map(|s| s.to_string()).collect(),
            None => set.schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        // Every row, or runs of 5 selected and 7 skipped rows (a pushed-down filter's selection).
        let selection = |task: fulcrum::source::RowGroupTask| {
            let mut v = Vec::new();
            let mut left = task.n_rows as usize;
            while left > 0 {
                let k = left.min(5);
                v.push(RowSelector::select(k));
                left -= k;
                let k = left.min(7);
                if k > 0 {
                    v.push(RowSelector::skip(k));
                    left -= k;
                }
            }
            RowSelection::from(v)
        };
        let read = |ways: usize, selected: bool| {
            let mut out = Vec::new();
            for task in set.row_group_tasks() {
                let sel = selected.then(|| selection(task));
                set.read_row_group_split(task, &names, batch_rows, ways, sel.as_ref(), |b, rows| {
                    out.push((rows, b));
                    Ok(())
                })
                .unwrap();
            }
            out
        };
        for selected in [false, true] {
            let one = read(1, selected);
            assert!(one.len() > 3, "{}: several batches", path.display());
            let rows: Vec<u64> = one
                .iter()
                .flat_map(|(r, b)| (0..b.num_rows()).map(|i| r.file_row(i)))
                .collect();
            let n_rows = set.files[0].n_rows;
            let want: Vec<u64> = (0..n_rows).filter(|&i| !selected || i % 12 < 5).collect();
            assert_eq!(rows, want, "{}: the batches' file rows", path.display());
            if let Some(x) = one[0].1.column_by_name("x") {
                // The sparse file's x is its row number.
                let xs: Vec<i64> = one
                    .iter()
                    .flat_map(|(_, b)| {
                        b.column_by_name("x")
                            .unwrap()
                            .as_primitive::<Int64Type>()
                            .values()
                            .to_vec()
                    })
                    .collect();
                assert_eq!(xs, want.iter().map(|&r| r as i64).collect::<Vec<_>>());
                assert_eq!(x.len(), one[0].1.num_rows());
            }
            for ways in [2, 3] {
                let split = read(ways, selected);
                assert_eq!(split.len(), one.len());
                for ((r1, b1), (r2, b2)) in one.iter().zip(&split) {
                    assert_eq!(r1, r2);
                    assert_eq!(b1.schema(), b2.schema(), "{}: {ways} ways", path.display());
                    assert_eq!(
                        b1,
                        b2,
                        "{}: {ways} ways, batch at row {:?}",
                        path.display(),
                        r1.file_row(0)
                    );
                }
            }
        }
    }
}

/// A `--filter` whose kept rows form blocks is pushed down into the Parquet read (its column
/// decoded first, the others only for the rows it keeps). One row group of 6,000 rows whose
/// filter column alternates in blocks of 1,500, read in 1,024-row batches: batches that span a
/// skipped block carry a list of file rows. Every kept row's id and values match the file, and
/// the counts add up.
#[test]
fn pushed_down_filter_over_blocks_keeps_row_ids_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 6000usize;
    let g: Vec<&str> = (0..n)
        .map(|i| if (i / 1500) % 2 == 0 { "keep" } else { "drop" })
        .collect();
    let x: Vec<i64> = (0..n as i64).map(|i| 3 * i + 1).collect();
    let y: Vec<f64> = (0..n).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect();
    let b = common::batch(vec![
        ("y", common::f64s(&y)),
        ("x", common::i64s(&x)),
        ("g", common::strs(&g)),
    ]);
    let path = tmp.path().join("blocks.parquet");
    common::write_parquet_with(&path, &[b], common::row_group_props(n));
    let opts = IngestOptions {
        cache_dir: Some(tmp.path().join("cache")),
        chunk_rows: 1024,
        ..Default::default()
    };
    let ds = fulcrum::load(
        &[path.display().to_string()],
        &model("y ~ x", &[("g", "keep")]),
        &opts,
        &NoProgress,
    )
    .unwrap();
    let want: Vec<u64> = (0..n as u64).filter(|&i| (i / 1500) % 2 == 0).collect();
    let (mut ids, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ds.cache.n_chunks() {
        let v = ds.cache.view(i);
        ids.extend_from_slice(v.row_id);
        xs.extend_from_slice(v.dense_col(0));
        ys.extend_from_slice(v.y);
    }
    assert_eq!(ids, want);
    for (k, &r) in want.iter().enumerate() {
        assert_eq!(xs[k], x[r as usize] as f64, "x of row {r}");
        assert_eq!(ys[k], y[r as usize], "y of row {r}");
    }
    let c = ds.counts();
    assert_eq!((c.n_rows_read, c.n_filtered_out, c.n_obs), (n as u64, 3000, 3000));
}

/// A `--filter` whose kept rows are scattered (not worth a row selection: the Parquet read
/// decodes every row and the encoder drops the others). Row groups of 50 rows over three files
/// and 16-row batches: every kept row's id and values match a plain read of the file (an
/// independent Arrow reader, filtered here), and the counts add up.
#[test]
fn scattered_filter_keeps_row_ids_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    split_file(&fixture("insurance.parquet"), &data, 3, 50);
    let opts = IngestOptions {
        cache_dir: Some(tmp.path().join("cache")),
        chunk_rows: 16,
        ..Default::default()
    };
    let m = model(
        "charges ~ age + region",
        &[("region", "southeast"), ("region", "northwest")],
    );
    let ds = fulcrum::load(&[data.display().to_string()], &m, &opts, &NoProgress).unwrap();
    let raw = read_all(&fixture("insurance.parquet"));
    let want: Vec<u64> = (0..raw.num_rows())
        .filter(|&i| matches!(str_at(&raw, "region", i).as_deref(), Some("southeast" | "northwest")))
        .map(|i| i as u64)
        .collect();
    assert!(
        want.len() > 600 && want.len() < raw.num_rows() - 600,
        "the filter keeps about half the rows"
    );
    assert!(want.windows(2).any(|w| w[1] > w[0] + 1), "kept rows are scattered");
    let mut ids = Vec::new();
    let mut y = Vec::new();
    let mut age = Vec::new();
    for i in 0..ds.cache.n_chunks() {
        let v = ds.cache.view(i);
        ids.extend_from_slice(v.row_id);
        y.extend_from_slice(v.y);
        age.extend_from_slice(v.dense_col(0));
    }
    assert_eq!(ids, want);
    let charges = raw.column_by_name("charges").unwrap().as_primitive::<Float64Type>();
    let raw_age = raw.column_by_name("age").unwrap().as_primitive::<Int64Type>();
    for (k, &r) in want.iter().enumerate() {
        assert_eq!(y[k], charges.value(r as usize), "charges of row {r}");
        assert_eq!(age[k], raw_age.value(r as usize) as f64, "age of row {r}");
    }
    let c = ds.counts();
    assert_eq!(c.n_rows_read, raw.num_rows() as u64);
    assert_eq!(c.n_filtered_out, (raw.num_rows() - want.len()) as u64);
    assert_eq!(c.n_obs, want.len() as u64);
}

/// A small cache is built in memory and each chunk file written once with its final codes; a
/// larger one writes provisional files and rewrites their codes in place. Both give the same
/// files, byte for byte, and the same manifest (checksums, categorical nonzeros), over several
/// chunks with filtered and dropped rows (Adult, chunks of 4,096 rows).
#[test]
fn held_and_written_caches_are_identical() {
    let m = model(ADULT, &[("split", "train")]);
    let build = |held_cache_bytes: u64| {
        let dir = tempfile::tempdir().unwrap();
        let opts = IngestOptions {
            cache_dir: Some(dir.path().to_path_buf()),
            chunk_rows: 4096,
            held_cache_bytes,
        };
        let ds = fulcrum::load(&[fixture("adult.parquet")], &m, &opts, &NoProgress).unwrap();
        assert_eq!(ds.status, CacheStatus::Built);
        assert!(ds.cache.n_chunks() > 4);
        let cache_dir = ds.cache.dir().to_path_buf();
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&cache_dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        (dir, files)
    };
    let (_held_dir, held) = build(u64::MAX);
    let (_written_dir, written) = build(0);
    assert_eq!(held.len(), written.len());
    for ((name_h, bytes_h), (name_w, bytes_w)) in held.iter().zip(&written) {
        assert_eq!(name_h, name_w);
        assert!(bytes_h == bytes_w, "{name_h} differs");
    }
    assert!(held.iter().any(|(n, _)| n == "manifest.json"));
}
