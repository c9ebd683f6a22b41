//! fulcrum: which training rows move a regression model, and by how much.
//!
//! Data flow: Parquet ([`source`]) → split design chunks ([`design`]) → memory-mapped chunk
//! cache ([`store`]) → parallel passes of matrix kernels ([`linalg`]). [`ingest::load`] runs
//! the first three once and returns a [`ingest::Dataset`]; everything after reads its chunks.
//! See `docs/` and `../shared/DESIGN.md` for the architecture.

#![warn(missing_docs)]

pub mod chunk;
pub mod design;
pub mod error;
pub mod glm;
pub mod influence;
pub mod ingest;
pub mod inspect;
pub mod linalg;
pub mod pool;
pub mod progress;
pub mod report;
pub mod source;
pub mod store;

pub use chunk::{Chunk, ChunkView};
pub use error::{Error, Result};
pub use ingest::{load, Dataset, IngestOptions};
