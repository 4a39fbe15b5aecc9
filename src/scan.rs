//! Walks `/proc` and the kernel's buffer lists into an [`account::Model`](crate::account::Model).
//!
//! The only module of the accounting path that does I/O. Cost model (see BENCHMARKS.md): a phone
//! process holds far more pipes, sockets and files than dma-bufs, so each fd costs one
//! `readlink` into a reused buffer and is dropped unless the link says dma-buf; a dma-buf fd
//! costs one `stat` (inode, size), and its fdinfo (exporter) is read once per inode, not per fd,
//! and not at all when the kernel's buffer list (debugfs bufinfo, read first) names the exporter.
//! `maps` is read whole into a reused buffer and only lines containing `/dmabuf:` are parsed.
//! Processes are handed out one at a time to `threads` workers (`std::thread::scope`), so the
//! cost is linear in fds and spread over every core. Directory fds are opened relative to their
//! parent (`openat`), so no path strings are built per fd.
//!
//! Only thread-group leaders are visited (numeric entries of `/proc`), since threads share their
//! leader's fd table and address space. A process that vanishes or is unreadable part-way is
//! dropped whole and counted, never fatal: a half-read process would skew Pss for others.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::sys::{self, Errno, RawDir};

use crate::account::{Buffer, Model, Process};
use crate::procfs::{self, fd::Link};
use crate::{Error, Result};

/// Where to look and how hard to work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// Root of the proc filesystem (`/proc`).
    pub proc_root: PathBuf,
    /// debugfs `dma_buf/bufinfo`, read when present and readable (needs root and debugfs).
    pub debugfs_bufinfo: Option<PathBuf>,
    /// `/sys/kernel/dmabuf/buffers`, used when bufinfo is not readable.
    pub sysfs_buffers: Option<PathBuf>,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self::under_root(Path::new("/"))
    }
}

impl ScanOptions {
    /// Options for a system image rooted at `root`: `root/proc`, `root/sys/kernel/debug/...` and
    /// `root/sys/kernel/dmabuf/buffers`. `/` is the running system; fixtures use a directory.
    pub fn under_root(root: &Path) -> Self {
        Self {
            proc_root: root.join("proc"),
            debugfs_bufinfo: Some(root.join("sys/kernel/debug/dma_buf/bufinfo")),
            sysfs_buffers: Some(root.join("sys/kernel/dmabuf/buffers")),
            threads: 0,
        }
    }

    fn worker_count(&self, pids: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = if self.threads == 0 { cores } else { self.threads };
        wanted.clamp(1, pids.max(1))
    }
}

/// Scans every process and the kernel's buffer list. Fails only if `proc_root` itself cannot be
/// listed; everything below that degrades to "skipped and counted".
pub fn scan(opts: &ScanOptions) -> Result<Model> {
    let pids = list_pids(&opts.proc_root)?;
    let root = sys::open_dir(&opts.proc_root)
        .map_err(|e| Error::io(format!("opening {}", opts.proc_root.display()), e))?;
    let next = AtomicUsize::new(0);
    // Read before the walk: buffers the kernel already named an exporter for need no fdinfo.
    let kernel = read_kernel_list(opts);
    let known: HashSet<u64> =
        kernel.iter().flat_map(|k| &k.rows).filter(|r| r.2.is_some()).map(|r| r.0).collect();
    let claimed = Mutex::new(known);
    let workers = opts.worker_count(pids.len());
    let partials: Vec<Partial> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut w = Worker::new(root.as_fd(), &claimed);
                    while let Some(&pid) = pids.get(next.fetch_add(1, Ordering::Relaxed)) {
                        w.process(pid);
                    }
                    w.out
                })
            })
            .collect();
        // A worker only panics on a bug; losing its share silently would corrupt totals.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut model = merge(partials);
    apply_kernel_list(&mut model, kernel);
    Ok(model)
}

/// Numeric entries of the proc root: thread-group leaders only (threads live under `task/`).
fn list_pids(proc_root: &Path) -> Result<Vec<i32>> {
    let dir = std::fs::read_dir(proc_root)
        .map_err(|e| Error::io(format!("listing {}", proc_root.display()), e))?;
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|&pid: &i32| pid > 0)
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// What one worker saw.
#[derive(Default)]
struct Partial {
    buffers: HashMap<u64, Buffer>,
    processes: Vec<Process>,
    unreadable: u32,
}

