//! Hash maps keyed by the kernel's own numbers: inodes, pids and kernel addresses.
//!
//! A scan makes a lookup per fd and per mapping (tens of thousands a pass), and std's default
//! SipHash, built to resist keys chosen to collide, is a tenth of the tally's instructions. These
//! keys are the kernel's: inodes and pids it hands out in sequence, addresses of its own
//! structures, so a multiply-and-rotate mix (the "Fx" hash) spreads them well enough, and a
//! process steering its pid could at worst slow the map of its own scan, never change a result.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by kernel-assigned ids.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// A set of kernel-assigned ids.
pub type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Mixes each integer in with one rotate, xor and multiply by an odd constant (a bijection, so
/// distinct single keys never collide before the table's reduction).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_ne_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u32(n as u32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_shape_find_their_values() {
        let mut m: IdMap<(i32, u64), u32> = IdMap::default();
        for (i, tgid) in (0..2000).enumerate() {
            m.insert((tgid, 0xffff_8880_0000_0000 + (i as u64) * 64), i as u32);
        }
        assert_eq!(m.len(), 2000);
        assert_eq!(m.get(&(1234, 0xffff_8880_0000_0000 + 1234 * 64)), Some(&1234));
        assert_eq!(m.get(&(1234, 0)), None);
        let s: IdSet<u64> = (1..=4806).collect();
        assert!(s.contains(&4806) && !s.contains(&0));
    }
}
