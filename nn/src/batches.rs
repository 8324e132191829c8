//! Shuffled training batches in the order TF1's `DataSet.next_batch(batch_size, shuffle=True)`
//! produces them, so step counts and epoch boundaries line up with the TF1 reference runs.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Draws training batches like TF1 `DataSet.next_batch(batch_size, shuffle=True)`: the order is a
/// fresh permutation each epoch (seeded, `ChaCha8Rng::seed_from_u64(seed)`); a batch that runs
/// past the end of an epoch takes the rest of that epoch followed by the start of the next
/// permutation.
///
/// Each new permutation is the previous one shuffled in place, as TF1 reorders its already
/// shuffled arrays; the first is a shuffle of `0..n`.
#[derive(Clone, Debug)]
pub struct BatchSampler {
    perm: Vec<usize>,
    /// Next unread position in `perm`; `perm.len()` means the epoch is used up.
    pos: usize,
    completed: usize,
    rng: ChaCha8Rng,
}

impl BatchSampler {
    /// A sampler over the indices `0..n`. `n` must be positive: an empty set has no batches.
    pub fn new(n: usize, seed: u64) -> Self {
        debug_assert!(n > 0, "BatchSampler needs at least one example");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng);
        Self {
            perm,
            pos: 0,
            completed: 0,
            rng,
        }
    }

    /// Fills `out` (len = batch size, `0 < batch <= n`) with the next indices. No allocation
    /// after construction: the permutation is reshuffled in place.
    pub fn next_batch(&mut self, out: &mut [usize]) {
        let n = self.perm.len();
        debug_assert!(
            !out.is_empty() && out.len() <= n,
            "batch size {} must be in 1..={n}",
            out.len()
        );
        let mut filled = 0;
        while filled < out.len() && n > 0 {
            // Reshuffle lazily, like TF1, when a draw needs the next epoch.
            if self.pos == n {
                self.perm.shuffle(&mut self.rng);
                self.pos = 0;
            }
            let take = (out.len() - filled).min(n - self.pos);
            out[filled..filled + take].copy_from_slice(&self.perm[self.pos..self.pos + take]);
            filled += take;
            self.pos += take;
            if self.pos == n {
                self.completed += 1;
            }
        }
    }

    /// Completed epochs: how many times every index has been handed out.
    pub fn epoch(&self) -> usize {
        self.completed
    }

    /// How many indices the sampler draws from (`n` of [`BatchSampler::new`]).
    pub fn set_size(&self) -> usize {
        self.perm.len()
    }

    /// Everything that decides the batches still to come, for a checkpoint.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            order: self.perm.clone(),
            position: self.pos,
            epochs: self.completed,
            rng_seed: self.rng.get_seed(),
            rng_stream: self.rng.get_stream(),
            rng_word_pos: self.rng.get_word_pos(),
        }
    }

    /// The sampler `state` was taken from: it draws exactly the batches that one would have.
    /// Fails, naming the problem, if `order` is not a permutation of `0..n` (n > 0) or the
    /// position is past its end.
    pub fn from_state(state: SamplerState) -> Result<Self, String> {
        let n = state.order.len();
        if n == 0 {
            return Err("the data order is empty".into());
        }
        if state.position > n {
            return Err(format!(
                "position {} is past the end of the {n}-image data order",
                state.position
            ));
        }
        let mut seen = vec![false; n];
        for (i, &index) in state.order.iter().enumerate() {
            match seen.get_mut(index) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(format!(
                        "the data order is not a permutation of 0..{n} (entry {i} is {index})"
                    ))
                }
            }
        }
        let mut rng = ChaCha8Rng::from_seed(state.rng_seed);
        rng.set_stream(state.rng_stream);
        rng.set_word_pos(state.rng_word_pos);
        Ok(Self {
            perm: state.order,
            pos: state.position,
            completed: state.epochs,
            rng,
        })
    }
}

