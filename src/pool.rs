//! How a pass forks and joins on the rayon pool: the calling thread folds one group of chunks
//! itself and then *spins* (running any of the pass's jobs still queued) until the other groups
//! are done, and a worker that has finished its group keeps looking for work for a while before
//! it lets rayon put it to sleep — OpenMP's "blocktime" (`KMP_BLOCKTIME`, `GOMP_SPINCOUNT`).
//!
//! Why: an IRLS fit is a sequence of short passes separated by a short serial step (the
//! factorization of XᵀWX). With rayon's own join, the thread that finishes first blocks within
//! ~50 µs of spinning, and so does an idle worker between two passes; waking a blocked thread
//! then costs a futex wake and, on a virtual machine, an inter-processor interrupt to a halted
//! vCPU: 20–150 µs per pass measured on this project's 2-vCPU machine, against 240–285 µs of
//! work per pass on Adult (temporary timers; docs/PERFORMANCE.md, "Fork and join"). The spinning is bounded by [`SPIN_WAIT`], so a long serial step (a
//! coordinate-descent solve, writing output) still lets the workers sleep.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a thread spins before blocking: the caller waiting for the other groups of its
/// pass, and a worker with nothing to do after its group. Adult's fit took about as long with
/// any bound from 100 µs to 2 ms (docs/PERFORMANCE.md, "Fork and join").
pub const SPIN_WAIT: Duration = Duration::from_micros(500);

/// [`linger`] jobs queued or running (at most one per worker besides a pass's caller).
static LINGERERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is inside [`run_groups`] as a pass's caller (it never lingers: the
    /// pass would return late).
    static CALLER: Cell<bool> = const { Cell::new(false) };
}

/// `f(0)`, …, `f(groups − 1)` on the pool, returned in order. The calling thread computes
/// `f(0)` and the others are spawned; see the module documentation for the waiting.
pub fn run_groups<T: Send>(groups: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if groups <= 1 {
        return (0..groups).map(f).collect();
    }
    let slots: Vec<Mutex<Option<T>>> = (0..groups).map(|_| Mutex::new(None)).collect();
    let pending = AtomicUsize::new(groups);
    let run = |k: usize| {
        let r = f(k);
        *slots[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        pending.fetch_sub(1, Ordering::Release);
    };
    /// Restores the thread's [`CALLER`] flag when the pass ends, a panic included.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CALLER.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CALLER.with(|c| c.replace(true)));
    rayon::in_place_scope(|s| {
        let run = &run;
        for k in 1..groups {
            s.spawn(move |_| {
                run(k);
                linger();
            });
        }
        run(0);
        let t = Instant::now();
        // A caller from outside the pool blocks at once: spinning there would take a core
        // from the pool's own threads, which do the work.
        let spin = if rayon::current_thread_index().is_some() {
            SPIN_WAIT
        } else {
            Duration::ZERO
        };
        while pending.load(Ordering::Acquire) > 0 && t.elapsed() < spin {
            if rayon::yield_local() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
        // Past SPIN_WAIT, the scope's end blocks until the last group is done.
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("the scope ran every group")
        })
        .collect()
}

/// On a worker that is not a pass's caller: queue, unless enough are already, a job that looks
/// for work (stealing the next pass's groups as soon as they are spawned) until none has come
/// for [`SPIN_WAIT`]. A separate job, so that the pass that spawned this worker's group does not
/// wait for it.
fn linger() {
    if CALLER.with(Cell::get) {
        return;
    }
    let workers = rayon::current_num_threads().saturating_sub(1);
    if LINGERERS.fetch_add(1, Ordering::AcqRel) >= workers {
        LINGERERS.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    rayon::spawn(|| {
        let mut idle_since = Instant::now();
        // A caller that picks this job up while it waits returns it at once.
        while !CALLER.with(Cell::get) && idle_since.elapsed() < SPIN_WAIT {
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                idle_since = Instant::now();
            } else {
                std::hint::spin_loop();
            }
        }
        LINGERERS.fetch_sub(1, Ordering::AcqRel);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_back_in_order_from_inside_and_outside_the_pool() {
        let want: Vec<usize> = (0..37).map(|k| k * k).collect();
        assert_eq!(run_groups(37, |k| k * k), want);
        assert_eq!(rayon::scope(|_| run_groups(37, |k| k * k)), want);
        assert_eq!(run_groups(1, |k| k + 5), vec![5]);
        assert!(run_groups(0, |k| k).is_empty());
        // Nested: a group that runs a pass of its own.
        let nested = run_groups(4, |k| run_groups(3, |j| k * 10 + j));
        assert_eq!(nested[3], vec![30, 31, 32]);
    }
}
