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
//!
//! # After a restart
//!
//! The ledger lives in the service's memory only, and the buffers it describes outlive the
//! service (clients hold them). A restarted service therefore [rebuilds](rebuild) what the
//! kernel still knows: every live buffer it could plausibly have handed out becomes an entry
//! with `attributed == false`, name, heap and size from the kernel, and [`UNKNOWN_UID`] /
//! [`UNKNOWN_PID`] / time 0, because who *asked* for it died with the old ledger.
//!
//! Plausible means: the exporter is a heap the service allocates from (a name under its heap
//! directory; dma-heap buffers carry the heap name as exporter), and the buffer has a name (the
//! service names every buffer before it leaves, so an unnamed one never came from it). Buffers of
//! other exporters (GPU, camera, udmabuf drivers) are left out. Buffers that a client allocated
//! straight from `/dev/dma_heap` and named itself are indistinguishable and get rebuilt too;
//! `attributed == false` is what tells readers not to trust them as the service's.
//!
//! Quota: a rebuilt entry is charged to the uid of its holders when exactly one uid holds it (by
//! fd or mapping), and to nobody when several uids, or only the kernel, hold it. The holder is
//! the best available stand-in for the requester (a client rarely hands a buffer to another uid
//! and closes its own reference), and charging keeps the quota meaningful across restarts: a uid
//! cannot double its allowance by outliving a service crash. The cost: a uid that is the only
//! holder of a named heap buffer it got elsewhere is charged for it until it frees it. The charge
//! can exceed the quota (the buffers exist either way); the uid is then refused until it frees
//! enough.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::account::{Model, Name};

/// Below this many entries an amortised prune is not worth a read of the kernel's buffer list.
const MIN_PRUNE_ENTRIES: usize = 256;

/// Uid of a rebuilt entry: nobody is known to have asked. Linux's "no uid" (`(uid_t)-1`), which
/// AIDL carries as -1, the value `LedgerEntry.uid` documents for rebuilt entries.
pub const UNKNOWN_UID: u32 = u32::MAX;

/// Pid of a rebuilt entry (`LedgerEntry.pid` -1).
pub const UNKNOWN_PID: i32 = -1;

/// One allocation made through the service, as recorded when it was handed out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Buffer inode: the key every accounting view uses.
    pub inode: u64,
    /// Size after page rounding.
    pub size: u64,
    /// Purpose name set before the buffer left the service, or (rebuilt) the kernel's exact
    /// bytes; JSON as for [`BufferView::name`](crate::account::BufferView::name).
    #[serde(flatten, serialize_with = "Name::serialize_field")]
    pub name: Name,
    /// Heap it came from.
    pub heap: String,
    /// Binder calling uid.
    pub uid: u32,
    /// Binder calling pid (0 when the kernel did not tell, e.g. oneway calls).
    pub pid: i32,
    /// Allocation time, milliseconds since the Unix epoch; 0 when unknown (rebuilt).
    pub time_millis: u64,
    /// True when this service recorded the allocation itself; false for an entry rebuilt from
    /// the kernel after a restart, whose uid and pid are [`UNKNOWN_UID`] and [`UNKNOWN_PID`].
    pub attributed: bool,
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
    /// Live entries charged to the uid: its allocations, plus rebuilt entries only it holds.
    pub buffers: usize,
    /// Outstanding bytes: live entries plus reservations in flight.
    pub bytes: u64,
}

/// A rebuilt entry and the uid its size is charged to (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The entry, `attributed == false`.
    pub entry: Entry,
    /// The only uid holding the buffer, if exactly one does.
    pub charged: Option<u32>,
}

/// One recorded buffer.
#[derive(Debug)]
struct Slot {
    /// The [`Ledger::generation`] it was recorded in.
    generation: u64,
    /// The uid whose outstanding bytes include this entry's size.
    charged: Option<u32>,
    entry: Entry,
}

/// The ledger itself. Not synchronised: the service keeps it behind one mutex and never holds
/// that lock across an allocation or a read of the kernel's buffer list.
#[derive(Debug)]
pub struct Ledger {
    /// Entries by inode.
    entries: HashMap<u64, Slot>,
    /// Bumped by every commit; see [`Ledger::retain_live`].
    generation: u64,
    /// Outstanding bytes per uid: sizes of its entries plus its reservations.
    outstanding: HashMap<u32, u64>,
    /// Bytes of the entries per name (for the service's history).
    by_name: HashMap<Name, u64>,
    /// Bytes of all entries.
    bytes: u64,
    /// Entry count at which [`Ledger::needs_prune`] says yes.
    prune_at: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            entries: HashMap::new(),
            generation: 0,
            outstanding: HashMap::new(),
            by_name: HashMap::new(),
            bytes: 0,
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

