//! The scan against processes that try to fool it, on the real kernel (tests/vm/run, as root).
//!
//! * Names: buffers renamed (DMA_BUF_SET_NAME, as any holder may) to bytes that forge bufinfo
//!   rows, blocks and total lines, with newlines, tabs, backslashes and invalid UTF-8. Every
//!   buffer keeps its exact size, exporter, holders and name; the kernel's own total line, the
//!   scan's totals and the ledger's live list agree; fd links, fdinfo and maps show what the
//!   kernel really prints.
//! * Hidden holders: a thread with its own fd table (`unshare(CLONE_FILES)`), and a process
//!   whose main thread exited, both found with exact fd counts and Rss.
//! * Snapshot: scans while a process allocates and frees buffers never show one of them as
//!   kernel-only, and the totals never contradict each other.
//!
//! Children are this binary re-executed with `DMABUFD_SCAN_ROLE` set (see [`child`]).

mod vm_support;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use dmabufd::account::{BufferView, Filter, PidCounts, Report};
use dmabufd::kernel_buffers::LiveBuffers;
use dmabufd::procfs::{bufinfo, fdinfo, maps};
use dmabufd::scan::{scan, ScanOptions};
use dmabufd::sys::{self, SharedMap};
use vm_support::children::{self, alloc, inode, ready_then_wait, spawn, stop};

const PAGE: u64 = 4096;
const ROLE: &str = "DMABUFD_SCAN_ROLE";
const CHURN_NAME: &str = "scan churn";

/// The exporter name the kernel shows for [`alloc`]'s buffers.
fn exp_name() -> &'static str {
    vm_support::exporter::Exporter::detect().exp_name()
}

/// Renames a buffer to any bytes but NUL, as any process holding it can.
fn rename(fd: &OwnedFd, name: &[u8]) {
    let name = CString::new(name).expect("no NUL");
    sys::set_name(fd.as_fd(), &name).unwrap_or_else(|e| panic!("renaming to {name:?}: {e}"));
}

fn full_scan() -> Report {
    Report::build(&scan(&ScanOptions::default()).expect("scan"), &Filter::default())
}

fn buffer(report: &Report, inode: u64) -> &BufferView {
    report.buffers.iter().find(|b| b.inode == inode).unwrap_or_else(|| panic!("no inode {inode}"))
}

/// The model's name as bytes (the one place that knows the model's name type).
fn name_bytes(b: &BufferView) -> Option<Vec<u8>> {
    b.name.as_ref().map(|n| n.as_bytes().to_vec())
}

/// The kernel's own `Total N objects, B bytes`, from the last line: a name is always printed
/// before it, so no name can forge it.
fn kernel_total() -> (u64, u64) {
    let text = std::fs::read(vm_support::BUFINFO).expect("bufinfo");
    let text = text.strip_suffix(b"\n").expect("ends with a newline");
    let last = &text[text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)..];
    let last = std::str::from_utf8(last).expect("ASCII");
    let words: Vec<&str> = last.split_whitespace().collect();
    assert_eq!((words[0], words[2], words[4]), ("Total", "objects,", "bytes"), "{last}");
    (words[1].parse().expect("N"), words[3].parse().expect("B"))
}

// ---- names ----------------------------------------------------------------------------------

