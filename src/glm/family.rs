//! GLM families and links with R's `family()` formulas: variance, unit deviance, starting
//! values, AIC, and numerically safe link inverses (no overflow at |η| = 700).

use crate::linalg::vmath::exp;
use libm::{erfc, lgamma as ln_gamma};

/// Machine epsilon, R's `.Machine$double.eps`.
const EPS: f64 = f64::EPSILON;
/// Logit clamp: −log(ε), where 1 + e^η no longer changes in f64. (R's `family.c` clamps at
/// ±30 instead; μ then differs by less than 1e-13 — below every tolerance compared against R.)
pub(crate) const LOGIT_THRESH: f64 = 36.04365338911715;
/// R's probit threshold: −qnorm(ε).
const PROBIT_THRESH: f64 = 8.125890664701906;

/// The distribution of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Bernoulli/binomial: y a proportion in [0, 1], prior weights the number of trials.
    Binomial,
    /// Poisson counts, y ≥ 0.
    Poisson,
    /// Normal, dispersion estimated.
    Gaussian,
    /// Gamma, y > 0, dispersion estimated.
    Gamma,
}

/// The link g with η = g(μ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// log(μ/(1−μ)).
    Logit,
    /// Φ⁻¹(μ).
    Probit,
    /// log(−log(1−μ)).
    Cloglog,
    /// log μ.
    Log,
    /// μ.
    Identity,
    /// 1/μ.
    Inverse,
}

impl Family {
    /// Parse `binomial`, `poisson`, `gaussian`, `gamma` (case-insensitive).
    pub fn parse(s: &str) -> Option<Family> {
        Some(match s.to_ascii_lowercase().as_str() {
            "binomial" | "logistic" => Family::Binomial,
            "poisson" => Family::Poisson,
            "gaussian" | "normal" => Family::Gaussian,
            "gamma" => Family::Gamma,
            _ => return None,
        })
    }

