//! Generalised linear models: families and links, and the out-of-core IRLS driver (with
//! ridge). Penalised paths, separation handling and convergence live here too. No I/O.

pub mod family;
pub mod irls;

pub use family::{Family, Link};
pub use irls::{fit, Fit, FitOptions, Penalty};
