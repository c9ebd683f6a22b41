//! The model spec and the encoding of record batches into chunks of the split design matrix.
//! Owns formulas, column roles, categorical levels and reference levels, sparse widths, the
//! column layout and coefficient names. Touches no disk.

pub mod encode;
pub mod formula;
pub mod spec;

pub use encode::{BatchCounts, EncodedBatch, Encoder, LevelInterner};
pub use formula::{Formula, Transform};
pub use spec::{
    classify, CatBlock, CategoricalTerm, ColumnKind, Design, DesignSpec, Filter, Layout, LevelKind, ModelInput,
    NaPolicy, NumericTerm, SparseTerm,
};