    /// Lower-case name, as R prints it (`Gamma` is capitalised in R; we use `gamma`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Binomial => "binomial",
            Family::Poisson => "poisson",
            Family::Gaussian => "gaussian",
            Family::Gamma => "gamma",
        }
    }

    /// The canonical link (R's default).
    pub fn canonical_link(self) -> Link {
        match self {
            Family::Binomial => Link::Logit,
            Family::Poisson => Link::Log,
            Family::Gaussian => Link::Identity,
            Family::Gamma => Link::Inverse,
        }
    }

    /// Links this family accepts.
    pub fn links(self) -> &'static [Link] {
        match self {
            Family::Binomial => &[Link::Logit, Link::Probit, Link::Cloglog],
            Family::Poisson => &[Link::Log],
            Family::Gaussian => &[Link::Identity, Link::Log],
            Family::Gamma => &[Link::Inverse, Link::Log],
        }
    }

    /// Whether the dispersion φ is fixed at 1.
    pub fn fixed_dispersion(self) -> bool {
        matches!(self, Family::Binomial | Family::Poisson)
    }

    /// Variance function V(μ).
    #[inline]
    pub fn variance(self, mu: f64) -> f64 {
        match self {
            Family::Binomial => mu * (1.0 - mu),
            Family::Poisson => mu,
            Family::Gaussian => 1.0,
            Family::Gamma => mu * mu,
        }
    }

    /// Unit deviance d(y, μ) (multiply by the prior weight): R's `dev.resids` with weight 1.
    #[inline]
    pub fn unit_deviance(self, y: f64, mu: f64) -> f64 {
        self.unit_deviance_and_scale(y, mu).0
    }

    /// [`Family::unit_deviance`] and the size of the numbers it cancels to get there, from the
    /// same logarithms: d's rounding error is a few ε times that size, whatever the size of d.
    /// Poisson's y·ln(y/μ) − (y − μ) at counts of 10⁹ fitted exactly is 1e-6 out of terms of
    /// 10⁹ (size 2(|y| + |μ|)); a Gaussian's (y − μ)² errs by 2|y − μ| times the rounding of
    /// y − μ; the binomial's two terms t₁, t₂ (each a factor up to 1 times a logarithm) give
    /// 2(1 + |t₁| + |t₂|), the Gamma's 2(1 + |y/μ| + |ln(y/μ)|). The size is infinite only
    /// where d is.
    #[inline]
    pub fn unit_deviance_and_scale(self, y: f64, mu: f64) -> (f64, f64) {
        match self {
            // A 0/1 label (the common case) needs one logarithm.
            Family::Binomial if y == 0.0 || y == 1.0 => bernoulli_deviance_and_scale(y, mu, f64::ln),
            Family::Binomial => {
                let (t1, t2) = (ylogy(y, mu), ylogy(1.0 - y, 1.0 - mu));
                (2.0 * (t1 + t2), 2.0 * (1.0 + t1.abs() + t2.abs()))
            }
            Family::Poisson => poisson_deviance_and_scale(y, mu, f64::ln),
            Family::Gaussian => gaussian_deviance_and_scale(y, mu),
            Family::Gamma => {
                let r = y / mu;
                let l = r.ln();
                (-2.0 * (l - (y - mu) / mu), 2.0 * (1.0 + r.abs() + l.abs()))
            }
        }
    }

    /// dV/dμ.
    #[inline]
    pub fn variance_deriv(self, mu: f64) -> f64 {
        match self {
            Family::Binomial => 1.0 - 2.0 * mu,
            Family::Poisson => 1.0,
            Family::Gaussian => 0.0,
            Family::Gamma => 2.0 * mu,
        }
    }

    /// Whether `y` is outside the family's support: binomial outside [0, 1] (NaN included),
    /// Poisson below 0, Gamma at or below 0; a Gaussian takes any value.
    #[inline(always)]
    pub fn outside_support(self, y: f64) -> bool {
        match self {
            Family::Binomial => !(0.0..=1.0).contains(&y),
            Family::Poisson => y < 0.0,
            Family::Gamma => y <= 0.0,
            Family::Gaussian => false,
        }
    }

    /// Why `y` (with prior weight `w`) is outside the family's support, if it is
    /// ([`Family::outside_support`]).
    pub fn check_response(self, y: f64) -> Option<&'static str> {
        match self {
            _ if !self.outside_support(y) => None,
            Family::Binomial => Some(
                "binomial responses must be 0/1 labels or proportions in [0, 1] (use cbind(successes, failures) for counts)",
            ),
            Family::Poisson => Some("Poisson responses must be non-negative counts"),
            Family::Gamma => Some("Gamma responses must be positive"),
            Family::Gaussian => None,
        }
    }

    /// Starting mean, R's `mustart`: binomial (w·y + ½)/(w + 1), Poisson y + 0.1, Gaussian and
    /// Gamma y. For a Gaussian with a non-identity link, a y outside the link's domain starts at
    /// (y + ȳ)/2 (statsmodels' rule) and, failing that, at ȳ.
    pub fn mustart(self, link: Link, y: f64, w: f64, ybar: f64) -> f64 {
        let m = match self {
            Family::Binomial => (w * y + 0.5) / (w + 1.0),
            Family::Poisson => y + 0.1,
            Family::Gaussian | Family::Gamma => y,
        };
        if link.valid_mu(m) {
            return m;
        }
        let half = 0.5 * (y + ybar);
        if link.valid_mu(half) {
            half
        } else {
            ybar
        }
    }

    /// −2 × the log-likelihood of one binomial or Poisson observation (R's `family$aic`
    /// summand), `w` the prior weight (trials for binomial). Gaussian and Gamma AICs depend on
    /// the dispersion and are assembled from sums in [`AicSums`].
    pub fn neg2_loglik(self, y: f64, mu: f64, w: f64) -> f64 {
        if w == 0.0 {
            return 0.0;
        }
        match self {
            Family::Binomial => {
                // R: m = trials; the summand is (wt/m)·log dbinom(round(m y), m, μ), here wt = m.
                let m = w.round();
                let k = (m * y).round();
                let lchoose = if m <= 1.0 {
                    0.0
                } else {
                    ln_gamma(m + 1.0) - ln_gamma(k + 1.0) - ln_gamma(m - k + 1.0)
                };
                -2.0 * (lchoose + xlogy(k, mu) + xlogy(m - k, 1.0 - mu))
            }
            Family::Poisson => -2.0 * w * (xlogy(y, mu) - mu - ln_gamma(y + 1.0)),
            Family::Gaussian | Family::Gamma => 0.0,
        }
    }
}

/// Sums over observations from which R's AIC is assembled for every family.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AicSums {
    /// Σ −2 log f (binomial, Poisson).
    pub neg2ll: f64,
    /// Number of observations with positive weight.
    pub n: f64,
    /// Σ w.
    pub w: f64,
    /// Σ log w over w > 0.
    pub log_w: f64,
    /// Σ w log μ.
    pub w_log_mu: f64,
    /// Σ w log y (y > 0).
    pub w_log_y: f64,
    /// Σ w y / μ.
    pub w_y_over_mu: f64,
}

