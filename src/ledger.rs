//! The allocation ledger: who asked the service for each live buffer.
//!
//! `/proc` tells who *holds* a buffer now; only the allocator knows who *asked* for it. The
//! service records that here, keyed by inode, without keeping the buffer alive: holding an fd
//! would turn every attributed buffer into a leak. So the ledger cannot see a buffer die; it
//! learns that only when it is [pruned](Ledger::retain_live) against the kernel's list of live
//! buffers. Pruning is amortised (when the entry count doubles) and forced before anything that
//! would refuse or report on stale data: a quota refusal, a ledger query, a dump.
//!
//! Quota accounting counts bytes per uid, including bytes *reserved* for allocations still in
//! flight, so that concurrent requests of one uid cannot overshoot the limit together.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Below this many entries an amortised prune is not worth a read of the kernel's buffer list.
const MIN_PRUNE_ENTRIES: usize = 256;

/// One allocation made through the service, as recorded when it was handed out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Buffer inode: the key every accounting view uses.
    pub inode: u64,
    /// Size after page rounding.
    pub size: u64,
    /// Purpose name set before the buffer left the service.
    pub name: String,
    /// Heap it came from.
    pub heap: String,
    /// Binder calling uid.
    pub uid: u32,
    /// Binder calling pid (0 when the kernel did not tell, e.g. oneway calls).
    pub pid: i32,
    /// Allocation time, milliseconds since the Unix epoch.
    pub time_millis: u64,
}

impl Entry {
    /// Milliseconds since the Unix epoch now, for [`Entry::time_millis`].
    pub fn now_millis() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Outstanding bytes of one uid would exceed its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    /// Bytes the uid holds (live entries plus reservations) before this request.
    pub outstanding: u64,
}

/// Per-uid totals for dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidUsage {
    /// The uid.
    pub uid: u32,
    /// Live entries of the uid.
    pub buffers: usize,
    /// Outstanding bytes: live entries plus reservations in flight.
    pub bytes: u64,
}