    /// Bytes of the entries (live or not yet pruned) named `name`.
    pub fn name_bytes(&self, name: &Name) -> u64 {
        self.by_name.get(name).copied().unwrap_or(0)
    }

    /// Bytes of all entries (live or not yet pruned).
    pub fn bytes(&self) -> u64 {
        self.bytes
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
        self.insert(Some(entry.uid), entry);
    }

    /// Records a [rebuilt](rebuild) entry, charging its size to `charged` without a quota check.
    pub fn adopt(&mut self, rebuilt: Rebuilt) {
        self.insert(rebuilt.charged, rebuilt.entry);
    }

    /// Records `entry`, charged to `charged`, replacing any entry of a dead buffer with the same
    /// inode (inodes are unique among live buffers).
    fn insert(&mut self, charged: Option<u32>, entry: Entry) {
        if let Some(uid) = charged {
            self.add(uid, entry.size);
        }
        self.count_in(&entry);
        self.generation += 1;
        let slot = Slot { generation: self.generation, charged, entry };
        if let Some(old) = self.entries.insert(slot.entry.inode, slot) {
            if let Some(uid) = old.charged {
                self.sub(uid, old.entry.size);
            }
            self.count_out(&old.entry);
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
        let mut freed: Vec<(Option<u32>, u64, Name)> = Vec::new();
        self.entries.retain(|inode, slot| {
            let live = slot.generation > seen || is_live(*inode);
            if !live {
                freed.push((slot.charged, slot.entry.size, std::mem::take(&mut slot.entry.name)));
            }
            live
        });
        for (charged, size, name) in freed {
            if let Some(uid) = charged {
                self.sub(uid, size);
            }
            self.bytes = self.bytes.saturating_sub(size);
            self.name_sub(&name, size);
        }
        // Hash maps never shrink by themselves: after a burst of allocations died, give the
        // table back so the service returns to its baseline.
        let live = self.entries.len();
        if self.entries.capacity() > 4 * live.max(MIN_PRUNE_ENTRIES) {
            self.entries.shrink_to(2 * live);
            self.outstanding.shrink_to(2 * self.outstanding.len());
            self.by_name.shrink_to(2 * self.by_name.len());
        }
        self.prune_at = (live * 2).max(MIN_PRUNE_ENTRIES);
        before - self.entries.len()
    }

    /// Entries, optionally of one uid, oldest first (ties by inode), for stable output.
    pub fn entries(&self, uid: Option<u32>) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .entries
            .values()
            .map(|slot| &slot.entry)
            .filter(|e| uid.is_none_or(|u| e.uid == u))
            .cloned()
            .collect();
        out.sort_by_key(|e| (e.time_millis, e.inode));
        out
    }

    /// The names longer than the kernel keeps, by inode: what [`Report::build_named`] shows
    /// instead of the kernel's prefix.
    ///
    /// [`Report::build_named`]: crate::account::Report::build_named
    pub fn whole_names(&self) -> HashMap<u64, Name> {
        self.entries
            .values()
            .filter(|slot| slot.entry.name.as_bytes().len() > crate::name::MAX_KERNEL_NAME_LEN)
            .map(|slot| (slot.entry.inode, slot.entry.name.clone()))
            .collect()
    }

