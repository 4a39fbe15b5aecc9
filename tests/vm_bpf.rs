//! The BPF scan against the /proc scan on the real kernel (tests/vm/run, as root).
//!
//! * Same answers: with live workloads holding buffers every way the model tells apart (an fd
//!   shared with a forked child, a dup'd fd, a map-only buffer, partial mappings, a thread with
//!   its own fd table, a process whose leader exited, a buffer name and a command name with a
//!   newline and a backslash), both sources give the same model, exactly, whether the iterators
//!   are loaded for the scan or pinned, and pinned ones pass after pass; and the workloads'
//!   buffers have the holders the test gave them.
//! * Source choice: `auto` is BPF once `dmabufctl bpf pin` pinned the iterators, which needs
//!   both task iterators (5.12+; on 5.10 `pin` fails with one line and `auto` stays on /proc),
//!   and /proc again after `unpin`; `dmabufctl dump` says which in JSON and `-b`.
//! * `iter/dmabuf` (6.16+): lists exactly what debugfs bufinfo lists, loaded or pinned, and once
//!   pinned it is the scan's kernel list.
//!
//! Children are this binary re-executed with `DMABUFD_BPF_ROLE` set (see [`child`]).

mod data_bins;
mod vm_support;

use std::ffi::CString;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use dmabufd::account::{Model, PidCounts};
use dmabufd::bpf::{self, Source, SourceChoice};
use dmabufd::coverage::SourceState;
use dmabufd::scan::{scan, ScanOptions};
use dmabufd::sys::{self, MapAccess, SharedMap};
use vm_support::children::{self, alloc, inode, ready_then_wait, spawn, stop, wait_for_eof};

const PAGE: u64 = 4096;
const ROLE: &str = "DMABUFD_BPF_ROLE";
const HOSTILE: &[u8] = b"bpf\nname\\012 x";
/// Dma-buf fds in one table, past the 1,300 one run of `dmabuf_tables` writes.
const MANY: usize = 1400;
/// A command name (15 bytes, the kernel's limit) as hostile as a name can be in `status`.
const HOSTILE_COMM: &[u8] = b"w\nork\\load\\n x";

/// The running kernel has `iter/task_vma` (5.12+).
fn has_task_vma() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (5, 12)
}

/// Both sources on the same system; each retried while the system changes under it (another
/// process of the VM starting or exiting between the two scans), up to a few times.
fn both_models() -> (Model, Model) {
    let opts = ScanOptions::default();
    for _ in 0..3 {
        let procfs = scan(&opts).expect("/proc scan");
        let bpf = bpf::scan_bpf(&opts).expect("BPF scan");
        let again = scan(&opts).expect("/proc scan");
        if procfs == again {
            return (procfs, bpf);
        }
    }
    panic!("the system never held still for two /proc scans");
}

/// The iterators pinned where `auto` finds them, until dropped (also when a test panics, so
/// that no later test of the suite scans through them unawares).
struct Pin;

impl Pin {
    /// Pins, and says whether `iter/dmabuf` was pinned too (6.16+).
    fn new() -> (Self, bool) {
        let pinned = bpf::pin(&pin_dir()).expect("dmabufctl bpf pin");
        assert!(pinned.programs.contains(&bpf::FDS) && pinned.programs.contains(&bpf::VMAS));
        (Pin, pinned.programs.contains(&bpf::LIST))
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        bpf::unpin(&pin_dir()).expect("unpin");
    }
}

fn pin_dir() -> std::path::PathBuf {
    bpf::pin_dir_under(std::path::Path::new("/"))
}

/// The BPF model with the parts that name their own source left out.
fn without_own_sources(mut model: Model, own: &[&str]) -> Model {
    model.coverage.sources.retain(|s| !own.contains(&s.source.as_str()));
    model
}

fn refs(pairs: &[(i32, u32)]) -> PidCounts {
    pairs.iter().copied().collect()
}

