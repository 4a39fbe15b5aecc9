//! Library views ↔ AIDL parcelables, both ways: the service sends them, `dmabufctl --service`
//! turns them back into library types to render exactly as the direct path does.
//!
//! AIDL has no unsigned types. Byte counts saturate at `i64::MAX` (8 EiB, never reached);
//! uids travel bit for bit as `i32`, so even `u32::MAX` comes back unchanged.

use super::compat::aidl::{
    AllocationRequest::AllocationRequest, AppUsage::AppUsage, BufferInfo::BufferInfo,
    BufferRef::BufferRef, Coverage::Coverage as AidlCoverage, Handoff::Handoff as AidlHandoff,
    HandoffPage::HandoffPage, HeapUsage::HeapUsage, History::History as AidlHistory,
    Holder::Holder as AidlHolder, LedgerEntry::LedgerEntry, NameMark::NameMark,
    NameUsage::NameUsage, ProcessUsage::ProcessUsage, Report::Report as AidlReport,
    RequestedUsage::RequestedUsage, Sample::Sample as AidlSample,
    SourceUse::SourceUse as AidlSource, Totals::Totals as AidlTotals,
    UidBalance::UidBalance as AidlUidBalance, UidMark::UidMark, UnreadableUid::UnreadableUid,
};
use super::history::{self, Mark};
use super::pages::WireLen;
use crate::account::{
    AppView, BufferView, ExporterView, Name, NameView, PidCounts, ProcessView, Report, Totals,
};
use crate::coverage::{Coverage, Requested, SourceState, SourceUse, Unreadable};
use crate::error::SizeError;
use crate::handoff::{Handoff, Handoffs, Holder, UidBalance};
use crate::heap::AllocRequest;
use crate::ledger::Entry;

fn bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// Bit-preserving: AIDL's `int` carries Linux's unsigned uid.
pub fn uid_to_aidl(uid: u32) -> i32 {
    i32::from_ne_bytes(uid.to_ne_bytes())
}

/// Inverse of [`uid_to_aidl`].
pub fn uid_from_aidl(uid: i32) -> u32 {
    u32::from_ne_bytes(uid.to_ne_bytes())
}

/// A V2 `long uid` argument: `IAccounting.ALL` (-1) for every uid, else a Linux uid, all 32
/// bits of it (so 4294967295 is a uid, not ALL as in V1's `int`).
pub fn uid_selector_from_aidl(uid: i64) -> crate::Result<Option<u32>> {
    if uid == i64::from(super::compat::aidl::IAccounting::ALL) {
        return Ok(None);
    }
    u32::try_from(uid).map(Some).map_err(|_| {
        crate::Error::InvalidArgument(format!("uid {uid} is neither ALL (-1) nor 0..=4294967295"))
    })
}

/// What a client sends for [`uid_selector_from_aidl`].
pub fn uid_selector_to_aidl(uid: Option<u32>) -> i64 {
    uid.map_or(i64::from(super::compat::aidl::IAccounting::ALL), i64::from)
}

/// Negative sizes never come from a well-behaved peer; they read as 0.
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn unsigned32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// One element of a report's arrays, in the order pages carry them.
#[derive(Debug)]
pub enum ReportItem {
    /// An element of `Report.buffers`.
    Buffer(BufferInfo),
    /// An element of `Report.processes`.
    Process(ProcessUsage),
    /// An element of `Report.apps`.
    App(AppUsage),
    /// An element of `Report.names`.
    Name(NameUsage),
    /// An element of `Report.heaps`.
    Heap(HeapUsage),
}

impl WireLen for ReportItem {
    fn wire_len(&self) -> usize {
        match self {
            ReportItem::Buffer(b) => b.wire_len(),
            ReportItem::Process(p) => p.wire_len(),
            ReportItem::App(a) => a.wire_len(),
            ReportItem::Name(n) => n.wire_len(),
            ReportItem::Heap(h) => h.wire_len(),
        }
    }
}

