//! What both binder interfaces share: policy, heaps, ledger; and the transport-free logic of
//! every call, so the AIDL impls only convert types.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::compat::Caller;
use super::history::{self, History};
use super::scans::Scans;
use super::snapshots::{self, Snapshots};
use crate::account::{Filter, Name, Report};
use crate::buffer::DmaBuf;
use crate::coverage::{source, SourceState, SourceUse};
use crate::handoff::{self, Handoffs};
use crate::heap::{AllocRequest, Allocator};
use crate::kernel_buffers::LiveBuffers;
use crate::ledger::{self, Entry, Ledger};
use crate::{memtrack, report, sys, Error, Result};

/// A prune that drops at least this many entries also drops the latest scan (it describes dead
/// buffers) and returns freed memory to the kernel ([`sys::release_free_memory`]); smaller ones
/// are not worth the allocator's walk.
const TRIM_AFTER: usize = 1024;

/// Who may see what, and how much each uid may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Uids that may query any uid or pid.
    pub allowlist: BTreeSet<u32>,
    /// Outstanding bytes per uid; `None` for no limit.
    pub quota: Option<u64>,
}

impl Policy {
    /// Everyone may ask about their own uid; only the allowlist about anything else.
    pub fn check_query(&self, caller: u32, uid: Option<u32>) -> Result<()> {
        if self.sees_all(caller) || uid == Some(caller) {
            return Ok(());
        }
        Err(Error::PermissionDenied(match uid {
            Some(uid) => format!("uid {caller} may not query uid {uid}"),
            None => format!("uid {caller} may only query its own uid ({caller})"),
        }))
    }

    /// Whether `caller` may see every uid's data.
    pub fn sees_all(&self, caller: u32) -> bool {
        self.allowlist.contains(&caller)
    }
}

/// Which kind of paged query a snapshot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paged {
    /// getReportPage.
    Report,
    /// getLedgerPage.
    Ledger,
    /// getHandoffPage.
    Handoff,
}

/// The service's state; one per process, shared by both binder objects.
#[derive(Debug)]
pub struct Shared {
    policy: Policy,
    heaps: Allocator,
    live: LiveBuffers,
    ledger: Mutex<Ledger>,
    scans: Scans,
    reports: Snapshots<Filter, Report>,
    ledgers: Snapshots<Option<u32>, Vec<Entry>>,
    handoffs: Snapshots<Option<u32>, Handoffs>,
    /// Taken after `ledger`, never before.
    history: Mutex<History>,
    started: Instant,
    allocations: AtomicU64,
    refusals: AtomicU64,
}