fn forging_names_change_nothing_else() {
    let me = std::process::id() as i32;
    // The victim: a named buffer whose row the others try to rewrite.
    let victim = alloc("scan victim", 2 * PAGE);
    let victim_inode = inode(&victim);
    let forged: Vec<Vec<u8>> = vec![
        // A row charging 1 GiB to the victim's inode.
        format!("\n1073741824\t0\t0\t1\tx\t{victim_inode}\tv").into_bytes(),
        // A pre-5.3 row (no inode): the one that made pruning fail on every call.
        b"\n1000000000000000000\t0\t0\t1\tx\n".to_vec(),
        b"\n\tAttached Devices:\nTotal 0 dev".to_vec(),
        b"x\n\tAttached Devices:\n".to_vec(),
        b"x\n\tAttached Devices:\n\tgpu".to_vec(),
        b"\n\nTotal 1 objects, 1 bytes\n".to_vec(),
        b"\tPROCESS TOTAL\t1048576 kB\n".to_vec(),
        b"<none>\n".to_vec(),
        b"\xff\xfe not UTF-8 \x80".to_vec(),
        [b'\t'; 31].to_vec(),
        [b'\n'; 31].to_vec(),
    ];
    let held: Vec<(OwnedFd, &[u8])> = forged
        .iter()
        .enumerate()
        .map(|(i, name)| {
            assert!(name.len() <= bufinfo::MAX_NAME_LEN, "{name:?}");
            let fd = alloc("scan forger", (i as u64 + 1) * PAGE);
            rename(&fd, name);
            (fd, name.as_slice())
        })
        .collect();
    // Mapped only (fds closed): a newline, which maps escapes, and the text maps escapes it to.
    let map_only: Vec<(SharedMap, u64, u64, &[u8])> =
        [(&b"line\nbreak"[..], 3 * PAGE), (&b"back\\012slash"[..], 5 * PAGE)]
            .into_iter()
            .map(|(name, size)| {
                let fd = alloc("scan mapped", size);
                rename(&fd, name);
                let map = SharedMap::new(fd.as_fd(), size as usize).expect("mmap");
                (map, inode(&fd), size, name)
            })
            .collect();

    // What the kernel prints: raw in fd links and fdinfo, `\012` for a newline in maps, and a
    // backslash left as it is.
    for (i, (fd, name)) in held.iter().enumerate() {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("link");
        assert_eq!(link.as_os_str().as_encoded_bytes(), [&b"/dmabuf:"[..], name].concat());
        let info = std::fs::read(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).expect("fdinfo");
        let info = fdinfo::parse(&info);
        assert_eq!(
            (info.ino, info.size, info.exporter.as_deref(), info.name.as_deref()),
            (Some(inode(fd)), Some((i as u64 + 1) * PAGE), Some(exp_name()), Some(*name)),
        );
    }
    let own_maps = std::fs::read("/proc/self/maps").expect("maps");
    let mut mapped = BTreeMap::new();
    maps::for_each_dmabuf(&own_maps, |m| {
        mapped.insert(m.inode, (m.name.to_vec(), maps::unescape_name(m.name)));
    });
    let (line_break, backslash) = (&map_only[0], &map_only[1]);
    assert_eq!(mapped[&line_break.1], (b"line\\012break".to_vec(), b"line\nbreak".to_vec()));
    assert_eq!(mapped[&backslash.1], (b"back\\012slash".to_vec(), b"back\nslash".to_vec()));

    // bufinfo parses as the kernel printed it.
    let info = vm_support::bufinfo();
    let (objects, bytes) = kernel_total();
    assert_eq!((info.rows.len() as u64, info.total_bytes), (objects, Some(bytes)));
    let row = |i: u64| info.rows.iter().find(|r| r.inode == Some(i)).expect("row");
    assert_eq!(
        (row(victim_inode).size, row(victim_inode).name.as_deref()),
        (2 * PAGE, Some(&b"scan victim"[..]))
    );
    for (i, (fd, name)) in held.iter().enumerate() {
        let r = row(inode(fd));
        // `<none>` alone would be the kernel's own word for unnamed; with a newline it is a name.
        assert_eq!(
            (r.size, r.exporter.as_str(), r.name.as_deref()),
            ((i as u64 + 1) * PAGE, exp_name(), Some(*name)),
            "{name:?}"
        );
    }
    for (_, inode, size, name) in &map_only {
        assert_eq!((row(*inode).size, row(*inode).name.as_deref()), (*size, Some(*name)));
    }
    assert!(info.rows.iter().all(|r| r.inode.is_some() && r.exporter == exp_name()));

    // The scan: every buffer exact, nothing invented, totals as the kernel counts them.
    let report = full_scan();
    let v = buffer(&report, victim_inode);
    assert_eq!(
        (v.size, v.exporter.as_deref(), v.fd_refs.clone()),
        (2 * PAGE, Some(exp_name()), PidCounts::from([(me, 1)]))
    );
    assert!(v.map_refs.is_empty());
    for (i, (fd, name)) in held.iter().enumerate() {
        let b = buffer(&report, inode(fd));
        assert_eq!(
            (b.size, b.exporter.as_deref()),
            ((i as u64 + 1) * PAGE, Some(exp_name())),
            "{name:?}"
        );
        assert_eq!((b.fd_refs.clone(), b.map_refs.is_empty()), (PidCounts::from([(me, 1)]), true));
        assert_eq!(name_bytes(b), Some(name.to_vec()), "{name:?}");
    }
    for (_, inode, size, name) in &map_only {
        let b = buffer(&report, *inode);
        assert_eq!(
            (b.size, b.fd_refs.is_empty(), b.map_refs.clone()),
            (*size, true, PidCounts::from([(me, 1)]))
        );
        assert_eq!(name_bytes(b), Some(name.to_vec()), "{name:?}");
    }
    assert_eq!(report.buffers.len() as u64, objects, "one buffer per kernel row, none invented");
    assert!(report.buffers.iter().all(|b| b.size < 1 << 30), "an invented size");
    let t = &report.totals;
    assert_eq!(t.exported_bytes, Some(bytes));
    assert_eq!(t.userspace_rss + t.kernel_only_bytes, bytes);
    let mine = report.processes.iter().find(|p| p.pid == me).expect("this process");
    let forged_bytes: u64 = (1..=forged.len() as u64).map(|i| i * PAGE).sum();
    assert_eq!(mine.rss, 2 * PAGE + forged_bytes + 8 * PAGE);
    assert_eq!(mine.map_only_bytes, 8 * PAGE);

    // The ledger's live list reads every buffer, and notices one freed.
    let live = LiveBuffers::detect();
    assert!(matches!(live, LiveBuffers::Kernel(_)), "{live}");
    let inodes = live.read().expect("live list despite the names");
    assert!(held.iter().all(|(fd, _)| inodes.contains(&inode(fd))));
    assert!(inodes.contains(&victim_inode));
    drop(victim);
    assert!(!live.read().expect("live list").contains(&victim_inode));
    drop(map_only);
    drop(held);
}