/// Why a process was dropped (only logged; both count as unreadable).
enum Skip {
    Vanished,
    Unreadable(io::Error),
}

impl From<io::Error> for Skip {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(code)
                if code == Errno::NOENT.raw_os_error() || code == Errno::SRCH.raw_os_error() =>
            {
                Skip::Vanished
            }
            _ => Skip::Unreadable(e),
        }
    }
}

impl From<Errno> for Skip {
    fn from(e: Errno) -> Self {
        Skip::from(io::Error::from(e))
    }
}

/// Per-thread scratch space, reused across every process and fd so the hot loop does not
/// allocate.
struct Worker<'a> {
    root: BorrowedFd<'a>,
    claimed: &'a Mutex<HashSet<u64>>,
    dirents: Vec<MaybeUninit<u8>>,
    link: [u8; 256],
    file: Vec<u8>,
    path: Vec<u8>,
    fd_hits: Vec<u64>,
    map_hits: Vec<u64>,
    out: Partial,
}

impl<'a> Worker<'a> {
    fn new(root: BorrowedFd<'a>, claimed: &'a Mutex<HashSet<u64>>) -> Self {
        Self {
            root,
            claimed,
            dirents: vec![MaybeUninit::uninit(); 32 * 1024],
            link: [0; 256],
            file: Vec::with_capacity(64 * 1024),
            path: Vec::with_capacity(64),
            fd_hits: Vec::new(),
            map_hits: Vec::new(),
            out: Partial::default(),
        }
    }

    fn process(&mut self, pid: i32) {
        self.fd_hits.clear();
        self.map_hits.clear();
        match self.read_process(pid) {
            Ok(None) => {}
            Ok(Some(process)) => {
                for &inode in &self.fd_hits {
                    if let Some(b) = self.out.buffers.get_mut(&inode) {
                        *b.fd_refs.entry(pid).or_default() += 1;
                    }
                }
                for &inode in &self.map_hits {
                    if let Some(b) = self.out.buffers.get_mut(&inode) {
                        *b.map_refs.entry(pid).or_default() += 1;
                    }
                }
                self.out.processes.push(process);
            }
            Err(Skip::Vanished) => {
                log::debug!("pid {pid} vanished during the scan");
                self.out.unreadable += 1;
            }
            Err(Skip::Unreadable(e)) => {
                log::debug!("pid {pid} unreadable: {e}");
                self.out.unreadable += 1;
            }
        }
    }

    /// Reads one process; `Ok(None)` when it references no dma-buf.
    fn read_process(&mut self, pid: i32) -> std::result::Result<Option<Process>, Skip> {
        self.set_path(format_args!("{pid}"));
        let dir = sys::open_dir_at(self.root, self.cpath())?;
        self.read_fds(dir.as_fd())?;
        self.read_maps(dir.as_fd())?;
        if self.fd_hits.is_empty() && self.map_hits.is_empty() {
            return Ok(None);
        }
        read_file(dir.as_fd(), c"status", &mut self.file, Records::One)?;
        let status = procfs::status::parse(&self.file).ok_or_else(|| {
            Skip::Unreadable(io::Error::new(io::ErrorKind::InvalidData, "malformed status"))
        })?;
        Ok(Some(Process { pid, uid: status.uid, comm: status.comm }))
    }

    fn read_fds(&mut self, dir: BorrowedFd<'_>) -> std::result::Result<(), Skip> {
        let fd_dir = sys::open_dir_at(dir, c"fd")?;
        let mut dirents = std::mem::take(&mut self.dirents);
        let mut entries = RawDir::new(&fd_dir, &mut dirents);
        // The directory buffer is taken out of `self` for the loop so that `self` stays free
        // for the per-fd work.
        let result = loop {
            let entry = match entries.next() {
                None => break Ok(()),
                Some(Err(e)) => break Err(Skip::from(e)),
                Some(Ok(entry)) => entry,
            };
            let name = entry.file_name();
            if name.to_bytes().first() == Some(&b'.') {
                continue;
            }
            // ENOENT here means this fd was closed since the listing: not an error.
            let Ok(len) = sys::readlink_at(fd_dir.as_fd(), name, &mut self.link[..]) else {
                continue;
            };
            let Some(link) = procfs::fd::classify_link(&self.link[..len]) else {
                continue;
            };
            let anon = link == Link::AnonDmaBuf;
            if let Some(inode) = self.dmabuf_fd(dir, fd_dir.as_fd(), name, anon, len) {
                self.fd_hits.push(inode);
            }
        };
        self.dirents = dirents;
        result
    }

