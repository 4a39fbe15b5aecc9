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
//! Every fd table and address space is visited once and charged to its process (the
//! thread-group id, a numeric entry of `/proc`). Threads normally share their leader's fd table,
//! but one that called `unshare(CLONE_FILES)` has its own, visible only under
//! `/proc/<pid>/task/<tid>/fd`; and once the leader has exited (`pthread_exit` from `main`), the
//! process's `fd/` and `maps` are empty while its other threads still hold fds and mappings. So
//! for a process with more than one thread (the link count of `task/` is 2 plus the threads: one
//! `stat`, no listing, for the single-threaded majority) each thread's table is compared with the
//! tables already read (`kcmp(KCMP_FILES)`, one syscall per thread when they are all shared) and
//! read only if it is new, and the address space (always shared by a thread group) is read from
//! the first thread that still has one. A process that vanishes or is unreadable part-way is
//! dropped whole and counted, never fatal: a half-read process would skew Pss for others.
//!
//! A dma-buf is recognised by its file system, never by its name alone: an fd link or a maps line
//! that reads `/dmabuf:` may be any process's own file of that name (in a mount namespace it
//! made, say). Every dma-buf since Linux 5.3 lives on one pseudo file system, so the scan learns
//! that file system's device from the first fd (or `map_files/` entry, which needs
//! `CAP_SYS_ADMIN`) whose `fstatfs` says `DMA_BUF_MAGIC`, and from then on compares an fd's
//! `st_dev` (the `stat` it needs anyway) or a maps line's device column with it: no extra
//! syscall per buffer. A maps line met before the device is known and with no `map_files/` to
//! ask is decided when the walk is over; if nothing in the walk told the device, it is taken on
//! its name (documented in docs/dump.md). Those `fstatfs` looks go through an `O_PATH` open,
//! a real fd of the scanner for as long as it lasts, so the scanner's own process is read last,
//! after every worker is done: read alongside, its table would show another worker's look as a
//! buffer the scanner holds.
//!
//! The kernel's buffer list is read before and after the walk, so the snapshot is consistent: a
//! buffer is kernel-only only if it was listed both times and no process was seen holding it
//! (buffers created or freed during the walk are never kernel-only), and the exported total
//! covers every buffer listed or seen, so it is never below userspace plus kernel-only bytes.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::sys::{self, Errno, FileStat, RawDir};

use crate::account::{Buffer, Model, Name, Process};
use crate::coverage::{source, SourceState, SourceUse, Unreadable};
use crate::idmap::{IdMap, IdSet};
use crate::kernel_buffers::{KernelBuffer, KernelBuffers, Source};
use crate::procfs::{self, fd::Link, maps::DmaBufMap};
use crate::{Error, Result};

/// Where bpfloader pins AOSP's dma-buf iterator (system/bpfprogs/dmabufIter.c), below `/`.
pub const BPF_ITER_PATH: &str = "sys/fs/bpf/dmabuf/prog_dmabufIter_iter_dmabuf";

/// Where to look and how hard to work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// Root of the proc filesystem (`/proc`).
    pub proc_root: PathBuf,
    /// dmabufd's pinned `iter/dmabuf` ([`crate::bpf::pin`]): exact and cheapest, first.
    pub pinned_list: Option<PathBuf>,
    /// debugfs `dma_buf/bufinfo`, read when present and readable (needs root and debugfs).
    pub debugfs_bufinfo: Option<PathBuf>,
    /// AOSP's pinned dma-buf BPF iterator, used when bufinfo is not readable.
    pub bpf_iter: Option<PathBuf>,
    /// `/sys/kernel/dmabuf/buffers`, used when neither bufinfo nor the iterator is readable.
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
    /// Options for a system image rooted at `root`: `root/proc`, `root/sys/kernel/debug/...`,
    /// `root/sys/fs/bpf/dmabuf/...` and `root/sys/kernel/dmabuf/buffers`. `/` is the running
    /// system; fixtures use a directory.
    pub fn under_root(root: &Path) -> Self {
        Self {
            proc_root: root.join("proc"),
            pinned_list: Some(crate::bpf::pin_dir_under(root).join(crate::bpf::LIST.pin)),
            debugfs_bufinfo: Some(root.join("sys/kernel/debug/dma_buf/bufinfo")),
            bpf_iter: Some(root.join(BPF_ITER_PATH)),
            sysfs_buffers: Some(root.join("sys/kernel/dmabuf/buffers")),
            threads: 0,
        }
    }

    /// The kernel's buffer lists to try, best first: the pinned list and bufinfo have exact
    /// names (the first without debugfs' locking and text), AOSP's iterator names with newlines
    /// turned into spaces, sysfs none.
    pub fn kernel_sources(&self) -> Vec<Source> {
        let candidates = [
            // Tried only where `bpf pin` put it: elsewhere (every device) it is not a source
            // the system lacks, and naming it absent in each report would be noise.
            self.pinned_list.clone().filter(|p| p.exists()).map(Source::Pinned),
            self.debugfs_bufinfo.clone().map(Source::Bufinfo),
            self.bpf_iter.clone().map(Source::BpfIter),
            self.sysfs_buffers.clone().map(Source::Sysfs),
        ];
        candidates.into_iter().flatten().collect()
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
    around_kernel_lists(opts, |before| walk(opts, before))
}