impl AicSums {
    /// Add one observation.
    #[inline]
    pub fn add(&mut self, family: Family, y: f64, mu: f64, w: f64) {
        if w <= 0.0 {
            return;
        }
        self.n += 1.0;
        self.w += w;
        self.log_w += w.ln();
        match family {
            Family::Binomial | Family::Poisson => self.neg2ll += family.neg2_loglik(y, mu, w),
            Family::Gaussian => {}
            Family::Gamma => {
                self.w_log_mu += w * mu.ln();
                self.w_log_y += w * y.ln();
                self.w_y_over_mu += w * y / mu;
            }
        }
    }

    /// Merge partial sums.
    pub fn merge(&mut self, o: &AicSums) {
        self.neg2ll += o.neg2ll;
        self.n += o.n;
        self.w += o.w;
        self.log_w += o.log_w;
        self.w_log_mu += o.w_log_mu;
        self.w_log_y += o.w_log_y;
        self.w_y_over_mu += o.w_y_over_mu;
    }

    /// R's AIC: `family$aic(...) + 2 * rank`, with the deviance `dev`.
    /// Gaussian: n(log(2π dev/n) + 1) + 2 − Σ log w; Gamma: −2 Σ w log dgamma(y; 1/φ, μφ) + 2 with
    /// φ = dev/Σw.
    pub fn aic(&self, family: Family, dev: f64, rank: usize) -> f64 {
        let k = 2.0 * rank as f64;
        match family {
            Family::Binomial | Family::Poisson => self.neg2ll + k,
            Family::Gaussian => {
                self.n * ((2.0 * std::f64::consts::PI * dev / self.n).ln() + 1.0) + 2.0 - self.log_w + k
            }
            Family::Gamma => {
                let disp = dev / self.w;
                let a = 1.0 / disp;
                let sum_logd = -self.w * ln_gamma(a) - a * (self.w * disp.ln() + self.w_log_mu)
                    + (a - 1.0) * self.w_log_y
                    - self.w_y_over_mu / disp;
                -2.0 * sum_logd + 2.0 + k
            }
        }
    }
}

#[inline]
fn ylogy(y: f64, mu: f64) -> f64 {
    ylogy_with(y, mu, f64::ln)
}

/// y·ln(y/μ), 0 at y = 0, with the logarithm `ln`.
#[inline(always)]
fn ylogy_with(y: f64, mu: f64, ln: impl Fn(f64) -> f64) -> f64 {
    if y > 0.0 {
        y * ln(y / mu)
    } else {
        0.0
    }
}

/// A 0/1 label's unit deviance and its size ([`Family::unit_deviance_and_scale`]) with the
/// logarithm `ln` (libm's there; `vmath::ln` in the vectorised IRLS row loop): one logarithm,
/// d = 2 ln(1/μ) (y = 1) or 2 ln(1/(1 − μ)) (y = 0), the same operations as the general formula
/// (and R's and statsmodels'), so with libm's `ln` the same bits. The argument is chosen without
/// a branch (labels are unpredictable from row to row).
#[inline(always)]
pub(crate) fn bernoulli_deviance_and_scale(y: f64, mu: f64, ln: impl Fn(f64) -> f64) -> (f64, f64) {
    let one = ((y == 1.0) as u64).wrapping_neg();
    let t = ln(1.0 / f64::from_bits((mu.to_bits() & one) | ((1.0 - mu).to_bits() & !one)));
    (2.0 * t, 2.0 * (1.0 + t.abs()))
}

/// Poisson's unit deviance and its size with the logarithm `ln`.
#[inline(always)]
pub(crate) fn poisson_deviance_and_scale(y: f64, mu: f64, ln: impl Fn(f64) -> f64) -> (f64, f64) {
    (2.0 * (ylogy_with(y, mu, ln) - (y - mu)), 2.0 * (y.abs() + mu.abs()))
}

/// The Gaussian unit deviance and its size.
#[inline(always)]
pub(crate) fn gaussian_deviance_and_scale(y: f64, mu: f64) -> (f64, f64) {
    ((y - mu) * (y - mu), 2.0 * (y - mu).abs() * (y.abs() + mu.abs()))
}

#[inline]
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x * y.ln()
    }
}

