//! Benchmark helper (not part of the CLI): loads a dataset through `fulcrum::load` (reusing or
//! building the chunk cache), then times one whole-cache pass of each kernel:
//! `Xᵀ·v` (`xt_v_pass`), `X·β` (`x_beta_pass`), the weighted sandwich restricted to a
//! column subset (`sandwich_pass`) and a plain streaming read of the same arrays (`stream_pass`,
//! the memory-bandwidth bound). Each pass is run once as a warm-up and then `--reps`
//! times; the best and all times are printed as one JSON object on stdout.
//!
//! Usage (see scripts/bench_ingest.sh):
//!   bench_passes --formula 'y ~ ...' --cache-dir DIR [--reps 3] [--subset-cols 500] INPUT...

use std::time::Instant;

use fulcrum::design::{ModelInput, NaPolicy};
use fulcrum::linalg::pass::{sandwich_pass, x_beta_pass, xt_v_pass};
use fulcrum::linalg::ColumnSubset;
use fulcrum::progress::NoProgress;
use fulcrum::IngestOptions;

struct Args {
    inputs: Vec<String>,
    formula: String,
    cache_dir: Option<std::path::PathBuf>,
    reps: usize,
    subset_cols: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        inputs: Vec::new(),
        formula: String::new(),
        cache_dir: None,
        reps: 3,
        subset_cols: 500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match s.as_str() {
            "--formula" | "-f" => a.formula = val("--formula")?,
            "--cache-dir" => a.cache_dir = Some(val("--cache-dir")?.into()),
            "--reps" => a.reps = val("--reps")?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--subset-cols" => {
                a.subset_cols = val("--subset-cols")?
                    .parse()
                    .map_err(|e| format!("--subset-cols: {e}"))?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: bench_passes --formula F --cache-dir DIR [--reps N] [--subset-cols M] INPUT...".into(),
                )
            }
            _ if s.starts_with('-') => return Err(format!("unknown flag {s}")),
            _ => a.inputs.push(s),
        }
    }
    if a.inputs.is_empty() || a.formula.is_empty() {
        return Err("need --formula and at least one INPUT".into());
    }
    Ok(a)
}

/// Wrapping sum of the 4-byte words of `b` (a streaming read the compiler vectorises).
fn words(b: &[u32]) -> u64 {
    b.iter().fold(0u64, |h, &x| h.wrapping_add(x as u64))
}

