//! The accounting model and its views, all in exact bytes.
//!
//! A [`Model`] is what one scan saw: buffers keyed by inode (so a buffer reached through many
//! fds, processes and mappings counts once), who references each one and how, and which
//! processes could not be read. [`Report::build`] derives every view from it. Pss shares each
//! buffer's size among the distinct processes that reference it; the division remainder goes one
//! byte each to the lowest pids, so per-process Pss always sums to exactly the bytes referenced
//! (AOSP dmabuf_dump truncates each share, so widely shared buffers show 0 and totals drift).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::coverage::{Coverage, ScanCoverage};
pub use crate::pid_counts::PidCounts;
pub use crate::text::Name;

/// An exporter (heap) name, shared: a scan's thousands of buffers come from a handful of heaps.
pub type Exporter = std::sync::Arc<str>;

/// A process that references at least one dma-buf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Thread-group id.
    pub pid: i32,
    /// Real uid: on Android, the app.
    pub uid: u32,
    /// Command name.
    pub comm: String,
}

/// One buffer, deduplicated by inode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buffer {
    /// Inode on the dma-buf pseudo filesystem.
    pub inode: u64,
    /// Size in bytes. For a buffer known only from mappings and absent from the kernel's lists,
    /// the largest mapped extent (a lower bound), see [`Buffer::size_from_maps`].
    pub size: u64,
    /// True when `size` could only be inferred from mappings.
    pub size_from_maps: bool,
    /// Exporter (heap) name, when fdinfo, debugfs or sysfs told.
    pub exporter: Option<Exporter>,
    /// Purpose name, exact bytes; `None` when unnamed.
    pub name: Option<Name>,
    /// Number of fds per referencing pid.
    pub fd_refs: PidCounts,
    /// Number of mappings (VMAs) per referencing pid.
    pub map_refs: PidCounts,
}

impl Buffer {
    /// Distinct pids that reference the buffer by fd or mapping, ascending.
    pub fn holders(&self) -> Vec<i32> {
        holders(&self.fd_refs, &self.map_refs).collect()
    }
}

/// The distinct keys of two pid-keyed maps, ascending: one merge of two sorted sequences, so
/// walking a buffer's holders costs O(holders) and allocates nothing.
fn holders<'a>(fd_refs: &'a PidCounts, map_refs: &'a PidCounts) -> impl Iterator<Item = i32> + 'a {
    holders_by_fd(fd_refs, map_refs).map(|(pid, _)| pid)
}

/// [`holders`], each with whether `fd_refs` has it: the merge knows, where a lookup per holder
/// would search the map again.
fn holders_by_fd<'a>(
    fd_refs: &'a PidCounts,
    map_refs: &'a PidCounts,
) -> impl Iterator<Item = (i32, bool)> + 'a {
    let (mut fds, mut maps) = (fd_refs.keys().peekable(), map_refs.keys().peekable());
    std::iter::from_fn(move || match (fds.peek(), maps.peek()) {
        (Some(&&f), Some(&&m)) => {
            if f <= m {
                fds.next();
            }
            if m <= f {
                maps.next();
            }
            Some((f.min(m), f <= m))
        }
        (Some(_), None) => fds.next().map(|&f| (f, true)),
        (None, _) => maps.next().map(|&m| (m, false)),
    })
}

/// Everything one scan saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Buffers by inode: referenced ones and, where the kernel lists them, kernel-only ones.
    pub buffers: BTreeMap<u64, Buffer>,
    /// Processes that reference at least one buffer, by pid.
    pub processes: BTreeMap<i32, Process>,
    /// Bytes of all exported buffers, when debugfs or sysfs was readable.
    pub exported_bytes: Option<u64>,
    /// Processes skipped because they vanished or could not be read.
    pub unreadable_processes: u32,
    /// What the scan could not see, and the sources it used.
    pub coverage: ScanCoverage,
}

/// Selects processes for a report; both fields must match when both are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only processes of this uid.
    pub uid: Option<u32>,
    /// Only this process.
    pub pid: Option<i32>,
}

impl Filter {
    /// True when no process is excluded.
    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.pid.is_none()
    }

    fn selects(&self, p: &Process) -> bool {
        self.uid.is_none_or(|u| u == p.uid) && self.pid.is_none_or(|pid| pid == p.pid)
    }
}