/// Standard normal CDF Φ.
#[inline]
fn pnorm(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal density φ.
#[inline]
fn dnorm(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Φ⁻¹ by Acklam's rational approximation refined with one Halley step (|error| < 1e-15).
fn qnorm(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let pl = 0.02425;
    let x = if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // Halley refinement.
    let e = pnorm(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (0.5 * x * x).exp();
    x - u / (1.0 + 0.5 * x * u)
}

impl Link {
    /// Parse a link name (`logit`, `probit`, `cloglog`, `log`, `identity`, `inverse`).
    pub fn parse(s: &str) -> Option<Link> {
        Some(match s.to_ascii_lowercase().as_str() {
            "logit" => Link::Logit,
            "probit" => Link::Probit,
            "cloglog" => Link::Cloglog,
            "log" => Link::Log,
            "identity" => Link::Identity,
            "inverse" | "inverse_power" | "inversepower" => Link::Inverse,
            _ => return None,
        })
    }

    /// Name as R prints it.
    pub fn name(self) -> &'static str {
        match self {
            Link::Logit => "logit",
            Link::Probit => "probit",
            Link::Cloglog => "cloglog",
            Link::Log => "log",
            Link::Identity => "identity",
            Link::Inverse => "inverse",
        }
    }

    /// η = g(μ).
    pub fn link(self, mu: f64) -> f64 {
        match self {
            Link::Logit => (mu / (1.0 - mu)).ln(),
            Link::Probit => qnorm(mu),
            Link::Cloglog => (-(-mu).ln_1p()).ln(),
            Link::Log => mu.ln(),
            Link::Identity => mu,
            Link::Inverse => 1.0 / mu,
        }
    }

    /// μ = g⁻¹(η), with R's clamps so that μ stays strictly inside the family's range.
    #[inline]
    pub fn inverse(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                let t = logit_exp(eta);
                t / (1.0 + t)
            }
            Link::Probit => {
                let e = eta.clamp(-PROBIT_THRESH, PROBIT_THRESH);
                pnorm(e)
            }
            Link::Cloglog => (-(-(eta.min(700.0)).exp()).exp_m1()).clamp(EPS, 1.0 - EPS),
            Link::Log => exp(eta).max(EPS),
            Link::Identity => eta,
            Link::Inverse => 1.0 / eta,
        }
    }

    /// dμ/dη at η (R's `mu.eta`, floored at ε where R floors it).
    #[inline]
    pub fn mu_eta(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                if eta.abs() > LOGIT_THRESH {
                    EPS
                } else {
                    let e = exp(-eta.abs());
                    e / ((1.0 + e) * (1.0 + e))
                }
            }
            Link::Probit => dnorm(eta).max(EPS),
            Link::Cloglog => {
                let e = eta.min(700.0);
                (e.exp() * (-e.exp()).exp()).max(EPS)
            }
            Link::Log => exp(eta).max(EPS),
            Link::Identity => 1.0,
            Link::Inverse => -1.0 / (eta * eta),
        }
    }

    /// `(inverse(η), mu_eta(η))` together: the logit's pair comes from one exponential,
    /// t = eᶯ, μ = t/(1 + t) and dμ/dη = μ/(1 + t) (equal to [`Link::mu_eta`] up to rounding),
    /// and the log's from one, which the IRLS row loop evaluates for every row on every pass.
    /// Both without branches, so that a loop over rows compiles to vector instructions.
    #[inline(always)]
    pub fn inverse_and_mu_eta(self, eta: f64) -> (f64, f64) {
        match self {
            Link::Logit => {
                let t = logit_exp(eta);
                let mu = t / (1.0 + t);
                // R's floor outside the thresholds.
                let d = if eta.abs() > LOGIT_THRESH { EPS } else { mu / (1.0 + t) };
                (mu, d)
            }
            Link::Log => {
                let m = exp(eta).max(EPS);
                (m, m)
            }
            _ => (self.inverse(eta), self.mu_eta(eta)),
        }
    }

    /// g′(μ) = dη/dμ, as the reciprocal of dμ/dη at η.
    #[inline]
    pub fn deriv(self, eta: f64) -> f64 {
        1.0 / self.mu_eta(eta)
    }

    /// g″(μ) = d²η/dμ² at μ (η = g(μ) given for the probit case).
    pub fn deriv2(self, mu: f64, eta: f64) -> f64 {
        match self {
            Link::Logit => (2.0 * mu - 1.0) / (mu * mu * (1.0 - mu) * (1.0 - mu)),
            Link::Probit => {
                let d = dnorm(eta);
                eta / (d * d)
            }
            Link::Cloglog => {
                let l = -(-mu).ln_1p();
                (l - 1.0) / ((1.0 - mu) * (1.0 - mu) * l * l)
            }
            Link::Log => -1.0 / (mu * mu),
            Link::Identity => 0.0,
            Link::Inverse => 2.0 / (mu * mu * mu),
        }
    }

    /// Whether μ is in the link's domain.
    pub fn valid_mu(self, mu: f64) -> bool {
        mu.is_finite()
            && match self {
                Link::Logit | Link::Probit | Link::Cloglog => mu > 0.0 && mu < 1.0,
                Link::Log | Link::Inverse => mu > 0.0,
                Link::Identity => true,
            }
    }
}

