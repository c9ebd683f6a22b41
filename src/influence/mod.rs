//! Per-row influence: exact leverage, residuals, Cook's distance, C-bar, DFFITS and DFBETAS
//! (`exact`), influence sketches (`sketch`), later randomized leverage and AFIF. Asks `glm` for fits;
//! never refits by itself.

pub mod exact;
pub mod randomized;
pub mod sketch;

pub use exact::{diagnose, DiagOptions, DiagSummary, RowDiagnostics};
pub use randomized::{randomized_leverage, RandomizedOptions, RandomizedSummary};
pub use sketch::{accuracy, sketch, Accuracy, ApproxRows, Projection, SketchOptions, SketchSummary};