    /// Resolves one dma-buf fd to its inode, recording the buffer the first time it is seen.
    /// `link_len` bytes of `self.link` hold the fd's link text.
    fn dmabuf_fd(
        &mut self,
        dir: BorrowedFd<'_>,
        fd_dir: BorrowedFd<'_>,
        fd_name: &CStr,
        anon: bool,
        link_len: usize,
    ) -> Option<u64> {
        // Anonymous inodes are shared by every buffer: identity must come from fdinfo.
        let stat = if anon { None } else { sys::stat_at(fd_dir, fd_name).ok() };
        if let Some(st) = &stat {
            let inode = st.inode;
            if self.out.buffers.contains_key(&inode) || !self.claim(inode) {
                let link = &self.link[..link_len];
                self.out.buffers.entry(inode).or_insert_with(|| Buffer {
                    inode,
                    size: st.size,
                    name: link_name(link),
                    ..Buffer::default()
                });
                return Some(inode);
            }
        }
        // First sighting (or no usable stat): fdinfo gives the exporter and, failing stat, identity.
        let info = self.read_fdinfo(dir, fd_name);
        let inode = stat.as_ref().map(|s| s.inode).or(info.as_ref().and_then(|i| i.ino))?;
        let size = stat.as_ref().map(|s| s.size).or(info.as_ref().and_then(|i| i.size))?;
        if stat.is_some() && info.is_none() {
            // Closed meanwhile: let another holder read the exporter.
            self.unclaim(inode);
        }
        let info = info.unwrap_or_default();
        let entry = self.out.buffers.entry(inode).or_insert_with(|| Buffer {
            inode,
            size,
            ..Buffer::default()
        });
        if entry.exporter.is_none() {
            entry.exporter = info.exporter;
        }
        if entry.name.is_none() {
            entry.name = link_name(&self.link[..link_len]).or(info.name);
        }
        Some(inode)
    }

    fn read_fdinfo(
        &mut self,
        dir: BorrowedFd<'_>,
        fd_name: &CStr,
    ) -> Option<procfs::fdinfo::FdInfo> {
        self.set_path(format_args!("fdinfo/{}", fd_name.to_string_lossy()));
        let path = CStr::from_bytes_until_nul(&self.path).ok()?;
        read_file(dir, path, &mut self.file, Records::One).ok()?;
        Some(procfs::fdinfo::parse(&self.file))
    }

    /// True if this worker is the first to see `inode` and should read its fdinfo.
    fn claim(&self, inode: u64) -> bool {
        self.claimed.lock().map_or(true, |mut set| set.insert(inode))
    }

    fn unclaim(&self, inode: u64) {
        if let Ok(mut set) = self.claimed.lock() {
            set.remove(&inode);
        }
    }

    fn read_maps(&mut self, dir: BorrowedFd<'_>) -> std::result::Result<(), Skip> {
        read_file(dir, c"maps", &mut self.file, Records::Many)?;
        let (buffers, hits) = (&mut self.out.buffers, &mut self.map_hits);
        procfs::maps::for_each_dmabuf(&self.file, |m| {
            let extent = m.offset.saturating_add(m.len());
            let b = buffers.entry(m.inode).or_insert_with(|| Buffer {
                inode: m.inode,
                size: extent,
                size_from_maps: true,
                name: Some(procfs::lossy(m.name)).filter(|n| !n.is_empty()),
                ..Buffer::default()
            });
            if b.size_from_maps {
                b.size = b.size.max(extent);
            }
            hits.push(m.inode);
        });
        Ok(())
    }

    fn set_path(&mut self, args: std::fmt::Arguments<'_>) {
        use std::io::Write;
        self.path.clear();
        // Writing to a Vec cannot fail.
        let _ = self.path.write_fmt(args);
        self.path.push(0);
    }

    fn cpath(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.path).unwrap_or(c"")
    }
}

/// How a proc file hands out its contents.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Records {
    /// One seq_file record (fdinfo, status): a read with room to spare returns all of it, so
    /// the extra read that would only return 0 is skipped.
    One,
    /// Many records (maps): each read returns about a page at most, so read until 0.
    Many,
}