/// One buffer as reported. `fd_refs`/`map_refs` list every holder, also unselected ones, so
/// that `nr_procs` and Pss shares can be read off any report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BufferView {
    /// Inode on the dma-buf pseudo filesystem: the buffer's identity.
    pub inode: u64,
    /// Size in bytes, as in [`Buffer::size`].
    pub size: u64,
    /// Exporter (heap) name, when fdinfo, debugfs or sysfs told.
    pub exporter: Option<Exporter>,
    /// Purpose name, exact bytes; `None` when unnamed. JSON: `name` and, for a name that is
    /// not UTF-8, `name_bytes` (see [`Name::serialize_fields`]).
    #[serde(flatten, serialize_with = "Name::serialize_fields")]
    pub name: Option<Name>,
    /// Number of fds per holding pid.
    pub fd_refs: PidCounts,
    /// Number of mappings (VMAs) per holding pid.
    pub map_refs: PidCounts,
}

impl BufferView {
    /// Distinct holders, ascending.
    pub fn holders(&self) -> Vec<i32> {
        self.each_holder().collect()
    }

    /// [`BufferView::holders`] as they are merged from the two maps, allocating nothing: for a
    /// walk over every buffer's holders.
    pub fn each_holder(&self) -> impl Iterator<Item = i32> + '_ {
        holders(&self.fd_refs, &self.map_refs)
    }

    /// Number of distinct holders (`nr_procs`), without collecting them.
    pub fn holder_count(&self) -> usize {
        holders(&self.fd_refs, &self.map_refs).count()
    }

    /// True when no process holds the buffer: the kernel alone does.
    pub fn is_kernel_only(&self) -> bool {
        self.fd_refs.is_empty() && self.map_refs.is_empty()
    }

    /// Pss share of `pid` in this buffer (0 if it does not hold it). One pass over the holders:
    /// to share out every holder's Pss, walk [`BufferView::holders`] with [`pss_share`] instead.
    pub fn pss_of(&self, pid: i32) -> u64 {
        let mut rank = None;
        let mut count = 0;
        for (i, p) in holders(&self.fd_refs, &self.map_refs).enumerate() {
            if p == pid {
                rank = Some(i);
            }
            count = i + 1;
        }
        rank.map_or(0, |rank| pss_share(self.size, count, rank))
    }
}

/// Per-process usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessView {
    /// Thread-group id.
    pub pid: i32,
    /// Real uid: on Android, the app.
    pub uid: u32,
    /// Command name, from `/proc/<pid>/status`.
    pub comm: String,
    /// Sum of sizes of distinct buffers referenced by fd or mapping.
    pub rss: u64,
    /// Sum of this process's shares of those buffers.
    pub pss: u64,
    /// Bytes of distinct buffers held through at least one fd.
    pub fd_bytes: u64,
    /// Bytes of buffers only mapped (every fd closed).
    pub map_only_bytes: u64,
}

/// Per-uid usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppView {
    /// Real uid: on Android, the app.
    pub uid: u32,
    /// Sum of sizes of distinct buffers referenced by any process of the uid.
    pub rss: u64,
    /// Sum of the Pss of the uid's processes.
    pub pss: u64,
    /// Distinct buffers.
    pub buffers: u32,
    /// False when some process of the uid could not be read (see [`Coverage::unreadable`]):
    /// the numbers are then a lower bound.
    pub complete: bool,
}

/// Buffers sharing one purpose name (`""` for unnamed ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameView {
    /// The purpose name, exact bytes; JSON as for [`BufferView::name`].
    #[serde(flatten, serialize_with = "Name::serialize_field")]
    pub name: Name,
    /// Sum of the sizes of those buffers.
    pub bytes: u64,
    /// Number of distinct buffers.
    pub buffers: u32,
}

/// Buffers of one exporter (`""` when the kernel did not tell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExporterView {
    /// The exporter (heap) name.
    pub exporter: String,
    /// Sum of the sizes of those buffers.
    pub bytes: u64,
    /// Number of distinct buffers.
    pub buffers: u32,
}

