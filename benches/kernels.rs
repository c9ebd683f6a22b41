//! Criterion benchmarks of the per-chunk kernels in `fulcrum::linalg` on synthetic chunks
//! shaped like the benchmark data (one default-size chunk of 65,536 rows; 20 dense columns;
//! categoricals of 20 and 500 levels; a sparse block of width 100,000 with ~30 sorted distinct
//! entries per row, popularity-skewed).
//!
//! Kernels: `x_beta`, `xt_v`, the sandwich per block pair (dense only, dense on a full chunk,
//! with categoricals, with sparse columns), row quadratic forms, the influence sketch's
//! accumulation (projection and Gram), and an IRLS step's factorization and solve
//! (`GramFactor`, at Adult's order 81 and the benchmark model's 539).
//!
//! Run: `cargo bench --bench kernels -- --quick` (or without `--quick` for full statistics).
//! Regressions: `cargo bench --bench kernels -- --save-baseline before` on the old commit, then
//! `cargo bench --bench kernels -- --baseline before` on the new one (criterion prints the
//! change per kernel; docs/PERFORMANCE.md).
//! Throughput is reported in rows per second.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fulcrum::design::Layout;
use fulcrum::influence::sketch::{project_rows, sketch_gram};
use fulcrum::linalg::chol::{GramFactor, ALIAS_TOL};
use fulcrum::linalg::{row_quad_forms, sandwich, symmetrize_lower, x_beta, xt_v, ColumnSubset, SandwichScratch};
use fulcrum::Chunk;

const N: usize = 65_536;
const N_DENSE: usize = 20;
const CAT_LEVELS: [u32; 2] = [20, 500];
const SPARSE_WIDTH: usize = 100_000;
const NNZ_PER_ROW: usize = 30;

/// Small deterministic PRNG (splitmix64), so the bench does not depend on `rand`'s API.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, k: u64) -> u64 {
        self.next_u64() % k
    }
    /// Roughly standard normal (sum of 4 uniforms, rescaled).
    fn normal(&mut self) -> f64 {
        ((self.f64() + self.f64() + self.f64() + self.f64()) - 2.0) * 3f64.sqrt()
    }
}

/// A synthetic chunk with the given blocks.
fn make_chunk(n: usize, n_dense: usize, cat_levels: &[u32], sparse: bool, seed: u64) -> Chunk {
    let mut r = Rng(seed);
    let mut c = Chunk {
        row_id: (0..n as u64).collect(),
        y: (0..n).map(|_| (r.f64() < 0.35) as u8 as f64).collect(),
        failures: None,
        weight: vec![1.0; n],
        offset: vec![0.0; n],
        n_dense,
        dense: (0..n * n_dense).map(|_| r.normal()).collect(),
        n_cat: cat_levels.len(),
        ..Default::default()
    };
    for &k in cat_levels {
        // Skewed: squaring a uniform favours low codes (all levels still occur at n = 65,536).
        c.cat.extend((0..n).map(|_| {
            let u = r.f64();
            ((u * u * k as f64) as u32).min(k - 1)
        }));
    }
    if sparse {
        c.indptr.reserve(n + 1);
        c.indptr.push(0);
        let mut row: Vec<u32> = Vec::with_capacity(2 * NNZ_PER_ROW);
        for _ in 0..n {
            row.clear();
            // 20..40 entries, skewed towards small indices (cube of a uniform).
            let k = NNZ_PER_ROW - 10 + r.below(21) as usize;
            for _ in 0..k {
                let u = r.f64();
                row.push(((u * u * u * SPARSE_WIDTH as f64) as u32).min(SPARSE_WIDTH as u32 - 1));
            }
            row.sort_unstable();
            row.dedup();
            for &j in &row {
                c.indices.push(j);
                c.values.push(1.0 + r.below(3) as f64);
            }
            c.indptr.push(c.indices.len() as u32);
        }
    }
    c
}

struct Fixture {
    /// Full chunk: dense + 2 categoricals + sparse.
    full: Chunk,
    full_layout: Layout,
    /// Dense-only chunk (no categorical or sparse block).
    dense: Chunk,
    dense_layout: Layout,
    /// Prior-weight-like vector and a residual-like vector, length N.
    w: Vec<f64>,
    u: Vec<f64>,
}

