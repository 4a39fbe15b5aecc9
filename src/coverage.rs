//! What a report could and could not see: every report says which sources it was built from and
//! what they missed, so a partial view is never mistaken for a whole one.
//!
//! On a device the service runs as `system` without CAP_SYS_PTRACE or CAP_DAC_*: the fds and maps
//! of every other uid's processes are closed to it (ptrace_may_access), debugfs is not mounted and
//! sysfs stats may be gone. A scan then sees its own uid's processes and, at best, the kernel's
//! buffer list. Buffers the list names that no readable process holds are not kernel-only: their
//! holders are unknown. The per-process counters of Android common kernels (`dmabuf_rss`,
//! `dmabuf_pss`) and the service's ledger (who asked for which buffer) fill part of the gap, and
//! this record says how much.
//!
//! A scan records its side ([`ScanCoverage`], in the [`Model`]);
//! [`Coverage::build`] turns it into the report's, and the service joins its ledger
//! ([`Coverage::join_ledger`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::account::{saturating_sum, Filter, Model};
use crate::ledger::Entry;

/// Stable identifiers of the sources a report can draw on (the `source` of [`SourceUse`]).
/// Other layers may add their own; readers must accept names they do not know.
pub mod source {
    /// `/proc/<pid>/fd`, `fdinfo`, `maps` and `task/`: who holds what.
    pub const PROCFS: &str = "procfs";
    /// dmabufd's own BPF iterators over fd tables and mappings (docs/bpf.md): who holds what.
    pub const BPF_SCAN: &str = "bpf";
    /// dmabufd's pinned `iter/dmabuf` (6.16+, docs/bpf.md): the kernel's buffer list with exact
    /// names, without debugfs.
    pub const DMABUFD_ITER: &str = "dmabufd-iter";
    /// debugfs `dma_buf/bufinfo`: the kernel's buffer list with exact names.
    pub const DEBUGFS_BUFINFO: &str = "debugfs-bufinfo";
    /// AOSP's pinned dma-buf BPF iterator: the kernel's buffer list on Android 16.
    pub const BPF_ITER: &str = "bpf-iter";
    /// `/sys/kernel/dmabuf/buffers`: the kernel's buffer list, Android 12-era kernels.
    pub const SYSFS_STATS: &str = "sysfs-stats";
    /// `/proc/<pid>/dmabuf_{rss,rss_hwm,pss}` of Android common kernels.
    pub const DMABUF_RSS: &str = "dmabuf_rss";
    /// The service's allocation ledger.
    pub const LEDGER: &str = "ledger";
}

/// How a source served a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    /// Read, and what it said is in the report.
    Used,
    /// Not present on this system (not mounted, not in this kernel).
    Absent,
    /// Present but closed to the reader (permissions, SELinux).
    Denied,
    /// Present and open, but reading or parsing it failed.
    Failed,
}

impl SourceState {
    /// The state an I/O error stands for.
    pub fn of_error(e: &std::io::Error) -> SourceState {
        match e.kind() {
            std::io::ErrorKind::NotFound => SourceState::Absent,
            std::io::ErrorKind::PermissionDenied => SourceState::Denied,
            _ => SourceState::Failed,
        }
    }

    /// Name as tables and the wire carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Used => "used",
            SourceState::Absent => "absent",
            SourceState::Denied => "denied",
            SourceState::Failed => "failed",
        }
    }

    /// Inverse of [`SourceState::as_str`]; unknown text reads as `Failed`.
    pub fn from_name(name: &str) -> SourceState {
        match name {
            "used" => SourceState::Used,
            "absent" => SourceState::Absent,
            "denied" => SourceState::Denied,
            _ => SourceState::Failed,
        }
    }
}

/// One source and how it served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceUse {
    /// One of [`source`]'s names, or another layer's.
    pub source: String,
    /// How it served.
    pub state: SourceState,
    /// Where it was read and, if not used, why (for people, not parsed).
    pub detail: String,
}

impl SourceUse {
    /// A source in state `state`.
    pub fn new(source: &str, state: SourceState, detail: impl Into<String>) -> Self {
        SourceUse { source: source.to_owned(), state, detail: detail.into() }
    }
}