/// Sums over the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Bytes of every exported buffer per debugfs/sysfs; `None` when the kernel does not tell
    /// or the report is filtered.
    pub exported_bytes: Option<u64>,
    /// Bytes of distinct buffers referenced by the selected processes.
    pub userspace_rss: u64,
    /// Sum of the selected processes' Pss (equals `userspace_rss` when unfiltered).
    pub userspace_pss: u64,
    /// Bytes of buffers no process references (0 when filtered, and when some process could
    /// not be read: they are [`Coverage::unknown_holder_bytes`] then).
    pub kernel_only_bytes: u64,
    /// Processes skipped because they vanished or could not be read (whole scan).
    pub unreadable_processes: u32,
}

/// Every view of one scan; serialises to the documented JSON (docs/dump.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Unfiltered: every buffer, kernel-only ones included; filtered: those the selected
    /// processes reference. Ascending inode.
    pub buffers: Vec<BufferView>,
    /// Selected processes, ascending pid.
    pub processes: Vec<ProcessView>,
    /// Uids of the selected processes, ascending.
    pub apps: Vec<AppView>,
    /// [`Report::buffers`] grouped by purpose name (unless built with [`Grouping::None`]).
    pub names: Vec<NameView>,
    /// [`Report::buffers`] grouped by exporter (unless built with [`Grouping::None`]).
    pub heaps: Vec<ExporterView>,
    /// Sums over the whole report.
    pub totals: Totals,
    /// The sources used and what they missed.
    pub coverage: Coverage,
}

/// Share of holder number `rank` (0-based, holders in ascending pid order) of `size` bytes
/// split among `holders`: the remainder goes one byte each to the first holders.
pub fn pss_share(size: u64, holders: usize, rank: usize) -> u64 {
    let n = holders.max(1) as u64;
    size / n + u64::from((rank as u64) < size % n)
}

/// A selected process and its sums so far.
struct Holder<'a> {
    pid: i32,
    process: Cow<'a, Process>,
    /// Index of its uid's sums.
    app: usize,
    rss: u64,
    pss: u64,
    fd_bytes: u64,
    map_only_bytes: u64,
}

/// One uid's sums so far.
struct AppSums {
    uid: u32,
    rss: u64,
    pss: u64,
    buffers: u32,
    /// Number (from 1) of the buffer last counted: buffers come in ascending inode order, so one
    /// that several of the uid's processes hold is counted once without keeping a set of them.
    last: usize,
}

impl Report {
    /// Derives every view. Unfiltered: all buffers including kernel-only ones. Filtered: the
    /// selected processes and only the buffers they reference, Pss still shared among all
    /// holders.
    pub fn build(model: &Model, filter: &Filter) -> Report {
        Self::build_named(model, filter, &HashMap::new())
    }

    /// [`Report::build`], showing whole names where a record beyond the kernel kept them:
    /// `whole_names` maps inodes to names longer than the kernel keeps (the service's ledger).
    /// A buffer whose kernel name is the [kernel's prefix](crate::name::kernel_prefix) of its
    /// whole name shows the whole name, everywhere (buffers and the per-name view); one renamed
    /// since shows what the kernel holds now.
    pub fn build_named(model: &Model, filter: &Filter, whole_names: &HashMap<u64, Name>) -> Report {
        let buffers = model.buffers.values().map(Cow::Borrowed);
        let processes = model.processes.iter().map(|(&pid, p)| (pid, Cow::Borrowed(p)));
        Self::assemble(model, buffers, processes, filter, whole_names, Grouping::All)
    }

    /// [`Report::build`] for a caller done with the model (`dmabufctl dump`): the report takes
    /// the holder maps, names and exporters of the buffers it shows instead of copying them, and
    /// the model has that much less to free after. Many buffers with few holders each make
    /// those copies a third of the work. With [`Grouping::None`], for a caller that shows
    /// neither, [`Report::names`] and [`Report::heaps`] are left empty.
    pub fn from_model(mut model: Model, filter: &Filter, grouping: Grouping) -> Report {
        let buffers = std::mem::take(&mut model.buffers).into_values().map(Cow::Owned);
        let processes = std::mem::take(&mut model.processes);
        let processes = processes.into_iter().map(|(pid, p)| (pid, Cow::Owned(p)));
        Self::assemble(&model, buffers, processes, filter, &HashMap::new(), grouping)
    }