/// Reads a whole proc file relative to `dir` into `buf` (cleared first, capacity reused).
fn read_file(
    dir: BorrowedFd<'_>,
    path: &CStr,
    buf: &mut Vec<u8>,
    records: Records,
) -> io::Result<()> {
    let fd: OwnedFd = sys::open_file_at(dir, path)?;
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.capacity().max(8192));
        }
        let room = buf.capacity() - buf.len();
        match sys::read_append(fd.as_fd(), buf) {
            Ok(0) => return Ok(()),
            Ok(n) if records == Records::One && n < room => return Ok(()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Joins the workers' views. Workers saw disjoint pids, so ref maps just union; a buffer's
/// metadata is taken from whichever worker read its fdinfo.
fn merge(partials: Vec<Partial>) -> Model {
    let mut model = Model::default();
    for p in partials {
        model.unreadable_processes += p.unreadable;
        model.processes.extend(p.processes.into_iter().map(|pr| (pr.pid, pr)));
        for (inode, b) in p.buffers {
            match model.buffers.get_mut(&inode) {
                None => {
                    model.buffers.insert(inode, b);
                }
                Some(m) => {
                    m.fd_refs.extend(b.fd_refs);
                    m.map_refs.extend(b.map_refs);
                    if m.exporter.is_none() {
                        m.exporter = b.exporter;
                    }
                    if m.name.is_none() {
                        m.name = b.name;
                    }
                    if m.size_from_maps && !b.size_from_maps {
                        m.size = b.size;
                        m.size_from_maps = false;
                    } else if m.size_from_maps {
                        m.size = m.size.max(b.size);
                    }
                }
            }
        }
    }
    // Buffers recorded for a process that was then dropped have no holders left.
    model.buffers.retain(|_, b| !b.fd_refs.is_empty() || !b.map_refs.is_empty());
    model
}

/// The kernel's own list of every exported buffer.
struct KernelList {
    rows: Vec<KernelRow>,
    exported: u64,
}

/// debugfs first (it has names), sysfs stats as the fallback; `None` when neither is readable.
fn read_kernel_list(opts: &ScanOptions) -> Option<KernelList> {
    let bufinfo = opts
        .debugfs_bufinfo
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .map(|bytes| procfs::bufinfo::parse(&bytes))
        .filter(|info| !info.rows.is_empty() || info.total_bytes.is_some());
    if let Some(info) = bufinfo {
        let exported = info.exported_bytes();
        let rows = info
            .rows
            .into_iter()
            .filter_map(|r| {
                Some((r.inode?, r.size, Some(r.exporter).filter(|e| !e.is_empty()), r.name))
            })
            .collect();
        return Some(KernelList { rows, exported });
    }
    let rows = opts.sysfs_buffers.as_deref().and_then(read_sysfs)?;
    let exported = crate::account::saturating_sum(rows.iter().map(|r| r.1));
    Some(KernelList { rows, exported })
}

/// Adds what only the kernel knows: true sizes and exporters of map-only buffers, and buffers no
/// process holds.
fn apply_kernel_list(model: &mut Model, list: Option<KernelList>) {
    let Some(list) = list else { return };
    model.exported_bytes = Some(list.exported);
    for (inode, size, exporter, name) in list.rows {
        let b = model.buffers.entry(inode).or_insert_with(|| Buffer {
            inode,
            size,
            ..Buffer::default()
        });
        if b.size_from_maps {
            b.size = size;
            b.size_from_maps = false;
        }
        if b.exporter.is_none() {
            b.exporter = exporter;
        }
        if b.name.is_none() {
            b.name = name;
        }
    }
}

/// inode, size, exporter, name.
type KernelRow = (u64, u64, Option<String>, Option<String>);

fn read_sysfs(dir: &Path) -> Option<Vec<KernelRow>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut rows = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let Some(inode) =
            e.file_name().to_str().and_then(|n| procfs::sysfs::parse_inode_dir(n.as_bytes()))
        else {
            continue;
        };
        let Some(size) =
            std::fs::read(e.path().join("size")).ok().and_then(|b| procfs::sysfs::parse_size(&b))
        else {
            continue;
        };
        let exporter = std::fs::read(e.path().join("exporter_name"))
            .ok()
            .and_then(|b| procfs::sysfs::parse_exporter(&b));
        rows.push((inode, size, exporter, None));
    }
    Some(rows)
}

/// The purpose name in a `/dmabuf:<name>` link; `None` when unnamed or an anonymous inode.
fn link_name(link: &[u8]) -> Option<String> {
    match procfs::fd::classify_link(link)? {
        Link::DmaBuf { name } if !name.is_empty() => Some(procfs::lossy(name)),
        _ => None,
    }
}
