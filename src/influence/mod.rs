//! Per-row influence: exact leverage, residuals, Cook's distance, C-bar, DFFITS and DFBETAS
//! (this module), later influence sketches, randomized leverage and AFIF. Asks `glm` for fits;
//! never refits by itself.

pub mod exact;

pub use exact::{diagnose, DiagOptions, DiagSummary, RowDiagnostics};