    /// Behind both [`Report::build_named`] and [`Report::from_model`], so that a lent and a
    /// handed-over model cannot report differently. `model` gives all but its buffers and
    /// processes, which come lent or handed over as `buffers` (ascending inode) and `processes`
    /// (ascending pid): [`Cow::into_owned`] copies or moves what the report keeps, and only once
    /// it is known to be kept, so a filtered report copies nothing of the buffers it leaves out.
    fn assemble<'a>(
        model: &Model,
        buffers: impl Iterator<Item = Cow<'a, Buffer>>,
        processes: impl Iterator<Item = (i32, Cow<'a, Process>)>,
        filter: &Filter,
        whole_names: &HashMap<u64, Name>,
        grouping: Grouping,
    ) -> Report {
        // Every step is one pass over buffers x holders or over processes, with O(log n) steps
        // at most: a compositor's buffers mapped by hundreds of forked clients make
        // buffers x holders the largest number in the report. Per holder that is a search of
        // the selected processes and plain additions: no map, no allocation.
        let mut selected: Vec<Holder<'a>> = processes
            .filter(|(_, p)| filter.selects(p))
            .map(|(pid, process)| Holder {
                pid,
                process,
                app: 0,
                rss: 0,
                pss: 0,
                fd_bytes: 0,
                map_only_bytes: 0,
            })
            .collect();
        let mut uids: Vec<u32> = selected.iter().map(|h| h.process.uid).collect();
        uids.sort_unstable();
        uids.dedup();
        for h in &mut selected {
            h.app = uids.partition_point(|&uid| uid < h.process.uid);
        }
        let mut apps: Vec<AppSums> = uids
            .into_iter()
            .map(|uid| AppSums { uid, rss: 0, pss: 0, buffers: 0, last: 0 })
            .collect();
        // Unfiltered, every buffer is shown: room for all of them saves copying them as the
        // list grows. Filtered, few usually are.
        let mut views =
            Vec::with_capacity(if filter.is_empty() { buffers.size_hint().0 } else { 0 });
        let mut holderless: Vec<u64> = Vec::new();
        let mut userspace_rss: u64 = 0;
        let mut holders: Vec<(i32, bool)> = Vec::new();

        for (n, buf) in (1..).zip(buffers) {
            holders.clear();
            holders.extend(holders_by_fd(&buf.fd_refs, &buf.map_refs));
            if holders.is_empty() {
                holderless.push(buf.size);
            }
            let mut referenced = false;
            // Holders ascend by pid as the selected processes do: each search starts past the
            // previous one's place, where, unfiltered, the next holder usually is.
            let mut rest = 0;
            for (rank, &(pid, by_fd)) in holders.iter().enumerate() {
                let found = if selected.get(rest).is_some_and(|h| h.pid == pid) {
                    Ok(0)
                } else {
                    selected[rest..].binary_search_by_key(&pid, |h| h.pid)
                };
                match found {
                    Ok(i) => rest += i,
                    Err(i) => {
                        rest += i;
                        continue;
                    }
                }
                let h = &mut selected[rest];
                rest += 1;
                referenced = true;
                let share = pss_share(buf.size, holders.len(), rank);
                h.rss = h.rss.saturating_add(buf.size);
                h.pss = h.pss.saturating_add(share);
                if by_fd {
                    h.fd_bytes = h.fd_bytes.saturating_add(buf.size);
                } else {
                    h.map_only_bytes = h.map_only_bytes.saturating_add(buf.size);
                }
                let app = &mut apps[h.app];
                if app.last != n {
                    app.last = n;
                    app.rss = app.rss.saturating_add(buf.size);
                    app.buffers = app.buffers.saturating_add(1);
                }
                app.pss = app.pss.saturating_add(share);
            }
            if referenced {
                userspace_rss = userspace_rss.saturating_add(buf.size);
            } else if !filter.is_empty() {
                continue;
            }
            views.push(view(buf, whole_names));
        }

        let processes: Vec<ProcessView> = selected
            .into_iter()
            .map(|h| ProcessView {
                pid: h.pid,
                uid: h.process.uid,
                comm: h.process.into_owned().comm,
                rss: h.rss,
                pss: h.pss,
                fd_bytes: h.fd_bytes,
                map_only_bytes: h.map_only_bytes,
            })
            .collect();

        let coverage = Coverage::build(model, filter, &holderless);
        // A uid is shown when one of its processes holds a buffer, as a process is when selected.
        let apps = apps
            .into_iter()
            .filter(|a| a.buffers > 0)
            .map(|a| AppView {
                uid: a.uid,
                rss: a.rss,
                pss: a.pss,
                buffers: a.buffers,
                complete: coverage.is_complete(a.uid),
            })
            .collect();

        let (names, heaps) = match grouping {
            Grouping::All => (name_views(&views), heap_views(&views)),
            Grouping::None => (Vec::new(), Vec::new()),
        };

        let totals = Totals {
            exported_bytes: model.exported_bytes.filter(|_| filter.is_empty()),
            userspace_rss,
            userspace_pss: saturating_sum(processes.iter().map(|p| p.pss)),
            kernel_only_bytes: if filter.is_empty() && model.coverage.unreadable.is_empty() {
                saturating_sum(holderless)
            } else {
                0
            },
            unreadable_processes: model.unreadable_processes,
        };
        Report { buffers: views, processes, apps, names, heaps, totals, coverage }
    }
}

