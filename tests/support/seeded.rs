//! Seeded randomness for the tests that draw their cases (kill points, damage, fuzzed input):
//! the seed is printed, and `PGKEEP_TEST_SEED=<seed>` (decimal or `0x` hex) replays a run.

/// splitmix64: tiny, seedable, good enough to spread cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The seed of this run: `PGKEEP_TEST_SEED` when set, else drawn from the clock; printed with
/// how to replay it, under `what`.
pub fn seed(what: &str) -> u64 {
    let seed = match std::env::var("PGKEEP_TEST_SEED").map(|s| s.trim().to_string()) {
        Ok(s) if !s.is_empty() => s
            .strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16))
            .unwrap_or_else(|| s.parse())
            .unwrap_or_else(|e| panic!("PGKEEP_TEST_SEED '{s}': {e}")),
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    };
    eprintln!("{what} seed: {seed} (replay with PGKEEP_TEST_SEED={seed})");
    seed
}