/// eᶯ as R's logit inverse takes it: ε below −[`LOGIT_THRESH`], 1/ε above +[`LOGIT_THRESH`]
/// (selected, not branched on).
#[inline(always)]
fn logit_exp(eta: f64) -> f64 {
    let t = exp(eta.clamp(-LOGIT_THRESH, LOGIT_THRESH));
    let t = if eta < -LOGIT_THRESH { EPS } else { t };
    if eta > LOGIT_THRESH {
        1.0 / EPS
    } else {
        t
    }
}

/// Whether a fitted mean is valid for the family (R's `validmu`).
pub fn valid_mu(family: Family, mu: f64) -> bool {
    mu.is_finite()
        && match family {
            Family::Binomial => mu > 0.0 && mu < 1.0,
            Family::Poisson | Family::Gamma => mu > 0.0,
            Family::Gaussian => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused pair equals the separate functions: μ bit for bit, dμ/dη to a few ulps (the
    /// logit's comes from eᶯ instead of e^{−|η|}), across and beyond the logit's thresholds.
    #[test]
    fn inverse_and_mu_eta_match_the_separate_functions() {
        let links = [
            Link::Logit,
            Link::Probit,
            Link::Cloglog,
            Link::Log,
            Link::Identity,
            Link::Inverse,
        ];
        for link in links {
            for k in -800..=800 {
                let eta = k as f64 * 0.05 + 0.013;
                let (mu, d) = link.inverse_and_mu_eta(eta);
                assert_eq!(mu.to_bits(), link.inverse(eta).to_bits(), "{link:?} η={eta}");
                let d0 = link.mu_eta(eta);
                assert!(
                    (d - d0).abs() <= 8.0 * f64::EPSILON * d0.abs(),
                    "{link:?} η={eta}: {d} vs {d0}"
                );
            }
        }
    }

    /// Moving μ by one ulp (the rounding any computation of μ carries) changes the unit
    /// deviance by less than 4ε times its scale: the bound the IRLS noise floor relies on.
    #[test]
    fn deviance_scale_bounds_the_rounding_of_the_unit_deviance() {
        let cases: [(Family, &[f64], &[f64]); 4] = [
            (
                Family::Binomial,
                &[0.0, 0.3, 1.0],
                &[1e-300, 1e-12, 0.2, 0.5, 0.999, 1.0 - 1e-12],
            ),
            (
                Family::Poisson,
                &[0.0, 3.0, 1e9, 1e15],
                &[1e-8, 2.5, 1e9 + 37.0, 1e15 * (1.0 + 1e-9)],
            ),
            (Family::Gaussian, &[-1e6, 0.0, 1e4], &[-1e6 + 0.5, 3.0, 1e4 + 1e-3]),
            (Family::Gamma, &[1e-12, 1.0, 1e8], &[1.1e-12, 0.5, 1e8 * 1.01]),
        ];
        for (fam, ys, mus) in cases {
            for &y in ys {
                for &mu in mus {
                    let d = fam.unit_deviance(y, mu);
                    let up = fam.unit_deviance(y, mu * (1.0 + f64::EPSILON));
                    let tol = 4.0 * f64::EPSILON * fam.unit_deviance_and_scale(y, mu).1;
                    // The exact change from moving μ by ε·μ is d′(μ)·εμ; only the part of it
                    // that is pure rounding must be covered, so compare against the larger of
                    // the two.
                    let exact = match fam {
                        Family::Gaussian => 2.0 * (mu - y) * mu * f64::EPSILON,
                        Family::Poisson => 2.0 * (mu - y) * f64::EPSILON,
                        Family::Gamma => 2.0 * (mu - y) / mu * f64::EPSILON,
                        Family::Binomial => 2.0 * (mu - y) / (1.0 - mu) * f64::EPSILON,
                    };
                    assert!(
                        (up - d).abs() <= tol + 2.0 * exact.abs(),
                        "{fam:?} y={y} mu={mu}: change {} > tol {tol}",
                        (up - d).abs()
                    );
                    assert!(fam.unit_deviance_and_scale(y, mu).1.is_finite());
                }
            }
        }
        // μ = 1 exactly (cloglog saturates there) with y = 1 is a zero term, not an infinite one.
        assert!(Family::Binomial.unit_deviance_and_scale(1.0, 1.0).1.is_finite());
        assert!(Family::Binomial.unit_deviance_and_scale(0.0, 0.0).1.is_finite());
    }

    #[test]
    fn links_invert() {
        for link in [Link::Logit, Link::Probit, Link::Cloglog] {
            for &mu in &[1e-6, 0.01, 0.3, 0.5, 0.77, 0.999] {
                let eta = link.link(mu);
                assert!((link.inverse(eta) - mu).abs() < 1e-12 * (1.0 + mu), "{link:?} {mu}");
                // mu_eta is the derivative of the inverse.
                let h = 1e-6;
                let num = (link.inverse(eta + h) - link.inverse(eta - h)) / (2.0 * h);
                assert!(
                    (num - link.mu_eta(eta)).abs() < 1e-7,
                    "{link:?} {mu}: {num} vs {}",
                    link.mu_eta(eta)
                );
            }
        }
        for link in [Link::Log, Link::Inverse, Link::Identity] {
            for &mu in &[0.01, 1.0, 7.5] {
                assert!((link.inverse(link.link(mu)) - mu).abs() < 1e-12 * mu);
            }
        }
    }

    #[test]
    fn second_derivatives_are_derivatives_of_the_first() {
        for link in [Link::Logit, Link::Probit, Link::Cloglog, Link::Log, Link::Inverse] {
            for &mu in &[0.05, 0.3, 0.6] {
                let h = 1e-6;
                let gp = |m: f64| 1.0 / link.mu_eta(link.link(m));
                let num = (gp(mu + h) - gp(mu - h)) / (2.0 * h);
                let got = link.deriv2(mu, link.link(mu));
                assert!(
                    (num - got).abs() < 1e-5 * (1.0 + got.abs()),
                    "{link:?} {mu}: {num} vs {got}"
                );
            }
        }
    }

    #[test]
    fn extreme_eta_is_finite() {
        for link in [Link::Logit, Link::Probit, Link::Cloglog, Link::Log] {
            for &eta in &[-700.0, -40.0, 40.0, 700.0] {
                let mu = link.inverse(eta);
                let d = link.mu_eta(eta);
                assert!(mu.is_finite() && d.is_finite() && d > 0.0, "{link:?} {eta}: {mu} {d}");
                if link != Link::Log {
                    assert!(mu > 0.0 && mu < 1.0);
                    for y in [0.0, 1.0] {
                        assert!(Family::Binomial.unit_deviance(y, mu).is_finite());
                    }
                }
            }
        }
    }

    #[test]
    fn qnorm_matches_known_values() {
        assert!((qnorm(0.975) - 1.959963984540054).abs() < 1e-14);
        assert!((qnorm(1e-10) + 6.361340902404056).abs() < 1e-12);
        assert!((qnorm(0.5)).abs() < 1e-15);
    }

    #[test]
    fn unit_deviances_match_r() {
        // R: binomial()$dev.resids(0.3, 0.6, 1) = 0.3819..., poisson()$dev.resids(3, 2, 1), Gamma()$dev.resids(2, 3, 1)
        let b = Family::Binomial.unit_deviance(0.3, 0.6);
        let want = 2.0 * (0.3 * (0.3f64 / 0.6).ln() + 0.7 * (0.7f64 / 0.4).ln());
        assert!((b - want).abs() < 1e-15);
        assert!((Family::Poisson.unit_deviance(3.0, 2.0) - 2.0 * (3.0 * 1.5f64.ln() - 1.0)).abs() < 1e-15);
        assert!((Family::Gamma.unit_deviance(2.0, 3.0) - (-2.0 * ((2.0f64 / 3.0).ln() + 1.0 / 3.0))).abs() < 1e-15);
        assert_eq!(
            Family::Binomial.unit_deviance(0.0, 0.25),
            2.0 * (0.75f64 / 0.75).ln() + 2.0 * (1.0f64 / 0.75).ln()
        );
        assert_eq!(Family::Binomial.unit_deviance(1.0, 0.25), 2.0 * (1.0f64 / 0.25).ln());
    }
}