/// Number of [`ReportItem`]s of a report.
pub fn report_len(r: &Report) -> usize {
    r.buffers.len() + r.processes.len() + r.apps.len() + r.names.len() + r.heaps.len()
}

/// The report's items from index `start` on: buffers, processes, apps, names, heaps. Each is
/// converted only when the iterator reaches it.
pub fn report_items(r: &Report, start: usize) -> impl Iterator<Item = ReportItem> + '_ {
    let mut skip = start;
    let mut from = |len: usize| {
        let n = skip.min(len);
        skip -= n;
        n
    };
    let (b, p, a, n, h) = (
        from(r.buffers.len()),
        from(r.processes.len()),
        from(r.apps.len()),
        from(r.names.len()),
        from(r.heaps.len()),
    );
    let buffers = r.buffers[b..].iter().map(|b| ReportItem::Buffer(buffer_to_aidl(b)));
    let processes = r.processes[p..].iter().map(|p| {
        ReportItem::Process(ProcessUsage {
            pid: p.pid,
            uid: uid_to_aidl(p.uid),
            comm: p.comm.clone(),
            rss: bytes(p.rss),
            pss: bytes(p.pss),
            fdBytes: bytes(p.fd_bytes),
            mapOnlyBytes: bytes(p.map_only_bytes),
        })
    });
    let apps = r.apps[a..].iter().map(|a| {
        ReportItem::App(AppUsage {
            uid: uid_to_aidl(a.uid),
            rss: bytes(a.rss),
            pss: bytes(a.pss),
            buffers: count(a.buffers),
        })
    });
    let names = r.names[n..].iter().map(|n| {
        ReportItem::Name(NameUsage {
            name: n.name.to_string_lossy().into_owned(),
            bytes: bytes(n.bytes),
            buffers: count(n.buffers),
        })
    });
    let heaps = r.heaps[h..].iter().map(|h| {
        ReportItem::Heap(HeapUsage {
            exporter: h.exporter.clone(),
            bytes: bytes(h.bytes),
            buffers: count(h.buffers),
        })
    });
    buffers.chain(processes).chain(apps).chain(names).chain(heaps)
}

/// A parcelable report of `items` (a page, or all of them) with the report's totals and coverage.
pub fn report_of_items(report: &Report, items: Vec<ReportItem>) -> AidlReport {
    let totals = &report.totals;
    let mut out = AidlReport {
        coverage: coverage_to_aidl(&report.coverage),
        totals: AidlTotals {
            exportedBytes: totals.exported_bytes.map_or(-1, bytes),
            userspaceRss: bytes(totals.userspace_rss),
            userspacePss: bytes(totals.userspace_pss),
            kernelOnlyBytes: bytes(totals.kernel_only_bytes),
            unreadableProcesses: count(totals.unreadable_processes),
        },
        ..AidlReport::default()
    };
    for item in items {
        match item {
            ReportItem::Buffer(b) => out.buffers.push(b),
            ReportItem::Process(p) => out.processes.push(p),
            ReportItem::App(a) => out.apps.push(a),
            ReportItem::Name(n) => out.names.push(n),
            ReportItem::Heap(h) => out.heaps.push(h),
        }
    }
    out
}

/// A library report as sent whole (tests, and V1 replies that fit one page).
pub fn report_to_aidl(r: &Report) -> AidlReport {
    report_of_items(r, report_items(r, 0).collect())
}

/// Appends a page received from the service to the report assembled so far.
pub fn append_page(whole: &mut AidlReport, page: AidlReport) {
    whole.buffers.extend(page.buffers);
    whole.processes.extend(page.processes);
    whole.apps.extend(page.apps);
    whole.names.extend(page.names);
    whole.heaps.extend(page.heaps);
    whole.totals = page.totals;
    whole.coverage = page.coverage;
}

/// Counters that may be absent travel as -1.
fn optional(n: Option<u64>) -> i64 {
    n.map_or(-1, bytes)
}

