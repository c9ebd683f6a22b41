//! Coordinate descent, in RAM, for the penalised quadratic subproblem of one IRLS step
//! (glmnet's "covariance mode", on a Gram matrix that a pass accumulated):
//!
//! minimise over β   −gᵀ(β − β₀) + ½ (β − β₀)ᵀ H (β − β₀) + Σ_b [ l1_b ‖β_b‖₂ + l2_b/2 ‖β_b‖₂² ]
//!
//! where H = XᵀWX/N and g = score/N over the m columns of the subproblem, and the blocks b
//! partition the columns: a single column is a lasso / elastic-net coordinate (‖·‖₂ = |·|), a
//! larger block is a group-lasso group. Blocks with l1 = l2 = 0 are unpenalised (the intercept).
//!
//! Updates: a single column is glmnet's soft-thresholded coordinate step; a group whose block of H
//! is diagonal (the one-hot levels of one categorical) is solved exactly (a scalar root of
//! ‖b(t)‖ = t); any other group takes the majorised step of gglasso/grpreg with the block's
//! largest eigenvalue as curvature. The gradient r = g − H(β − β₀) is kept up to date, so a
//! coordinate costs O(m) only when it moves.

use faer::{Mat, Side};

/// Sweeps over the active set after which coordinate descent tries the exact solve ([`polish`]).
const POLISH_EVERY: usize = 50;

/// How one block of columns is updated.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockKind {
    /// One column (lasso / elastic net, or unpenalised).
    Single,
    /// A group whose block of H is diagonal: exact update.
    DiagonalGroup,
    /// A general group: majorised update with curvature `l` ≥ λ_max(H_bb).
    Group {
        /// The curvature bound.
        l: f64,
    },
}

/// One block of the subproblem.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Local column indices (into the m columns).
    pub cols: Vec<usize>,
    /// Multiplier of ‖β_b‖₂ (λ·α·weight).
    pub l1: f64,
    /// Multiplier of ½‖β_b‖₂² (λ·(1 − α)·factor).
    pub l2: f64,
    /// Update rule.
    pub kind: BlockKind,
}

impl Block {
    /// Classify a group of columns of the m×m column-major `h`: single, diagonal or general
    /// (with its largest eigenvalue as the curvature bound).
    pub fn new(cols: Vec<usize>, l1: f64, l2: f64, h: &[f64], m: usize) -> Block {
        let kind = if cols.len() == 1 {
            BlockKind::Single
        } else if cols
            .iter()
            .all(|&a| cols.iter().all(|&b| a == b || h[b * m + a] == 0.0))
        {
            BlockKind::DiagonalGroup
        } else {
            let k = cols.len();
            let sub = Mat::from_fn(k, k, |a, b| h[cols[b] * m + cols[a]]);
            let top = sub
                .self_adjoint_eigenvalues(Side::Lower)
                .ok()
                .and_then(|ev| ev.into_iter().reduce(f64::max))
                // Gershgorin's bound if the eigensolver fails.
                .unwrap_or_else(|| {
                    (0..k)
                        .map(|a| (0..k).map(|b| sub[(a, b)].abs()).sum::<f64>())
                        .fold(0.0, f64::max)
                });
            BlockKind::Group { l: top * (1.0 + 1e-12) }
        };
        Block { cols, l1, l2, kind }
    }
}

/// Result of [`solve`].
#[derive(Debug, Clone)]
pub struct CdResult {
    /// The minimiser (m values).
    pub beta: Vec<f64>,
    /// max_k H_kk (β_k − β₀_k)²: the size of the step, glmnet's IRLS convergence measure.
    pub step: f64,
    /// Sweeps over the blocks.
    pub sweeps: usize,
    /// Whether the sweeps converged (else `max_sweeps` was reached).
    pub converged: bool,
}

fn soft(u: f64, t: f64) -> f64 {
    if u > t {
        u - t
    } else if u < -t {
        u + t
    } else {
        0.0
    }
}