/// The ledger itself. Not synchronised: the service keeps it behind one mutex and never holds
/// that lock across an allocation or a read of the kernel's buffer list.
#[derive(Debug)]
pub struct Ledger {
    /// Entries by inode, each with the [`Ledger::generation`] it was committed in.
    entries: HashMap<u64, (u64, Entry)>,
    /// Bumped by every commit; see [`Ledger::retain_live`].
    generation: u64,
    /// Outstanding bytes per uid: sizes of its entries plus its reservations.
    outstanding: HashMap<u32, u64>,
    /// Entry count at which [`Ledger::needs_prune`] says yes.
    prune_at: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            entries: HashMap::new(),
            generation: 0,
            outstanding: HashMap::new(),
            prune_at: MIN_PRUNE_ENTRIES,
        }
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Outstanding bytes of `uid`: its entries plus its reservations.
    pub fn outstanding(&self, uid: u32) -> u64 {
        self.outstanding.get(&uid).copied().unwrap_or(0)
    }

    /// Reserves `size` bytes for `uid` before allocating, if that keeps it within `limit`.
    /// Every successful reservation must be followed by [`commit`](Self::commit) or
    /// [`release`](Self::release) with the same uid and size.
    pub fn reserve(&mut self, uid: u32, size: u64, limit: Option<u64>) -> Result<(), OverQuota> {
        let outstanding = self.outstanding(uid);
        let wanted = outstanding.checked_add(size);
        match (wanted, limit) {
            (Some(total), Some(limit)) if total <= limit => {}
            (Some(_), None) => {}
            _ => return Err(OverQuota { outstanding }),
        }
        self.add(uid, size);
        Ok(())
    }

    /// Gives back a reservation whose allocation failed.
    pub fn release(&mut self, uid: u32, size: u64) {
        self.sub(uid, size);
    }

    /// Turns a reservation of `reserved` bytes into an entry. The kernel may have rounded the
    /// size up, so the entry's own size replaces the reservation. An entry already recorded
    /// under the same inode belongs to a buffer that died (inodes are unique among live
    /// buffers) and is replaced.
    pub fn commit(&mut self, reserved: u64, entry: Entry) {
        self.sub(entry.uid, reserved);
        self.add(entry.uid, entry.size);
        self.generation += 1;
        if let Some((_, old)) = self.entries.insert(entry.inode, (self.generation, entry)) {
            self.sub(old.uid, old.size);
        }
    }

    /// The commit count so far. Take it *before* reading the kernel's buffer list and pass it to
    /// [`retain_live`](Self::retain_live), so that entries committed while the list was being
    /// read (whose buffers the list may predate) are not mistaken for dead ones.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether enough entries accumulated since the last prune that one is due. Doubling the
    /// threshold keeps the cost of pruning amortised O(1) per allocation, while bounding the
    /// ledger to twice its live size.
    pub fn needs_prune(&self) -> bool {
        self.entries.len() >= self.prune_at
    }

    /// Drops the entries up to generation `seen` whose buffers no longer exist; returns how many
    /// were dropped.
    pub fn retain_live(&mut self, seen: u64, is_live: impl Fn(u64) -> bool) -> usize {
        let before = self.entries.len();
        let mut freed: Vec<(u32, u64)> = Vec::new();
        self.entries.retain(|inode, (generation, e)| {
            let live = *generation > seen || is_live(*inode);
            if !live {
                freed.push((e.uid, e.size));
            }
            live
        });
        for (uid, size) in freed {
            self.sub(uid, size);
        }
        self.prune_at = (self.entries.len() * 2).max(MIN_PRUNE_ENTRIES);
        before - self.entries.len()
    }

    /// Entries, optionally of one uid, oldest first (ties by inode), for stable output.
    pub fn entries(&self, uid: Option<u32>) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .entries
            .values()
            .map(|(_, e)| e)
            .filter(|e| uid.is_none_or(|u| e.uid == u))
            .cloned()
            .collect();
        out.sort_by_key(|e| (e.time_millis, e.inode));
        out
    }

    /// Per-uid entry counts and outstanding bytes, by uid.
    pub fn usage_by_uid(&self) -> Vec<UidUsage> {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for (_, e) in self.entries.values() {
            *counts.entry(e.uid).or_default() += 1;
        }
        let mut out: Vec<UidUsage> = self
            .outstanding
            .iter()
            .map(|(&uid, &bytes)| UidUsage {
                uid,
                buffers: counts.get(&uid).copied().unwrap_or(0),
                bytes,
            })
            .collect();
        out.sort_by_key(|u| u.uid);
        out
    }

    fn add(&mut self, uid: u32, size: u64) {
        let slot = self.outstanding.entry(uid).or_default();
        *slot = slot.saturating_add(size);
    }

    fn sub(&mut self, uid: u32, size: u64) {
        if let Some(slot) = self.outstanding.get_mut(&uid) {
            *slot = slot.saturating_sub(size);
            if *slot == 0 {
                self.outstanding.remove(&uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(inode: u64, uid: u32, size: u64) -> Entry {
        Entry {
            inode,
            size,
            name: "GL".into(),
            heap: "system".into(),
            uid,
            pid: 42,
            time_millis: inode,
        }
    }

    #[test]
    fn reserve_commit_release_keep_exact_bytes() {
        let mut l = Ledger::new();
        l.reserve(10, 4096, Some(8192)).unwrap();
        l.reserve(10, 4096, Some(8192)).unwrap();
        assert_eq!(
            l.reserve(10, 1, Some(8192)),
            Err(OverQuota { outstanding: 8192 })
        );
        l.release(10, 4096);
        assert_eq!(l.outstanding(10), 4096);
        // The kernel rounded 4000 up to 4096: the entry's size wins.
        l.commit(4000, entry(1, 10, 4096));
        assert_eq!(l.outstanding(10), 96 + 4096);
        l.release(10, 96);
        assert_eq!(l.outstanding(10), 4096);
        assert_eq!(
            l.usage_by_uid(),
            vec![UidUsage {
                uid: 10,
                buffers: 1,
                bytes: 4096
            }]
        );
    }

    #[test]
    fn no_limit_and_overflow() {
        let mut l = Ledger::new();
        l.reserve(1, u64::MAX, None).unwrap();
        assert_eq!(
            l.reserve(1, 1, None),
            Err(OverQuota {
                outstanding: u64::MAX
            })
        );
    }

    #[test]
    fn pruning_frees_quota_and_reused_inode_replaces() {
        let mut l = Ledger::new();
        for (inode, uid) in [(1, 10), (2, 10), (3, 20)] {
            l.reserve(uid, 100, None).unwrap();
            l.commit(100, entry(inode, uid, 100));
        }
        let seen = l.generation();
        // Committed after the kernel's list was read: kept although the list lacks it.
        l.commit(0, entry(9, 30, 0));
        assert_eq!(l.retain_live(seen, |i| i != 2 && i != 9), 1);
        assert_eq!(l.entries(Some(30)).len(), 1);
        assert_eq!(l.retain_live(l.generation(), |i| i != 2 && i != 9), 1);
        assert_eq!(l.outstanding(10), 100);
        assert_eq!(
            l.entries(Some(10))
                .iter()
                .map(|e| e.inode)
                .collect::<Vec<_>>(),
            vec![1]
        );
        // Inode 3 died unnoticed and the kernel reused it for uid 10.
        l.reserve(10, 50, None).unwrap();
        l.commit(50, entry(3, 10, 50));
        assert_eq!(l.outstanding(20), 0);
        assert_eq!(l.outstanding(10), 150);
        assert_eq!(l.entries(None).len(), 2);
        assert_eq!(
            l.usage_by_uid(),
            vec![UidUsage {
                uid: 10,
                buffers: 2,
                bytes: 150
            }]
        );
    }

    #[test]
    fn prune_threshold_doubles_with_live_entries() {
        let mut l = Ledger::new();
        for inode in 0..MIN_PRUNE_ENTRIES as u64 {
            assert!(!l.needs_prune());
            l.commit(0, entry(inode, 1, 1));
        }
        assert!(l.needs_prune());
        assert_eq!(l.retain_live(l.generation(), |_| true), 0);
        assert!(!l.needs_prune());
        for inode in 0..MIN_PRUNE_ENTRIES as u64 {
            l.commit(0, entry(1000 + inode, 1, 1));
        }
        assert!(l.needs_prune());
    }
}