fn coverage_to_aidl(c: &Coverage) -> AidlCoverage {
    AidlCoverage {
        sources: c
            .sources
            .iter()
            .map(|s| AidlSource {
                source: s.source.clone(),
                state: s.state.as_str().into(),
                detail: s.detail.clone(),
            })
            .collect(),
        scannerUid: c.scanner_uid.map_or(-1, i64::from),
        unreadable: c
            .unreadable
            .iter()
            .map(|u| UnreadableUid {
                uid: uid_to_aidl(u.uid),
                processes: count(u.processes),
                dmabufRss: optional(u.dmabuf_rss),
                dmabufRssHwm: optional(u.dmabuf_rss_hwm),
                dmabufPss: optional(u.dmabuf_pss),
                countedProcesses: count(u.counted_processes),
            })
            .collect(),
        vanishedProcesses: count(c.vanished_processes),
        unknownHolderBytes: bytes(c.unknown_holder_bytes),
        unknownHolderBuffers: count(c.unknown_holder_buffers),
        requested: c
            .requested
            .iter()
            .map(|r| RequestedUsage {
                uid: uid_to_aidl(r.uid),
                buffers: count(r.buffers),
                bytes: bytes(r.bytes),
                heldBytes: bytes(r.held_bytes),
            })
            .collect(),
    }
}

fn coverage_from_aidl(c: AidlCoverage) -> Coverage {
    Coverage {
        sources: c
            .sources
            .into_iter()
            .map(|s| SourceUse {
                source: s.source,
                state: SourceState::from_name(&s.state),
                detail: s.detail,
            })
            .collect(),
        scanner_uid: u32::try_from(c.scannerUid).ok(),
        unreadable: c
            .unreadable
            .into_iter()
            .map(|u| Unreadable {
                uid: uid_from_aidl(u.uid),
                processes: unsigned32(u.processes),
                dmabuf_rss: u64::try_from(u.dmabufRss).ok(),
                dmabuf_rss_hwm: u64::try_from(u.dmabufRssHwm).ok(),
                dmabuf_pss: u64::try_from(u.dmabufPss).ok(),
                counted_processes: unsigned32(u.countedProcesses),
            })
            .collect(),
        vanished_processes: unsigned32(c.vanishedProcesses),
        unknown_holder_bytes: unsigned(c.unknownHolderBytes),
        unknown_holder_buffers: unsigned32(c.unknownHolderBuffers),
        requested: c
            .requested
            .into_iter()
            .map(|r| Requested {
                uid: uid_from_aidl(r.uid),
                buffers: unsigned32(r.buffers),
                bytes: unsigned(r.bytes),
                held_bytes: unsigned(r.heldBytes),
            })
            .collect(),
    }
}

/// A received `AllocationRequest` as the library's request (see [`AllocRequest::from_wire`]).
pub fn request_from_aidl(r: &AllocationRequest) -> Result<AllocRequest<'_>, SizeError> {
    AllocRequest::from_wire(&r.heap, r.size, r.name.as_bytes(), r.heapFlags)
}

/// The `AllocationRequest` a client sends for `req` (names are UTF-8 on the wire).
pub fn request_to_aidl(req: &AllocRequest<'_>) -> Result<AllocationRequest, SizeError> {
    let (size, heap_flags) = req.wire_size_and_flags()?;
    Ok(AllocationRequest {
        heap: req.heap.to_owned(),
        size,
        name: String::from_utf8_lossy(req.name).into_owned(),
        heapFlags: heap_flags,
    })
}

fn buffer_to_aidl(b: &BufferView) -> BufferInfo {
    BufferInfo {
        inode: bytes(b.inode),
        size: bytes(b.size),
        exporter: b.exporter.as_deref().unwrap_or_default().to_string(),
        name: b.name.as_ref().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        nameBytes: b.name.as_ref().map(|n| n.as_bytes().to_vec()).unwrap_or_default(),
        refs: b
            .holders()
            .into_iter()
            .map(|pid| BufferRef {
                pid,
                fdCount: count(b.fd_refs.get(&pid).copied().unwrap_or(0)),
                mapCount: count(b.map_refs.get(&pid).copied().unwrap_or(0)),
            })
            .collect(),
    }
}