/// The exact minimiser of ½ bᵀ diag(h) b − qᵀ b + l1 ‖b‖ + l2/2 ‖b‖² (‖q‖ > l1 > 0): b_j =
/// q_j t / (t (h_j + l2) + l1) with t = ‖b‖, the root of Σ q_j²/(t a_j + l1)² = 1.
fn diagonal_group(q: &[f64], h: &[f64], l1: f64, l2: f64, out: &mut [f64]) {
    let a: Vec<f64> = h.iter().map(|&x| x + l2).collect();
    let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
    let f = |t: f64| -> (f64, f64) {
        let mut v = -1.0;
        let mut d = 0.0;
        for (&qj, &aj) in q.iter().zip(&a) {
            if aj > 0.0 {
                let den = t * aj + l1;
                v += qj * qj / (den * den);
                d -= 2.0 * qj * qj * aj / (den * den * den);
            }
        }
        (v, d)
    };
    let amin = a.iter().copied().filter(|&x| x > 0.0).fold(f64::INFINITY, f64::min);
    let (mut lo, mut hi) = (0.0, if amin.is_finite() { qn / amin } else { 0.0 });
    let mut t = 0.5 * (lo + hi);
    for _ in 0..200 {
        let (v, d) = f(t);
        if v.abs() < 1e-15 {
            break;
        }
        if v > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
        let newton = t - v / d;
        t = if d < 0.0 && newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
    }
    for ((o, &qj), &aj) in out.iter_mut().zip(q).zip(&a) {
        *o = if aj > 0.0 { qj * t / (t * aj + l1) } else { 0.0 };
    }
}

/// The exact minimiser for the lasso / elastic net once coordinate descent has found the active
/// set and signs: on the active set A the optimality conditions are linear,
/// (H_AA + diag(l2)) β_A = g_A + H_A· β₀ − l1·sign(β_A), so one Cholesky solve removes what
/// is left of coordinate descent's linear convergence (slow on correlated columns). Returned
/// only if the signs and the inactive coordinates' conditions still hold.
fn polish(h: &[f64], m: usize, g: &[f64], beta0: &[f64], blocks: &[Block], beta: &[f64]) -> Option<Vec<f64>> {
    let mut act = Vec::new();
    let mut l1 = Vec::new();
    let mut l2 = Vec::new();
    for b in blocks {
        let k = b.cols[0];
        if beta[k] != 0.0 || (b.l1 == 0.0 && b.l2 == 0.0) {
            act.push(k);
            l1.push(b.l1 * beta[k].signum());
            l2.push(b.l2);
        }
    }
    let na = act.len();
    if na == 0 {
        return None;
    }
    let a = Mat::from_fn(na, na, |i, j| h[act[j] * m + act[i]] + if i == j { l2[i] } else { 0.0 });
    let rhs = Mat::from_fn(na, 1, |i, _| {
        let k = act[i];
        g[k] + (0..m).map(|j| h[j * m + k] * beta0[j]).sum::<f64>() - l1[i]
    });
    let llt = a.llt(Side::Lower).ok()?;
    use faer::linalg::solvers::Solve;
    let x = llt.solve(&rhs);
    let mut out = vec![0.0; m];
    for (i, &k) in act.iter().enumerate() {
        let v = x[(i, 0)];
        if !v.is_finite() || (l1[i] != 0.0 && v.signum() != beta[k].signum()) {
            return None;
        }
        out[k] = v;
    }
    // Inactive coordinates must still satisfy |r_k| ≤ l1.
    for b in blocks {
        let k = b.cols[0];
        if out[k] != 0.0 || act.contains(&k) {
            continue;
        }
        let r = g[k] - (0..m).map(|j| h[j * m + k] * (out[j] - beta0[j])).sum::<f64>();
        if r.abs() > b.l1 * (1.0 + 1e-9) {
            return None;
        }
    }
    Some(out)
}

