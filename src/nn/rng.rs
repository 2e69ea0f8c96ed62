//! kiln's global random stream, like `torch.manual_seed` / `torch.get_rng_state`.
//!
//! The state is two numbers, a seed and a counter. Every random draw in `nn` (the initialisers'
//! host generators, dropout's GPU masks) starts from a 64-bit *key* taken with [`next_key`], which
//! returns `key(seed, counter)` and advances the counter by one:
//!
//! ```text
//! key(seed, counter) = mix64(mix64(seed ^ 0x6b696c6e) + (counter + 1) * 0x9E3779B97F4A7C15)
//! ```
//!
//! (`mix64` is SplitMix64's finaliser, a bijection of u64.) A checkpoint that stores
//! [`rng_state`] and restores it with [`set_rng_state`] therefore resumes with exactly the keys,
//! and so the masks and initial values, that an uninterrupted run would have drawn.
//!
//! The state is process-wide (one mutex): draws from several threads interleave in whatever order
//! the threads run, so a reproducible program draws from one thread. A thread can also record
//! the keys a computation draws ([`record_keys`]) and feed them to it again ([`replay_keys`],
//! which leaves the stream alone): activation checkpointing recomputes dropout that way.
//!
//! ```
//! use kiln::nn::rng;
//! rng::manual_seed(42);
//! let a = rng::next_key();
//! let saved = rng::rng_state();
//! let b = rng::next_key();
//! rng::set_rng_state(saved);
//! assert_eq!(rng::next_key(), b);
//! rng::manual_seed(42);
//! assert_eq!(rng::next_key(), a);
//! ```

use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The seed a fresh process starts from (PyTorch's default seed), so unseeded runs are
/// reproducible too.
pub const DEFAULT_SEED: u64 = 67_280_421_310_721;

/// Where the global stream stands: the seed given to [`manual_seed`] and the number of keys drawn
/// since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RngState {
    /// The seed.
    pub seed: u64,
    /// Keys drawn since seeding.
    pub counter: u64,
}

impl Default for RngState {
    fn default() -> Self {
        RngState {
            seed: DEFAULT_SEED,
            counter: 0,
        }
    }
}

static STATE: Mutex<RngState> = Mutex::new(RngState {
    seed: DEFAULT_SEED,
    counter: 0,
});

fn lock() -> MutexGuard<'static, RngState> {
    // The state is two integers, always consistent: a panic elsewhere cannot corrupt it.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Restart the global stream from `seed` (counter 0).
pub fn manual_seed(seed: u64) {
    *lock() = RngState { seed, counter: 0 };
}

/// The current state of the global stream (for checkpoints).
pub fn rng_state() -> RngState {
    *lock()
}

/// Restore a state saved with [`rng_state`].
pub fn set_rng_state(state: RngState) {
    *lock() = state;
}

/// Draw the next 64-bit key of the global stream and advance its counter; inside
/// [`replay_keys`] the next replayed key instead, and inside [`record_keys`] the key is also
/// recorded.
pub fn next_key() -> u64 {
    TAPES.with(|t| {
        let mut tapes = t.borrow_mut();
        // The key comes from the innermost replay (or the stream); every recording opened
        // inside that replay sees it.
        let from = tapes.iter().rposition(|t| matches!(t, Tape::Replay(_)));
        let key = match from.map(|i| &mut tapes[i]) {
            Some(Tape::Replay(keys)) if !keys.is_empty() => keys.remove(0),
            _ => stream_key(),
        };
        let start = from.map_or(0, |i| i + 1);
        for tape in &mut tapes[start..] {
            if let Tape::Record(keys) = tape {
                keys.push(key);
            }
        }
        key
    })
}

/// The next key of the global stream (the counter advances).
fn stream_key() -> u64 {
    let mut s = lock();
    let k = key_at(s.seed, s.counter);
    s.counter = s.counter.wrapping_add(1);
    k
}

/// A record of the keys one computation drew, or the keys it is to draw again.
enum Tape {
    Record(Vec<u64>),
    Replay(Vec<u64>),
}

thread_local! {
    static TAPES: std::cell::RefCell<Vec<Tape>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Pops this thread's innermost tape when dropped (also on a panic inside it).
struct TapeGuard;

impl Drop for TapeGuard {
    fn drop(&mut self) {
        TAPES.with(|t| t.borrow_mut().pop());
    }
}

/// Run `f` on this thread, returning what it returns and the keys it drew with [`next_key`]
/// (from the stream as usual, or from an enclosing [`replay_keys`]).
pub fn record_keys<T>(f: impl FnOnce() -> T) -> (T, Vec<u64>) {
    TAPES.with(|t| t.borrow_mut().push(Tape::Record(Vec::new())));
    let guard = TapeGuard;
    let out = f();
    let keys = TAPES.with(|t| match t.borrow_mut().last_mut() {
        Some(Tape::Record(keys)) => std::mem::take(keys),
        _ => Vec::new(),
    });
    drop(guard);
    (out, keys)
}

/// Run `f` on this thread with [`next_key`] handing out `keys` in order (then the stream, if
/// `f` draws more): a computation recorded with [`record_keys`] draws the same keys again (how
/// a checkpointed segment's recomputation gets its forward's dropout masks), and neither the
/// global stream nor other threads see it.
pub fn replay_keys<T>(keys: &[u64], f: impl FnOnce() -> T) -> T {
    TAPES.with(|t| t.borrow_mut().push(Tape::Replay(keys.to_vec())));
    let _guard = TapeGuard;
    f()
}

/// The key that [`next_key`] returns when the state is `(seed, counter)` (a pure function).
pub fn key_at(seed: u64, counter: u64) -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    mix64(mix64(seed ^ 0x6b69_6c6e).wrapping_add(counter.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// SplitMix64's output function (Steele, Lea and Flood 2014): a bijection with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_a_pure_function_of_the_state() {
        assert_eq!(key_at(1, 5), key_at(1, 5));
        assert_ne!(key_at(1, 5), key_at(1, 6));
        assert_ne!(key_at(1, 5), key_at(2, 5));
        let keys: std::collections::HashSet<u64> = (0..1000).map(|c| key_at(3, c)).collect();
        assert_eq!(keys.len(), 1000);
    }
}
