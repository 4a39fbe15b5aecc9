//! Accounting against a real kernel (run inside the VM by tests/vm/run, as root).
//!
//! Each test builds its own workload, so it knows the exact answer: buffers allocated from the
//! system heap with unique names, held by this process and by child processes (this test binary
//! re-executed in the `hold` role, see [`child_role`]) that inherit fds across fork+exec, receive
//! them over a unix socket (SCM_RIGHTS), run as other uids, map buffers partially, twice, or after
//! closing the fd, and exit while scans are running. The tests take a common lock: each asserts
//! per-uid and per-name totals that another test's workload would disturb.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dmabufd::account::{AppView, Filter, Name, NameView, PidCounts, Report};
use dmabufd::scan::{scan, ScanOptions};
use dmabufd::sys::{set_inheritable, MapAccess, SharedMap};
use exporter::Exporter;
use fdpass::{recv_fd, send_fd};

mod data_bins;
// Only the exporter of tests/vm_support: the rest needs the service, which this test (also a
// Soong module) does not link. Its DRM attach helpers are for vm_compat.
#[path = "vm_support/exporter.rs"]
#[allow(dead_code)]
mod exporter;
#[path = "vm_support/fdpass.rs"]
mod fdpass;

const PAGE: u64 = 4096;
const ROLE: &str = "DMABUFD_ACCT_ROLE";
static SERIAL: Mutex<()> = Mutex::new(());

/// The system heap's buffer, or on kernels without heaps vgem's (see tests/vm_support/exporter.rs).
fn alloc(name: &str, size: u64) -> OwnedFd {
    exporter::dma_buf(name, size)
}

fn inode(fd: BorrowedFd<'_>) -> u64 {
    rustix::fs::fstat(fd).expect("fstat").st_ino
}

/// A shared read-only mapping of `len` bytes from `offset`, unmapped on drop.
fn map(fd: BorrowedFd<'_>, offset: u64, len: u64) -> SharedMap {
    SharedMap::new_range(fd, offset, len as usize, MapAccess::ReadOnly).expect("mmap")
}

/// Child process entry, ignored in the parent's test run. With `DMABUFD_ACCT_ROLE=hold` it
/// keeps its inherited fds, receives `DMABUFD_ACCT_RECV` fds on that socket fd, maps what
/// `DMABUFD_ACCT_MAP` lists (`fd:offset:len`, `recv` for a received fd) and then either waits
/// for EOF on stdin or, with `DMABUFD_ACCT_LIFETIME_MS`, exits after that long.
#[test]
#[ignore = "child process entry point, started by the workload tests"]
fn child_role() {
    if std::env::var(ROLE).as_deref() != Ok("hold") {
        return;
    }
    let mut received = Vec::new();
    if let Ok(sock) = std::env::var("DMABUFD_ACCT_RECV") {
        let sock: RawFd = sock.parse().expect("socket fd");
        // SAFETY: the parent passed this fd number to us and nothing else in this process owns it.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        received.push(recv_fd(sock.as_fd()));
    }
    let mut maps = Vec::new();
    for spec in
        std::env::var("DMABUFD_ACCT_MAP").unwrap_or_default().split(',').filter(|s| !s.is_empty())
    {
        let parts: Vec<&str> = spec.split(':').collect();
        let (offset, len) = (parts[1].parse().expect("offset"), parts[2].parse().expect("len"));
        let fd = if parts[0] == "recv" {
            received[0].as_fd()
        } else {
            // SAFETY: an inherited fd that stays open for the whole life of this process.
            unsafe { BorrowedFd::borrow_raw(parts[0].parse().expect("fd")) }
        };
        maps.push(map(fd, offset, len));
    }
    // Straight to fd 1: libtest may capture `println!` even under --nocapture.
    let mut out = std::io::stdout().lock();
    out.write_all(b"ready\n").expect("tell the parent");
    out.flush().expect("tell the parent");
    drop(out);
    match std::env::var("DMABUFD_ACCT_LIFETIME_MS") {
        Ok(ms) => std::thread::sleep(Duration::from_millis(ms.parse().expect("ms"))),
        Err(_) => {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
    }
    drop(maps);
    std::process::exit(0);
}

/// Starts this binary in the `hold` role and waits until it has set itself up.
fn spawn_holder(uid: u32, env: &[(&str, String)], wait_ready: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", "child_role", "--ignored", "--test-threads=1"])
        .env(ROLE, "hold")
        .uid(uid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn holder");
    if wait_ready {
        wait_until_ready(&mut child);
    }
    child
}

/// Reads the holder's stdout up to its `ready` (libtest prints its own lines around it).
fn wait_until_ready(child: &mut Child) {
    let mut reader = BufReader::new(child.stdout.as_mut().expect("stdout"));
    let mut line = String::new();
    while !line.trim_end().ends_with("ready") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("read") > 0, "holder died before it was ready");
    }
}

