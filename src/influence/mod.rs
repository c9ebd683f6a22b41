//! Per-row influence: exact leverage, residuals, Cook's distance, C-bar, DFFITS and DFBETAS
//! (`exact`), influence sketches (`sketch`), randomized leverage (`randomized`), and AFIF-style
//! influence for leave-one-out, attribution, fairness and unlearning (`afif`) over the
//! inverse-curvature solvers of `solve`. Asks `glm` for fits; never refits by itself.

pub mod afif;
pub mod exact;
pub mod randomized;
pub mod sketch;
pub mod solve;
pub mod testset;

pub use afif::{
    alo_path, cv_choice, refit_without, Afif, AloPoint, LooRefinePick, LooRefinement, LooRows, LooSummary, Parity,
    Refit, Removal, TopK,
};
pub use exact::{diagnose, DiagOptions, DiagSummary, RowDiagnostics};
pub use randomized::{randomized_leverage, RandomizedOptions, RandomizedSummary};
pub use sketch::{accuracy, sketch, Accuracy, ApproxRows, Projection, SketchOptions, SketchSummary};
pub use solve::{row_terms, Curvature, InverseCurvature, LissaOptions, SolveReport, Solver};
pub use testset::{map_test_rows, TestRow};