/// Processes of one uid that the scan could not read (their fds or maps were closed to it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// The uid.
    pub uid: u32,
    /// How many of its processes.
    pub processes: u32,
    /// Sum of those processes' `dmabuf_rss` where the kernel has the file and it was readable
    /// (an upper bound of the uid's Rss: buffers shared between its processes count per
    /// process); `None` when no process's file could be read.
    pub dmabuf_rss: Option<u64>,
    /// Sum of their `dmabuf_rss_hwm`, as `dmabuf_rss`.
    pub dmabuf_rss_hwm: Option<u64>,
    /// Sum of their `dmabuf_pss`: exact for the uid where every process's file was read.
    pub dmabuf_pss: Option<u64>,
    /// How many of the processes' counter files were read.
    pub counted_processes: u32,
}

impl Unreadable {
    /// Adds one process, with its counters (`[rss, rss_hwm, pss]`, each if read).
    pub fn add(&mut self, counters: [Option<u64>; 3]) {
        let [rss, hwm, pss] = counters;
        self.merge(&Unreadable {
            uid: self.uid,
            processes: 1,
            dmabuf_rss: rss,
            dmabuf_rss_hwm: hwm,
            dmabuf_pss: pss,
            counted_processes: u32::from(counters.iter().any(Option::is_some)),
        });
    }

    /// Adds another count of the same uid (another scan worker's).
    pub fn merge(&mut self, other: &Unreadable) {
        self.processes = self.processes.saturating_add(other.processes);
        self.counted_processes = self.counted_processes.saturating_add(other.counted_processes);
        for (sum, value) in [
            (&mut self.dmabuf_rss, other.dmabuf_rss),
            (&mut self.dmabuf_rss_hwm, other.dmabuf_rss_hwm),
            (&mut self.dmabuf_pss, other.dmabuf_pss),
        ] {
            if let Some(v) = value {
                *sum = Some(sum.unwrap_or(0).saturating_add(v));
            }
        }
    }
}

/// What one scan could not see; kept in the [`Model`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanCoverage {
    /// The sources the scan tried, in the order it tried them.
    pub sources: Vec<SourceUse>,
    /// Effective uid the scan ran as; `None` for a model not built by a scan.
    pub scanner_uid: Option<u32>,
    /// Processes whose fds or maps were closed to the scan, by uid.
    pub unreadable: BTreeMap<u32, Unreadable>,
    /// Processes that exited while the scan read them (nothing lost: they hold nothing now).
    pub vanished: u32,
}

/// A uid's buffers per the service's ledger: what it asked for that is still alive, and how
/// much of that the scan saw held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requested {
    /// The uid that asked.
    pub uid: u32,
    /// Live ledger entries of the uid.
    pub buffers: u32,
    /// Their bytes: complete for allocations through the service.
    pub bytes: u64,
    /// Bytes of those buffers the scan saw held by a readable process.
    pub held_bytes: u64,
}

/// The coverage of one report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Every source tried, and how it served.
    pub sources: Vec<SourceUse>,
    /// Effective uid `/proc` was read as; `None` when not recorded.
    pub scanner_uid: Option<u32>,
    /// Processes that could not be read, per uid, ascending (of the selected uid only in a
    /// report filtered by uid). An app of such a uid is partial.
    pub unreadable: Vec<Unreadable>,
    /// Processes that exited during the scan.
    pub vanished_processes: u32,
    /// Bytes of live buffers no readable process holds, where some process could not be read
    /// (so they are not known to be kernel-only): listed by the kernel, or live in the ledger
    /// where no kernel list was readable.
    pub unknown_holder_bytes: u64,
    /// Number of those buffers.
    pub unknown_holder_buffers: u32,
    /// The service's ledger per uid, ascending (empty outside the service).
    pub requested: Vec<Requested>,
}

impl Coverage {
    /// The coverage of a report built from `model` with `filter`. `kernel_only` lists the
    /// sizes of the buffers no process holds (unfiltered reports only); when some process was
    /// unreadable they become unknown-holder bytes, and the caller must not call them
    /// kernel-only.
    pub fn build(model: &Model, filter: &Filter, holderless: &[u64]) -> Coverage {
        let scan = &model.coverage;
        let unreadable = scan
            .unreadable
            .values()
            .filter(|u| filter.uid.is_none_or(|uid| uid == u.uid))
            .cloned()
            .collect();
        let (bytes, buffers) = if scan.unreadable.is_empty() || !filter.is_empty() {
            (0, 0)
        } else {
            (saturating_sum(holderless.iter().copied()), count(holderless.len()))
        };
        Coverage {
            sources: scan.sources.clone(),
            scanner_uid: scan.scanner_uid,
            unreadable,
            vanished_processes: scan.vanished,
            unknown_holder_bytes: bytes,
            unknown_holder_buffers: buffers,
            requested: Vec::new(),
        }
    }