/// Runs `walk` (the /proc walk, or the BPF one) between two reads of the kernel's buffer list
/// and completes its model from them. `walk` gets the first read, and where it came from.
pub(crate) fn around_kernel_lists(
    opts: &ScanOptions,
    walk: impl FnOnce(Option<(&Source, &KernelBuffers)>) -> Result<Model>,
) -> Result<Model> {
    // Before the walk, so that a buffer created after it cannot pass for kernel-only.
    let mut sources = Vec::new();
    let before = Source::first_readable(opts.kernel_sources(), &mut sources);
    let mut model = walk(before.as_ref().map(|(source, list)| (source, list)))?;
    log::debug!("walk done: {} buffers, {} processes", model.buffers.len(), model.processes.len());
    // Coverage names the walk's own source first, then the kernel's lists, then the rest.
    let own = model.coverage.sources.len().min(1);
    model.coverage.sources.splice(own..own, sources);
    if let Some((source, before)) = before {
        // The second read decides which unseen buffers are kernel-only, and completes buffers
        // created since the first (a walk that took descriptions from it knows only their
        // size). When the walk saw exactly the listed buffers, the first read is the whole
        // answer.
        let seen = before.buffers.iter().filter(|b| model.buffers.contains_key(&b.inode)).count();
        let reread = seen < before.buffers.len() || seen < model.buffers.len();
        let after = reread.then(|| {
            source.read().unwrap_or_else(|e| {
                // Without a second look nothing can be confirmed kernel-only.
                log::debug!("{source} unreadable after the walk: {e}");
                KernelBuffers::default()
            })
        });
        apply_kernel_lists(&mut model, &before, after.as_ref());
        log::debug!("kernel lists applied (read again: {reread})");
    }
    Ok(model)
}

/// The /proc walk: every process, by `threads` workers.
fn walk(opts: &ScanOptions, before: Option<(&Source, &KernelBuffers)>) -> Result<Model> {
    let pids = list_pids(&opts.proc_root)?;
    // Until the dma-buf device is known, a worker looks at a dma-buf through an `O_PATH` open,
    // which is this process's fd while it lasts: a worker reading this process's table
    // meanwhile would count it as a buffer the scanner holds. So this process is read last,
    // alone, once every other worker is done.
    let own = i32::try_from(std::process::id()).ok().filter(|own| pids.binary_search(own).is_ok());
    let counters = procfs_counters(&opts.proc_root);
    let counters_used = counters.state == SourceState::Used;
    let root = open_proc_root(opts)?;
    let next = AtomicUsize::new(0);
    // Buffers the kernel already named an exporter for need no fdinfo.
    let known: IdSet<u64> = before
        .iter()
        .flat_map(|(_, list)| &list.buffers)
        .filter(|b| b.exporter.is_some())
        .map(|b| b.inode)
        .collect();
    let claimed = Mutex::new(known);
    let dmabuf_dev = OnceLock::new();
    let workers = opts.worker_count(pids.len());
    let mut done: Vec<Worker<'_>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut w = Worker::new(root.as_fd(), &claimed, &dmabuf_dev, counters_used);
                    while let Some(&pid) = pids.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if Some(pid) != own {
                            w.process(pid);
                        }
                    }
                    w
                })
            })
            .collect();
        // A worker only panics on a bug; losing its share silently would corrupt totals.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    if let (Some(pid), Some(w)) = (own, done.first_mut()) {
        w.process(pid);
    }
    let mut model = merge(done.into_iter().map(|w| w.out).collect(), dmabuf_dev.get().copied());
    let uid = sys::effective_uid();
    model.coverage.sources = vec![procfs_source(&opts.proc_root, &pids, uid), counters];
    model.coverage.scanner_uid = Some(uid);
    Ok(model)
}