/// Whether a report groups its buffers by name and by exporter ([`Report::names`],
/// [`Report::heaps`]): each grouping sorts every buffer (thousands, each named differently),
/// which a caller that shows neither view need not pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Every view.
    All,
    /// Neither grouping: [`Report::names`] and [`Report::heaps`] are empty.
    None,
}

/// The per-name view of `buffers`; unnamed buffers group with those named "" (both show as "").
fn name_views(buffers: &[BufferView]) -> Vec<NameView> {
    group(buffers, |b| b.name.as_ref().filter(|n| !n.is_empty()))
        .into_iter()
        .map(|(name, bytes, buffers)| NameView {
            name: name.cloned().unwrap_or_default(),
            bytes,
            buffers,
        })
        .collect()
}

/// The per-exporter view of `buffers`.
fn heap_views(buffers: &[BufferView]) -> Vec<ExporterView> {
    group(buffers, |b| b.exporter.as_deref().unwrap_or_default())
        .into_iter()
        .map(|(exporter, bytes, buffers)| ExporterView {
            exporter: exporter.to_owned(),
            bytes,
            buffers,
        })
        .collect()
}

/// The view of `buf`, with its whole name from `whole_names` where [`Report::build_named`]
/// shows one.
fn view(buf: Cow<'_, Buffer>, whole_names: &HashMap<u64, Name>) -> BufferView {
    let whole = whole_name(&buf, whole_names).cloned();
    let Buffer { inode, size, size_from_maps: _, exporter, name, fd_refs, map_refs } =
        buf.into_owned();
    BufferView { inode, size, exporter, name: whole.or(name), fd_refs, map_refs }
}

/// The whole name of `buf` if `whole_names` has one the kernel's name is the prefix of.
fn whole_name<'n>(buf: &Buffer, whole_names: &'n HashMap<u64, Name>) -> Option<&'n Name> {
    whole_names.get(&buf.inode).filter(|whole| {
        let prefix = whole.to_str().map(crate::name::kernel_prefix);
        prefix.map(str::as_bytes) == buf.name.as_ref().map(Name::as_bytes)
    })
}

/// Sums bytes and counts buffers per key, ascending by key. The keys borrow from `buffers`, so
/// the caller copies each key once per group; sorting them beats a map, which would compare
/// more and allocate nodes.
fn group<'a, K: Ord>(
    buffers: &'a [BufferView],
    key: impl Fn(&'a BufferView) -> K,
) -> Vec<(K, u64, u32)> {
    let mut keyed: Vec<(K, u64)> = buffers.iter().map(|b| (key(b), b.size)).collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(K, u64, u32)> = Vec::new();
    for (k, size) in keyed {
        match out.last_mut() {
            Some(last) if last.0 == k => {
                last.1 = last.1.saturating_add(size);
                last.2 = last.2.saturating_add(1);
            }
            _ => out.push((k, size, 1)),
        }
    }
    out
}

/// Sums byte counts without overflow: sizes come from kernel text and must never panic or wrap.
pub(crate) fn saturating_sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, u64::saturating_add)
}