// ---- hidden holders -------------------------------------------------------------------------

fn thread_with_its_own_fd_table() {
    let (child, inodes) = spawn(ROLE, "unshare");
    let pid = child.id() as i32;
    let (shared, private) = (inodes[0], inodes[1]);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task").count();
    assert_eq!(threads, 5, "leader, the unsharing thread and three sharing threads");
    let report = full_scan();
    let s = buffer(&report, shared);
    // In the leader's table (seen through five threads) and in the copy the unsharing thread
    // made: two fds, not one, not five.
    assert_eq!((s.size, s.fd_refs.clone()), (2 * PAGE, PidCounts::from([(pid, 2)])));
    let p = buffer(&report, private);
    assert_eq!((p.size, p.fd_refs.clone()), (3 * PAGE, PidCounts::from([(pid, 1)])));
    assert!(s.map_refs.is_empty() && p.map_refs.is_empty());
    let v = report.processes.iter().find(|v| v.pid == pid).expect("the child");
    assert_eq!(
        (v.uid, v.rss, v.pss, v.fd_bytes, v.map_only_bytes),
        (0, 5 * PAGE, 5 * PAGE, 5 * PAGE, 0)
    );
    let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&tid| tid != pid)
        .collect();
    assert!(report.processes.iter().all(|v| !tids.contains(&v.pid)), "threads are no processes");
    stop(child);
}

