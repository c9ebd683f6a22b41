//! Pass accumulators kept from one pass to the next.
//!
//! A pass allocates one accumulator per fold group: XᵀWX over its columns (2.3 MB at the 1M-row
//! benchmark's p = 539, eight groups), or a blocked fit's B block (tens of MiB at 10⁴ levels).
//! Allocated afresh on every pass, each of their pages was faulted in again, and twice:
//! `vec![0.0; n]` is `calloc`, whose untouched pages are first read (`acc[k] += …`), which maps
//! the shared zero page, then written, which allocates the page and flushes the other CPUs'
//! TLBs (an inter-processor interrupt: on a virtual machine, an exit to the hypervisor). In a
//! `perf` profile of the 1M-row fit, those write faults and their interrupts were ~14 % of the
//! samples, and the process took ~36,000 page faults (docs/PERFORMANCE.md).
//!
//! Here a buffer a pass is done with waits for the next pass's, which zeroes it in place; a new
//! one is zeroed as it is allocated (one write fault a page, no shootdown).

use std::sync::Mutex;

/// Spare buffers, by length.
struct Pool(Mutex<Vec<Vec<f64>>>);

static SPARE: Pool = Pool(Mutex::new(Vec::new()));

/// At most this many spare buffers are kept (two passes' worth of fold groups).
const MAX_SPARE: usize = 16;

/// Buffers shorter than this (entries, 512 KiB) are left to the allocator, which reuses small
/// blocks without returning them to the kernel.
const MIN_SPARE_LEN: usize = 1 << 16;

impl Pool {
    fn zeroed(&self, len: usize) -> Vec<f64> {
        if len >= MIN_SPARE_LEN {
            let spare = self
                .0
                .lock()
                .ok()
                .and_then(|mut s| s.iter().position(|b| b.len() == len).map(|k| s.swap_remove(k)));
            if let Some(mut b) = spare {
                b.fill(0.0);
                return b;
            }
        }
        let mut b = Vec::with_capacity(len);
        // Opaque to the optimiser, so that allocating and zeroing are not fused into `calloc`
        // (whose pages would each be faulted twice, as above).
        std::hint::black_box(&mut b);
        b.resize(len, 0.0);
        b
    }

    fn recycle(&self, buf: Vec<f64>) {
        if buf.len() >= MIN_SPARE_LEN {
            if let Ok(mut s) = self.0.lock() {
                if s.len() < MAX_SPARE {
                    s.push(buf);
                }
            }
        }
    }

    fn release(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.clear();
        }
    }
}

/// A buffer of `len` zeros: a spare one of that length if there is one, else a new one, written
/// as it is allocated.
pub fn zeroed(len: usize) -> Vec<f64> {
    SPARE.zeroed(len)
}

/// Keep `buf` for a later [`zeroed`] of its length (a short one, or one past the sixteen kept,
/// is freed).
pub fn recycle(buf: Vec<f64>) {
    SPARE.recycle(buf);
}

/// Free every spare buffer: a fit calls it when it is done, so that they do not add to the
/// memory of what runs next.
pub fn release() {
    SPARE.release();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recycled buffer is handed out again, zeroed, for its own length only; short ones and
    /// ones past the limit are not kept.
    #[test]
    fn recycled_buffers_come_back_zeroed() {
        let pool = Pool(Mutex::new(Vec::new()));
        let len = MIN_SPARE_LEN + 3;
        let mut a = pool.zeroed(len);
        assert!(a.len() == len && a.iter().all(|&x| x == 0.0));
        a.fill(7.0);
        let at = a.as_ptr();
        pool.recycle(a);
        let other = pool.zeroed(len + 1);
        assert_ne!(other.as_ptr(), at, "a buffer of another length was handed out");
        let b = pool.zeroed(len);
        assert_eq!(b.as_ptr(), at, "the spare buffer was not reused");
        assert!(b.len() == len && b.iter().all(|&x| x == 0.0));
        pool.recycle(vec![1.0; 8]);
        for _ in 0..MAX_SPARE + 2 {
            pool.recycle(vec![1.0; len]);
        }
        assert_eq!(pool.0.lock().unwrap().len(), MAX_SPARE);
        pool.release();
        assert!(pool.0.lock().unwrap().is_empty());
        assert_eq!(pool.zeroed(4), vec![0.0; 4]);
    }
}
