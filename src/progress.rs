//! Progress reporting from the library without tying it to a terminal: the binary supplies an
//! indicatif-backed implementation, library callers may pass [`NoProgress`].

/// Receives progress of a long stage (counted in rows). Must be callable from many threads.
pub trait Progress: Sync {
    /// A stage named `what` begins, with `total` rows to go.
    fn start(&self, what: &str, total: u64);
    /// `rows` more rows are done.
    fn advance(&self, rows: u64);
    /// The stage is over.
    fn finish(&self);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