/// What a client received, back as a library report.
pub fn report_from_aidl(r: AidlReport) -> Report {
    let totals = r.totals;
    let coverage = coverage_from_aidl(r.coverage);
    Report {
        buffers: r.buffers.into_iter().map(buffer_from_aidl).collect(),
        processes: r
            .processes
            .into_iter()
            .map(|p| ProcessView {
                pid: p.pid,
                uid: uid_from_aidl(p.uid),
                comm: p.comm,
                rss: unsigned(p.rss),
                pss: unsigned(p.pss),
                fd_bytes: unsigned(p.fdBytes),
                map_only_bytes: unsigned(p.mapOnlyBytes),
            })
            .collect(),
        apps: r
            .apps
            .into_iter()
            .map(|a| AppView {
                uid: uid_from_aidl(a.uid),
                rss: unsigned(a.rss),
                pss: unsigned(a.pss),
                buffers: unsigned32(a.buffers),
                complete: coverage.is_complete(uid_from_aidl(a.uid)),
            })
            .collect(),
        names: r
            .names
            .into_iter()
            .map(|n| NameView {
                name: n.name.into(),
                bytes: unsigned(n.bytes),
                buffers: unsigned32(n.buffers),
            })
            .collect(),
        heaps: r
            .heaps
            .into_iter()
            .map(|h| ExporterView {
                exporter: h.exporter,
                bytes: unsigned(h.bytes),
                buffers: unsigned32(h.buffers),
            })
            .collect(),
        totals: Totals {
            exported_bytes: u64::try_from(totals.exportedBytes).ok(),
            userspace_rss: unsigned(totals.userspaceRss),
            userspace_pss: unsigned(totals.userspacePss),
            kernel_only_bytes: unsigned(totals.kernelOnlyBytes),
            unreadable_processes: unsigned32(totals.unreadableProcesses),
        },
        coverage,
    }
}

fn buffer_from_aidl(b: BufferInfo) -> BufferView {
    let refs = |pick: fn(&BufferRef) -> i32| -> PidCounts {
        b.refs.iter().filter(|r| pick(r) > 0).map(|r| (r.pid, unsigned32(pick(r)))).collect()
    };
    BufferView {
        inode: unsigned(b.inode),
        size: unsigned(b.size),
        fd_refs: refs(|r| r.fdCount),
        map_refs: refs(|r| r.mapCount),
        exporter: Some(b.exporter).filter(|s| !s.is_empty()).map(Into::into),
        // The exact bytes when the service sent them (V2), else the UTF-8 form.
        name: Some(if b.nameBytes.is_empty() {
            Name::from(b.name)
        } else {
            Name::from(b.nameBytes)
        })
        .filter(|n| !n.is_empty()),
    }
}

/// A ledger entry as sent by `IAccounting.getLedger`.
pub fn entry_to_aidl(e: &Entry) -> LedgerEntry {
    LedgerEntry {
        inode: bytes(e.inode),
        size: bytes(e.size),
        name: e.name.to_string_lossy().into_owned(),
        heap: e.heap.clone(),
        uid: uid_to_aidl(e.uid),
        pid: e.pid,
        timeMillis: bytes(e.time_millis),
        attributed: e.attributed,
    }
}

/// What a client received, back as a ledger entry.
pub fn entry_from_aidl(e: LedgerEntry) -> Entry {
    Entry {
        inode: unsigned(e.inode),
        size: unsigned(e.size),
        name: e.name.into(),
        heap: e.heap,
        uid: uid_from_aidl(e.uid),
        pid: e.pid,
        time_millis: unsigned(e.timeMillis),
        attributed: e.attributed,
    }
}

/// One element of a handoff view's arrays, in the order pages carry them.
#[derive(Debug)]
pub enum HandoffItem {
    /// An element of `HandoffPage.handoffs`.
    Handoff(AidlHandoff),
    /// An element of `HandoffPage.uids`.
    Uid(AidlUidBalance),
}