    /// Whether the uid's totals are complete: every one of its processes was read.
    pub fn is_complete(&self, uid: u32) -> bool {
        !self.unreadable.iter().any(|u| u.uid == uid)
    }

    /// Whether anything was missed: an unreadable process, unknown holders, or (for a report
    /// that records its sources) no kernel buffer list, so kernel-only buffers are not known.
    pub fn is_partial(&self) -> bool {
        let kernel_list = [source::DEBUGFS_BUFINFO, source::BPF_ITER, source::SYSFS_STATS];
        !self.unreadable.is_empty()
            || self.procfs_hidden()
            || self.unknown_holder_bytes > 0
            || !self.sources.is_empty()
                && !self.sources.iter().any(|s| {
                    s.state == SourceState::Used && kernel_list.contains(&s.source.as_str())
                })
    }

    /// Joins the service's ledger `entries` (already those of the filter's uid) with the scan:
    /// per uid what it asked for that is alive and how much of that was seen held. Where the
    /// scan read a kernel list, an entry whose buffer is not in the model is dead (or new) and
    /// left out, and a listed one nobody readable holds has unknown holders (counted by
    /// [`Coverage::build`] already in an unfiltered report, here in a filtered one). Without a list an entry cannot be checked: one whose buffer no readable process
    /// holds counts as live with unknown holders (the ledger is pruned only when liveness can
    /// be told, see [`LiveBuffers`](crate::kernel_buffers::LiveBuffers)).
    pub fn join_ledger(
        &mut self,
        model: &Model,
        filter: &Filter,
        entries: &[Entry],
        ledger: SourceUse,
    ) {
        let filtered = !filter.is_empty();
        let mut by_uid: BTreeMap<u32, Requested> = BTreeMap::new();
        let listed = model.exported_bytes.is_some();
        for e in entries {
            let r = by_uid.entry(e.uid).or_insert(Requested {
                uid: e.uid,
                buffers: 0,
                bytes: 0,
                held_bytes: 0,
            });
            let buffer = model.buffers.get(&e.inode);
            if listed && buffer.is_none() {
                // Not listed twice by the kernel: freed (or made during the scan).
                continue;
            }
            r.buffers = r.buffers.saturating_add(1);
            r.bytes = r.bytes.saturating_add(e.size);
            let unknown = match buffer {
                Some(b) if !b.fd_refs.is_empty() || !b.map_refs.is_empty() => {
                    r.held_bytes = r.held_bytes.saturating_add(e.size);
                    false
                }
                // Listed and held by nobody readable: counted by `build` unless filtered.
                Some(_) => filtered,
                None => true,
            };
            if unknown && !model.coverage.unreadable.is_empty() {
                self.unknown_holder_bytes = self.unknown_holder_bytes.saturating_add(e.size);
                self.unknown_holder_buffers = self.unknown_holder_buffers.saturating_add(1);
            }
        }
        by_uid.retain(|_, r| r.buffers > 0);
        self.requested = by_uid.into_values().collect();
        self.sources.push(ledger);
    }

    /// Whether `/proc` hid other uids' processes from the scan (hidepid): they are then not
    /// even counted as unreadable.
    pub fn procfs_hidden(&self) -> bool {
        self.sources.iter().any(|s| s.source == source::PROCFS && s.state != SourceState::Used)
    }