impl Shared {
    pub fn new(policy: Policy, heaps: Allocator, live: LiveBuffers) -> Self {
        Shared {
            policy,
            heaps,
            live,
            ledger: Mutex::new(Ledger::new()),
            scans: Scans::default(),
            reports: Snapshots::default(),
            ledgers: Snapshots::default(),
            handoffs: Snapshots::default(),
            history: Mutex::new(History::new(Entry::now_millis())),
            started: Instant::now(),
            allocations: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// Allocates and names a buffer for `caller` and records it. The returned buffer is the
    /// only reference; the caller of this function must hand it out and drop it.
    pub fn allocate(&self, caller: Caller, req: &AllocRequest<'_>) -> Result<DmaBuf> {
        let result = self.try_allocate(caller, req);
        let counter = if result.is_ok() { &self.allocations } else { &self.refusals };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_allocate(&self, caller: Caller, req: &AllocRequest<'_>) -> Result<DmaBuf> {
        // A malformed request (too large for any quota, say) is refused as such, whatever the
        // caller holds; what it would be charged is what the kernel will really allocate.
        let checked = self.heaps.check(req)?;
        let charged = checked.charged();
        self.reserve(caller.uid, charged)?;
        let result = self.heaps.allocate_checked(&checked);
        let mut ledger = self.ledger();
        let buf = match result {
            Ok(buf) => buf,
            Err(e) => {
                ledger.release(caller.uid, charged);
                return Err(e);
            }
        };
        let name = Name::from(checked.name().as_str());
        let now = Entry::now_millis();
        ledger.commit(
            charged,
            Entry {
                inode: buf.inode(),
                size: buf.size(),
                name: name.clone(),
                heap: checked.heap().to_owned(),
                uid: caller.uid,
                pid: caller.pid,
                time_millis: now,
                attributed: true,
            },
        );
        self.history_lock().allocated(&ledger, caller.uid, &name, now);
        let due = ledger.needs_prune();
        drop(ledger);
        if due {
            self.prune();
        }
        Ok(buf)
    }

    /// Reserves quota, pruning dead entries once before refusing.
    fn reserve(&self, uid: u32, size: u64) -> Result<()> {
        let limit = self.policy.quota;
        if self.ledger().reserve(uid, size, limit).is_ok() {
            return Ok(());
        }
        self.prune();
        self.ledger().reserve(uid, size, limit).map_err(|over| Error::QuotaExceeded {
            uid,
            outstanding: over.outstanding,
            limit: limit.unwrap_or(u64::MAX),
        })
    }

    /// Drops ledger entries of buffers that died. A failure to read the kernel's list keeps
    /// every entry: a stale entry only over-counts, a wrongly dropped one hides an allocation.
    /// Without a kernel list, the live buffers are those of the shared, rate-limited scan
    /// ([`Scans::model`]), so that pruning on every query costs no more than reports do.
    fn prune(&self) {
        let seen = self.ledger().generation();
        let retain = |is_live: &dyn Fn(u64) -> bool| {
            let mut ledger = self.ledger();
            let dropped = ledger.retain_live(seen, is_live);
            self.history_lock().pruned(&ledger, Entry::now_millis());
            dropped
        };
        let pruned = match &self.live {
            // A model is only reused while the ledger is at the generation it started at, so
            // entries committed after it started are newer than `seen` and kept.
            LiveBuffers::Scan => self.scans.model(seen).and_then(|model| {
                let model = crate::kernel_buffers::saw_every_holder(&model)?;
                Ok(retain(&|inode| model.buffers.contains_key(&inode)))
            }),
            kernel => kernel.read().map(|live| retain(&|inode| live.contains(&inode))),
        };
        match pruned {
            Ok(dropped) => {
                log::debug!("ledger: pruned {dropped} entries of freed buffers");
                if dropped >= TRIM_AFTER {
                    self.scans.forget();
                }
                let expired = self.scans.expire();
                let open = self.open_snapshots();
                if dropped >= TRIM_AFTER || (expired && open == 0) {
                    sys::release_free_memory();
                }
            }
            Err(e) => log::warn!("ledger: not pruned, cannot list live buffers: {e}"),
        }
    }

    /// At start-up: adopts into the ledger every live buffer a previous instance of the service
    /// may have handed out (see [`ledger::rebuild`]), from one scan of `/proc` and the kernel's
    /// buffer list. Returns how many entries were rebuilt.
    pub fn rebuild_ledger(&self) -> Result<usize> {
        let heaps = self.heaps()?;
        let model = self.model()?;
        let rebuilt = ledger::rebuild(&model, &heaps);
        let count = rebuilt.len();
        let mut ledger = self.ledger();
        for r in rebuilt {
            ledger.adopt(r);
        }
        self.history_lock().pruned(&ledger, Entry::now_millis());
        Ok(count)
    }

    /// Names of the heaps.
    pub fn heaps(&self) -> Result<Vec<String>> {
        self.heaps.heaps()
    }

    /// The accounting report for `uid`/`pid` (`None`: every one) as `caller` may see it.
    pub fn report(&self, caller: Caller, filter: Filter) -> Result<Report> {
        self.policy.check_query(caller.uid, filter.uid)?;
        self.build_report(&filter)
    }

    /// A report of the latest scan, with the whole names the ledger kept, joined with the
    /// ledger (see [`Coverage::join_ledger`](crate::coverage::Coverage::join_ledger)).
    fn build_report(&self, filter: &Filter) -> Result<Report> {
        let model = self.model()?;
        let (names, entries) = {
            let ledger = self.ledger();
            (ledger.whole_names(), ledger.entries(filter.uid))
        };
        let mut report = Report::build_named(&model, filter, &names);
        let detail = if model.exported_bytes.is_some() {
            format!("{} entries, checked against this scan's kernel buffer list", entries.len())
        } else {
            format!(
                "{} entries, not checked against a kernel buffer list (none readable): an entry \
                 may outlive its buffer until a prune through {} can tell",
                entries.len(),
                self.live
            )
        };
        let ledger = SourceUse::new(source::LEDGER, SourceState::Used, detail);
        report.coverage.join_ledger(&model, filter, &entries, ledger);
        Ok(report)
    }

    /// The report snapshot a paged query reads (see [`snapshots::resolve`]): its id, the report
    /// and the index of the page's first item.
    pub fn report_snapshot(
        &self,
        caller: Caller,
        filter: Filter,
        cursor: i64,
    ) -> Result<(u32, Arc<Report>, usize)> {
        self.policy.check_query(caller.uid, filter.uid)?;
        snapshots::resolve(&self.reports, caller.uid, filter, cursor, || self.build_report(&filter))
    }

    /// Live ledger entries, of one uid or of all, as `caller` may see them.
    pub fn ledger_entries(&self, caller: Caller, uid: Option<u32>) -> Result<Vec<Entry>> {
        self.policy.check_query(caller.uid, uid)?;
        self.prune();
        Ok(self.ledger().entries(uid))
    }

    /// The ledger snapshot a paged query reads, as [`Shared::report_snapshot`].
    pub fn ledger_snapshot(
        &self,
        caller: Caller,
        uid: Option<u32>,
        cursor: i64,
    ) -> Result<(u32, Arc<Vec<Entry>>, usize)> {
        self.policy.check_query(caller.uid, uid)?;
        snapshots::resolve(&self.ledgers, caller.uid, uid, cursor, || {
            self.prune();
            Ok(self.ledger().entries(uid))
        })
    }

    /// The asked-by versus held-by snapshot a paged query reads, as [`Shared::report_snapshot`]:
    /// the live ledger entries of `uid` (or all) joined with a scan.
    pub fn handoff_snapshot(
        &self,
        caller: Caller,
        uid: Option<u32>,
        cursor: i64,
    ) -> Result<(u32, Arc<Handoffs>, usize)> {
        self.policy.check_query(caller.uid, uid)?;
        snapshots::resolve(&self.handoffs, caller.uid, uid, cursor, || self.handoffs(uid))
    }

    fn handoffs(&self, uid: Option<u32>) -> Result<Handoffs> {
        self.prune();
        let entries = self.ledger().entries(uid);
        let model = self.model()?;
        Ok(handoff::join(entries, &model, Entry::now_millis()))
    }

    /// The history as `caller` may see it: everything for the allowlist, its own uid's mark
    /// otherwise. Pruned first, so that current bytes are those of live buffers.
    pub fn history(&self, caller: Caller) -> history::View {
        self.prune();
        let only = (!self.policy.sees_all(caller.uid)).then_some(caller.uid);
        self.history_lock().view(only)
    }

    /// Starts the history afresh; the allowlist only.
    pub fn reset_history(&self, caller: Caller) -> Result<()> {
        if !self.policy.sees_all(caller.uid) {
            return Err(Error::PermissionDenied(format!(
                "uid {} may not reset the history (only uids on the allowlist)",
                caller.uid
            )));
        }
        self.prune();
        // In the lock order of an allocation, so that none is half recorded across the reset.
        let ledger = self.ledger();
        self.history_lock().reset(Entry::now_millis());
        drop(ledger);
        Ok(())
    }

    /// Ends a snapshot whose last page was served. When none is left open, the memory that
    /// paging touched goes back to the kernel: the C allocator keeps freed pages of its thread
    /// arenas otherwise, and each binder thread that served a page has its own.
    pub fn close_snapshot(&self, id: u32, kind: Paged) {
        match kind {
            Paged::Report => self.reports.close(id),
            Paged::Ledger => self.ledgers.close(id),
            Paged::Handoff => self.handoffs.close(id),
        }
        if self.open_snapshots() == 0 {
            sys::release_free_memory();
        }
    }

    /// Snapshots still open (after dropping idle ones), of every kind.
    fn open_snapshots(&self) -> usize {
        self.reports.expire() + self.ledgers.expire() + self.handoffs.expire()
    }

    /// The `dumpsys` text: configuration and counters; then per-uid usage and the ledger, of
    /// every uid for a caller on the allowlist, of its own uid for anyone else (the query rule).
    pub fn write_dump(&self, caller: Caller, w: &mut dyn Write) -> std::io::Result<()> {
        self.prune();
        let heaps = self.heaps().map_or_else(|e| format!("<{e}>"), |h| h.join(", "));
        writeln!(w, "dmabufd: up {} s", self.started.elapsed().as_secs())?;
        writeln!(w, "heaps: {heaps}")?;
        writeln!(w, "cross-uid queries allowed for uids: {:?}", self.policy.allowlist)?;
        match self.policy.quota {
            Some(quota) => writeln!(w, "quota: {quota} bytes outstanding per uid")?,
            None => writeln!(w, "quota: none")?,
        }
        writeln!(w, "live buffer list: {}", self.live)?;
        writeln!(
            w,
            "allocations: {} served, {} refused",
            self.allocations.load(Ordering::Relaxed),
            self.refusals.load(Ordering::Relaxed)
        )?;
        let (queries, runs) = self.scans.counts();
        writeln!(w, "scans: {runs} run for {queries} queries")?;
        let only = (!self.policy.sees_all(caller.uid)).then_some(caller.uid);
        let ledger = self.ledger();
        let mut usage = ledger.usage_by_uid();
        let entries = ledger.entries(only);
        drop(ledger);
        usage.retain(|u| only.is_none_or(|uid| u.uid == uid));
        let rebuilt = entries.iter().filter(|e| !e.attributed).count();
        match only {
            Some(uid) => {
                writeln!(w, "ledger of uid {uid} (the caller's own; not on the allowlist):")?
            }
            None => writeln!(w, "ledger:")?,
        }
        writeln!(
            w,
            "  {} live buffers, {rebuilt} rebuilt at start-up (unattributed)",
            entries.len()
        )?;
        for u in usage {
            writeln!(w, "  uid {}: {} buffers, {} bytes", u.uid, u.buffers, u.bytes)?;
        }
        w.write_all(report::ledger_table(&entries).as_bytes())?;
        writeln!(w, "asked-by versus held-by (the same buffers):")?;
        match self.model() {
            Ok(model) => {
                let view = handoff::join(entries, &model, Entry::now_millis());
                w.write_all(report::handoff_table(&view).as_bytes())?;
            }
            Err(e) => writeln!(w, "  <cannot scan: {e}>")?,
        }
        let history = self.history_lock().view(only);
        w.write_all(history.table().as_bytes())
    }

    /// The memtrack records of `pid` for the V1 type value `kind`. Anyone may ask about their
    /// own pid, the allowlist (system_server's uid 1000 by default) about any.
    pub fn memtrack(
        &self,
        caller: Caller,
        pid: i32,
        kind: i32,
        prefixes: &memtrack::PrefixMap,
    ) -> Result<[memtrack::Record; 2]> {
        if pid <= 0 {
            return Err(Error::InvalidArgument(format!("pid {pid} is not a process id")));
        }
        let kind = memtrack::MemtrackType::from_wire(kind).ok_or_else(|| {
            Error::InvalidArgument(format!("memtrack type {kind} is not one of V1's (0 to 4)"))
        })?;
        if !self.policy.sees_all(caller.uid) && caller.pid != pid {
            return Err(Error::PermissionDenied(format!(
                "uid {} may only ask memtrack about its own pid",
                caller.uid
            )));
        }
        Ok(memtrack::records(&*self.model()?, prefixes, pid, kind))
    }

    /// The latest scan (see [`Scans::model`]). The ledger lock is not held while scanning.
    fn model(&self) -> Result<Arc<crate::account::Model>> {
        let generation = self.ledger().generation();
        self.scans.model(generation)
    }

    fn history_lock(&self) -> MutexGuard<'_, History> {
        // As for the ledger: every method leaves it consistent.
        self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves the ledger consistent (every method is a few
        // map updates), so a poisoned lock is still usable.
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_buffers::Source;

    #[test]
    fn own_uid_always_allowlist_anything() {
        let policy = Policy { allowlist: [0, 1000].into(), quota: None };
        assert!(policy.check_query(10_001, Some(10_001)).is_ok());
        assert!(policy.check_query(1000, Some(10_001)).is_ok());
        assert!(policy.check_query(0, None).is_ok());
        assert!(matches!(
            policy.check_query(10_001, Some(10_002)),
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(policy.check_query(10_001, None), Err(Error::PermissionDenied(_))));
    }

    fn entry(inode: u64, uid: u32, name: &str) -> Entry {
        Entry {
            inode,
            size: 4096,
            name: name.into(),
            heap: "system".into(),
            uid,
            pid: 7,
            time_millis: 1_700_000_000_000 + inode,
            attributed: true,
        }
    }

    #[test]
    fn dumpsys_shows_other_uids_only_to_the_allowlist() {
        let policy = Policy { allowlist: [0].into(), quota: None };
        // An unreadable live list keeps every entry (pruning never drops on doubt).
        let live = LiveBuffers::Kernel(Source::Sysfs("/nonexistent/dmabuf/buffers".into()));
        let shared = Shared::new(policy, Allocator::with_dir("/nonexistent", 1 << 20), live);
        shared.ledger().commit(0, entry(1, 10_001, "mine"));
        shared.ledger().commit(0, entry(2, 10_002, "theirs"));
        let dump = |uid| {
            let mut out = Vec::new();
            shared.write_dump(Caller { uid, pid: 1 }, &mut out).expect("dump");
            String::from_utf8(out).expect("UTF-8")
        };
        let app = dump(10_001);
        assert!(app.contains("ledger of uid 10001 (the caller's own; not on the allowlist):"));
        assert!(app.contains("  uid 10001: 1 buffers, 4096 bytes"), "{app}");
        assert!(app.contains("mine") && !app.contains("theirs") && !app.contains("10002"), "{app}");
        let root = dump(0);
        assert!(root.contains("mine") && root.contains("theirs"), "{root}");
        // The same table as `dmabufctl ledger`.
        assert!(root.contains(&report::ledger_table(&shared.ledger().entries(None))), "{root}");
        assert!(root.contains("asked-by versus held-by") && root.contains("history since "));
    }
}