fn process_whose_leader_exited() {
    let (child, inodes) = spawn(ROLE, "leader_exits");
    let pid = child.id() as i32;
    let (held, mapped) = (inodes[0], inodes[1]);
    // What made it invisible: the leader is a zombie with no fds and no mappings.
    children::wait_leader_exited(pid);
    assert_eq!(std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd").count(), 0);
    assert!(std::fs::read(format!("/proc/{pid}/maps")).expect("maps").is_empty());
    let report = full_scan();
    let h = buffer(&report, held);
    assert_eq!(
        (h.size, h.fd_refs.clone(), h.map_refs.is_empty()),
        (4 * PAGE, PidCounts::from([(pid, 1)]), true)
    );
    let m = buffer(&report, mapped);
    assert_eq!(
        (m.size, m.fd_refs.is_empty(), m.map_refs.clone()),
        (PAGE, true, PidCounts::from([(pid, 1)]))
    );
    let v = report.processes.iter().find(|v| v.pid == pid).expect("the child");
    assert_eq!(
        (v.uid, v.rss, v.pss, v.fd_bytes, v.map_only_bytes),
        (0, 5 * PAGE, 5 * PAGE, 4 * PAGE, PAGE)
    );
    stop(child);
}

// ---- snapshot -------------------------------------------------------------------------------

fn churn_is_never_kernel_only() {
    let quiet = full_scan();
    let kernel_only_before: Vec<u64> =
        quiet.buffers.iter().filter(|b| b.holders().is_empty()).map(|b| b.inode).collect();
    let (child, _) = spawn(ROLE, "churn");
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut scans, mut caught) = (0, 0);
    while Instant::now() < deadline || scans < 10 {
        let r = full_scan();
        scans += 1;
        // A buffer between the heap's export and its fd install has no holder and no name yet
        // (docs/dump.md, "A consistent snapshot"); every churned buffer the child has named
        // was held by it, so it is never kernel-only.
        for b in r.buffers.iter().filter(|b| b.holders().is_empty()) {
            assert!(
                kernel_only_before.contains(&b.inode) || (b.name.is_none() && b.size == PAGE),
                "scan {scans}: {b:?} is not kernel-only"
            );
        }
        // The scan's own looks at buffers (src/scan.rs) never make this process a holder.
        let own = std::process::id() as i32;
        assert!(r.buffers.iter().all(|b| !b.holders().contains(&own)), "scan {scans}: self");
        for b in r.buffers.iter().filter(|b| b.holders().contains(&pid)) {
            assert_eq!((b.size, b.fd_refs.clone()), (PAGE, PidCounts::from([(pid, 1)])));
            caught += 1;
        }
        let t = &r.totals;
        let exported = t.exported_bytes.expect("bufinfo");
        assert!(exported >= t.userspace_rss + t.kernel_only_bytes, "scan {scans}: {t:?}");
        assert_eq!(t.userspace_pss, t.userspace_rss, "scan {scans}");
        assert_eq!(r.processes.iter().map(|p| p.pss).sum::<u64>(), t.userspace_rss, "scan {scans}");
    }
    assert!(caught > 0, "no churned buffer was ever seen in {scans} scans");
    stop(child);
}

// ---- children -------------------------------------------------------------------------------

fn child(role: &str) -> ! {
    match role {
        "unshare" => {
            let shared = alloc("scan shared", 2 * PAGE);
            let private = children::unshared_thread_buffer("scan private", 3 * PAGE);
            for _ in 0..3 {
                std::thread::spawn(|| loop {
                    std::thread::park();
                });
            }
            ready_then_wait(&[inode(&shared), private]);
        }
        "leader_exits" => children::leader_exits(["scan orphaned", "scan orphan map"]),
        "churn" => {
            std::thread::spawn(|| {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
                std::process::exit(0);
            });
            let mut out = std::io::stdout().lock();
            writeln!(out, "ready").expect("tell the parent");
            out.flush().expect("tell the parent");
            drop(out);
            let mut held = std::collections::VecDeque::new();
            for i in 0u64.. {
                held.push_back(alloc(CHURN_NAME, PAGE));
                if held.len() > 3 {
                    held.pop_front();
                }
                std::thread::sleep(Duration::from_micros(200 + i % 7 * 150));
            }
            unreachable!()
        }
        other => panic!("unknown role {other}"),
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
    }
    let tests: [(&str, fn()); 4] = [
        ("forging_names_change_nothing_else", forging_names_change_nothing_else),
        ("thread_with_its_own_fd_table", thread_with_its_own_fd_table),
        ("process_whose_leader_exited", process_whose_leader_exited),
        ("churn_is_never_kernel_only", churn_is_never_kernel_only),
    ];
    vm_support::run_plain(&tests);
}
