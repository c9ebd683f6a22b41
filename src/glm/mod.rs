//! Generalised linear models: families and links, the out-of-core IRLS driver (with ridge),
//! and penalised paths (lasso, elastic net, group lasso) with their in-RAM coordinate descent.
//! Separation handling and convergence live here too. No I/O.

pub mod cd;
pub mod family;
pub mod irls;
pub mod path;
pub(crate) mod tail;

pub use family::{Family, Link};
pub use irls::{fit, fit_from, Fit, FitOptions, Penalty, PenaltyBlock, Standardization, TailUse, SCHUR_MIN_LEVELS};
pub use path::{fit_at, fit_path, prox_steps, Path, PathOptions, PathPenalty, PathPoint, ProxSteps};