impl WireLen for HandoffItem {
    fn wire_len(&self) -> usize {
        match self {
            HandoffItem::Handoff(h) => h.wire_len(),
            HandoffItem::Uid(u) => u.wire_len(),
        }
    }
}

/// The view's items from index `start` on: handoffs, then uids, each converted when reached.
pub fn handoff_items(v: &Handoffs, start: usize) -> impl Iterator<Item = HandoffItem> + '_ {
    let skip_buffers = start.min(v.buffers.len());
    let skip_uids = start - skip_buffers;
    let handoffs = v.buffers[skip_buffers..].iter().map(|h| {
        HandoffItem::Handoff(AidlHandoff {
            asked: entry_to_aidl(&h.asked),
            holders: h
                .holders
                .iter()
                .map(|x| AidlHolder {
                    pid: x.pid,
                    uid: uid_to_aidl(x.uid),
                    comm: x.comm.clone(),
                    fdCount: count(x.fds),
                    mapCount: count(x.maps),
                })
                .collect(),
        })
    });
    let uids = v.uids.get(skip_uids..).unwrap_or_default().iter().map(|u| {
        HandoffItem::Uid(AidlUidBalance {
            uid: uid_to_aidl(u.uid),
            askedBytes: bytes(u.asked_bytes),
            askedBuffers: count(u.asked_buffers),
            heldBytes: bytes(u.held_bytes),
            heldBuffers: count(u.held_buffers),
        })
    });
    handoffs.chain(uids)
}

/// A page of `items` of a view taken at `taken_millis`.
pub fn handoff_page(taken_millis: u64, items: Vec<HandoffItem>, cursor: i64) -> HandoffPage {
    let mut page =
        HandoffPage { takenMillis: bytes(taken_millis), cursor, ..HandoffPage::default() };
    for item in items {
        match item {
            HandoffItem::Handoff(h) => page.handoffs.push(h),
            HandoffItem::Uid(u) => page.uids.push(u),
        }
    }
    page
}

/// Appends a page received from the service to the view assembled so far.
pub fn append_handoff_page(whole: &mut Handoffs, page: HandoffPage) {
    whole.taken_millis = unsigned(page.takenMillis);
    whole.buffers.extend(page.handoffs.into_iter().map(|h| {
        Handoff {
            asked: entry_from_aidl(h.asked),
            holders: h
                .holders
                .into_iter()
                .map(|x| Holder {
                    pid: x.pid,
                    uid: uid_from_aidl(x.uid),
                    comm: x.comm,
                    fds: unsigned32(x.fdCount),
                    maps: unsigned32(x.mapCount),
                })
                .collect(),
        }
    }));
    whole.uids.extend(page.uids.into_iter().map(|u| UidBalance {
        uid: uid_from_aidl(u.uid),
        asked_bytes: unsigned(u.askedBytes),
        asked_buffers: unsigned32(u.askedBuffers),
        held_bytes: unsigned(u.heldBytes),
        held_buffers: unsigned32(u.heldBuffers),
    }));
}

/// The history as sent by `IAccounting.getHistory` (one reply: it is bounded to fit).
pub fn history_to_aidl(v: &history::View) -> AidlHistory {
    AidlHistory {
        sinceMillis: bytes(v.since_millis),
        uids: v
            .uids
            .iter()
            .map(|(&uid, m)| UidMark {
                uid: uid_to_aidl(uid),
                peakBytes: bytes(m.peak_bytes),
                peakMillis: bytes(m.peak_millis),
                currentBytes: bytes(m.current_bytes),
            })
            .collect(),
        names: v
            .names
            .iter()
            .map(|(name, m)| NameMark {
                name: name.to_string_lossy().into_owned(),
                peakBytes: bytes(m.peak_bytes),
                peakMillis: bytes(m.peak_millis),
                currentBytes: bytes(m.current_bytes),
            })
            .collect(),
        samples: v
            .samples
            .iter()
            .map(|s| AidlSample {
                timeMillis: bytes(s.time_millis),
                bytes: bytes(s.bytes),
                buffers: count(s.buffers),
            })
            .collect(),
    }
}

