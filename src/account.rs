//! The accounting model and its views, all in exact bytes.
//!
//! A [`Model`] is what one scan saw: buffers keyed by inode (so a buffer reached through many
//! fds, processes and mappings counts once), who references each one and how, and which
//! processes could not be read. [`Report::build`] derives every view from it. Pss shares each
//! buffer's size among the distinct processes that reference it; the division remainder goes one
//! byte each to the lowest pids, so per-process Pss always sums to exactly the bytes referenced
//! (AOSP dmabuf_dump truncates each share, so widely shared buffers show 0 and totals drift).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::coverage::{Coverage, ScanCoverage};
pub use crate::text::Name;

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
    pub exporter: Option<String>,
    /// Purpose name, exact bytes; `None` when unnamed.
    pub name: Option<Name>,
    /// Number of fds per referencing pid.
    pub fd_refs: BTreeMap<i32, u32>,
    /// Number of mappings (VMAs) per referencing pid.
    pub map_refs: BTreeMap<i32, u32>,
}

impl Buffer {
    /// Distinct pids that reference the buffer by fd or mapping, ascending.
    pub fn holders(&self) -> Vec<i32> {
        holders(&self.fd_refs, &self.map_refs).collect()
    }
}

/// The distinct keys of two pid-keyed maps, ascending: one merge of two sorted sequences, so
/// walking a buffer's holders costs O(holders) and allocates nothing.
fn holders<'a>(
    fd_refs: &'a BTreeMap<i32, u32>,
    map_refs: &'a BTreeMap<i32, u32>,
) -> impl Iterator<Item = i32> + 'a {
    let (mut fds, mut maps) = (fd_refs.keys().peekable(), map_refs.keys().peekable());
    std::iter::from_fn(move || match (fds.peek(), maps.peek()) {
        (Some(&&f), Some(&&m)) => {
            if f <= m {
                fds.next();
            }
            if m <= f {
                maps.next();
            }
            Some(f.min(m))
        }
        (Some(_), None) => fds.next().copied(),
        (None, _) => maps.next().copied(),
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
    pub exporter: Option<String>,
    /// Purpose name, exact bytes; `None` when unnamed. JSON: `name` and, for a name that is
    /// not UTF-8, `name_bytes` (see [`Name::serialize_fields`]).
    #[serde(flatten, serialize_with = "Name::serialize_fields")]
    pub name: Option<Name>,
    /// Number of fds per holding pid.
    pub fd_refs: BTreeMap<i32, u32>,
    /// Number of mappings (VMAs) per holding pid.
    pub map_refs: BTreeMap<i32, u32>,
}

impl BufferView {
    /// Distinct holders, ascending.
    pub fn holders(&self) -> Vec<i32> {
        holders(&self.fd_refs, &self.map_refs).collect()
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
    /// [`Report::buffers`] grouped by purpose name.
    pub names: Vec<NameView>,
    /// [`Report::buffers`] grouped by exporter.
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

#[derive(Default)]
struct Usage {
    rss: u64,
    pss: u64,
    fd_bytes: u64,
    map_only_bytes: u64,
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
        // Every step is one pass over buffers x holders or over processes, with O(log n) map
        // steps at most: a compositor's buffers mapped by hundreds of forked clients make
        // buffers x holders the largest number in the report.
        let mut usage: BTreeMap<i32, (&Process, Usage)> = model
            .processes
            .iter()
            .filter(|(_, p)| filter.selects(p))
            .map(|(&pid, p)| (pid, (p, Usage::default())))
            .collect();
        // Per uid: distinct buffers (inode -> size) and summed Pss.
        let mut app_bufs: BTreeMap<u32, (BTreeMap<u64, u64>, u64)> = BTreeMap::new();
        let mut buffers = Vec::new();
        let mut holderless: Vec<u64> = Vec::new();
        let mut userspace_rss: u64 = 0;
        let mut holders: Vec<i32> = Vec::new();

        for buf in model.buffers.values() {
            holders.clear();
            holders.extend(self::holders(&buf.fd_refs, &buf.map_refs));
            if holders.is_empty() {
                holderless.push(buf.size);
            }
            let mut referenced = false;
            for (rank, pid) in holders.iter().enumerate() {
                let Some((p, u)) = usage.get_mut(pid) else {
                    continue;
                };
                referenced = true;
                let share = pss_share(buf.size, holders.len(), rank);
                u.rss = u.rss.saturating_add(buf.size);
                u.pss = u.pss.saturating_add(share);
                if buf.fd_refs.contains_key(pid) {
                    u.fd_bytes = u.fd_bytes.saturating_add(buf.size);
                } else {
                    u.map_only_bytes = u.map_only_bytes.saturating_add(buf.size);
                }
                let app = app_bufs.entry(p.uid).or_default();
                app.0.insert(buf.inode, buf.size);
                app.1 = app.1.saturating_add(share);
            }
            if referenced {
                userspace_rss = userspace_rss.saturating_add(buf.size);
            } else if !filter.is_empty() {
                continue;
            }
            buffers.push(BufferView {
                inode: buf.inode,
                size: buf.size,
                exporter: buf.exporter.clone(),
                name: shown_name(buf, whole_names),
                fd_refs: buf.fd_refs.clone(),
                map_refs: buf.map_refs.clone(),
            });
        }

        let processes: Vec<ProcessView> = usage
            .into_iter()
            .map(|(pid, (p, u))| ProcessView {
                pid,
                uid: p.uid,
                comm: p.comm.clone(),
                rss: u.rss,
                pss: u.pss,
                fd_bytes: u.fd_bytes,
                map_only_bytes: u.map_only_bytes,
            })
            .collect();

        let coverage = Coverage::build(model, filter, &holderless);
        let apps = app_bufs
            .into_iter()
            .map(|(uid, (inodes, pss))| AppView {
                uid,
                rss: saturating_sum(inodes.values().copied()),
                pss,
                buffers: count(inodes.len()),
                complete: coverage.is_complete(uid),
            })
            .collect();

        let names = group(&buffers, |b| b.name.clone().unwrap_or_default())
            .into_iter()
            .map(|(name, (bytes, buffers))| NameView { name, bytes, buffers })
            .collect();
        let heaps = group(&buffers, |b| b.exporter.clone().unwrap_or_default())
            .into_iter()
            .map(|(exporter, (bytes, buffers))| ExporterView { exporter, bytes, buffers })
            .collect();

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
        Report { buffers, processes, apps, names, heaps, totals, coverage }
    }
}

/// The whole name of `buf` if `whole_names` has one the kernel's name is the prefix of.
fn shown_name(buf: &Buffer, whole_names: &HashMap<u64, Name>) -> Option<Name> {
    let whole = whole_names.get(&buf.inode).filter(|whole| {
        let prefix = whole.to_str().map(crate::name::kernel_prefix);
        prefix.map(str::as_bytes) == buf.name.as_ref().map(Name::as_bytes)
    });
    whole.or(buf.name.as_ref()).cloned()
}

/// Sums bytes and counts buffers per key, sorted by key.
fn group<K: Ord>(
    buffers: &[BufferView],
    key: impl Fn(&BufferView) -> K,
) -> BTreeMap<K, (u64, u32)> {
    let mut out: BTreeMap<K, (u64, u32)> = BTreeMap::new();
    for b in buffers {
        let e = out.entry(key(b)).or_default();
        e.0 = e.0.saturating_add(b.size);
        e.1 += 1;
    }
    out
}

/// Sums byte counts without overflow: sizes come from kernel text and must never panic or wrap.
pub(crate) fn saturating_sum(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, u64::saturating_add)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
