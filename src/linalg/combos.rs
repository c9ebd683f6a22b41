//! Rows grouped by their tuple of categorical levels.
//!
//! A row's categorical × categorical and categorical × dense products in XᵀWX depend on its
//! levels only through the tuple (level of factor 1, …, level of factor K). When a chunk has
//! far fewer distinct tuples than rows (Adult: ~2,000 tuples of 7 factors in 16,384 rows),
//! the sandwich sums wᵢ, wᵢzᵢ and wᵢ·x_dense,i per tuple first and does the K(K+1)/2 pair
//! updates and K dense-row updates once per tuple instead of once per row.
//!
//! The grouping depends only on a chunk's codes, so a chunk cache keeps it per chunk
//! ([`GroupingMemo`]) and passes after the first skip the hashing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A chunk's rows grouped by their tuple of levels of all factors.
#[derive(Debug, Clone, Default)]
pub struct ChunkGroups {
    /// Combo id of each row.
    pub(crate) of_row: Vec<u32>,
    /// The first row of each combo (its codes are the combo's codes).
    pub(crate) first_row: Vec<u32>,
}

impl ChunkGroups {
    /// Number of combos.
    pub(crate) fn len(&self) -> usize {
        self.first_row.len()
    }

    fn bytes(&self) -> usize {
        4 * (self.of_row.len() + self.first_row.len())
    }
}

/// A chunk is grouped (and its grouping kept) only when it has at most this fraction of its
/// rows as distinct tuples: then grouping clearly pays (Adult: ~0.17), and a chunk near the
/// break-even point of the kernels' cost models (the 1M benchmark's `c20` × `c500`: ~0.45)
/// costs no memory. The kernels' cost models then decide per column subset.
pub(crate) const MAX_COMBO_FRACTION: f64 = 0.25;

/// Memory all memoised groupings of the process may hold (4 bytes per row): past it, chunks are
/// grouped again on every pass, so the memo keeps RAM bounded whatever the number of rows.
pub const GROUPING_MEMO_BUDGET: usize = 128 << 20;

static MEMO_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A chunk's grouping, computed on first use: `None` when the chunk has too many distinct
/// tuples to be worth grouping; and the combos' entries for the last column subset used.
#[derive(Debug, Default)]
pub struct GroupingMemo {
    slot: OnceLock<Option<Arc<ChunkGroups>>>,
    entries: Mutex<Option<Arc<ComboEntries>>>,
}

/// The combos' categorical entries within one column subset: combo u's locals are
/// `cats[ptr[u]..ptr[u + 1]]`. Every pass of a fit uses the same subset, so they are built on
/// the first and kept ([`GroupingMemo::entries`]). Building them on every pass took ~60 µs of
/// Adult's ~700 µs per chunk and pass (temporary timers); keeping them took `fit_total` from 31.4
/// to 28.1 ms (`scripts/ab_timing.py … --case adult-fit`).
#[derive(Debug, Default)]
pub(crate) struct ComboEntries {
    /// The level → local lookup they were built for (each factor's, concatenated).
    key: Vec<u32>,
    pub(crate) ptr: Vec<u32>,
    pub(crate) cats: Vec<u32>,
    /// Per combo, the positions in an m × m column-major matrix of its categorical pairs
    /// (a, b), b < a (below the diagonal), for the m they were made for: see
    /// [`ComboEntries::pairs`].
    pairs: OnceLock<PairOffsets>,
}

/// [`ComboEntries::pairs`]' table: combo u's positions are `pos[ptr[u]..ptr[u + 1]]`.
#[derive(Debug)]
pub(crate) struct PairOffsets {
    m: usize,
    pub(crate) ptr: Vec<u32>,
    pub(crate) pos: Vec<u32>,
}

impl ComboEntries {
    /// Build them for the level → local lookups `cat_locals` (one per factor, `absent` for
    /// levels outside the subset), the chunk's `codes` and grouping `g`.
    pub(crate) fn build(cat_locals: &[Vec<u32>], absent: u32, codes: &[&[u32]], g: &ChunkGroups) -> ComboEntries {
        let mut e = ComboEntries {
            key: cat_locals.concat(),
            ptr: Vec::with_capacity(g.len() + 1),
            cats: Vec::with_capacity(g.len() * codes.len()),
            pairs: OnceLock::new(),
        };
        e.ptr.push(0);
        for &i in &g.first_row {
            for (cl, c) in cat_locals.iter().zip(codes) {
                let l = cl[c[i as usize] as usize];
                if l != absent {
                    e.cats.push(l);
                }
            }
            e.ptr.push(e.cats.len() as u32);
        }
        e
    }

    /// Combo u's categorical locals.
    #[inline]
    pub(crate) fn of(&self, u: usize) -> &[u32] {
        &self.cats[self.ptr[u] as usize..self.ptr[u + 1] as usize]
    }