/// What a client received, back as the service's view.
pub fn history_from_aidl(h: AidlHistory) -> history::View {
    let mark = |peak: i64, at: i64, now: i64| Mark {
        peak_bytes: unsigned(peak),
        peak_millis: unsigned(at),
        current_bytes: unsigned(now),
    };
    history::View {
        since_millis: unsigned(h.sinceMillis),
        uids: h
            .uids
            .into_iter()
            .map(|m| (uid_from_aidl(m.uid), mark(m.peakBytes, m.peakMillis, m.currentBytes)))
            .collect(),
        names: h
            .names
            .into_iter()
            .map(|m| (Name::from(m.name), mark(m.peakBytes, m.peakMillis, m.currentBytes)))
            .collect(),
        samples: h
            .samples
            .into_iter()
            .map(|s| history::Sample {
                time_millis: unsigned(s.timeMillis),
                bytes: unsigned(s.bytes),
                buffers: unsigned32(s.buffers),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_exactly() {
        let report = Report {
            buffers: vec![BufferView {
                inode: 7,
                size: 65536,
                exporter: Some("system".into()),
                name: None,
                fd_refs: [(10, 2)].into(),
                map_refs: [(10, 1), (11, 3)].into(),
            }],
            processes: vec![ProcessView {
                pid: 10,
                uid: u32::MAX,
                comm: "camera".into(),
                rss: 65536,
                pss: 32768,
                fd_bytes: 65536,
                map_only_bytes: 0,
            }],
            apps: vec![AppView {
                uid: 10_001,
                rss: 65536,
                pss: 32768,
                buffers: 1,
                complete: false,
            }],
            names: vec![NameView { name: Name::default(), bytes: 65536, buffers: 1 }],
            heaps: vec![ExporterView { exporter: "system".into(), bytes: 65536, buffers: 1 }],
            totals: Totals {
                exported_bytes: None,
                userspace_rss: 65536,
                userspace_pss: 65536,
                kernel_only_bytes: 0,
                unreadable_processes: 2,
            },
            coverage: Coverage {
                sources: vec![SourceUse::new(
                    "procfs",
                    SourceState::Used,
                    "/proc read as uid 1000",
                )],
                scanner_uid: Some(1000),
                unreadable: vec![Unreadable {
                    uid: 10_001,
                    processes: 2,
                    dmabuf_rss: Some(4096),
                    dmabuf_rss_hwm: None,
                    dmabuf_pss: Some(2048),
                    counted_processes: 1,
                }],
                vanished_processes: 0,
                unknown_holder_bytes: 8192,
                unknown_holder_buffers: 1,
                requested: vec![Requested {
                    uid: u32::MAX,
                    buffers: 1,
                    bytes: 8192,
                    held_bytes: 0,
                }],
            },
        };
        let aidl = report_to_aidl(&report);
        assert_eq!(aidl.totals.exportedBytes, -1);
        assert_eq!(aidl.buffers[0].refs.len(), 2);
        assert_eq!(report_from_aidl(aidl), report);
    }

    #[test]
    fn ledger_entry_round_trips() {
        let e = Entry {
            inode: 42,
            size: 4096,
            name: "GL".into(),
            heap: "system".into(),
            uid: 10_005,
            pid: 77,
            time_millis: 1_700_000_000_000,
            attributed: true,
        };
        assert_eq!(entry_from_aidl(entry_to_aidl(&e)), e);
        let rebuilt = Entry {
            uid: crate::ledger::UNKNOWN_UID,
            pid: crate::ledger::UNKNOWN_PID,
            time_millis: 0,
            attributed: false,
            ..e
        };
        let aidl = entry_to_aidl(&rebuilt);
        // What LedgerEntry documents for entries rebuilt after a restart.
        assert_eq!((aidl.uid, aidl.pid, aidl.timeMillis, aidl.attributed), (-1, -1, 0, false));
        assert_eq!(entry_from_aidl(aidl), rebuilt);
    }
}