fn fixture() -> Fixture {
    let full = make_chunk(N, N_DENSE, &CAT_LEVELS, true, 0x5EED);
    let full_layout = Layout::new(true, N_DENSE, &CAT_LEVELS, SPARSE_WIDTH);
    let dense = make_chunk(N, N_DENSE, &[], false, 0xD15E);
    let dense_layout = Layout::new(true, N_DENSE, &[], 0);
    let mut r = Rng(7);
    let w = (0..N).map(|_| 0.05 + 0.2 * r.f64()).collect();
    let u = (0..N).map(|_| r.f64() - 0.35).collect();
    Fixture {
        full,
        full_layout,
        dense,
        dense_layout,
        w,
        u,
    }
}

/// Column subsets of the full layout used for the sandwich and quadratic forms.
fn subsets(l: &Layout) -> Vec<(&'static str, ColumnSubset)> {
    let dense_like: Vec<usize> = (0..1 + N_DENSE).collect();
    let cats_end = l.sparse_offset; // intercept + dense + c20 (19) + c500 (499) = 539 columns
    let with_cats: Vec<usize> = (0..cats_end).collect();
    // Intercept, dense, c20, and the 500 most frequent sparse columns (lowest indices).
    let mut with_sparse: Vec<usize> = (0..l.cats[0].offset + l.cats[0].width()).collect();
    with_sparse.extend(l.sparse_offset..l.sparse_offset + 500);
    vec![
        ("dense_on_full_chunk_21", ColumnSubset::new(l.p, &dense_like)),
        ("dense_cats_539", ColumnSubset::new(l.p, &with_cats)),
        ("dense_c20_sparse_540", ColumnSubset::new(l.p, &with_sparse)),
    ]
}

fn bench_x_beta(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("x_beta");
    g.throughput(Throughput::Elements(N as u64));
    let mut out = vec![0.0; N];
    let l = &f.full_layout;
    let beta: Vec<f64> = (0..l.p).map(|j| 0.01 * ((j as f64) * 0.7).sin()).collect();
    let v = f.full.view();
    g.bench_function("full", |b| {
        b.iter(|| x_beta(black_box(&v), l, black_box(&beta), &mut out))
    });
    let ld = &f.dense_layout;
    let beta_d: Vec<f64> = (0..ld.p).map(|j| 0.1 * (j as f64 + 1.0)).collect();
    let vd = f.dense.view();
    g.bench_function("dense_only", |b| {
        b.iter(|| x_beta(black_box(&vd), ld, black_box(&beta_d), &mut out))
    });
    g.finish();
}

fn bench_xt_v(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("xt_v");
    g.throughput(Throughput::Elements(N as u64));
    let l = &f.full_layout;
    let mut out = vec![0.0; l.p];
    let v = f.full.view();
    g.bench_function("full_unweighted", |b| {
        b.iter(|| xt_v(black_box(&v), l, black_box(&f.u), None, &mut out))
    });
    g.bench_function("full_weighted", |b| {
        b.iter(|| xt_v(black_box(&v), l, black_box(&f.u), Some(&f.w), &mut out))
    });
    let ld = &f.dense_layout;
    let mut out_d = vec![0.0; ld.p];
    let vd = f.dense.view();
    g.bench_function("dense_only", |b| {
        b.iter(|| xt_v(black_box(&vd), ld, black_box(&f.u), None, &mut out_d))
    });
    g.finish();
}

fn bench_sandwich(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("sandwich");
    g.throughput(Throughput::Elements(N as u64));
    let mut scratch = SandwichScratch::default();
    // Dense × dense only: a dense-only chunk, all 21 columns (one GEMM).
    let ld = &f.dense_layout;
    let sd = ColumnSubset::all(ld.p);
    let mut acc = vec![0.0; sd.len() * sd.len()];
    let vd = f.dense.view();
    g.bench_function(BenchmarkId::new("dense_only_chunk", sd.len()), |b| {
        b.iter(|| sandwich(black_box(&vd), ld, black_box(&f.w), &sd, &mut acc, &mut scratch))
    });
    let l = &f.full_layout;
    let v = f.full.view();
    for (name, s) in subsets(l) {
        let mut acc = vec![0.0; s.len() * s.len()];
        g.bench_function(BenchmarkId::new(name, s.len()), |b| {
            b.iter(|| sandwich(black_box(&v), l, black_box(&f.w), &s, &mut acc, &mut scratch))
        });
    }
    g.finish();
}