pub(crate) fn open_proc_root(opts: &ScanOptions) -> Result<OwnedFd> {
    sys::open_dir(&opts.proc_root)
        .map_err(|e| Error::io(format!("opening {}", opts.proc_root.display()), e))
}

/// Process `pid`, whose /proc directory is `dir`, as its `status` tells (`buf` is scratch).
pub(crate) fn read_status(dir: BorrowedFd<'_>, pid: i32, buf: &mut Vec<u8>) -> io::Result<Process> {
    read_file(dir, c"status", buf, Records::One)?;
    let status = procfs::status::parse(buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed status"))?;
    Ok(Process { pid, uid: status.uid, comm: status.comm })
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

/// Threads of the process whose `/proc` directory is `dir`: procfs gives `task/` a link count
/// of 2 plus the threads, so one `stat` tells single-threaded processes (most) from the rest
/// without listing anything. 1 when `task/` cannot be read (then only the leader is visited).
fn thread_count(dir: BorrowedFd<'_>) -> u64 {
    sys::link_count_at(dir, c"task").map_or(1, |n| n.saturating_sub(2))
}

/// How `/proc` served a scan as `uid` that listed `pids`. Init is pid 1 in every pid namespace:
/// if a live /proc (its `self` names this process) lists no pid 1, it hides other uids'
/// processes (hidepid without the readproc group), and they are neither read nor counted.
fn procfs_source(proc_root: &Path, pids: &[i32], uid: u32) -> SourceUse {
    let mut detail = format!("{} read as uid {uid}", proc_root.display());
    let live = std::fs::read_link(proc_root.join("self"))
        .is_ok_and(|own| own.as_os_str() == std::process::id().to_string().as_str());
    if !live || pids.first() == Some(&1) {
        return SourceUse::new(source::PROCFS, SourceState::Used, detail);
    }
    detail.push_str("; other uids' processes are hidden from it (hidepid) and not counted");
    SourceUse::new(source::PROCFS, SourceState::Denied, detail)
}

/// Whether this kernel has Android's per-process dma-buf counters, from the scanner's own
/// `dmabuf_rss` (always readable to itself where the kernel has it).
fn procfs_counters(proc_root: &Path) -> SourceUse {
    let own = proc_root.join("self").join(procfs::dmabuf_rss::FILES[0].to_str().unwrap_or(""));
    match std::fs::metadata(&own) {
        Ok(_) => SourceUse::new(
            source::DMABUF_RSS,
            SourceState::Used,
            format!("{} (read for processes whose fds are closed)", own.display()),
        ),
        Err(e) => SourceUse::new(
            source::DMABUF_RSS,
            SourceState::of_error(&e),
            format!("{}: {e} (not an Android common kernel)", own.display()),
        ),
    }
}

/// What one worker saw.
#[derive(Default)]
struct Partial {
    buffers: IdMap<u64, Buffer>,
    processes: Vec<Process>,
    unreadable: BTreeMap<u32, Unreadable>,
    vanished: u32,
    /// Mappings (and their pids) read before the dma-buf device was known, decided in [`merge`].
    undecided: Vec<(i32, Undecided)>,
}

/// A mapping named like a dma-buf whose device could not be checked yet.
struct Undecided {
    dev: u64,
    inode: u64,
    extent: u64,
    name: Option<Name>,
}

/// What an fd's file is, by its file system.
enum FdFile {
    DmaBuf(FileStat),
    /// Another file system's file that only has a dma-buf's name.
    Other,
    /// Not stat-able (closed meanwhile, or a captured system): fdinfo decides.
    Unknown,
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
    claimed: &'a Mutex<IdSet<u64>>,
    /// `st_dev` of the dma-buf file system, once some worker has seen a dma-buf.
    dmabuf_dev: &'a OnceLock<u64>,
    dirents: Vec<MaybeUninit<u8>>,
    link: [u8; 256],
    file: Vec<u8>,
    path: Vec<u8>,
    fd_hits: Vec<u64>,
    map_hits: Vec<u64>,
    /// Tids whose fd tables this process has been read through, leader first.
    tables: Vec<i32>,
    tids: Vec<i32>,
    /// This process's [`Undecided`] mappings until it has been read whole.
    undecided: Vec<Undecided>,
    /// Whether the kernel has `/proc/<pid>/dmabuf_rss` and friends.
    counters: bool,
    out: Partial,
}

impl<'a> Worker<'a> {
    fn new(
        root: BorrowedFd<'a>,
        claimed: &'a Mutex<IdSet<u64>>,
        dmabuf_dev: &'a OnceLock<u64>,
        counters: bool,
    ) -> Self {
        Self {
            root,
            claimed,
            dmabuf_dev,
            dirents: vec![MaybeUninit::uninit(); 32 * 1024],
            link: [0; 256],
            file: Vec::with_capacity(64 * 1024),
            path: Vec::with_capacity(64),
            fd_hits: Vec::new(),
            map_hits: Vec::new(),
            tables: Vec::new(),
            tids: Vec::new(),
            undecided: Vec::new(),
            counters,
            out: Partial::default(),
        }
    }

    fn process(&mut self, pid: i32) {
        self.fd_hits.clear();
        self.map_hits.clear();
        self.undecided.clear();
        match self.read_process(pid) {
            Ok(None) => {}
            Ok(Some(process)) => {
                for &inode in &self.fd_hits {
                    if let Some(b) = self.out.buffers.get_mut(&inode) {
                        b.fd_refs.add(pid, 1);
                    }
                }
                for &inode in &self.map_hits {
                    if let Some(b) = self.out.buffers.get_mut(&inode) {
                        b.map_refs.add(pid, 1);
                    }
                }
                self.out.undecided.extend(self.undecided.drain(..).map(|u| (pid, u)));
                self.out.processes.push(process);
            }
            Err(Skip::Vanished) => {
                log::debug!("pid {pid} vanished during the scan");
                self.out.vanished += 1;
            }
            Err(Skip::Unreadable(e)) => {
                log::debug!("pid {pid} unreadable: {e}");
                self.unreadable(pid);
            }
        }
    }

    /// Counts a process whose fds or maps are closed to the scan under its uid (`status` is
    /// world-readable), with the kernel's counters of its dma-bufs where the kernel has them;
    /// one that is gone by now vanished.
    fn unreadable(&mut self, pid: i32) {
        self.set_path(format_args!("{pid}"));
        let status = sys::open_dir_at(self.root, self.cpath()).ok().and_then(|dir| {
            read_file(dir.as_fd(), c"status", &mut self.file, Records::One).ok()?;
            let status = procfs::status::parse(&self.file)?;
            Some((dir, status))
        });
        let Some((dir, status)) = status else {
            self.out.vanished += 1;
            return;
        };
        let mut counters = [None; 3];
        if self.counters {
            for (value, file) in
                counters.iter_mut().zip([c"dmabuf_rss", c"dmabuf_rss_hwm", c"dmabuf_pss"])
            {
                *value = read_file(dir.as_fd(), file, &mut self.file, Records::One)
                    .ok()
                    .and_then(|()| procfs::dmabuf_rss::parse(&self.file));
            }
        }
        let uid = status.uid;
        self.out
            .unreadable
            .entry(uid)
            .or_insert_with(|| Unreadable { uid, ..Unreadable::default() })
            .add(counters);
    }

    /// Reads one process; `Ok(None)` when it references no dma-buf.
    fn read_process(&mut self, pid: i32) -> std::result::Result<Option<Process>, Skip> {
        self.set_path(format_args!("{pid}"));
        let dir = sys::open_dir_at(self.root, self.cpath())?;
        self.read_fds(dir.as_fd())?;
        let mapped = self.read_maps(dir.as_fd())?;
        if thread_count(dir.as_fd()) > 1 {
            self.read_threads(pid, dir.as_fd(), mapped)?;
        }
        if self.fd_hits.is_empty() && self.map_hits.is_empty() && self.undecided.is_empty() {
            return Ok(None);
        }
        Ok(Some(read_status(dir.as_fd(), pid, &mut self.file)?))
    }

    /// Reads the fd tables of threads that share neither their leader's nor another read
    /// thread's, and, if the leader has no address space left (`mapped` is false: it exited),
    /// the maps of the first thread that has one. A thread that exits meanwhile is passed over.
    fn read_threads(
        &mut self,
        pid: i32,
        dir: BorrowedFd<'_>,
        mut mapped: bool,
    ) -> std::result::Result<(), Skip> {
        let task = sys::open_dir_at(dir, c"task")?;
        let mut tids = std::mem::take(&mut self.tids);
        self.list_tids(task.as_fd(), &mut tids)?;
        self.tables.clear();
        self.tables.push(pid);
        for &tid in tids.iter().filter(|&&tid| tid != pid) {
            // An error (no kcmp in this kernel, the thread gone) counts as shared: the old
            // view, never a table read twice.
            let new_table =
                !self.tables.iter().any(|&seen| sys::same_fd_table(seen, tid).unwrap_or(true));
            if !new_table && mapped {
                continue;
            }
            self.set_path(format_args!("{tid}"));
            let Ok(thread) = sys::open_dir_at(task.as_fd(), self.cpath()) else {
                continue;
            };
            if new_table && self.read_fds(thread.as_fd()).is_ok() {
                self.tables.push(tid);
            }
            if !mapped {
                mapped = self.read_maps(thread.as_fd()).unwrap_or(false);
            }
        }
        self.tids = tids;
        Ok(())
    }

    /// Thread ids in a `task/` directory.
    fn list_tids(
        &mut self,
        task: BorrowedFd<'_>,
        tids: &mut Vec<i32>,
    ) -> std::result::Result<(), Skip> {
        tids.clear();
        let mut entries = RawDir::new(task, &mut self.dirents);
        while let Some(entry) = entries.next() {
            let entry = entry?;
            if let Some(tid) = std::str::from_utf8(entry.file_name().to_bytes())
                .ok()
                .and_then(|n| n.parse::<i32>().ok())
            {
                tids.push(tid);
            }
        }
        Ok(())
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
        let stat = match anon {
            true => None,
            false => match self.identify_fd(fd_dir, fd_name) {
                FdFile::DmaBuf(st) => Some(st),
                FdFile::Other => return None,
                FdFile::Unknown => None,
            },
        };
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
            entry.exporter = info.exporter.map(Into::into);
        }
        if entry.name.is_none() {
            entry.name = link_name(&self.link[..link_len])
                .or_else(|| info.name.as_deref().and_then(model_name));
        }
        Some(inode)
    }

    /// Tells a dma-buf fd from a file that only has a dma-buf's link text: by `st_dev` once the
    /// dma-buf device is known, else by `fstatfs` (which then teaches the device).
    fn identify_fd(&self, fd_dir: BorrowedFd<'_>, fd_name: &CStr) -> FdFile {
        match self.dmabuf_dev.get() {
            Some(&dev) => match sys::stat_at(fd_dir, fd_name) {
                Ok(st) if st.dev == dev => FdFile::DmaBuf(st),
                Ok(_) => FdFile::Other,
                Err(_) => FdFile::Unknown,
            },
            None => match sys::dma_buf_stat_at(fd_dir, fd_name) {
                Ok(Some(st)) => {
                    let _ = self.dmabuf_dev.set(st.dev);
                    FdFile::DmaBuf(st)
                }
                Ok(None) => FdFile::Other,
                Err(_) => FdFile::Unknown,
            },
        }
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

    /// Reads the mappings; `Ok(false)` when there are none, i.e. no address space (a live one
    /// always maps at least a stack).
    fn read_maps(&mut self, dir: BorrowedFd<'_>) -> std::result::Result<bool, Skip> {
        read_file(dir, c"maps", &mut self.file, Records::Many)?;
        let (buffers, hits) = (&mut self.out.buffers, &mut self.map_hits);
        let (undecided, dmabuf_dev) = (&mut self.undecided, self.dmabuf_dev);
        procfs::maps::for_each_dmabuf(&self.file, |m| {
            let extent = m.offset.saturating_add(m.len());
            let name = || model_name(&procfs::maps::unescape_name(m.name));
            match map_is_dma_buf(dmabuf_dev, dir, &m) {
                Some(true) => {
                    let b =
                        buffers.entry(m.inode).or_insert_with(|| mapped(m.inode, extent, name()));
                    record_mapping(b, extent);
                    hits.push(m.inode);
                }
                Some(false) => {}
                None => {
                    undecided.push(Undecided { dev: m.dev, inode: m.inode, extent, name: name() })
                }
            }
        });
        Ok(!self.file.is_empty())
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

/// Whether a maps line is a dma-buf's by its device: the known dma-buf device, else the file
/// system of the mapped file (`map_files/`, which teaches the device); `None` when neither can
/// be had yet.
fn map_is_dma_buf(
    dmabuf_dev: &OnceLock<u64>,
    dir: BorrowedFd<'_>,
    m: &DmaBufMap<'_>,
) -> Option<bool> {
    if let Some(&dev) = dmabuf_dev.get() {
        return Some(m.dev == dev);
    }
    let path = std::ffi::CString::new(format!("map_files/{:x}-{:x}", m.start, m.end)).ok()?;
    match sys::dma_buf_stat_at(dir, &path) {
        Ok(Some(st)) => Some(m.dev == *dmabuf_dev.get_or_init(|| st.dev) && st.inode == m.inode),
        Ok(None) => Some(false),
        Err(_) => None,
    }
}

/// The dma-buf fds numbered `from` and up in the fd table of thread `tid` of process `tgid`,
/// each as its file's stat: the rest of a table the BPF walk cut ([`crate::bpf`]). Each is told
/// a dma-buf by its file system (one `O_PATH` open per fd: the cut tables are the few that
/// hold over a thousand buffers). A thread gone meanwhile has none left.
pub(crate) fn dma_buf_fds_from(
    proc_root: &Path,
    tgid: i32,
    tid: i32,
    from: u32,
) -> io::Result<Vec<FileStat>> {
    let path = proc_root.join(format!("{tgid}/task/{tid}/fd"));
    let dir = match sys::open_dir(&path).map_err(Skip::from) {
        Ok(dir) => dir,
        Err(Skip::Vanished) => return Ok(Vec::new()),
        Err(Skip::Unreadable(e)) => return Err(e),
    };
    let mut space = vec![MaybeUninit::uninit(); 32 * 1024];
    let mut entries = RawDir::new(&dir, &mut space);
    let mut found = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name();
        let fd = std::str::from_utf8(name.to_bytes()).ok().and_then(|n| n.parse::<u32>().ok());
        if fd.is_some_and(|fd| fd >= from) {
            // Closed since the listing: not held.
            if let Ok(Some(st)) = sys::dma_buf_stat_at(dir.as_fd(), name) {
                found.push(st);
            }
        }
    }
    Ok(found)
}

/// A buffer first seen in a mapping reaching `extent` bytes into it: until a source with the
/// true size says otherwise, a map-only buffer is as large as its furthest mapping.
pub(crate) fn mapped(inode: u64, extent: u64, name: Option<Name>) -> Buffer {
    Buffer { inode, size: extent, size_from_maps: true, name, ..Buffer::default() }
}

/// A buffer as the kernel's list describes it: size, exporter and exact name.
pub(crate) fn listed(k: &KernelBuffer) -> Buffer {
    Buffer {
        inode: k.inode,
        size: k.size,
        exporter: k.exporter.clone(),
        name: k.name.clone(),
        ..Buffer::default()
    }
}

/// Records one more mapping reaching `extent` bytes into `b` (see [`mapped`]).
pub(crate) fn record_mapping(b: &mut Buffer, extent: u64) -> &mut Buffer {
    if b.size_from_maps {
        b.size = b.size.max(extent);
    }
    b
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
/// metadata is taken from whichever worker read its fdinfo. Undecided mappings count if their
/// device is the dma-buf one, or if the walk never learned it (nothing else can tell then).
fn merge(partials: Vec<Partial>, dmabuf_dev: Option<u64>) -> Model {
    let mut model = Model::default();
    let mut undecided = Vec::new();
    for mut p in partials {
        undecided.append(&mut p.undecided);
        model.coverage.vanished += p.vanished;
        for (uid, u) in p.unreadable {
            model
                .coverage
                .unreadable
                .entry(uid)
                .or_insert_with(|| Unreadable { uid, ..Unreadable::default() })
                .merge(&u);
        }
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
                    if m.name.is_none() || (m.size_from_maps && !b.size_from_maps) {
                        // A name from an fd link or fdinfo is exact; one from maps may not be.
                        m.name = b.name.or(m.name.take());
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
    for (pid, u) in undecided.into_iter().filter(|(_, u)| dmabuf_dev.is_none_or(|d| d == u.dev)) {
        let b = model.buffers.entry(u.inode).or_insert_with(|| mapped(u.inode, u.extent, u.name));
        let b = record_mapping(b, u.extent);
        b.map_refs.add(pid, 1);
    }
    model.unreadable_processes = model.coverage.vanished
        + model.coverage.unreadable.values().map(|u| u.processes).sum::<u32>();
    // Buffers recorded for a process that was then dropped have no holders left.
    model.buffers.retain(|_, b| !b.fd_refs.is_empty() || !b.map_refs.is_empty());
    model
}

/// Adds what only the kernel knows, from its list read before (`before`) and after (`after`)
/// the walk: true sizes, exporters and names of buffers seen only in maps, exporters the walk
/// did not read, and buffers no process holds. Those are kernel-only only if listed both times:
/// one listed once was created or freed during the walk, and its holder may have been missed.
/// The exported total is every buffer either list or the walk saw, so it is never less than
/// userspace plus kernel-only bytes, whatever changed during the walk.
fn apply_kernel_lists(model: &mut Model, before: &KernelBuffers, after: Option<&KernelBuffers>) {
    // Without a second read the one list is both reads: every buffer in it was listed twice.
    let reads = after.map(|after| {
        let inodes = |list: &KernelBuffers| list.buffers.iter().map(|b| b.inode).collect();
        let (in_before, in_after): (IdSet<u64>, IdSet<u64>) = (inodes(before), inodes(after));
        (in_before, in_after)
    });
    let listed_twice = |inode| {
        reads
            .as_ref()
            .is_none_or(|(before, after)| before.contains(&inode) && after.contains(&inode))
    };
    let only_before = before
        .buffers
        .iter()
        .filter(|k| reads.as_ref().is_some_and(|(_, after)| !after.contains(&k.inode)));
    let after = after.unwrap_or(before);
    let mut transient: u64 = 0;
    for k in after.buffers.iter().chain(only_before) {
        if let Some(b) = model.buffers.get_mut(&k.inode) {
            if b.size_from_maps {
                b.size = k.size;
                b.size_from_maps = false;
                // Maps escape newlines and not backslashes: the kernel's list has the exact name.
                if let Some(name) = &k.name {
                    b.name = Some(name.clone());
                }
            }
            if b.exporter.is_none() {
                b.exporter = k.exporter.clone();
            }
            if b.name.is_none() {
                b.name = k.name.clone();
            }
        } else if listed_twice(k.inode) {
            model.buffers.insert(k.inode, listed(k));
        } else {
            transient = transient.saturating_add(k.size);
        }
    }
    let unidentified =
        |list: &KernelBuffers| crate::account::saturating_sum(list.unidentified.iter().copied());
    let seen = crate::account::saturating_sum(model.buffers.values().map(|b| b.size));
    model.exported_bytes = Some(
        seen.saturating_add(transient)
            .saturating_add(unidentified(before).max(unidentified(after))),
    );
}

/// The one conversion of a name from the exact bytes the kernel printed into the model's type.
pub(crate) fn model_name(raw: &[u8]) -> Option<Name> {
    (!raw.is_empty()).then(|| Name::from(raw))
}

/// The purpose name in a `/dmabuf:<name>` link (printed raw, so exact); `None` when unnamed or
/// an anonymous inode.
fn link_name(link: &[u8]) -> Option<Name> {
    match procfs::fd::classify_link(link)? {
        Link::DmaBuf { name } => model_name(name),
        Link::AnonDmaBuf => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_buffers::KernelBuffer;

    fn listed(buffers: &[(u64, u64)]) -> KernelBuffers {
        KernelBuffers {
            buffers: buffers
                .iter()
                .map(|&(inode, size)| KernelBuffer {
                    inode,
                    size,
                    exporter: Some("system".into()),
                    name: Some(Name::from(&b"k\n"[..])),
                })
                .collect(),
            unidentified: Vec::new(),
        }
    }

    /// Freed during the walk (1), created during it (4), held (3, seen in maps only): only the
    /// buffer listed both times and never seen (2) is kernel-only, and the total covers all.
    #[test]
    fn kernel_only_needs_both_lists() {
        let mut model = Model::default();
        let held = Buffer {
            inode: 3,
            size: 4096,
            size_from_maps: true,
            name: Some("k\\012".into()),
            map_refs: [(7, 1)].into(),
            ..Buffer::default()
        };
        model.buffers.insert(3, held);
        let before = listed(&[(1, 4096), (2, 8192), (3, 16384)]);
        let after = listed(&[(2, 8192), (3, 16384), (4, 32768)]);
        apply_kernel_lists(&mut model, &before, Some(&after));
        let inodes: Vec<u64> = model.buffers.keys().copied().collect();
        assert_eq!(inodes, [2, 3]);
        assert!(model.buffers[&2].holders().is_empty());
        let b = &model.buffers[&3];
        assert_eq!(
            (b.size, b.size_from_maps, b.name.as_ref().and_then(Name::to_str)),
            (16384, false, Some("k\n"))
        );
        assert_eq!(model.exported_bytes, Some(4096 + 8192 + 16384 + 32768));
    }

    fn bufinfo(rows: &[(u64, u64, &str)]) -> String {
        let mut text =
            String::from("\nDma-buf Objects:\nsize\tflags\tmode\tcount\texp_name\tino\tname\n");
        for (inode, size, name) in rows {
            text +=
                &format!("{size:08}\t00000002\t02080007\t00000001\tsystem\t{inode:08}\t{name}\n");
            text += "\tAttached Devices:\nTotal 0 devices attached\n\n";
        }
        let total: u64 = rows.iter().map(|r| r.1).sum();
        text + &format!("\nTotal {} objects, {total} bytes\n", rows.len())
    }

    /// A buffer created after the first read and met by the walk without a description (the
    /// BPF passes that only reference buffers know its size alone) is completed by the second
    /// read; a walk that met exactly the listed buffers needs no second read.
    #[test]
    fn a_buffer_created_during_the_walk_is_completed_by_the_second_read() {
        let dir = std::env::temp_dir().join(format!("dmabufd-reread-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bufinfo");
        let opts = ScanOptions {
            pinned_list: None,
            debugfs_bufinfo: Some(path.clone()),
            bpf_iter: None,
            sysfs_buffers: None,
            ..ScanOptions::default()
        };
        let held =
            |inode| Buffer { inode, size: 4096, fd_refs: [(7, 1)].into(), ..Buffer::default() };
        for created in [false, true] {
            std::fs::write(&path, bufinfo(&[(1, 4096, "first")])).expect("write");
            let model = around_kernel_lists(&opts, |before| {
                let listed: Vec<u64> =
                    before.iter().flat_map(|(_, l)| &l.buffers).map(|b| b.inode).collect();
                assert_eq!(listed, [1]);
                let mut model = Model::default();
                model.buffers.insert(1, held(1));
                if created {
                    model.buffers.insert(5, held(5));
                }
                // Whether a second read happens shows in what it finds: buffer 5's name.
                std::fs::write(&path, bufinfo(&[(1, 4096, "first"), (5, 4096, "later")]))
                    .expect("write");
                Ok(model)
            })
            .expect("scan");
            let name = |inode| {
                model.buffers.get(&inode).and_then(|b| b.name.as_ref()?.to_str().map(String::from))
            };
            let exporter = |inode: u64| model.buffers.get(&inode).and_then(|b| b.exporter.clone());
            assert_eq!(name(1).as_deref(), Some("first"));
            assert_eq!(exporter(1).as_deref(), Some("system"));
            if created {
                assert_eq!(
                    (name(5).as_deref(), exporter(5).as_deref()),
                    (Some("later"), Some("system"))
                );
            } else {
                assert!(!model.buffers.contains_key(&5), "read once: 5 was never listed before");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