/// Minimise the subproblem from `beta0` until a full sweep moves no coordinate by more than
/// `thr` in H_kk Δ² (glmnet's criterion), cycling over the non-zero blocks between full
/// sweeps as glmnet does.
pub fn solve(h: &[f64], m: usize, g: &[f64], beta0: &[f64], blocks: &[Block], thr: f64, max_sweeps: usize) -> CdResult {
    let mut beta = beta0.to_vec();
    let mut r = g.to_vec();
    let mut sweeps = 0;
    let mut q = Vec::new();
    let mut hd = Vec::new();
    let mut new = Vec::new();
    let mut update = |b: &Block, beta: &mut [f64], r: &mut [f64]| -> f64 {
        new.clear();
        match b.kind {
            BlockKind::Single => {
                let k = b.cols[0];
                let hk = h[k * m + k];
                let u = r[k] + hk * beta[k];
                let den = hk + b.l2;
                new.push(if den > 0.0 { soft(u, b.l1) / den } else { 0.0 });
            }
            BlockKind::DiagonalGroup => {
                q.clear();
                hd.clear();
                for &k in &b.cols {
                    let hk = h[k * m + k];
                    q.push(r[k] + hk * beta[k]);
                    hd.push(hk);
                }
                new.resize(b.cols.len(), 0.0);
                let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
                if qn > b.l1 {
                    if b.l1 > 0.0 {
                        diagonal_group(&q, &hd, b.l1, b.l2, &mut new);
                    } else {
                        for ((o, &qj), &hj) in new.iter_mut().zip(&q).zip(&hd) {
                            *o = if hj + b.l2 > 0.0 { qj / (hj + b.l2) } else { 0.0 };
                        }
                    }
                }
            }
            BlockKind::Group { l } => {
                q.clear();
                for &k in &b.cols {
                    q.push(l * beta[k] + r[k]);
                }
                let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
                let shrink = if qn > b.l1 { (1.0 - b.l1 / qn) / (l + b.l2) } else { 0.0 };
                new.extend(q.iter().map(|x| x * shrink));
            }
        }
        let mut dlx: f64 = 0.0;
        for (&k, &nb) in b.cols.iter().zip(new.iter()) {
            let d = nb - beta[k];
            if d != 0.0 {
                beta[k] = nb;
                let col = &h[k * m..(k + 1) * m];
                for (ri, &hi) in r.iter_mut().zip(col) {
                    *ri -= hi * d;
                }
                dlx = dlx.max(h[k * m + k] * d * d);
            }
        }
        dlx
    };
    let nonzero = |b: &Block, beta: &[f64]| b.cols.iter().any(|&k| beta[k] != 0.0);
    let singles = blocks.iter().all(|b| b.kind == BlockKind::Single);
    let mut converged = false;
    let mut polished = None;
    'outer: while sweeps < max_sweeps {
        sweeps += 1;
        let mut dlx: f64 = 0.0;
        for b in blocks {
            dlx = dlx.max(update(b, &mut beta, &mut r));
        }
        if dlx < thr {
            converged = true;
            break;
        }
        // Cycle over the active blocks until they settle, then sweep everything again.
        let active: Vec<&Block> = blocks.iter().filter(|b| nonzero(b, &beta)).collect();
        let mut cycled = 0;
        loop {
            if sweeps >= max_sweeps {
                break 'outer;
            }
            sweeps += 1;
            cycled += 1;
            let mut dlx: f64 = 0.0;
            for b in &active {
                dlx = dlx.max(update(b, &mut beta, &mut r));
            }
            if dlx < thr {
                break;
            }
            // Slow linear convergence on the active set (correlated or identical columns under
            // an elastic net creep towards their shared optimum): after a while, try the exact
            // solve. It is accepted only if every KKT condition holds, i.e. it is the minimiser;
            // if not, a column outside the set usually wants in, which only a full sweep finds.
            if singles && cycled % POLISH_EVERY == 0 {
                match polish(h, m, g, beta0, blocks, &beta) {
                    Some(exact) => {
                        polished = Some(exact);
                        converged = true;
                        break 'outer;
                    }
                    None => break,
                }
            }
        }
    }
    if let Some(exact) = polished {
        beta = exact;
    } else if singles {
        if let Some(exact) = polish(h, m, g, beta0, blocks, &beta) {
            beta = exact;
        }
    }
    let step = (0..m)
        .map(|k| h[k * m + k] * (beta[k] - beta0[k]).powi(2))
        .fold(0.0, f64::max);
    CdResult {
        beta,
        step,
        sweeps,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KKT residual of the subproblem at `beta` (0 at the exact minimiser).
    fn kkt(h: &[f64], m: usize, g: &[f64], beta0: &[f64], blocks: &[Block], beta: &[f64]) -> f64 {
        let grad: Vec<f64> = (0..m)
            .map(|a| g[a] - (0..m).map(|b| h[b * m + a] * (beta[b] - beta0[b])).sum::<f64>())
            .collect();
        let mut worst: f64 = 0.0;
        for b in blocks {
            let nb = b.cols.iter().map(|&k| beta[k] * beta[k]).sum::<f64>().sqrt();
            if nb == 0.0 {
                let gn = b.cols.iter().map(|&k| grad[k] * grad[k]).sum::<f64>().sqrt();
                worst = worst.max(gn - b.l1);
            } else {
                for &k in &b.cols {
                    worst = worst.max((grad[k] - b.l1 * beta[k] / nb - b.l2 * beta[k]).abs());
                }
            }
        }
        worst
    }

    fn problem() -> (Vec<f64>, usize, Vec<f64>) {
        // H = AᵀA/n for a small fixed A with an intercept column and a one-hot pair.
        let rows: [[f64; 5]; 6] = [
            [1.0, 0.3, 1.0, 0.0, 2.0],
            [1.0, -1.2, 0.0, 1.0, 0.5],
            [1.0, 0.7, 0.0, 0.0, -1.0],
            [1.0, 2.0, 1.0, 0.0, 0.0],
            [1.0, -0.4, 0.0, 1.0, 1.5],
            [1.0, 0.1, 0.0, 0.0, -0.3],
        ];
        let m = 5;
        let mut h = vec![0.0; m * m];
        for r in &rows {
            for a in 0..m {
                for b in 0..m {
                    h[b * m + a] += r[a] * r[b] / 6.0;
                }
            }
        }
        (h, m, vec![0.2, -0.5, 0.3, -0.1, 0.4])
    }

    #[test]
    fn lasso_and_groups_reach_their_kkt_conditions() {
        let (h, m, g) = problem();
        let beta0 = vec![0.0; m];
        for (l1, l2) in [(0.05, 0.0), (0.02, 0.03), (0.3, 0.0)] {
            let lasso: Vec<Block> = std::iter::once(Block::new(vec![0], 0.0, 0.0, &h, m))
                .chain((1..m).map(|k| Block::new(vec![k], l1, l2, &h, m)))
                .collect();
            let res = solve(&h, m, &g, &beta0, &lasso, 1e-20, 100_000);
            assert!(res.converged);
            assert!(kkt(&h, m, &g, &beta0, &lasso, &res.beta) < 1e-9, "lasso {l1} {l2}");
            let groups = vec![
                Block::new(vec![0], 0.0, 0.0, &h, m),
                Block::new(vec![1], l1, l2, &h, m),
                Block::new(vec![2, 3], l1 * 2f64.sqrt(), l2, &h, m),
                Block::new(vec![4], l1, l2, &h, m),
            ];
            assert_eq!(groups[2].kind, BlockKind::DiagonalGroup);
            let res = solve(&h, m, &g, &beta0, &groups, 1e-22, 100_000);
            assert!(kkt(&h, m, &g, &beta0, &groups, &res.beta) < 1e-9, "groups {l1} {l2}");
            let general = vec![
                Block::new(vec![0], 0.0, 0.0, &h, m),
                Block::new(vec![1, 4], l1 * 2f64.sqrt(), l2, &h, m),
                Block::new(vec![2, 3], l1 * 2f64.sqrt(), l2, &h, m),
            ];
            assert!(matches!(general[1].kind, BlockKind::Group { .. }));
            let res = solve(&h, m, &g, &beta0, &general, 1e-24, 1_000_000);
            assert!(kkt(&h, m, &g, &beta0, &general, &res.beta) < 1e-9, "general {l1} {l2}");
        }
    }

    #[test]
    fn large_penalty_leaves_only_the_unpenalised_column() {
        let (h, m, g) = problem();
        let blocks: Vec<Block> = std::iter::once(Block::new(vec![0], 0.0, 0.0, &h, m))
            .chain((1..m).map(|k| Block::new(vec![k], 10.0, 0.0, &h, m)))
            .collect();
        let res = solve(&h, m, &g, &vec![0.0; m], &blocks, 1e-20, 1000);
        assert!((res.beta[0] - g[0] / h[0]).abs() < 1e-12);
        assert!(res.beta[1..].iter().all(|&b| b == 0.0));
    }

    #[test]
    fn diagonal_group_root_is_stationary() {
        let mut worst: f64 = 0.0;
        for i in 0..2000 {
            let x = i as f64;
            let q = [(x * 0.37).sin(), (x * 0.91).cos() * 2.0, 0.0];
            let h = [0.2 + (x * 0.13).sin().abs(), 0.1 + (x * 0.07).cos().abs(), 0.3];
            let (l1, l2) = (0.05 + 0.5 * (x * 0.011).sin().abs(), 0.1 * (x * 0.03).cos().abs());
            if q.iter().map(|v| v * v).sum::<f64>().sqrt() <= l1 {
                continue;
            }
            let mut out = [0.0; 3];
            diagonal_group(&q, &h, l1, l2, &mut out);
            let t = out.iter().map(|v| v * v).sum::<f64>().sqrt();
            for j in 0..3 {
                worst = worst.max((h[j] * out[j] - q[j] + l1 * out[j] / t + l2 * out[j]).abs());
            }
        }
        assert!(worst < 1e-12, "{worst}");
    }
}