fn bench_row_quad_forms(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("row_quad_forms");
    g.throughput(Throughput::Elements(N as u64));
    let l = &f.full_layout;
    let v = f.full.view();
    let mut out = vec![0.0; N];
    for (name, s) in subsets(l) {
        // A symmetric positive-definite-ish M: the chunk's own Gram matrix plus a ridge.
        let m = s.len();
        let mut acc = vec![0.0; m * m];
        let mut scratch = SandwichScratch::default();
        sandwich(&v, l, &f.w, &s, &mut acc, &mut scratch);
        symmetrize_lower(&mut acc, m);
        for i in 0..m {
            acc[i * m + i] += 1.0;
        }
        g.bench_function(BenchmarkId::new(name, m), |b| {
            b.iter(|| row_quad_forms(black_box(&v), l, &s, black_box(&acc), &mut out))
        });
    }
    g.finish();
}

/// The influence sketch's accumulation per chunk: Z = diag(√w) X_S Ω (k = 256) and ZᵀZ, on
/// the 539-column subset (intercept, dense, both categoricals) as `diagnose --leverage sketch`
/// runs it on the p = 539 benchmark model.
fn bench_sketch(c: &mut Criterion, f: &Fixture) {
    const K: usize = 256;
    let mut g = c.benchmark_group("sketch");
    g.throughput(Throughput::Elements(N as u64));
    let l = &f.full_layout;
    let v = f.full.view();
    let (_, s) = subsets(l).swap_remove(1);
    let mut r = Rng(11);
    let omega: Vec<Vec<f64>> = s
        .columns()
        .iter()
        .map(|&j| {
            if j == 0 {
                Vec::new()
            } else {
                (0..K).map(|_| r.normal() / (K as f64).sqrt()).collect()
            }
        })
        .collect();
    let sqrt_w: Vec<f64> = f.w.iter().map(|w| w.sqrt()).collect();
    g.bench_function(BenchmarkId::new("project_rows_k256", s.len()), |b| {
        b.iter(|| project_rows(black_box(&v), l, &s, Some(0), &omega, black_box(&sqrt_w)))
    });
    let z = project_rows(&v, l, &s, Some(0), &omega, &sqrt_w);
    g.bench_function(BenchmarkId::new("gram_k256", K + 1), |b| {
        b.iter(|| sketch_gram(black_box(&z), N, K + 1))
    });
    g.finish();
}

/// An IRLS step's serial part: factor the information XᵀWX (aliasing checked) and solve for
/// the next β, at Adult's order (81, 22 times per fit) and the p = 539 benchmark model's.
fn bench_gram_factor(c: &mut Criterion) {
    let mut g = c.benchmark_group("gram_factor");
    for m in [81usize, 539] {
        let rows = 4 * m;
        let mut r = Rng(17);
        let x: Vec<f64> = (0..rows * m).map(|_| r.normal()).collect();
        let mut gram = vec![0.0; m * m];
        for row in x.chunks_exact(m) {
            for (b, &xb) in row.iter().enumerate() {
                for (a, &xa) in row.iter().enumerate() {
                    gram[b * m + a] += xa * xb;
                }
            }
        }
        let candidates: Vec<usize> = (0..m).collect();
        let ridge = vec![0.0; m];
        let rhs: Vec<f64> = (0..m).map(|_| r.normal()).collect();
        g.bench_function(BenchmarkId::new("factor_and_solve", m), |b| {
            b.iter(|| {
                let f = GramFactor::new(black_box(&gram), m, &candidates, &ridge, ALIAS_TOL).expect("full rank");
                f.solve(black_box(&rhs))
            })
        });
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let f = fixture();
    let nnz = f.full.indices.len();
    eprintln!(
        "fixture: n = {N}, p = {}, sparse nnz = {nnz} ({:.1}/row)",
        f.full_layout.p,
        nnz as f64 / N as f64
    );
    bench_x_beta(c, &f);
    bench_xt_v(c, &f);
    bench_sandwich(c, &f);
    bench_row_quad_forms(c, &f);
    bench_sketch(c, &f);
    bench_gram_factor(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = kernels
}
criterion_main!(benches);
