//! Rebuilding a file of several layers with each page written once: the newest layer goes
//! down first, and an older one fills only the pages no newer layer gave that every later cut
//! keeps. This gives exactly what applying the layers oldest first would (each whole layer
//! starting over, each delta cut to its base and resized to its size after its pages), which
//! the model test below checks on random chains. Pure.

use crate::manifest::Layer;
use crate::pg::page::PAGE_SIZE;

const PAGE: u64 = PAGE_SIZE as u64;

/// How far each layer's bytes still count in the rebuilt file, by layer index: a layer's own
/// size, and every cut of the layers after it (a whole layer drops everything below it).
pub fn reach(layers: &[Layer]) -> Vec<u64> {
    let mut out = vec![0; layers.len()];
    let mut cap = u64::MAX;
    for (i, l) in layers.iter().enumerate().rev() {
        cap = cap.min(l.size);
        out[i] = cap;
        let keeps_below = match (l.delta, l.base_size) {
            (false, _) => 0,
            (true, Some(base)) => base,
            (true, None) => u64::MAX,
        };
        cap = cap.min(keeps_below);
    }
    out
}

/// The pages newer layers wrote.
#[derive(Debug, Clone, Default)]
pub struct Covered {
    bits: Vec<u64>,
}

impl Covered {
    pub fn has(&self, block: u32) -> bool {
        let (word, bit) = (block as usize / 64, block % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub fn add(&mut self, block: u32) {
        let (word, bit) = (block as usize / 64, block % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << bit;
    }

    /// Whether a delta page of `block` is to be written by a layer of `reach`.
    pub fn wants_page(&self, block: u32, reach: u64) -> bool {
        (u64::from(block) + 1) * PAGE <= reach && !self.has(block)
    }

    /// The byte runs of `[start, end)` of a whole layer of `reach` to write: below its reach,
    /// in pages no newer layer wrote.
    pub fn gaps(&self, start: u64, end: u64, reach: u64) -> Vec<(u64, u64)> {
        let end = end.min(reach);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut pos = start;
        while pos < end {
            let block = pos / PAGE;
            let page_end = ((block + 1) * PAGE).min(end);
            let covered = u32::try_from(block).is_ok_and(|b| self.has(b));
            if !covered {
                match runs.last_mut() {
                    Some(run) if run.1 == pos => run.1 = page_end,
                    _ => runs.push((pos, page_end)),
                }
            }
            pos = page_end;
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer of the model: whole bytes, or delta pages; its size and base.
    struct Model {
        whole: Option<Vec<u8>>,
        pages: Vec<(u32, u8)>,
        size: u64,
        base: Option<u64>,
    }

    fn layer(m: &Model) -> Layer {
        Layer {
            backup: "20261121T220000Z-F".parse().unwrap(),
            delta: m.whole.is_none(),
            parts: 1,
            size: m.size,
            base_size: m.base,
            stored_size: 0,
            part_sha256: vec![],
        }
    }

    /// Oldest first, as the layers were defined.
    fn sequential(layers: &[Model]) -> Vec<u8> {
        let mut f: Vec<u8> = Vec::new();
        for l in layers {
            match (&l.whole, l.base) {
                (Some(w), _) => f = w.clone(),
                (None, Some(b)) => f.resize(b as usize, 0),
                (None, None) => {}
            }
            for &(b, v) in &l.pages {
                let at = b as usize * PAGE_SIZE;
                if f.len() < at + PAGE_SIZE {
                    f.resize(at + PAGE_SIZE, 0);
                }
                f[at..at + PAGE_SIZE].fill(v);
            }
            f.resize(l.size as usize, 0);
        }
        f
    }

    /// Newest first, each page once, as restore does it.
    fn newest_first(layers: &[Model]) -> Vec<u8> {
        let size = layers.last().unwrap().size as usize;
        let mut f = vec![0u8; size];
        let reach = reach(&layers.iter().map(layer).collect::<Vec<_>>());
        let mut covered = Covered::default();
        let mut written = vec![0u32; size.div_ceil(PAGE_SIZE)];
        for (i, l) in layers.iter().enumerate().rev() {
            let before = covered.clone();
            match &l.whole {
                Some(w) => {
                    for (s, e) in before.gaps(0, w.len() as u64, reach[i]) {
                        f[s as usize..e as usize].copy_from_slice(&w[s as usize..e as usize]);
                        for b in s / PAGE..e.div_ceil(PAGE) {
                            written[b as usize] += 1;
                        }
                    }
                }
                None => {
                    for &(b, v) in &l.pages {
                        if before.wants_page(b, reach[i]) {
                            let at = b as usize * PAGE_SIZE;
                            f[at..at + PAGE_SIZE].fill(v);
                            covered.add(b);
                            written[b as usize] += 1;
                        }
                    }
                }
            }
        }
        assert!(written.iter().all(|&n| n <= 1), "a page written twice");
        f
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn newest_first_rebuilds_what_oldest_first_does_writing_each_page_once() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..2000 {
            let blocks = 1 + rng.next(12);
            let mut layers = vec![Model {
                whole: Some((0..blocks * PAGE).map(|i| (i / PAGE) as u8 + 1).collect()),
                pages: vec![],
                size: blocks * PAGE,
                base: None,
            }];
            for d in 0..1 + rng.next(4) {
                let size = rng.next(14) * PAGE;
                // Summary deltas cut to a base; page-scan deltas do not.
                let base = (rng.next(2) == 0).then(|| rng.next(14) * PAGE);
                let mut pages: Vec<(u32, u8)> = (0..size / PAGE)
                    .filter(|_| rng.next(3) == 0)
                    .map(|b| (b as u32, 100 + d as u8 * 10 + b as u8))
                    .collect();
                pages.dedup_by_key(|p| p.0);
                layers.push(Model {
                    whole: None,
                    pages,
                    size,
                    base,
                });
            }
            assert_eq!(
                newest_first(&layers),
                sequential(&layers),
                "case {case}: the rebuilds differ"
            );
        }
    }

    #[test]
    fn gaps_skip_covered_pages_and_stop_at_the_reach() {
        let mut c = Covered::default();
        c.add(1);
        c.add(3);
        assert_eq!(
            c.gaps(0, 5 * PAGE, 4 * PAGE + 100),
            vec![(0, PAGE), (2 * PAGE, 3 * PAGE), (4 * PAGE, 4 * PAGE + 100)]
        );
        assert!(c.gaps(PAGE, 2 * PAGE, u64::MAX).is_empty());
        assert!(!c.wants_page(1, u64::MAX) && c.wants_page(2, 3 * PAGE));
        assert!(!c.wants_page(2, 3 * PAGE - 1), "a page beyond the reach");
    }
}