fn same_model_from_both_sources() {
    if !has_task_vma() {
        let e = bpf::scan_bpf(&ScanOptions::default()).expect_err("no iter/task_vma before 5.12");
        eprintln!("BPF scan refused as expected: {e}");
        return;
    }
    let (workload, w) = spawn(ROLE, "workload");
    let (orphan, o) = spawn(ROLE, "leader_exits");
    let pid = workload.id() as i32;
    let orphan_pid = orphan.id() as i32;
    children::wait_leader_exited(orphan_pid);
    let forked: i32 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("children")
        .trim()
        .parse()
        .expect("one forked child");
    let (procfs, loaded) = both_models();
    // Coverage names each walk's own source (and /proc's dmabuf_rss probe); all else is equal.
    assert_eq!(loaded.coverage.sources[0].source, "bpf");
    assert!(loaded.coverage.sources[0].detail.ends_with("loaded for this scan"));
    assert_eq!(procfs.coverage.sources[0].source, "procfs");
    let procfs = without_own_sources(procfs, &["procfs", "dmabuf_rss"]);
    assert_eq!(procfs, without_own_sources(loaded, &["bpf"]), "loaded BPF differs from /proc");
    {
        let (_pin, with_list) = Pin::new();
        // Two passes of the same pinned links: the second describes every buffer and process
        // again (each read is its own session), so it is the whole model too.
        let lists = ["dmabufd-iter", "debugfs-bufinfo"];
        for pass in 0..2 {
            let pinned = bpf::scan_bpf(&ScanOptions::default()).expect("pinned BPF scan");
            let detail = &pinned.coverage.sources[0].detail;
            assert!(detail.contains("pinned at"), "pass {pass}");
            // 6.16+: the list describes the buffers, so the passes only reference them.
            let refs_only = detail.starts_with("dmabuf_tables and dmabuf_vma_refs");
            assert_eq!(refs_only, with_list, "pass {pass}: {detail}");
            // 6.16+: the pinned iter/dmabuf is the kernel list, where /proc read debugfs.
            let expected = if with_list { "dmabufd-iter" } else { "debugfs-bufinfo" };
            let used: Vec<_> = pinned
                .coverage
                .sources
                .iter()
                .filter(|s| s.state == SourceState::Used && lists.contains(&s.source.as_str()))
                .map(|s| s.source.as_str())
                .collect();
            assert_eq!(used, [expected], "the kernel list of pass {pass}");
            let pinned = without_own_sources(pinned, &[&["bpf"], &lists[..]].concat());
            let procfs = without_own_sources(procfs.clone(), &lists);
            assert_eq!(procfs, pinned, "pinned BPF differs from /proc in pass {pass}");
        }
    }
    assert_eq!(
        procfs.processes.get(&pid).map(|p| p.comm.as_bytes()),
        Some(b"w\\nork\\\\load\\\\n x".as_slice()),
        "the command name as status escapes it"
    );

    // And the model is the one the workloads made, so equality is not two empty models.
    let b = |inode: u64| procfs.buffers.get(&inode).unwrap_or_else(|| panic!("no inode {inode}"));
    let [shared, map_only, hostile, private] = [w[0], w[1], w[2], w[3]];
    // Fd and its dup in the workload and its forked child, and again in the copy of the
    // workload's table the unsharing thread made; mapped twice (two partial ranges) by the
    // workload only.
    assert_eq!(
        (b(shared).size, b(shared).fd_refs.clone(), b(shared).map_refs.clone()),
        (4 * PAGE, refs(&[(pid, 4), (forked, 2)]), refs(&[(pid, 2)]))
    );
    // Mapped before the fork, fd closed: map-only in both.
    assert_eq!(
        (b(map_only).fd_refs.is_empty(), b(map_only).map_refs.clone()),
        (true, refs(&[(pid, 1), (forked, 1)]))
    );
    assert_eq!(b(hostile).name.as_ref().map(|n| n.as_bytes()), Some(HOSTILE));
    assert_eq!(b(hostile).fd_refs, refs(&[(pid, 2), (forked, 1)]));
    // Only the unsharing thread's table holds it.
    assert_eq!((b(private).fd_refs.clone(), b(private).size), (refs(&[(pid, 1)]), 3 * PAGE));
    let [held, mapped] = [o[0], o[1]];
    assert_eq!(b(held).fd_refs, refs(&[(orphan_pid, 1)]));
    assert_eq!(b(mapped).map_refs, refs(&[(orphan_pid, 1)]));
    assert!(procfs.processes.contains_key(&forked) && procfs.processes.contains_key(&orphan_pid));
    stop(workload);
    stop(orphan);
}