    /// The combos' categorical pairs below the diagonal as positions in the m × m
    /// (column-major) sandwich: the entries a combo's weight is added to, found once per fit
    /// instead of once per pass.
    /// `None` when m² does not fit the positions' u32. Made on first use for the first m asked
    /// (a subset has one m); another m gets `None`.
    pub(crate) fn pairs(&self, m: usize) -> Option<&PairOffsets> {
        if m.checked_mul(m).is_none_or(|mm| mm > u32::MAX as usize) {
            return None;
        }
        let t = self.pairs.get_or_init(|| {
            let mut t = PairOffsets {
                m,
                ptr: Vec::with_capacity(self.ptr.len()),
                pos: Vec::new(),
            };
            t.ptr.push(0);
            for u in 0..self.ptr.len().saturating_sub(1) {
                let c = self.of(u);
                for (a, &ca) in c.iter().enumerate() {
                    for &cb in &c[..a] {
                        t.pos.push((ca as usize + cb as usize * m) as u32);
                    }
                }
                t.ptr.push(t.pos.len() as u32);
            }
            t
        });
        (t.m == m).then_some(t)
    }

    fn bytes(&self) -> usize {
        // The pair table, made later, is k(k − 1)/2 per combo of k factors.
        let k = (self.cats.len() / self.ptr.len().max(1)).max(1);
        4 * (self.key.len() + 2 * self.ptr.len() + self.cats.len() * (1 + k / 2))
    }

    fn matches(&self, cat_locals: &[Vec<u32>]) -> bool {
        self.key.len() == cat_locals.iter().map(Vec::len).sum::<usize>()
            && cat_locals.iter().flatten().zip(&self.key).all(|(a, b)| a == b)
    }
}

impl GroupingMemo {
    /// The grouping of a chunk whose factor codes are `codes` (`levels[k]` levels each), from the
    /// memo or computed with `work` (and kept when the memory budget allows).
    pub(crate) fn get(
        memo: Option<&GroupingMemo>,
        work: &mut LevelCombos,
        codes: &[&[u32]],
        levels: &[u32],
        n: usize,
    ) -> Option<Arc<ChunkGroups>> {
        if let Some(g) = memo.and_then(|m| m.slot.get()) {
            return g.clone();
        }
        let max = (n as f64 * MAX_COMBO_FRACTION) as usize;
        let g = work.group(codes, levels, n, max).then(|| {
            Arc::new(ChunkGroups {
                of_row: work.of_row.clone(),
                first_row: work.first_row.clone(),
            })
        });
        if let Some(m) = memo {
            let bytes = g.as_ref().map_or(0, |g| g.bytes());
            let fits = MEMO_BYTES
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    (b + bytes <= GROUPING_MEMO_BUDGET).then_some(b + bytes)
                })
                .is_ok();
            if fits && m.slot.set(g.clone()).is_err() {
                MEMO_BYTES.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
        g
    }
}

impl GroupingMemo {
    /// The combos' entries for the subset whose level → local lookups are `cat_locals`: the
    /// memo's when they were built for the same lookups, else built by `build` and kept in
    /// place of the last ones (within the memory budget).
    pub(crate) fn entries(
        memo: Option<&GroupingMemo>,
        cat_locals: &[Vec<u32>],
        build: impl FnOnce() -> ComboEntries,
    ) -> Arc<ComboEntries> {
        let Some(m) = memo else {
            return Arc::new(build());
        };
        let mut slot = m.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = slot.as_ref().filter(|e| e.matches(cat_locals)) {
            return e.clone();
        }
        let e = Arc::new(build());
        if let Some(old) = slot.take() {
            MEMO_BYTES.fetch_sub(old.bytes(), Ordering::Relaxed);
        }
        let bytes = e.bytes();
        let fits = MEMO_BYTES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b + bytes <= GROUPING_MEMO_BUDGET).then_some(b + bytes)
            })
            .is_ok();
        if fits {
            *slot = Some(e.clone());
        }
        e
    }

    /// The grouping, if a pass has already computed and kept it (never computes it).
    pub(crate) fn peek(memo: Option<&GroupingMemo>) -> Option<Arc<ChunkGroups>> {
        memo.and_then(|m| m.slot.get()).and_then(|g| g.clone())
    }
}

impl Drop for GroupingMemo {
    fn drop(&mut self) {
        if let Some(Some(g)) = self.slot.get() {
            MEMO_BYTES.fetch_sub(g.bytes(), Ordering::Relaxed);
        }
        if let Some(e) = self.entries.get_mut().unwrap_or_else(|e| e.into_inner()).as_ref() {
            MEMO_BYTES.fetch_sub(e.bytes(), Ordering::Relaxed);
        }
    }
}

/// Scratch memory that groups a chunk's rows by their categorical codes.
#[derive(Debug, Default, Clone)]
pub(crate) struct LevelCombos {
    /// Per-row key (mixed-radix number of the row's codes).
    keys: Vec<u64>,
    /// Open-addressing hash table of keys ([`EMPTY`] = free slot) and their combo ids.
    slots: Vec<u64>,
    slot_id: Vec<u32>,
    /// Combo id of each row.
    pub(crate) of_row: Vec<u32>,
    /// The first row of each combo (its codes are the combo's codes).
    pub(crate) first_row: Vec<u32>,
}

