//! Maps keyed by a hash the caller already made with a random key (the
//! JWT cache's token key, the WAF's clean-value ids): hashing that `u64` a
//! second time buys nothing, so the map takes it as it is.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map whose `u64` keys are keyed hashes already.
pub type PrehashedMap<V> = HashMap<u64, V, BuildHasherDefault<KeyIsHash>>;

/// The hasher of a [`PrehashedMap`]: a `u64` key is its own hash.
#[derive(Default)]
pub struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