/// A [`BatchSampler`]'s complete state: the current epoch's order, the next position in it, the
/// completed epochs and the ChaCha8 generator (seed, stream, word position) that shuffles the
/// following epochs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerState {
    pub order: Vec<usize>,
    pub position: usize,
    pub epochs: usize,
    pub rng_seed: [u8; 32],
    pub rng_stream: u64,
    pub rng_word_pos: u128,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws `batches` batches of `batch` indices and concatenates them.
    fn draw(sampler: &mut BatchSampler, batch: usize, batches: usize) -> Vec<usize> {
        let mut out = vec![0; batch];
        let mut all = Vec::with_capacity(batch * batches);
        for _ in 0..batches {
            sampler.next_batch(&mut out);
            all.extend_from_slice(&out);
        }
        all
    }

    fn is_permutation(indices: &[usize]) -> bool {
        let mut sorted = indices.to_vec();
        sorted.sort_unstable();
        sorted.iter().copied().eq(0..indices.len())
    }

    #[test]
    fn every_index_once_per_epoch() {
        let mut sampler = BatchSampler::new(10, 7);
        // 7 batches of 3 = 21 draws: two full epochs plus one index of the third.
        let drawn = draw(&mut sampler, 3, 7);
        assert!(is_permutation(&drawn[..10]), "epoch 1: {:?}", &drawn[..10]);
        assert!(
            is_permutation(&drawn[10..20]),
            "epoch 2: {:?}",
            &drawn[10..20]
        );
        assert_ne!(drawn[..10], drawn[10..20], "each epoch is reshuffled");
        assert_eq!(sampler.epoch(), 2);
    }

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let a = draw(&mut BatchSampler::new(100, 42), 32, 20);
        let b = draw(&mut BatchSampler::new(100, 42), 32, 20);
        let c = draw(&mut BatchSampler::new(100, 43), 32, 20);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn epoch_crossing_batch_takes_tail_then_head() {
        let (n, seed) = (10, 3);
        // The documented contract: shuffle 0..n, then reshuffle that permutation each epoch.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng);
        let first = perm.clone();
        perm.shuffle(&mut rng);
        let second = perm;

        let mut sampler = BatchSampler::new(n, seed);
        let mut out = [0; 4];
        sampler.next_batch(&mut out);
        assert_eq!(out, first[..4]);
        sampler.next_batch(&mut out);
        assert_eq!(out, first[4..8]);
        assert_eq!(sampler.epoch(), 0);
        sampler.next_batch(&mut out);
        assert_eq!(out[..2], first[8..]);
        assert_eq!(out[2..], second[..2]);
        assert_eq!(sampler.epoch(), 1);
        sampler.next_batch(&mut out);
        assert_eq!(out, second[2..6]);
    }

    #[test]
    fn exact_epoch_end_counts_and_reshuffles_lazily() {
        let mut sampler = BatchSampler::new(6, 1);
        let drawn = draw(&mut sampler, 3, 2);
        assert_eq!(
            sampler.epoch(),
            1,
            "an epoch ending on a batch boundary is complete"
        );
        let next = draw(&mut sampler, 3, 2);
        assert!(is_permutation(&drawn) && is_permutation(&next));
        assert_eq!(sampler.epoch(), 2);
    }

    #[test]
    fn a_restored_state_draws_the_same_batches() {
        // Restore mid-epoch, exactly at an epoch end, and after several reshuffles.
        for (batch, before) in [(3, 2), (5, 2), (4, 7)] {
            let mut original = BatchSampler::new(10, 11);
            draw(&mut original, batch, before);
            let mut restored = BatchSampler::from_state(original.state()).unwrap();
            assert_eq!(restored.state(), original.state());
            assert_eq!(draw(&mut restored, batch, 9), draw(&mut original, batch, 9));
            assert_eq!(restored.epoch(), original.epoch());
        }
    }

    #[test]
    fn inconsistent_states_are_rejected() {
        let good = BatchSampler::new(5, 1).state();
        let mut bad = good.clone();
        bad.order[0] = bad.order[1];
        assert!(BatchSampler::from_state(bad)
            .unwrap_err()
            .contains("permutation"));
        let mut bad = good.clone();
        bad.order[2] = 5;
        assert!(BatchSampler::from_state(bad)
            .unwrap_err()
            .contains("permutation"));
        let mut bad = good.clone();
        bad.position = 6;
        assert!(BatchSampler::from_state(bad)
            .unwrap_err()
            .contains("past the end"));
        let mut bad = good;
        bad.order.clear();
        bad.position = 0;
        assert!(BatchSampler::from_state(bad).unwrap_err().contains("empty"));
    }

    #[test]
    fn whole_set_batches() {
        let mut sampler = BatchSampler::new(1, 0);
        let mut out = [9];
        for epoch in 1..=3 {
            sampler.next_batch(&mut out);
            assert_eq!((out, sampler.epoch()), ([0], epoch));
        }
    }
}