fn auto_uses_bpf_once_pinned() {
    let auto = || bpf::scan(&ScanOptions::default(), SourceChoice::Auto).expect("auto scan").1;
    assert_eq!(auto(), Source::Procfs, "nothing pinned: auto scans /proc");
    let exe = data_bins::project_bin("dmabufctl", option_env!("CARGO_BIN_EXE_dmabufctl"));
    let run = |args: &[&str]| Command::new(&exe).args(args).output().expect("dmabufctl runs");
    let stdout = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "dmabufctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let dir = pin_dir();
    if !has_task_vma() {
        let out = run(&["bpf", "pin"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!((out.status.code(), stderr.lines().count()), (Some(1), 1), "{stderr}");
        assert!(stderr.contains("task_vma"), "{stderr}");
        assert_eq!(stdout(&["bpf", "status"]), format!("nothing pinned at {}\n", dir.display()));
        assert_eq!(auto(), Source::Procfs);
        assert!(!run(&["dump", "--source", "bpf"]).status.success(), "no iterators to load");
        return;
    }
    let pinned = stdout(&["bpf", "pin"]);
    assert!(pinned.starts_with("pinned task_file, task_vma"), "{pinned}");
    assert_eq!(stdout(&["bpf", "status"]), pinned);
    assert_eq!(auto(), Source::Bpf);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&["dump", "-o", "json"])).expect("JSON");
    assert_eq!(json["snapshot"]["source"], "bpf");
    assert!(stdout(&["dump", "-b"]).ends_with("Scan source: bpf\n"));
    assert!(stdout(&["dump", "-b", "--source", "procfs"]).ends_with("Scan source: procfs\n"));
    assert_eq!(stdout(&["bpf", "unpin"]), format!("nothing pinned at {}\n", dir.display()));
    assert!(!dir.exists(), "unpin removes the directory");
    assert_eq!(auto(), Source::Procfs, "unpinned: auto scans /proc again");
    // Loaded for one scan, nothing pinned.
    assert!(stdout(&["dump", "-b", "--source", "bpf"]).ends_with("Scan source: bpf\n"));
    assert!(!dir.exists(), "--source bpf pins nothing");
}

fn iter_dmabuf_lists_what_bufinfo_lists() {
    let (workload, _) = spawn(ROLE, "workload");
    let loaded = bpf::kernel_buffers().expect("iter/dmabuf");
    let list = {
        let _pin = Pin::new();
        bpf::kernel_buffers().expect("pinned iter/dmabuf")
    };
    assert_eq!(loaded, list, "loaded and pinned iter/dmabuf differ");
    let info = vm_support::bufinfo();
    let mut from_bpf: Vec<_> = list
        .buffers
        .iter()
        .map(|b| {
            (b.inode, b.size, b.name.as_ref().map(|n| n.as_bytes().to_vec()), b.exporter.clone())
        })
        .collect();
    let mut from_debugfs: Vec<_> = info
        .rows
        .iter()
        .map(|r| {
            let name = r.name.as_ref().map(|n| n.to_vec()).filter(|n| !n.is_empty());
            (r.inode.expect("inode"), r.size, name, Some(r.exporter.as_str().into()))
        })
        .collect();
    from_bpf.sort();
    from_debugfs.sort();
    assert!(from_bpf.iter().any(|b| b.2.as_deref() == Some(HOSTILE)), "{from_bpf:?}");
    assert_eq!(from_bpf, from_debugfs);
    stop(workload);
}

// ---- children -------------------------------------------------------------------------------