fn stop(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

fn share(size: u64, holders: &[i32], pid: i32) -> u64 {
    let mut sorted = holders.to_vec();
    sorted.sort_unstable();
    let rank = sorted.iter().position(|&p| p == pid).expect("holder") as u64;
    let n = sorted.len() as u64;
    size / n + u64::from(rank < size % n)
}

fn full_scan() -> Report {
    Report::build(&scan(&ScanOptions::default()).expect("scan"), &Filter::default())
}

#[test]
fn workload_exact_per_process_app_and_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id() as i32;

    // A: inherited by two children of uid 1000, one of which maps it; 5 pages over 3 holders.
    let a = alloc("acct GL", 5 * PAGE);
    // B: dup'd and mapped twice here.
    let b = alloc("acct dup", 2 * PAGE);
    let b2 = b.try_clone().expect("dup");
    let (_b_map1, _b_map2) = (map(b.as_fd(), 0, 2 * PAGE), map(b.as_fd(), PAGE, PAGE));
    // C: passed over a unix socket to a child of uid 10057, which maps it; our fd closed.
    let c = alloc("acct passed", 4 * PAGE);
    // D: held here and mapped partially (one page at offset 1 page).
    let d = alloc("acct partial", 4 * PAGE);
    let _d_map = map(d.as_fd(), PAGE, PAGE);
    // E: mapped partially, then the fd closed: only maps know it (name and all).
    let e = alloc("acct mapped only", 2 * PAGE);
    let _e_map = map(e.as_fd(), 0, PAGE);
    // K: in flight in a unix socket, held by no process: kernel-only.
    let k = alloc("acct in flight", 3 * PAGE);
    let inodes: BTreeMap<&str, u64> =
        [("a", &a), ("b", &b), ("c", &c), ("d", &d), ("e", &e), ("k", &k)]
            .into_iter()
            .map(|(n, fd)| (n, inode(fd.as_fd())))
            .collect();
    drop(e);
    let (k_tx, _k_rx) = UnixStream::pair().expect("socketpair");
    send_fd(&k_tx, k.as_fd());
    drop(k);

    set_inheritable(a.as_fd(), true).expect("fcntl");
    let c1 = spawn_holder(1000, &[], true);
    let c2 = spawn_holder(
        1000,
        &[("DMABUFD_ACCT_MAP", format!("{}:0:{}", a.as_raw_fd(), 5 * PAGE))],
        true,
    );
    set_inheritable(a.as_fd(), false).expect("fcntl");
    let (c_tx, c_rx) = UnixStream::pair().expect("socketpair");
    set_inheritable(c_rx.as_fd(), true).expect("fcntl");
    let c3 = spawn_holder(
        10057,
        &[
            ("DMABUFD_ACCT_RECV", c_rx.as_raw_fd().to_string()),
            ("DMABUFD_ACCT_MAP", format!("recv:0:{}", 4 * PAGE)),
        ],
        false,
    );
    drop(c_rx);
    send_fd(&c_tx, c.as_fd());
    drop(c);
    let mut c3 = c3;
    wait_until_ready(&mut c3);
    let (p1, p2, p3) = (c1.id() as i32, c2.id() as i32, c3.id() as i32);

    let report = full_scan();
    let by_inode = |i: u64| {
        report.buffers.iter().find(|b| b.inode == i).unwrap_or_else(|| panic!("inode {i} missing"))
    };
    let by_pid = |p: i32| {
        report.processes.iter().find(|v| v.pid == p).unwrap_or_else(|| panic!("pid {p} missing"))
    };

    let ba = by_inode(inodes["a"]);
    assert_eq!(
        (ba.size, ba.name.as_ref().and_then(Name::to_str), ba.exporter.as_deref()),
        (5 * PAGE, Some("acct GL"), Some(Exporter::detect().exp_name()))
    );
    assert_eq!(ba.fd_refs, PidCounts::from([(me, 1), (p1, 1), (p2, 1)]));
    assert_eq!(ba.map_refs, PidCounts::from([(p2, 1)]));
    let bb = by_inode(inodes["b"]);
    assert_eq!(
        (bb.fd_refs.clone(), bb.map_refs.clone()),
        (PidCounts::from([(me, 2)]), PidCounts::from([(me, 2)]))
    );
    let bc = by_inode(inodes["c"]);
    assert_eq!(
        (bc.fd_refs.clone(), bc.map_refs.clone()),
        (PidCounts::from([(p3, 1)]), PidCounts::from([(p3, 1)]))
    );
    let bd = by_inode(inodes["d"]);
    assert_eq!((bd.size, bd.map_refs.get(&me)), (4 * PAGE, Some(&1)));
    let be = by_inode(inodes["e"]);
    assert_eq!(
        (be.size, be.name.as_ref().and_then(Name::to_str), be.exporter.as_deref()),
        (2 * PAGE, Some("acct mapped only"), Some(Exporter::detect().exp_name()))
    );
    assert!(be.fd_refs.is_empty());
    let bk = by_inode(inodes["k"]);
    assert!(bk.fd_refs.is_empty() && bk.map_refs.is_empty());
    assert_eq!(
        (bk.size, bk.name.as_ref().and_then(Name::to_str)),
        (3 * PAGE, Some("acct in flight"))
    );

    let holders_a = [me, p1, p2];
    let mine = by_pid(me);
    assert_eq!(mine.rss, 5 * PAGE + 2 * PAGE + 4 * PAGE + 2 * PAGE);
    assert_eq!(mine.pss, share(5 * PAGE, &holders_a, me) + 2 * PAGE + 4 * PAGE + 2 * PAGE);
    assert_eq!((mine.fd_bytes, mine.map_only_bytes), (11 * PAGE, 2 * PAGE));
    for p in [p1, p2] {
        let v = by_pid(p);
        assert_eq!(
            (v.uid, v.rss, v.pss, v.fd_bytes),
            (1000, 5 * PAGE, share(5 * PAGE, &holders_a, p), 5 * PAGE)
        );
    }
    let v3 = by_pid(p3);
    assert_eq!(
        (v3.uid, v3.rss, v3.pss, v3.fd_bytes, v3.map_only_bytes),
        (10057, 4 * PAGE, 4 * PAGE, 4 * PAGE, 0)
    );

    let app = |uid: u32| report.apps.iter().find(|a| a.uid == uid).cloned();
    let pss_1000 = share(5 * PAGE, &holders_a, p1) + share(5 * PAGE, &holders_a, p2);
    assert_eq!(
        app(1000),
        Some(AppView { uid: 1000, rss: 5 * PAGE, pss: pss_1000, buffers: 1, complete: true })
    );
    assert_eq!(
        app(10057),
        Some(AppView { uid: 10057, rss: 4 * PAGE, pss: 4 * PAGE, buffers: 1, complete: true })
    );
    let name = |n: &str| report.names.iter().find(|v| v.name.to_str() == Some(n)).cloned();
    for (n, pages) in [
        ("acct GL", 5),
        ("acct dup", 2),
        ("acct passed", 4),
        ("acct partial", 4),
        ("acct mapped only", 2),
        ("acct in flight", 3),
    ] {
        assert_eq!(
            name(n),
            Some(NameView { name: n.into(), bytes: pages * PAGE, buffers: 1 }),
            "{n}"
        );
    }
    assert!(report.totals.kernel_only_bytes >= 3 * PAGE);
    assert_eq!(report.totals.userspace_pss, report.totals.userspace_rss);
    let exported = report.totals.exported_bytes.expect("debugfs bufinfo readable as root");
    assert_eq!(exported, report.totals.userspace_rss + report.totals.kernel_only_bytes);

    // A uid filter keeps the global shares.
    let only = Report::build(
        &scan(&ScanOptions::default()).expect("scan"),
        &Filter { uid: Some(1000), pid: None },
    );
    assert_eq!(only.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), {
        let mut v = vec![p1, p2];
        v.sort_unstable();
        v
    });
    assert_eq!(only.totals.userspace_pss, pss_1000);

    // The CLI agrees, in exact bytes, with dmabuf_dump's row layout.
    let exe = data_bins::project_bin("dmabufctl", option_env!("CARGO_BIN_EXE_dmabufctl"));
    let out = Command::new(exe)
        .args(["dump", "--bytes", &me.to_string()])
        .output()
        .expect("dmabufctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text
        .lines()
        .find(|l| l.contains("PROCESS TOTAL"))
        .unwrap_or_else(|| panic!("no total row in {text}"));
    assert_eq!(
        total.split_whitespace().collect::<Vec<_>>(),
        ["PROCESS", "TOTAL", &mine.rss.to_string(), "B", &mine.pss.to_string(), "B"]
    );
    assert!(text.contains("acct mapped only"), "{text}");

    drop(b2);
    for child in [c1, c2, c3] {
        stop(child);
    }
}

