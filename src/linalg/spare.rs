//! Large per-pass and per-iteration buffers kept from one pass to the next.
//!
//! A pass allocates one accumulator per fold group: XᵀWX over its columns (2.3 MB at the 1M-row
//! benchmark's p = 539, eight groups), or a blocked fit's B block (86 MB at 19,911 levels); each
//! IRLS step of a blocked fit copies B twice more (over the kept levels, and scaled by D^-1/2);
//! the influence sketch projects each chunk into an n × K block (34 MB at K = 257).
//! Allocated afresh every time, each of their pages was faulted in again, and an accumulator's
//! twice: `vec![0.0; n]` is `calloc`, whose untouched pages are first read (`acc[k] += …`), which
//! maps the shared zero page, then written, which allocates the page and flushes the other CPUs'
//! TLBs (an inter-processor interrupt: on a virtual machine, an exit to the hypervisor). The
//! 1M-row fit took ~37,000 page faults and the p = 20,450 fit ~1.25 million (docs/PERFORMANCE.md).
//!
//! Here a buffer that is done with waits, as a spare, for the next one of its length: zeroed in
//! place for an accumulator ([`zeroed`]), as it was for a copy that overwrites it ([`Buf::take`]). A
//! new one is zeroed as it is allocated (one write fault a page, no shootdown). [`Buf`] gives
//! its vector back when dropped; a fit (or the sketch) frees the spares when its passes end
//! ([`release`]).

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Spare buffers, by length, and how many (and how many bytes) are kept at most.
struct Pool {
    spares: Mutex<Vec<Vec<f64>>>,
    max_count: usize,
    max_bytes: usize,
}

/// The process's spares: at most 32 buffers (a pass's fold groups' XᵀWX and Xᵀ(w ∘ u), twice)
/// and 1 GiB.
static SPARE: Pool = Pool::new(32, 1 << 30);

/// Buffers shorter than this (entries, 128 KiB: glibc's first threshold for giving a block its own
/// mapping, returned to the kernel when freed) are left to the allocator, which reuses smaller
/// blocks without returning them to the kernel.
const MIN_SPARE_LEN: usize = 1 << 14;

impl Pool {
    const fn new(max_count: usize, max_bytes: usize) -> Pool {
        Pool {
            spares: Mutex::new(Vec::new()),
            max_count,
            max_bytes,
        }
    }

    /// A spare buffer of length `len`, if one is kept.
    fn spare(&self, len: usize) -> Option<Vec<f64>> {
        if len < MIN_SPARE_LEN {
            return None;
        }
        let mut s = self.spares.lock().ok()?;
        let k = s.iter().position(|b| b.len() == len)?;
        Some(s.swap_remove(k))
    }

    fn zeroed(&self, len: usize) -> Vec<f64> {
        match self.spare(len) {
            Some(mut b) => {
                b.fill(0.0);
                b
            }
            None => new_zeroed(len),
        }
    }

    fn take(&self, len: usize) -> Vec<f64> {
        self.spare(len).unwrap_or_else(|| new_zeroed(len))
    }

    fn recycle(&self, buf: Vec<f64>) {
        if buf.len() >= MIN_SPARE_LEN {
            if let Ok(mut s) = self.spares.lock() {
                let bytes: usize = s.iter().map(|b| 8 * b.capacity()).sum();
                if s.len() < self.max_count && bytes + 8 * buf.capacity() <= self.max_bytes {
                    s.push(buf);
                }
            }
        }
    }

    fn release(&self) {
        if let Ok(mut s) = self.spares.lock() {
            s.clear();
        }
    }
}

/// A new buffer of `len` zeros, written as it is allocated.
fn new_zeroed(len: usize) -> Vec<f64> {
    let mut b = Vec::with_capacity(len);
    // Opaque to the optimiser, so that allocating and zeroing are not fused into `calloc`
    // (whose pages would each be faulted twice, as above).
    std::hint::black_box(&mut b);
    b.resize(len, 0.0);
    b
}

/// A buffer of `len` zeros: a spare one of that length if there is one, else a new one, written
/// as it is allocated.
pub fn zeroed(len: usize) -> Vec<f64> {
    SPARE.zeroed(len)
}

/// A buffer that goes back to the spares when dropped: what a pass's accumulators and the
/// blocked solve's copies of B are held in.
#[derive(Debug, Default, Clone)]
pub struct Buf(Vec<f64>);

impl Buf {
    /// [`zeroed`], held.
    pub fn zeroed(len: usize) -> Buf {
        Buf(zeroed(len))
    }

    /// A buffer of `len` entries for a caller that overwrites every one: a spare one of that
    /// length as it was left (no zeroing), else a new one of zeros.
    pub fn take(len: usize) -> Buf {
        Buf(SPARE.take(len))
    }

    /// The vector, no longer going back to the spares.
    pub fn into_vec(mut self) -> Vec<f64> {
        std::mem::take(&mut self.0)
    }
}

impl Deref for Buf {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f64] {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a Buf {
    type Item = &'a f64;
    type IntoIter = std::slice::Iter<'a, f64>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Drop for Buf {
    /// Kept for a later buffer of its length (a short one, or one past the pool's limits, is
    /// freed).
    fn drop(&mut self) {
        SPARE.recycle(std::mem::take(&mut self.0));
    }
}

/// Free every spare buffer: a fit or the sketch calls it when its passes are done, so that they
/// do not add to the memory of what runs next.
pub fn release() {
    SPARE.release();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled buffer is handed out again, zeroed or as left, for its own length only; short
    /// ones, and ones past the count or the bytes kept, are freed.
    #[test]
    fn spare_buffers_come_back_by_length() {
        let len = MIN_SPARE_LEN + 3;
        let pool = Pool::new(4, 8 * 2 * (len + 1));
        let mut a = pool.zeroed(len);
        assert!(a.len() == len && a.iter().all(|&x| x == 0.0));
        a.fill(7.0);
        let at = a.as_ptr();
        pool.recycle(a);
        let other = pool.zeroed(len + 1);
        assert_ne!(other.as_ptr(), at, "a buffer of another length was handed out");
        let mut b = pool.zeroed(len);
        assert_eq!(b.as_ptr(), at, "the spare buffer was not reused");
        assert!(b.len() == len && b.iter().all(|&x| x == 0.0));
        // `take` hands a spare back as it was left.
        b.fill(3.0);
        pool.recycle(b);
        let c = pool.take(len);
        assert_eq!(c.as_ptr(), at);
        assert!(c.iter().all(|&x| x == 3.0));
        assert!(pool.take(len).iter().all(|&x| x == 0.0), "a new buffer is zeros");
        pool.recycle(vec![1.0; 8]);
        assert!(pool.spares.lock().unwrap().is_empty(), "a short buffer was kept");
        // Two fit in the byte limit, a third does not.
        for _ in 0..3 {
            pool.recycle(vec![1.0; len]);
        }
        assert_eq!(pool.spares.lock().unwrap().len(), 2);
        // The count limit.
        let many = Pool::new(4, usize::MAX);
        for _ in 0..6 {
            many.recycle(vec![1.0; len]);
        }
        assert_eq!(many.spares.lock().unwrap().len(), 4);
        pool.release();
        assert!(pool.spares.lock().unwrap().is_empty());
        assert_eq!(pool.zeroed(4), vec![0.0; 4]);
    }
}