fn child(role: &str) -> ! {
    match role {
        "workload" => {
            let comm = CString::new(HOSTILE_COMM).expect("no NUL");
            // SAFETY: PR_SET_NAME reads a NUL-terminated string; the kernel keeps 15 bytes.
            assert_eq!(unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) }, 0, "comm");
            let shared = alloc("bpf shared", 4 * PAGE);
            let dup = shared.try_clone().expect("dup");
            let head = SharedMap::new_range(shared.as_fd(), 0, PAGE as usize, MapAccess::ReadOnly)
                .expect("mmap head");
            let tail = SharedMap::new_range(
                dup.as_fd(),
                2 * PAGE,
                2 * PAGE as usize,
                MapAccess::ReadWrite,
            )
            .expect("mmap tail");
            let map_only = alloc("bpf map only", 2 * PAGE);
            let whole = SharedMap::new(map_only.as_fd(), 2 * PAGE as usize).expect("mmap");
            let inodes = [inode(&shared), inode(&map_only)];
            drop(map_only);
            let hostile = alloc("bpf hostile", PAGE);
            let name = CString::new(HOSTILE).expect("no NUL");
            sys::set_name(hostile.as_fd(), &name).expect("rename");
            // The forked child keeps every fd and the map-only mapping, and unmaps the partial
            // ones. SAFETY: no other thread exists, so the child's copy of the address space is
            // consistent; it only waits on stdin and exits.
            let forked = unsafe { libc::fork() };
            assert!(forked >= 0, "fork");
            if forked == 0 {
                drop((head, tail));
                wait_for_eof();
            }
            let private = children::unshared_thread_buffer("bpf private", 3 * PAGE);
            // Wait for the forked child to have dropped its partial mappings.
            let deadline = Instant::now() + Duration::from_secs(5);
            let child_maps = format!("/proc/{forked}/maps");
            while std::fs::read_to_string(&child_maps)
                .unwrap_or_default()
                .matches("/dmabuf:")
                .count()
                != 1
            {
                assert!(Instant::now() < deadline, "the forked child kept its partial maps");
                std::thread::sleep(Duration::from_millis(5));
            }
            let hostile_inode = inode(&hostile);
            let _keep = (head, tail, whole, dup, shared, hostile);
            ready_then_wait(&[inodes[0], inodes[1], hostile_inode, private]);
        }
        "leader_exits" => children::leader_exits(["bpf orphaned", "bpf orphan map"]),
        "many" => {
            let limit = rustix::process::Rlimit { current: Some(4096), maximum: Some(4096) };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).expect("nofile");
            let held: Vec<_> = (0..MANY).map(|_| alloc("bpf many", PAGE)).collect();
            ready_then_wait(&held.iter().map(inode).collect::<Vec<_>>());
        }
        other => panic!("unknown role {other}"),
    }
}

/// A table larger than one run of `dmabuf_tables` writes (1,300 dma-buf fds) is read on from
/// /proc where the run stopped: the same model as /proc, every buffer held once.
fn table_too_large_for_one_run() {
    let (holder, inodes) = spawn(ROLE, "many");
    let pid = holder.id() as i32;
    assert_eq!(inodes.len(), MANY);
    let (_pin, with_list) = Pin::new();
    assert!(with_list, "iter/dmabuf pinned");
    let (procfs, pinned) = both_models();
    let detail = &pinned.coverage.sources[0].detail;
    let ends = "; 1 fd table(s) past one run read on from /proc";
    assert!(
        detail.starts_with("dmabuf_tables and dmabuf_vma_refs") && detail.ends_with(ends),
        "{detail}"
    );
    let lists = ["dmabufd-iter", "debugfs-bufinfo"];
    let procfs = without_own_sources(procfs, &["procfs", "dmabuf_rss", lists[0], lists[1]]);
    assert_eq!(procfs, without_own_sources(pinned, &["bpf", lists[0], lists[1]]));
    for inode in inodes {
        let b = procfs.buffers.get(&inode).unwrap_or_else(|| panic!("no inode {inode}"));
        assert_eq!((b.size, b.fd_refs.clone()), (PAGE, refs(&[(pid, 1)])), "inode {inode}");
    }
    stop(holder);
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
    }
    let tests: [(&str, fn()); 4] = [
        ("same_model_from_both_sources", same_model_from_both_sources),
        ("table_too_large_for_one_run", table_too_large_for_one_run),
        ("auto_uses_bpf_once_pinned", auto_uses_bpf_once_pinned),
        ("iter_dmabuf_lists_what_bufinfo_lists", iter_dmabuf_lists_what_bufinfo_lists),
    ];
    vm_support::run_plain(&tests);
}