#[test]
fn processes_exiting_during_scans() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stable = alloc("acct stable", 3 * PAGE);
    set_inheritable(stable.as_fd(), true).expect("fcntl");
    let s1 = spawn_holder(10061, &[], true);
    let s2 = spawn_holder(10061, &[], true);
    set_inheritable(stable.as_fd(), false).expect("fcntl");
    let stable_inode = inode(stable.as_fd());
    drop(stable);
    let holders = [s1.id() as i32, s2.id() as i32];

    let deadline = Instant::now() + Duration::from_secs(4);
    let mut churn: Vec<Child> = Vec::new();
    let mut scans = 0;
    let mut seen_churn = 0;
    while Instant::now() < deadline || scans < 5 {
        // Keep about eight short-lived holders alive, each exiting on its own timer.
        churn.retain_mut(|c| c.try_wait().map(|s| s.is_none()).unwrap_or(false));
        while churn.len() < 8 {
            let buf = alloc("acct churn", PAGE);
            set_inheritable(buf.as_fd(), true).expect("fcntl");
            let ms = 5 + (churn.len() as u64 * 37 + scans as u64 * 11) % 120;
            churn.push(spawn_holder(10062, &[("DMABUFD_ACCT_LIFETIME_MS", ms.to_string())], false));
            drop(buf);
        }
        let r = full_scan();
        scans += 1;
        let stable_view =
            r.buffers.iter().find(|b| b.inode == stable_inode).expect("stable buffer");
        assert_eq!(stable_view.holders().into_iter().collect::<Vec<_>>(), {
            let mut h = holders.to_vec();
            h.sort_unstable();
            h
        });
        for &p in &holders {
            let v = r.processes.iter().find(|v| v.pid == p).expect("stable holder");
            assert_eq!((v.rss, v.pss), (3 * PAGE, share(3 * PAGE, &holders, p)));
        }
        // Whatever subset of churn processes was caught: each exact, and Pss still adds up.
        for v in r.processes.iter().filter(|v| v.uid == 10062) {
            assert_eq!((v.rss, v.pss, v.fd_bytes), (PAGE, PAGE, PAGE));
            seen_churn += 1;
        }
        assert_eq!(r.processes.iter().map(|p| p.pss).sum::<u64>(), r.totals.userspace_rss);
        assert_eq!(
            r.apps.iter().find(|a| a.uid == 10061).map(|a| (a.rss, a.pss)),
            Some((3 * PAGE, 3 * PAGE))
        );
    }
    assert!(seen_churn > 0, "no churn process was ever caught by {scans} scans");
    for c in churn {
        stop(c);
    }
    stop(s1);
    stop(s2);
}