/// One warm-up call, then `reps` timed calls; returns (best, all) in seconds.
fn time_it<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, Vec<f64>, T) {
    let mut last = f();
    let mut all = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        last = std::hint::black_box(f());
        all.push(t.elapsed().as_secs_f64());
    }
    let best = all.iter().copied().fold(f64::INFINITY, f64::min);
    (best, all, last)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_passes: {e}");
            std::process::exit(2);
        }
    };
    let model = ModelInput {
        formula: args.formula.clone(),
        filters: Vec::new(),
        na: NaPolicy::Drop,
        weights: None,
    };
    let opts = IngestOptions {
        cache_dir: args.cache_dir.clone(),
        ..IngestOptions::default()
    };
    let t0 = Instant::now();
    let ds = match fulcrum::load(&args.inputs, &model, &opts, &NoProgress) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench_passes: {e}");
            std::process::exit(1);
        }
    };
    let load_s = t0.elapsed().as_secs_f64();
    let layout = ds.design().layout.clone();
    let cache = &ds.cache;
    let n_obs = ds.counts().n_obs;
    let p = layout.p;

    // Xᵀ·v with v = y − ȳ-ish (any per-row vector derived from the chunk will do).
    let (xtv_best, xtv_all, g) = time_it(args.reps, || {
        xt_v_pass(cache, &layout, false, |v, buf| {
            for (b, &y) in buf.iter_mut().zip(v.y) {
                *b = y - 0.35;
            }
        })
    });
    let g_norm: f64 = g.iter().map(|x| x * x).sum::<f64>().sqrt();

    // X·β with a deterministic non-zero β over every column; each chunk reduces η to a sum
    // so the pass measures the kernel, not the allocation of an n-vector of results.
    let beta: Vec<f64> = (0..p).map(|j| 0.01 * ((j as f64) * 0.7).sin()).collect();
    let (xb_best, xb_all, sums) = time_it(args.reps, || {
        x_beta_pass(cache, &layout, &beta, |_, eta| eta.iter().sum::<f64>())
    });
    let eta_sum: f64 = sums.iter().sum();

    // The memory-bandwidth bound: a plain streaming read (a wrapping sum of every 8-byte word)
    // of the arrays the Xᵀ·v pass reads — response, dense block, categorical codes and the CSR
    // block — chunk by chunk through the same pass machinery (so the same page mapping and
    // release). Xᵀ·v can at best run at this speed.
    let (st_best, st_all, st_out) = time_it(args.reps, || {
        cache.par_fold(
            || (0u64, 0u64),
            |(h, b), v| {
                let mut h = h;
                h = h.wrapping_add(words(bytemuck::cast_slice(v.y)));
                h = h.wrapping_add(words(bytemuck::cast_slice(v.dense)));
                h = h.wrapping_add(words(bytemuck::cast_slice(v.cat)));
                h = h.wrapping_add(words(bytemuck::cast_slice(v.indptr)));
                h = h.wrapping_add(words(bytemuck::cast_slice(v.indices)));
                h = h.wrapping_add(words(bytemuck::cast_slice(v.values)));
                let bytes = 8 * (v.y.len() + v.dense.len() + v.values.len())
                    + 4 * (v.cat.len() + v.indptr.len() + v.indices.len());
                (h, b + bytes as u64)
            },
            |a, b| (a.0.wrapping_add(b.0), a.1 + b.1),
        )
    });

    // Sandwich (XᵀWX)[S,S] with S = the first `subset_cols` columns of the layout.
    let m = args.subset_cols.min(p);
    let cols: Vec<usize> = (0..m).collect();
    let subset = ColumnSubset::new(p, &cols);
    let (sw_best, sw_all, gram) = time_it(args.reps, || {
        sandwich_pass(cache, &layout, &subset, |v, w| {
            for (o, &y) in w.iter_mut().zip(v.y) {
                *o = 0.2 + 0.05 * y;
            }
        })
    });
    let gram_trace: f64 = (0..m).map(|i| gram[(i, i)]).sum();

    // Which blocks the subset covers.
    let mut cover = serde_json::Map::new();
    let d0 = layout.dense_offset();
    cover.insert("intercept".into(), serde_json::json!(layout.intercept && m > 0));
    cover.insert(
        "dense".into(),
        serde_json::json!(layout.n_dense.min(m.saturating_sub(d0))),
    );
    let names = &ds.design().spec.categorical;
    for (k, blk) in layout.cats.iter().enumerate() {
        let w = blk.width();
        let inside = m.saturating_sub(blk.offset).min(w);
        let name = names.get(k).map_or(format!("cat{k}"), |t| t.column.clone());
        cover.insert(
            name,
            serde_json::json!({ "columns_in_subset": inside, "block_width": w }),
        );
    }
    cover.insert(
        "sparse".into(),
        serde_json::json!(m.saturating_sub(layout.sparse_offset).min(layout.sparse_width)),
    );

    let out = serde_json::json!({
        "n_obs": n_obs,
        "p": p,
        "chunks": cache.n_chunks(),
        "cache_bytes": cache.bytes(),
        "threads": rayon::current_num_threads(),
        "load_s": load_s,
        "load_status": format!("{:?}", ds.status),
        "load_timings": ds.timings,
        "reps": args.reps,
        "xt_v_pass": { "best_s": xtv_best, "all_s": xtv_all, "check_norm": g_norm },
        "stream_pass": { "best_s": st_best, "all_s": st_all, "bytes": st_out.1, "check": st_out.0 },
        "x_beta_pass": { "best_s": xb_best, "all_s": xb_all, "check_sum": eta_sum },
        "sandwich_pass": { "subset_cols": m, "covers": cover, "best_s": sw_best, "all_s": sw_all, "check_trace": gram_trace },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
