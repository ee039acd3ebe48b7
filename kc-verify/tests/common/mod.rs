//! What the differential tests share: a seeded generator and their knobs.
#![allow(dead_code)] // each test binary uses part of it

/// xorshift64*: the same seed gives the same mutants.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// `KC_DIFF_SEED` and `KC_DIFF_MUTANTS` (total mutants of a run), else the defaults.
pub fn knobs(default_seed: u64, default_mutants: usize) -> (u64, usize) {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    (
        var("KC_DIFF_SEED").unwrap_or(default_seed),
        var("KC_DIFF_MUTANTS").map_or(default_mutants, |m| m as usize),
    )
}