    /// Per-uid entry counts and outstanding bytes, by uid.
    pub fn usage_by_uid(&self) -> Vec<UidUsage> {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for uid in self.entries.values().filter_map(|slot| slot.charged) {
            *counts.entry(uid).or_default() += 1;
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

    fn count_in(&mut self, entry: &Entry) {
        self.bytes = self.bytes.saturating_add(entry.size);
        let slot = self.by_name.entry(entry.name.clone()).or_default();
        *slot = slot.saturating_add(entry.size);
    }

    fn count_out(&mut self, entry: &Entry) {
        self.bytes = self.bytes.saturating_sub(entry.size);
        self.name_sub(&entry.name, entry.size);
    }

    fn name_sub(&mut self, name: &Name, size: u64) {
        if let Some(slot) = self.by_name.get_mut(name) {
            *slot = slot.saturating_sub(size);
            if *slot == 0 {
                self.by_name.remove(name);
            }
        }
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

/// The entries a restarted service adopts: every buffer in `model` exported by one of `heaps`
/// and named, with its holders' uid if they share one (see the [module docs](self)). Ordered
/// by inode.
pub fn rebuild(model: &Model, heaps: &[String]) -> Vec<Rebuilt> {
    model
        .buffers
        .values()
        .filter_map(|b| {
            let heap = b.exporter.as_deref().filter(|e| heaps.iter().any(|h| h == e))?;
            let name = b.name.as_ref().filter(|n| !n.is_empty())?;
            let uids: BTreeSet<u32> = b
                .holders()
                .iter()
                .filter_map(|pid| model.processes.get(pid).map(|p| p.uid))
                .collect();
            let mut uids = uids.into_iter();
            let charged = match (uids.next(), uids.next()) {
                (Some(uid), None) => Some(uid),
                _ => None,
            };
            Some(Rebuilt {
                entry: Entry {
                    inode: b.inode,
                    size: b.size,
                    name: name.clone(),
                    heap: heap.to_string(),
                    uid: UNKNOWN_UID,
                    pid: UNKNOWN_PID,
                    time_millis: 0,
                    attributed: false,
                },
                charged,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::account::{Buffer, Process};

    /// An attributed entry of `uid` (pid 42, named GL), for this crate's tests.
    pub(crate) fn entry(inode: u64, uid: u32, size: u64) -> Entry {
        Entry {
            inode,
            size,
            name: "GL".into(),
            heap: "system".into(),
            uid,
            pid: 42,
            time_millis: inode,
            attributed: true,
        }
    }

    #[test]
    fn reserve_commit_release_keep_exact_bytes() {
        let mut l = Ledger::new();
        l.reserve(10, 4096, Some(8192)).unwrap();
        l.reserve(10, 4096, Some(8192)).unwrap();
        assert_eq!(l.reserve(10, 1, Some(8192)), Err(OverQuota { outstanding: 8192 }));
        l.release(10, 4096);
        assert_eq!(l.outstanding(10), 4096);
        // The kernel rounded 4000 up to 4096: the entry's size wins.
        l.commit(4000, entry(1, 10, 4096));
        assert_eq!(l.outstanding(10), 96 + 4096);
        l.release(10, 96);
        assert_eq!(l.outstanding(10), 4096);
        assert_eq!(l.usage_by_uid(), vec![UidUsage { uid: 10, buffers: 1, bytes: 4096 }]);
    }

    #[test]
    fn no_limit_and_overflow() {
        let mut l = Ledger::new();
        l.reserve(1, u64::MAX, None).unwrap();
        assert_eq!(l.reserve(1, 1, None), Err(OverQuota { outstanding: u64::MAX }));
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
        assert_eq!(l.entries(Some(10)).iter().map(|e| e.inode).collect::<Vec<_>>(), vec![1]);
        // Inode 3 died unnoticed and the kernel reused it for uid 10.
        l.reserve(10, 50, None).unwrap();
        l.commit(50, entry(3, 10, 50));
        assert_eq!(l.outstanding(20), 0);
        assert_eq!(l.outstanding(10), 150);
        assert_eq!(l.entries(None).len(), 2);
        assert_eq!(
            (l.bytes(), l.name_bytes(&"GL".into()), l.name_bytes(&"X".into())),
            (150, 150, 0)
        );
        assert_eq!(l.usage_by_uid(), vec![UidUsage { uid: 10, buffers: 2, bytes: 150 }]);
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

    #[test]
    fn reports_show_the_whole_names_the_ledger_kept() {
        use crate::account::{Filter, Report};
        let whole = format!("{}-preview-buffer", "CAMERA".repeat(5));
        let mut l = Ledger::new();
        l.commit(0, Entry { name: whole.as_str().into(), ..entry(1, 10, 4096) });
        l.commit(0, Entry { name: whole.as_str().into(), ..entry(2, 10, 4096) });
        l.commit(0, entry(3, 10, 4096));
        assert_eq!(l.whole_names().len(), 2);
        let kernel = crate::name::kernel_prefix(&whole);
        let mut model = Model::default();
        // Buffer 2 was renamed by a holder since: the kernel's name is what it is called now.
        for (inode, name) in [(1, kernel), (2, "renamed"), (3, "GL")] {
            model.buffers.insert(inode, Buffer { size: 4096, ..buffer(inode, None, Some(name)) });
        }
        let report = Report::build_named(&model, &Filter::default(), &l.whole_names());
        let names: Vec<_> = report.buffers.iter().map(|b| b.name.clone().unwrap()).collect();
        assert_eq!(names, vec![Name::from(whole.as_str()), "renamed".into(), "GL".into()]);
        let grouped: Vec<_> = report.names.iter().map(|n| n.name.clone()).collect();
        assert_eq!(grouped, vec![Name::from(whole.as_str()), "GL".into(), "renamed".into()]);
    }

    fn buffer(inode: u64, exporter: Option<&str>, name: Option<&str>) -> Buffer {
        Buffer {
            inode,
            size: inode * 4096,
            exporter: exporter.map(Into::into),
            name: name.map(Into::into),
            ..Buffer::default()
        }
    }

    /// Holders: pid 10 and 11 are uid 100, pid 12 is uid 200.
    fn restart_model() -> Model {
        let mut model = Model::default();
        for (pid, uid) in [(10, 100), (11, 100), (12, 200)] {
            model.processes.insert(pid, Process { pid, uid, comm: format!("p{pid}") });
        }
        let mut add = |mut b: Buffer, fds: &[i32], maps: &[i32]| {
            b.fd_refs = fds.iter().map(|&p| (p, 1)).collect();
            b.map_refs = maps.iter().map(|&p| (p, 1)).collect();
            model.buffers.insert(b.inode, b);
        };
        add(buffer(1, Some("system"), Some("one uid")), &[10], &[]);
        add(buffer(2, Some("system"), Some("two pids")), &[10], &[11]);
        add(buffer(3, Some("system"), Some("two uids")), &[10], &[12]);
        add(buffer(4, Some("system"), Some("kernel only")), &[], &[]);
        add(buffer(5, Some("system"), None), &[10], &[]);
        add(buffer(6, Some("udmabuf"), Some("other exporter")), &[10], &[]);
        add(buffer(7, None, Some("no exporter")), &[], &[10]);
        add(buffer(8, Some("system"), Some("")), &[10], &[]);
        add(buffer(9, Some("reserved"), Some("cma")), &[], &[12]);
        model
    }

    #[test]
    fn rebuild_takes_named_heap_buffers_and_charges_a_sole_holder_uid() {
        let heaps = ["reserved".to_string(), "system".to_string()];
        let got: Vec<_> = rebuild(&restart_model(), &heaps)
            .into_iter()
            .map(|r| (r.entry.inode, r.entry.name.clone(), r.charged))
            .collect();
        let want: Vec<(u64, Name, Option<u32>)> = vec![
            (1, "one uid".into(), Some(100)),
            (2, "two pids".into(), Some(100)),
            (3, "two uids".into(), None),
            (4, "kernel only".into(), None),
            (9, "cma".into(), Some(200)),
        ];
        assert_eq!(got, want);
        let first = &rebuild(&restart_model(), &heaps)[0].entry;
        assert_eq!(
            first,
            &Entry {
                inode: 1,
                size: 4096,
                name: "one uid".into(),
                heap: "system".into(),
                uid: UNKNOWN_UID,
                pid: UNKNOWN_PID,
                time_millis: 0,
                attributed: false,
            }
        );
        // A heap the service does not serve is not its buffer.
        assert!(rebuild(&restart_model(), &["system".to_string()])
            .iter()
            .all(|r| r.entry.inode != 9));
    }

    #[test]
    fn adopted_entries_charge_quota_until_pruned_or_replaced() {
        let mut l = Ledger::new();
        for r in rebuild(&restart_model(), &["reserved".into(), "system".into()]) {
            l.adopt(r);
        }
        assert_eq!(l.len(), 5);
        assert_eq!(l.outstanding(100), 4096 + 2 * 4096);
        assert_eq!(l.outstanding(200), 9 * 4096);
        assert_eq!(l.outstanding(UNKNOWN_UID), 0);
        // Rebuilt entries belong to no uid's ledger view, but to the whole one.
        assert!(l.entries(Some(100)).is_empty());
        assert_eq!(l.entries(None).len(), 5);
        // Over quota already: refused until something is freed.
        assert_eq!(l.reserve(200, 4096, Some(8 * 4096)), Err(OverQuota { outstanding: 9 * 4096 }));
        assert_eq!(
            l.usage_by_uid(),
            vec![
                UidUsage { uid: 100, buffers: 2, bytes: 3 * 4096 },
                UidUsage { uid: 200, buffers: 1, bytes: 9 * 4096 }
            ]
        );
        // Buffer 1 died; 3 (uncharged) too.
        assert_eq!(l.retain_live(l.generation(), |i| i != 1 && i != 3), 2);
        assert_eq!(l.outstanding(100), 2 * 4096);
        // Inode 9 died unnoticed and now belongs to a new allocation of uid 300.
        l.reserve(300, 4096, None).unwrap();
        l.commit(4096, entry(9, 300, 4096));
        assert_eq!(l.outstanding(200), 0);
        assert_eq!(l.outstanding(300), 4096);
        assert!(l.entries(Some(300))[0].attributed);
    }
}