/// A free hash-table slot. Keys are below the product of the level counts, which is checked
/// to fit in u64, so they never equal it.
const EMPTY: u64 = u64::MAX;

impl LevelCombos {
    /// Group the first `n` rows by `(codes[0][i], …, codes[K−1][i])`, where factor k has
    /// `levels[k]` levels. Returns false, leaving no grouping, when the product of the level
    /// counts overflows u64 or more than `max_combos` distinct tuples occur (grouping would
    /// not pay: the caller then works row by row).
    pub(crate) fn group(&mut self, codes: &[&[u32]], levels: &[u32], n: usize, max_combos: usize) -> bool {
        self.first_row.clear();
        self.of_row.clear();
        let mut radix: u64 = 1;
        for &l in levels {
            match radix.checked_mul(u64::from(l.max(1))) {
                Some(r) if r < EMPTY => radix = r,
                _ => return false,
            }
        }
        if max_combos == 0 {
            return false;
        }
        // Keys factor by factor (a loop over rows per factor, which vectorises).
        self.keys.clear();
        self.keys.resize(n, 0);
        for (c, &l) in codes.iter().zip(levels) {
            for (key, &code) in self.keys.iter_mut().zip(&c[..n]) {
                *key = *key * u64::from(l.max(1)) + u64::from(code);
            }
        }
        let bits = (2 * max_combos).next_power_of_two().max(16).trailing_zeros();
        let cap = 1usize << bits;
        let mask = cap - 1;
        self.slots.clear();
        self.slots.resize(cap, EMPTY);
        self.slot_id.resize(cap, 0);
        self.of_row.resize(n, 0);
        for i in 0..n {
            let key = self.keys[i];
            let mut h = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize;
            let id = loop {
                let k = self.slots[h];
                if k == key {
                    break self.slot_id[h];
                }
                if k == EMPTY {
                    let id = self.first_row.len();
                    if id == max_combos {
                        self.first_row.clear();
                        self.of_row.clear();
                        return false;
                    }
                    self.slots[h] = key;
                    self.slot_id[h] = id as u32;
                    self.first_row.push(i as u32);
                    break id as u32;
                }
                h = (h + 1) & mask;
            };
            self.of_row[i] = id;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo's combo entries are reused for the same level → local lookups and rebuilt for
    /// others; a level outside the subset (`ABSENT`) is left out of a combo's list.
    #[test]
    fn combo_entries_are_kept_per_subset() {
        const ABSENT: u32 = u32::MAX;
        // Four distinct tuples in 24 rows (a chunk is grouped only with at most n/4).
        let a: Vec<u32> = [0u32, 1, 0, 2, 1, 0].repeat(4);
        let b: Vec<u32> = [3u32, 0, 3, 3, 0, 1].repeat(4);
        let mut work = LevelCombos::default();
        let memo = GroupingMemo::default();
        let codes: [&[u32]; 2] = [&a, &b];
        let g = GroupingMemo::get(Some(&memo), &mut work, &codes, &[3, 4], 24).unwrap();
        let all = vec![vec![0, 1, 2], vec![3, 4, 5, 6]];
        let e1 = GroupingMemo::entries(Some(&memo), &all, || ComboEntries::build(&all, ABSENT, &codes, &g));
        // Combos in order of first appearance: (0,3), (1,0), (2,3), (0,1).
        assert_eq!(
            (0..4).map(|u| e1.of(u).to_vec()).collect::<Vec<_>>(),
            [[0, 6], [1, 3], [2, 6], [0, 4]]
        );
        let again = GroupingMemo::entries(Some(&memo), &all, || panic!("rebuilt for the same subset"));
        assert!(Arc::ptr_eq(&e1, &again));
        let fewer = vec![vec![ABSENT, 0, 1], vec![ABSENT, 2, 3, 4]];
        let e2 = GroupingMemo::entries(Some(&memo), &fewer, || ComboEntries::build(&fewer, ABSENT, &codes, &g));
        assert_eq!(
            (0..4).map(|u| e2.of(u).to_vec()).collect::<Vec<_>>(),
            [vec![4], vec![0], vec![1, 4], vec![2]]
        );
    }

    #[test]
    fn rows_with_the_same_codes_share_a_combo() {
        let a = [0u32, 1, 0, 2, 1, 0];
        let b = [3u32, 0, 3, 3, 0, 1];
        let mut g = LevelCombos::default();
        assert!(g.group(&[&a, &b], &[3, 4], 6, 6));
        assert_eq!(g.first_row.len(), 4);
        assert_eq!(g.of_row, vec![0, 1, 0, 2, 1, 3]);
        assert_eq!(g.first_row, vec![0, 1, 3, 5]);
        // Too many distinct tuples: no grouping.
        assert!(!g.group(&[&a, &b], &[3, 4], 6, 3));
        assert!(g.first_row.is_empty());
        // A product of level counts beyond u64: no grouping.
        assert!(!g.group(&[&a, &b, &a], &[u32::MAX, u32::MAX, 3], 6, 6));
    }
}