    /// One line for the foot of a text table; `None` when nothing was missed.
    pub fn footer(&self) -> Option<String> {
        if !self.is_partial() {
            return None;
        }
        let mut line = String::from("coverage: partial;");
        if let Some(uid) = self.scanner_uid {
            line.push_str(&format!(" procfs read as uid {uid};"));
        }
        let used: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| s.state == SourceState::Used)
            .map(|s| s.source.as_str())
            .collect();
        line.push_str(&format!(
            " sources: {};",
            if used.is_empty() { "none".into() } else { used.join(", ") }
        ));
        if self.sources.iter().any(|s| s.source == source::PROCFS && s.state != SourceState::Used) {
            line.push_str(" other uids' processes hidden (hidepid), not counted;");
        }
        let processes: u32 = self.unreadable.iter().map(|u| u.processes).sum();
        let uids: Vec<String> =
            self.unreadable.iter().map(|u| format!("uid {} x{}", u.uid, u.processes)).collect();
        line.push_str(&format!(" unreadable processes: {processes}"));
        if !uids.is_empty() {
            line.push_str(&format!(" ({})", uids.join(", ")));
        }
        line.push_str(&format!(
            "; holders unknown: {} buffers, {} bytes",
            self.unknown_holder_buffers, self.unknown_holder_bytes
        ));
        line.push('\n');
        Some(line)
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Buffer;
    use crate::ledger::tests::entry;

    /// Without a kernel list, ledger buffers no readable process holds have unknown holders;
    /// one held by a readable process is seen.
    #[test]
    fn ledger_fills_in_what_the_scan_missed() {
        let mut model = Model::default();
        model
            .coverage
            .unreadable
            .insert(10_057, Unreadable { uid: 10_057, processes: 2, ..Default::default() });
        model.buffers.insert(
            5,
            Buffer { inode: 5, size: 4096, fd_refs: [(77, 1)].into(), ..Buffer::default() },
        );
        let mut c = Coverage::build(&model, &Filter::default(), &[]);
        let ledger = SourceUse::new(source::LEDGER, SourceState::Used, "test");
        c.join_ledger(
            &model,
            &Filter::default(),
            &[entry(5, 1000, 4096), entry(6, 10_057, 8192), entry(7, 10_057, 65536)],
            ledger,
        );
        assert_eq!((c.unknown_holder_bytes, c.unknown_holder_buffers), (8192 + 65536, 2));
        assert_eq!(
            c.requested,
            [
                Requested { uid: 1000, buffers: 1, bytes: 4096, held_bytes: 4096 },
                Requested { uid: 10_057, buffers: 2, bytes: 73_728, held_bytes: 0 },
            ]
        );
        assert!(!c.is_complete(10_057) && c.is_complete(1000) && c.is_partial());
        let footer = c.footer().unwrap();
        assert_eq!(
            footer,
            "coverage: partial; sources: ledger; unreadable processes: 2 (uid 10057 x2); holders \
             unknown: 2 buffers, 73728 bytes\n"
        );
    }

    /// With a kernel list: an entry it did not list is dead; a listed one nobody readable holds
    /// has unknown holders, counted once whether the report is filtered or not.
    #[test]
    fn ledger_with_a_kernel_list() {
        let mut model = Model { exported_bytes: Some(8192), ..Model::default() };
        model
            .coverage
            .unreadable
            .insert(10_057, Unreadable { uid: 10_057, processes: 1, ..Default::default() });
        model.buffers.insert(6, Buffer { inode: 6, size: 8192, ..Buffer::default() });
        let entries = [entry(6, 10_057, 8192), entry(7, 10_057, 4096)];
        let ledger = || SourceUse::new(source::LEDGER, SourceState::Used, "test");
        for filter in [Filter::default(), Filter { uid: Some(10_057), pid: None }] {
            let holderless: &[u64] = if filter.is_empty() { &[8192] } else { &[] };
            let mut c = Coverage::build(&model, &filter, holderless);
            c.join_ledger(&model, &filter, &entries, ledger());
            assert_eq!((c.unknown_holder_bytes, c.unknown_holder_buffers), (8192, 1), "{filter:?}");
            assert_eq!(
                c.requested,
                [Requested { uid: 10_057, buffers: 1, bytes: 8192, held_bytes: 0 }]
            );
        }
    }

    #[test]
    fn counters_sum_where_read() {
        let mut u = Unreadable { uid: 1, ..Default::default() };
        u.add([Some(4096), Some(8192), Some(2048)]);
        u.add([None, None, None]);
        u.add([Some(1), None, Some(1)]);
        assert_eq!(
            (u.processes, u.counted_processes, u.dmabuf_rss, u.dmabuf_rss_hwm, u.dmabuf_pss),
            (3, 2, Some(4097), Some(8192), Some(2049))
        );
    }
}
