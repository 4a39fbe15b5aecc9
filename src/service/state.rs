//! What both binder interfaces share: policy, heaps, ledger; and the transport-free logic of
//! every call, so the AIDL impls only convert types.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::compat::Caller;
use crate::account::{Filter, Report};
use crate::buffer::DmaBuf;
use crate::heap::{AllocRequest, Allocator};
use crate::kernel_buffers::LiveBuffers;
use crate::ledger::{self, Entry, Ledger};
use crate::scan::{self, ScanOptions};
use crate::{units, Error, Result};

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
        if self.allowlist.contains(&caller) || uid == Some(caller) {
            return Ok(());
        }
        Err(Error::PermissionDenied(match uid {
            Some(uid) => format!("uid {caller} may not query uid {uid}"),
            None => format!("uid {caller} may only query its own uid ({caller})"),
        }))
    }
}

/// One allocation request, as received (AIDL has only signed integers).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub heap: &'a str,
    pub size: i64,
    pub name: &'a str,
    pub heap_flags: i64,
}

/// The service's state; one per process, shared by both binder objects.
#[derive(Debug)]
pub struct Shared {
    policy: Policy,
    heaps: Allocator,
    live: LiveBuffers,
    ledger: Mutex<Ledger>,
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
            started: Instant::now(),
            allocations: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// Allocates and names a buffer for `caller` and records it. The returned buffer is the
    /// only reference; the caller of this function must hand it out and drop it.
    pub fn allocate(&self, caller: Caller, req: &Request<'_>) -> Result<DmaBuf> {
        let result = self.try_allocate(caller, req);
        let counter = if result.is_ok() { &self.allocations } else { &self.refusals };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            log::info!("uid {} pid {}: allocate {req:?} refused: {e}", caller.uid, caller.pid);
        }
        result
    }

    fn try_allocate(&self, caller: Caller, req: &Request<'_>) -> Result<DmaBuf> {
        let size = units::size_from_i64(req.size)?;
        let heap_flags = u64::try_from(req.heap_flags).map_err(|_| {
            Error::InvalidArgument(format!("heap flags {:#x} are negative", req.heap_flags))
        })?;
        let request = AllocRequest { heap: req.heap, size, name: req.name.as_bytes(), heap_flags };
        // A malformed request (too large for any quota, say) is refused as such, whatever the
        // caller holds; what it would be charged is what the kernel will really allocate.
        let checked = self.heaps.check(&request)?;
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
        ledger.commit(
            charged,
            Entry {
                inode: buf.inode(),
                size: buf.size(),
                name: req.name.into(),
                heap: req.heap.to_owned(),
                uid: caller.uid,
                pid: caller.pid,
                time_millis: Entry::now_millis(),
                attributed: true,
            },
        );
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
    fn prune(&self) {
        let seen = self.ledger().generation();
        match self.live.read() {
            Ok(live) => {
                let dropped = self.ledger().retain_live(seen, |inode| live.contains(&inode));
                log::debug!("ledger: pruned {dropped} entries of freed buffers");
            }
            Err(e) => log::warn!("ledger: not pruned, cannot list live buffers: {e}"),
        }
    }

    /// At start-up: adopts into the ledger every live buffer a previous instance of the service
    /// may have handed out (see [`ledger::rebuild`]), from one scan of `/proc` and the kernel's
    /// buffer list. Returns how many entries were rebuilt.
    pub fn rebuild_ledger(&self) -> Result<usize> {
        let heaps = self.heaps()?;
        let model = scan::scan(&ScanOptions::default())?;
        let rebuilt = ledger::rebuild(&model, &heaps);
        let count = rebuilt.len();
        let mut ledger = self.ledger();
        for r in rebuilt {
            ledger.adopt(r);
        }
        Ok(count)
    }

    /// Names of the heaps.
    pub fn heaps(&self) -> Result<Vec<String>> {
        self.heaps.heaps()
    }

    /// The accounting report for `uid`/`pid` (`None`: every one) as `caller` may see it.
    pub fn report(&self, caller: Caller, filter: Filter) -> Result<Report> {
        self.policy.check_query(caller.uid, filter.uid)?;
        let model = scan::scan(&ScanOptions::default())?;
        Ok(Report::build(&model, &filter))
    }

    /// Live ledger entries, of one uid or of all, as `caller` may see them.
    pub fn ledger_entries(&self, caller: Caller, uid: Option<u32>) -> Result<Vec<Entry>> {
        self.policy.check_query(caller.uid, uid)?;
        self.prune();
        Ok(self.ledger().entries(uid))
    }

    /// The `dumpsys` text: configuration, counters, per-uid usage and every ledger entry.
    pub fn write_dump(&self, w: &mut dyn Write) -> std::io::Result<()> {
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
        let ledger = self.ledger();
        let (usage, entries) = (ledger.usage_by_uid(), ledger.entries(None));
        drop(ledger);
        let rebuilt = entries.iter().filter(|e| !e.attributed).count();
        writeln!(
            w,
            "ledger: {} live buffers, {rebuilt} rebuilt at start-up (unattributed)",
            entries.len()
        )?;
        for u in usage {
            writeln!(w, "  uid {}: {} buffers, {} bytes", u.uid, u.buffers, u.bytes)?;
        }
        writeln!(
            w,
            "{:>10} {:>12} {:>7} {:>7} {:>14} {:<12} name",
            "inode", "size", "uid", "pid", "time_ms", "heap"
        )?;
        for e in entries {
            writeln!(
                w,
                "{:>10} {:>12} {:>7} {:>7} {:>14} {:<12} {}",
                e.inode, e.size, e.uid, e.pid, e.time_millis, e.heap, e.name
            )?;
        }
        Ok(())
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
}
