//! The BPF scan against the /proc scan on the real kernel (tests/vm/run, as root).
//!
//! * Same answers: with live workloads holding buffers every way the model tells apart (an fd
//!   shared with a forked child, a dup'd fd, a map-only buffer, partial mappings, a thread with
//!   its own fd table, a process whose leader exited, a name with a newline and a backslash),
//!   both sources give the same model, exactly; and the workloads' buffers have the holders the
//!   test gave them.
//! * Source choice: `auto` is BPF where the kernel has both task iterators (5.12+), else /proc
//!   (5.10: no `iter/task_vma`), and `dmabufctl dump` says which in JSON and `-b`.
//! * `iter/dmabuf` (6.16+): lists exactly what debugfs bufinfo lists.
//!
//! Children are this binary re-executed with `DMABUFD_BPF_ROLE` set (see [`child`]).

mod data_bins;
mod vm_support;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use dmabufd::account::Model;
use dmabufd::bpf::{self, Source, SourceChoice};
use dmabufd::scan::{scan, ScanOptions};
use dmabufd::sys::{self, MapAccess, SharedMap};
use vm_support::children::{self, alloc, inode, ready_then_wait, spawn, stop, wait_for_eof};

const PAGE: u64 = 4096;
const ROLE: &str = "DMABUFD_BPF_ROLE";
const HOSTILE: &[u8] = b"bpf\nname\\012 x";

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

fn refs(pairs: &[(i32, u32)]) -> BTreeMap<i32, u32> {
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
    let (mut procfs, mut bpf) = both_models();
    // Coverage names each walk's own source (and /proc's dmabuf_rss probe); all else is equal.
    assert_eq!(bpf.coverage.sources[0].source, "bpf");
    assert_eq!(procfs.coverage.sources[0].source, "procfs");
    bpf.coverage.sources.retain(|s| s.source != "bpf");
    procfs.coverage.sources.retain(|s| s.source != "procfs" && s.source != "dmabuf_rss");
    assert_eq!(procfs, bpf, "the BPF model differs from the /proc model");

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

fn auto_uses_bpf_where_the_kernel_has_the_iterators() {
    let (_, source) = bpf::scan(&ScanOptions::default(), SourceChoice::Auto).expect("auto scan");
    let expected = if has_task_vma() { Source::Bpf } else { Source::Procfs };
    assert_eq!(source, expected);
    let (_, source) = bpf::scan(&ScanOptions::default(), SourceChoice::Procfs).expect("procfs");
    assert_eq!(source, Source::Procfs);

    let exe = data_bins::project_bin("dmabufctl", option_env!("CARGO_BIN_EXE_dmabufctl"));
    let run = |args: &[&str]| {
        let out = Command::new(&exe).args(args).output().expect("dmabufctl runs");
        assert!(out.status.success(), "dmabufctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let json: serde_json::Value =
        serde_json::from_str(&run(&["dump", "-o", "json"])).expect("JSON");
    assert_eq!(json["snapshot"]["source"], expected.to_string().as_str());
    let table = run(&["dump", "-b", "--source", "procfs"]);
    assert!(table.ends_with("Scan source: procfs\n"), "{table}");
    if expected == Source::Bpf {
        assert!(run(&["dump", "-b", "--source", "bpf"]).ends_with("Scan source: bpf\n"));
    } else {
        let out = Command::new(&exe).args(["dump", "--source", "bpf"]).output().expect("runs");
        assert!(!out.status.success(), "--source bpf without the iterators must fail");
    }
}

fn iter_dmabuf_lists_what_bufinfo_lists() {
    let (workload, _) = spawn(ROLE, "workload");
    let list = bpf::kernel_buffers().expect("iter/dmabuf");
    let info = vm_support::bufinfo();
    let mut from_bpf: Vec<_> = list
        .buffers
        .iter()
        .map(|b| (b.inode, b.size, b.name.clone(), b.exporter.clone()))
        .collect();
    let mut from_debugfs: Vec<_> = info
        .rows
        .iter()
        .map(|r| {
            let name = r.name.as_ref().map(|n| n.to_vec()).filter(|n| !n.is_empty());
            (r.inode.expect("inode"), r.size, name, Some(r.exporter.to_string()))
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
        other => panic!("unknown role {other}"),
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
    }
    let tests: [(&str, fn()); 3] = [
        ("same_model_from_both_sources", same_model_from_both_sources),
        (
            "auto_uses_bpf_where_the_kernel_has_the_iterators",
            auto_uses_bpf_where_the_kernel_has_the_iterators,
        ),
        ("iter_dmabuf_lists_what_bufinfo_lists", iter_dmabuf_lists_what_bufinfo_lists),
    ];
    vm_support::run_plain(&tests);
}
