//! The dmabufd service over kernel binder, in the VM (tests/vm/run). Runs as root.
//!
//! A private service manager (`rsb_hub`) serves /dev/vndbinder, so this suite does not depend on
//! (or disturb) a service that `--with-service` started on /dev/binder. Its own `dmabufd` uses a
//! heap directory of links to /dev/dma_heap plus one self-referencing link, the only way a
//! client can make the kernel interface fail with an I/O error (ELOOP).
//!
//! `harness = false`: the tests share one service manager (one per device), so they run one after
//! another; and the binary doubles as the non-root client (`vm_service client <role> ...`,
//! started with a uid set), since a client and the service in one process would not cross the
//! kernel. Prints libtest's `test result:` line for the runner.

mod vm_support;

use std::io::{BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dmabufd::buffer::DmaBuf;
use dmabufd::heap::{AllocRequest, Allocator};
use dmabufd::service::compat::aidl::IAccounting::{IAccounting, ALL};
use dmabufd::service::compat::aidl::IAllocator::{self as codes, IAllocator};
use dmabufd::service::compat::aidl::{LedgerEntry::LedgerEntry, Report::Report};
use dmabufd::service::compat::{Interface, Strong, ALLOCATOR_INSTANCE};
use dmabufd::service::convert;
use dmabufd::service::errors::from_status;
use dmabufd::sys::SyncAccess;
use rustix::process::Pid;
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
use vm_support::{
    accounting, allocator, bufinfo, bufinfo_inodes, client, code, fd_targets, read_line, request,
    served_heaps, service_rss_kib, Config, Reaped, Stack, Test, DEVICE,
};

const HEAP_DIR: &str = "/tmp/vm_service-heaps";
/// Outstanding bytes per uid in the service under test.
const QUOTA: u64 = 48 << 20;

const CONFIG: Config = Config { heap_dir: HEAP_DIR, quota: QUOTA };

/// Client role `alloc HEAP SIZE NAME`: allocate through the service, check the fd works and is
/// named, print `inode size`, then hold the buffer until stdin closes.
fn client_alloc(args: &[String]) {
    let [heap, size, name] = args else { panic!("alloc HEAP SIZE NAME") };
    let size: u64 = size.parse().expect("size");
    let allocation = allocator().allocate(&request(heap, size, name)).expect("allocate");
    let fd: std::os::fd::OwnedFd = allocation.fd.expect("fd").into();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).expect("fdinfo");
    assert!(fdinfo.lines().any(|l| l == format!("name:\t{name}")), "{fdinfo}");
    let buf = DmaBuf::from_fd(fd).expect("a dma-buf");
    assert_eq!((buf.inode() as i64, buf.size() as i64), (allocation.inode, allocation.size));
    let map = buf.map().expect("map");
    let pattern: Vec<u8> = (0..map.len()).map(|i| (i % 251) as u8).collect();
    let w = map.cpu_access(SyncAccess::Write).expect("sync");
    w.write_from(0, &pattern).expect("write");
    w.end().expect("sync end");
    let r = map.cpu_access(SyncAccess::Read).expect("sync");
    let mut got = vec![0; map.len()];
    r.read_to(0, &mut got).expect("read");
    assert!(got == pattern, "read back differs");
    r.end().expect("sync end");
    println!("{} {}", buf.inode(), buf.size());
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Client role `queries`: what a uid off the allowlist may and may not see.
fn client_queries() {
    let me = rustix::process::getuid().as_raw() as i32;
    let held = allocator().allocate(&request("system", 4096, "mine")).expect("allocate");
    let acct = accounting();
    assert_eq!(code(acct.getLedger(ALL)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getLedger(0)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getReport(ALL, ALL)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getReport(0, ALL)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getReport(ALL, 1)), codes::ERROR_PERMISSION_DENIED);
    let own = acct.getLedger(me).expect("own ledger");
    assert!(own.len() == 1 && own[0].inode == held.inode && own[0].uid == me, "{own:?}");
    let mine = acct.getMyUsage().expect("getMyUsage");
    let pid = std::process::id() as i32;
    let rows: Vec<_> = mine.processes.iter().map(|p| (p.pid, p.uid, p.rss)).collect();
    assert_eq!(rows, vec![(pid, me, 4096)]);
    let inodes: Vec<_> = mine.buffers.iter().map(|b| b.inode).collect();
    assert_eq!(inodes, vec![held.inode]);
    println!("ok");
}

/// Client role `hammer SECONDS`: getMyUsage (a full scan each, were scans not shared) back to
/// back; prints the number of calls.
fn client_hammer(args: &[String]) {
    let seconds: f64 = args[0].parse().expect("seconds");
    let acct = accounting();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut calls = 0u64;
    while Instant::now() < deadline {
        acct.getMyUsage().expect("getMyUsage");
        calls += 1;
    }
    println!("{calls}");
}

/// Every page of the ledger of `uid` (V2, `long`), and how many pages there were.
fn paged_ledger(acct: &Strong<dyn IAccounting>, uid: i64) -> (Vec<LedgerEntry>, usize) {
    let (mut entries, mut pages, mut cursor) = (Vec::new(), 0, 0);
    loop {
        let page = acct.getLedgerPage(uid, cursor).expect("getLedgerPage");
        entries.extend(page.entries);
        pages += 1;
        cursor = page.cursor;
        if cursor == 0 {
            return (entries, pages);
        }
    }
}

/// The whole report (V2 pages appended), and how many pages there were.
fn paged_report(acct: &Strong<dyn IAccounting>) -> (Report, usize) {
    let (mut report, mut pages, mut cursor) = (Report::default(), 0, 0);
    loop {
        let page = acct.getReportPage(i64::from(ALL), ALL, cursor).expect("getReportPage");
        convert::append_page(&mut report, page.report);
        pages += 1;
        cursor = page.cursor;
        if cursor == 0 {
            return (report, pages);
        }
    }
}

fn raise_nofile(n: u64) {
    let limit = rustix::process::Rlimit { current: Some(n), maximum: Some(n) };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).expect("RLIMIT_NOFILE");
}

/// Client role `spam SIZE`: allocate and drop forever (until killed).
fn client_spam(args: &[String]) {
    let size: u64 = args[0].parse().expect("size");
    let alloc = allocator();
    println!("started");
    std::io::stdout().flush().expect("flush");
    loop {
        drop(alloc.allocate(&request("system", size, "spam")).expect("allocate"));
    }
}

// ---------------------------------------------------------------------------------------------

fn non_root_client_gets_a_working_named_attributed_buffer(_: &mut Stack) {
    let uid = 10_001;
    let (mut child, mut out) = client(uid, "alloc", &["system", "65536", "CAMERA preview"]);
    let line = read_line(&mut out);
    let (inode, size) = line.split_once(' ').expect("inode size");
    let (inode, size): (i64, i64) = (inode.parse().expect("inode"), size.parse().expect("size"));
    assert_eq!(size, 65536);

    let ledger = accounting().getLedger(uid as i32).expect("ledger");
    let entry = ledger
        .iter()
        .find(|e| e.inode == inode)
        .unwrap_or_else(|| panic!("{inode} not in {ledger:?}"));
    assert_eq!(
        (
            entry.uid,
            entry.pid,
            entry.size,
            entry.name.as_str(),
            entry.heap.as_str(),
            entry.attributed
        ),
        (uid as i32, child.id() as i32, 65536, "CAMERA preview", "system", true)
    );
    let report = accounting().getReport(uid as i32, ALL).expect("report");
    let app = report.apps.iter().find(|a| a.uid == uid as i32).expect("the uid's app row");
    assert_eq!((app.rss, app.buffers), (65536, 1));
    let buffer = report.buffers.iter().find(|b| b.inode == inode).expect("buffer in report");
    assert_eq!(
        (buffer.name.as_str(), buffer.refs.len(), buffer.refs[0].pid),
        ("CAMERA preview", 1, child.id() as i32)
    );
    assert_eq!((buffer.refs[0].fdCount, buffer.refs[0].mapCount), (1, 1));

    drop(child.stdin.take());
    assert!(child.wait().expect("client").success());
    assert!(!bufinfo_inodes().contains(&(inode as u64)), "the service kept the buffer alive");
    let after = accounting().getLedger(uid as i32).expect("ledger");
    assert!(after.iter().all(|e| e.inode != inode), "dead buffer still in the ledger: {after:?}");
}

fn uid_off_the_allowlist_sees_only_its_own(_: &mut Stack) {
    let (mut child, mut out) = client(10_002, "queries", &[]);
    assert_eq!(read_line(&mut out), "ok");
    assert!(child.wait().expect("client").success());
}

fn every_error_code_reaches_the_client(_: &mut Stack) {
    let alloc = allocator();
    assert_eq!(code(alloc.allocate(&request("system", 0, "GL"))), codes::ERROR_INVALID_ARGUMENT);
    assert_eq!(
        code(alloc.allocate(&request("system", 2 << 30, "GL"))),
        codes::ERROR_INVALID_ARGUMENT
    );
    assert_eq!(code(alloc.allocate(&request("nope", 4096, "GL"))), codes::ERROR_UNKNOWN_HEAP);
    assert_eq!(code(alloc.allocate(&request("system", 4096, ""))), codes::ERROR_INVALID_NAME);
    assert_eq!(code(alloc.allocate(&request("loop", 4096, "GL"))), codes::ERROR_IO);
    assert_eq!(code(accounting().getLedger(-5)), codes::ERROR_INVALID_ARGUMENT);

    // Quota: a client holding most of it asks for more.
    let uid = 10_003;
    let held = QUOTA - (4 << 20);
    let (mut holder, mut out) = client(uid, "alloc", &["system", &held.to_string(), "quota"]);
    read_line(&mut out);
    let (mut second, _) = client(uid, "alloc", &["system", &(8u64 << 20).to_string(), "quota"]);
    assert!(
        !second.wait().expect("second client").success(),
        "the second allocation must be refused"
    );
    drop(holder.stdin.take());
    holder.wait().expect("holder");
    // With the first buffer gone, the same request fits again (the refusal pruned nothing stale).
    let (mut third, mut out) =
        client(uid, "alloc", &["system", &(8u64 << 20).to_string(), "quota"]);
    assert!(!read_line(&mut out).is_empty());
    drop(third.stdin.take());
    assert!(third.wait().expect("third").success());
    // ERROR_PERMISSION_DENIED: uid_off_the_allowlist_sees_only_its_own; ERROR_QUOTA_EXCEEDED's
    // code: quota_refusal_code. Not reachable from a client here: ERROR_UNSUPPORTED (kernels
    // before 5.3 only) and ERROR_OUT_OF_MEMORY (this kernel has no CMA heap, and exhausting the
    // system heap calls the OOM killer instead of failing); their mapping is unit-tested.
}

fn quota_refusal_code(_: &mut Stack) {
    // The refusal above is seen by the client process; check the code itself from root, whose
    // quota is the same.
    let alloc = allocator();
    let big: Vec<_> = (0..(QUOTA >> 24))
        .map(|_| alloc.allocate(&request("system", 16 << 20, "root")).expect("within quota"))
        .collect();
    assert_eq!(code(alloc.allocate(&request("system", 4096, "root"))), codes::ERROR_QUOTA_EXCEEDED);
    drop(big);
    alloc.allocate(&request("system", 4096, "root")).expect("quota freed with the buffers");
}

fn service_survives_clients_killed_mid_call(stack: &mut Stack) {
    for delay_ms in [0, 3, 10, 30, 100] {
        let (mut child, mut out) = client(10_004, "spam", &[&(8u64 << 20).to_string()]);
        assert_eq!(read_line(&mut out), "started");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("kill");
        child.wait().expect("reap");
    }
    assert!(std::fs::metadata(format!("/proc/{}", stack.pid())).is_ok(), "dmabufd died");
    assert_eq!(allocator().getHeaps().expect("getHeaps"), served_heaps());
    // Nothing leaked: no buffer of the killed clients survives, in the kernel or the ledger.
    std::thread::sleep(Duration::from_millis(200));
    let spam =
        bufinfo().rows.into_iter().filter(|r| r.name.as_deref() == Some(&b"spam"[..])).count();
    assert_eq!(spam, 0, "buffers of killed clients are still alive");
    assert!(accounting().getLedger(10_004).expect("ledger").is_empty());
}

fn fd_count_and_memory_stable_after_1000_allocations(stack: &mut Stack) {
    let alloc = allocator();
    let once = || drop(alloc.allocate(&request("system", 4096, "churn")).expect("allocate"));
    // The reply's duplicate of the fd is closed by the service thread just after the client
    // wakes up: let that settle before each look.
    let settled_fds = || {
        std::thread::sleep(Duration::from_millis(200));
        fd_targets(stack.pid())
    };
    (0..300).for_each(|_| once());
    let (fds, rss) = (settled_fds(), service_rss_kib(stack.pid()));
    (0..1000).for_each(|_| once());
    assert_eq!(settled_fds(), fds, "the service's fds changed");
    let grown = service_rss_kib(stack.pid()).saturating_sub(rss);
    assert!(grown <= 256, "service RSS grew by {grown} KiB over 1000 allocations");
}

fn dump_for_dumpsys(_: &mut Stack) {
    let out = Command::new("rsb_service")
        .args(["--device", "vndbinder", "dump", ALLOCATOR_INSTANCE])
        .output()
        .expect("rsb_service dump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("dmabufd: up "), "{text}");
    assert!(text.contains(&format!("quota: {QUOTA} bytes outstanding per uid")), "{text}");
    assert!(text.contains("live buffer list: debugfs /sys/kernel/debug/dma_buf/bufinfo"), "{text}");
}

/// 4000 live entries are more than one 256 KiB reply holds: V1 refuses with its documented code
/// instead of a failed transaction, V2 pages bring back exactly the buffers held, each once,
/// and `dmabufctl --service` shows all of them.
fn ledger_and_report_page_past_one_reply(_: &mut Stack) {
    const N: usize = 4000;
    raise_nofile(20_000);
    let alloc = allocator();
    let held: Vec<_> =
        (0..N).map(|_| alloc.allocate(&request("system", 4096, "paged")).expect("hold")).collect();
    let want: std::collections::BTreeSet<i64> = held.iter().map(|a| a.inode).collect();
    assert_eq!(want.len(), N);
    let acct = accounting();
    assert_eq!(code(acct.getLedger(ALL)), codes::ERROR_REPLY_TOO_LARGE);
    assert_eq!(code(acct.getReport(ALL, ALL)), codes::ERROR_REPLY_TOO_LARGE);
    let (entries, pages) = paged_ledger(&acct, 0);
    assert!(pages >= 2, "{pages} pages");
    let got: Vec<i64> = entries.iter().filter(|e| e.name == "paged").map(|e| e.inode).collect();
    assert_eq!(got.len(), N, "an entry came twice or not at all");
    assert_eq!(got.into_iter().collect::<std::collections::BTreeSet<_>>(), want);
    assert!(entries.iter().all(|e| e.uid == 0 && e.pid == std::process::id() as i32));
    let (report, pages) = paged_report(&acct);
    assert!(pages >= 2, "{pages} pages");
    let me = std::process::id() as i32;
    let mut seen = std::collections::BTreeSet::new();
    for b in report.buffers.iter().filter(|b| want.contains(&b.inode)) {
        assert!(seen.insert(b.inode), "buffer {} twice", b.inode);
        assert_eq!(
            (b.size, b.name.as_str(), b.nameBytes.as_slice()),
            (4096, "paged", &b"paged"[..])
        );
        let refs: Vec<_> = b.refs.iter().map(|r| (r.pid, r.fdCount, r.mapCount)).collect();
        assert_eq!(refs, vec![(me, 1, 0)]);
    }
    assert_eq!(seen.len(), N);
    let mine = report.processes.iter().find(|p| p.pid == me).expect("this process");
    assert!(mine.fdBytes >= (N as i64) * 4096, "{mine:?}");
    let cli = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["--service", "ledger", "-o", "csv"])
        .env("DMABUFD_BINDER_DEVICE", DEVICE)
        .output()
        .expect("dmabufctl ledger");
    assert!(cli.status.success(), "{cli:?}");
    let csv = String::from_utf8_lossy(&cli.stdout);
    assert_eq!(csv.lines().filter(|l| l.ends_with(",paged")).count(), N);
    drop(held);
}

/// Heap flags keep all 64 bits through the service: bit 63 reaches the heap, which refuses it
/// exactly as on the direct path (mainline heaps take only 0).
fn heap_flags_bit_63_reach_the_heap(_: &mut Stack) {
    let direct = Allocator::with_dir("/dev/dma_heap", 1 << 30)
        .allocate(&AllocRequest { heap: "system", size: 4096, name: b"F", heap_flags: 1 << 63 })
        .expect_err("mainline heaps refuse flags");
    let mut req = request("system", 4096, "F");
    req.heapFlags = i64::MIN;
    let status = allocator().allocate(&req).expect_err("refused by the heap");
    match from_status(&status) {
        dmabufd::Error::Service { code, message } => {
            assert_eq!(code, codes::ERROR_INVALID_ARGUMENT);
            assert_eq!(message, direct.to_string());
            assert!(message.contains("heap flags 0x8000000000000000"), "{message}");
        }
        other => panic!("{other}"),
    }
}

/// V2 selects uid 4294967295 as a uid: nobody allocated as it, so its ledger is empty while
/// ALL's is not; V1's -1 is ALL.
fn uid_4294967295_is_a_uid_in_v2(_: &mut Stack) {
    let held = allocator().allocate(&request("system", 4096, "uidmax")).expect("hold");
    let acct = accounting();
    let (all, _) = paged_ledger(&acct, i64::from(ALL));
    assert!(all.iter().any(|e| e.inode == held.inode), "{all:?}");
    let (max, pages) = paged_ledger(&acct, i64::from(u32::MAX));
    assert_eq!((max.len(), pages), (0, 1), "{max:?}");
    let v1 = acct.getLedger(-1).expect("V1 ALL");
    assert!(v1.iter().any(|e| e.inode == held.inode));
    let page = acct.getReportPage(i64::from(u32::MAX), ALL, 0).expect("report of the uid");
    assert!(page.report.processes.is_empty() && page.report.buffers.is_empty(), "{page:?}");
}

fn dump_as(uid: u32) -> String {
    let out = Command::new("rsb_service")
        .args(["--device", "vndbinder", "dump", ALLOCATOR_INSTANCE])
        .uid(uid)
        .gid(uid)
        .output()
        .expect("rsb_service dump");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dumpsys follows the query rule: root (allowlisted) sees every uid's ledger; uid 10006 sees
/// its own uid only, and nothing of root's buffer.
fn dumpsys_off_the_allowlist_sees_only_its_own_uid(_: &mut Stack) {
    let held = allocator().allocate(&request("system", 4096, "rootsecret")).expect("hold");
    let root = dump_as(0);
    assert!(root.contains("rootsecret") && root.contains(&held.inode.to_string()), "{root}");
    assert!(root.contains("\nledger:\n"), "{root}");
    let app = dump_as(10_006);
    assert!(app.starts_with("dmabufd: up "), "{app}");
    assert!(app.contains("ledger of uid 10006 (the caller's own; not on the allowlist):"), "{app}");
    assert!(app.contains("  0 live buffers"), "{app}");
    assert!(!app.contains("rootsecret") && !app.contains("uid 0:"), "{app}");
}

/// The "scans: R run for Q queries" line of dumpsys.
fn scan_counts() -> (u64, u64) {
    let text = dump_as(0);
    let line = text.lines().find(|l| l.starts_with("scans: ")).expect("scans line");
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[4].parse().expect("queries"), words[1].parse().expect("runs"))
}

/// N clients calling getMyUsage back to back for `seconds`: calls served, scans run.
fn hammer(clients: u32, seconds: f64) -> (u64, u64, f64) {
    let (q0, r0) = scan_counts();
    let t = Instant::now();
    let mut children: Vec<_> =
        (0..clients).map(|i| client(10_100 + i, "hammer", &[&seconds.to_string()])).collect();
    let calls: u64 =
        children.iter_mut().map(|(_, out)| read_line(out).parse::<u64>().expect("calls")).sum();
    for (child, _) in &mut children {
        assert!(child.wait().expect("client").success());
    }
    let elapsed = t.elapsed().as_secs_f64();
    let (q1, r1) = scan_counts();
    assert!(q1 - q0 >= calls, "{calls} calls, {} queries counted", q1 - q0);
    (calls, r1 - r0, elapsed)
}

/// 8 uids hammering reports cannot make the service scan more than once per
/// max(100 ms, 5 x scan time): far fewer scans than calls.
fn hammering_clients_share_scans(_: &mut Stack) {
    let (calls, runs, elapsed) = hammer(8, 3.0);
    // At most one scan per 100 ms of the run (plus the one in progress at each end).
    let bound = (elapsed / 0.1).ceil() as u64 + 2;
    assert!(runs <= bound, "{runs} scans in {elapsed:.1} s for {calls} calls");
    assert!(calls > runs, "{calls} calls, {runs} scans");
}

fn dmabufctl_alloc_hold_through_the_service(_: &mut Stack) {
    let uid = 10_005;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args([
            "--service",
            "alloc",
            "--heap",
            "system",
            "--size",
            "1M",
            "--name",
            "GL",
            "--count",
            "2",
            "--map",
        ])
        .args(["--hold", "30"])
        .env("DMABUFD_BINDER_DEVICE", DEVICE)
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::piped())
        .spawn()
        .expect("dmabufctl");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let inodes: Vec<i64> = (0..2)
        .map(|_| {
            let line = read_line(&mut out);
            assert!(line.ends_with(" size=1048576 heap=system name=\"GL\""), "{line}");
            line.strip_prefix("inode=")
                .and_then(|l| l.split(' ').next()?.parse().ok())
                .expect("inode=")
        })
        .collect();
    let ledger = accounting().getLedger(uid as i32).expect("ledger");
    for inode in &inodes {
        let e = ledger.iter().find(|e| e.inode == *inode).expect("in the ledger");
        assert_eq!((e.pid, e.size, e.name.as_str()), (child.id() as i32, 1 << 20, "GL"));
    }
    let cli = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["--service", "ledger", "--uid", &uid.to_string(), "-o", "csv"])
        .env("DMABUFD_BINDER_DEVICE", DEVICE)
        .output()
        .expect("dmabufctl ledger");
    let csv = String::from_utf8_lossy(&cli.stdout);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.contains(&format!(",system,{uid},{},", child.id()))),
        "{csv}"
    );
    let _ = Reaped(child);
}

/// Client role `count SIZE N`: after a line on stdin, allocate and drop N buffers; print
/// nothing but `ready` first, so the parent can start every client at once.
fn client_count(args: &[String]) {
    let [size, n] = args else { panic!("count SIZE N") };
    let (size, n): (u64, u32) = (size.parse().expect("size"), n.parse().expect("n"));
    let alloc = allocator();
    println!("ready");
    std::io::stdout().flush().expect("flush");
    std::io::stdin().read_line(&mut String::new()).expect("go");
    for _ in 0..n {
        drop(alloc.allocate(&request("system", size, "bench")).expect("allocate"));
    }
}

fn percentile(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort();
    samples[(samples.len() - 1) * p / 100].as_secs_f64() * 1e6
}

/// Median and interquartile range, in µs.
fn spread(samples: &mut [Duration]) -> (f64, f64, f64) {
    (percentile(samples, 50), percentile(samples, 25), percentile(samples, 75))
}

/// Sets the CPU affinity of this process and of every thread of process `pid` (threads started
/// later inherit it from their creator).
fn pin(pid: u32, cpus: &CpuSet) {
    sched_setaffinity(None, cpus).expect("own affinity");
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("service threads").flatten() {
        let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
        sched_setaffinity(Pid::from_raw(tid.expect("tid")), cpus).expect("thread affinity");
    }
}

/// What the latency benchmark times.
#[derive(Clone, Copy)]
enum Op {
    /// `heap::Allocator::allocate` in this process: allocate and name.
    Direct,
    /// `IAllocator.allocate`: the same plus binder, quota, ledger and the fd in the reply.
    Service,
    /// A binder ping of the service: the round-trip floor of any call.
    Ping,
}

/// Times each [`Op`] `iters` times at `size` bytes, after a tenth as many untimed warm-up rounds.
/// The three take turns in a rotating order, so each follows the others equally often (the
/// state one leaves behind, e.g. an idle vCPU, is what the next one starts from). Each sample
/// ends when the named buffer's fd is in hand. Freeing the buffer is outside every sample on
/// both paths: the direct fd is closed (freeing the buffer) after its sample; on the service
/// path the service closes its copy of the fd just after replying, so the client's close
/// rarely frees anything, and the untimed wait for the service's copy to go keeps that free
/// from landing in the next sample (on one CPU it would, as the service thread runs next).
fn latency(
    alloc: &Strong<dyn IAllocator>,
    service_pid: u32,
    size: u64,
    iters: usize,
) -> [Vec<Duration>; 3] {
    // The service's heap directory, so both open the same path.
    let direct = dmabufd::heap::Allocator::with_dir(HEAP_DIR, dmabufd::heap::DEFAULT_MAX_SIZE);
    let req = dmabufd::heap::AllocRequest { heap: "system", size, name: b"bench", heap_flags: 0 };
    let time = |op: Op| {
        let t = Instant::now();
        match op {
            Op::Direct => {
                let buf = direct.allocate(&req).expect("direct");
                let elapsed = t.elapsed();
                drop(buf);
                elapsed
            }
            Op::Service => {
                let allocation =
                    alloc.allocate(&request("system", size, "bench")).expect("service");
                let elapsed = t.elapsed();
                drop(allocation);
                let deadline = Instant::now() + Duration::from_secs(10);
                while fd_targets(service_pid).iter().any(|fd| fd.starts_with("/dmabuf:")) {
                    assert!(Instant::now() < deadline, "the service kept a buffer");
                    rustix::thread::sched_yield();
                }
                elapsed
            }
            Op::Ping => {
                alloc.as_binder().ping_binder().expect("ping");
                t.elapsed()
            }
        }
    };
    let ops = [Op::Direct, Op::Service, Op::Ping];
    let warm_up = iters / 10;
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..warm_up + iters {
        for k in 0..ops.len() {
            let i = (round + k) % ops.len();
            let elapsed = time(ops[i]);
            if round >= warm_up {
                samples[i].push(elapsed);
            }
        }
    }
    samples
}

/// The latency table, as Markdown.
fn latency_table(alloc: &Strong<dyn IAllocator>, service_pid: u32) {
    println!("| size | direct median [IQR] | service median [IQR] | binder ping median | service − direct | service / direct |");
    println!("|---|---|---|---|---|---|");
    for (label, size, iters) in [
        ("4 KiB", 4u64 << 10, 400),
        ("64 KiB", 64 << 10, 400),
        ("1 MiB", 1 << 20, 200),
        ("8 MiB", 8 << 20, 60),
    ] {
        let [mut d, mut v, mut p] = latency(alloc, service_pid, size, iters);
        let ((dm, d25, d75), (vm, v25, v75)) = (spread(&mut d), spread(&mut v));
        println!(
            "| {label} | {dm:.0} µs [{d25:.0}–{d75:.0}] | {vm:.0} µs [{v25:.0}–{v75:.0}] | {:.0} µs | {:.0} µs | {:.2}x |",
            percentile(&mut p, 50),
            vm - dm,
            vm / dm
        );
    }
}

/// Binder ping latency when the caller slept `idle` first (so every vCPU could go idle).
fn ping_after_idle(alloc: &Strong<dyn IAllocator>, idle: Duration) -> (f64, f64, f64) {
    let mut samples: Vec<Duration> = (0..40)
        .map(|_| {
            std::thread::sleep(idle);
            let t = Instant::now();
            alloc.as_binder().ping_binder().expect("ping");
            t.elapsed()
        })
        .collect();
    spread(&mut samples)
}

/// `vm_service bench`: the numbers of BENCHMARKS.md (service section), as Markdown.
fn bench() {
    let nofile = rustix::process::Rlimit { current: Some(20_000), maximum: Some(20_000) };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, nofile).expect("RLIMIT_NOFILE");
    let stack = Stack::start(CONFIG);
    std::thread::sleep(Duration::from_millis(500));
    let idle_kib = service_rss_kib(stack.pid());
    let alloc = allocator();
    let all_cpus = sched_getaffinity(None).expect("affinity");
    let mut cpu0 = CpuSet::new();
    cpu0.set(0);

    println!("Allocation latency to a named buffer in hand, default scheduling:\n");
    latency_table(&alloc, stack.pid());
    println!("\nThe same with this process and every service thread pinned to CPU 0:\n");
    pin(stack.pid(), &cpu0);
    latency_table(&alloc, stack.pid());

    println!("\nBinder ping after the caller slept, median [IQR]:\n");
    println!("| sleep before each ping | default scheduling | pinned to CPU 0 |");
    println!("|---|---|---|");
    for ms in [0, 5] {
        let idle = Duration::from_millis(ms);
        pin(stack.pid(), &all_cpus);
        let (fm, f25, f75) = ping_after_idle(&alloc, idle);
        pin(stack.pid(), &cpu0);
        let (pm, p25, p75) = ping_after_idle(&alloc, idle);
        println!("| {ms} ms | {fm:.0} µs [{f25:.0}–{f75:.0}] | {pm:.0} µs [{p25:.0}–{p75:.0}] |");
    }
    pin(stack.pid(), &all_cpus);

    println!("\nThroughput, 64 KiB buffers, each client process allocating and closing 300:\n");
    println!("| clients | allocations/s | per client |");
    println!("|---|---|---|");
    for n in [1u32, 4, 16] {
        let mut clients: Vec<_> = (0..n).map(|_| client(0, "count", &["65536", "300"])).collect();
        for (_, out) in &mut clients {
            assert_eq!(read_line(out), "ready");
        }
        let t = Instant::now();
        for (child, _) in &mut clients {
            child.stdin.as_mut().expect("stdin").write_all(b"go\n").expect("go");
        }
        for (child, _) in &mut clients {
            assert!(child.wait().expect("client").success());
        }
        let rate = f64::from(n * 300) / t.elapsed().as_secs_f64();
        println!("| {n} | {rate:.0} | {:.0} |", rate / f64::from(n));
    }

    let held: Vec<_> = (0..10_000)
        .map(|_| alloc.allocate(&request("system", 4096, "ledger")).expect("hold"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let full_kib = service_rss_kib(stack.pid());
    println!(
        "\nService RSS: idle {idle_kib} KiB; with {} live ledger entries {full_kib} KiB.",
        held.len()
    );
}

/// Client role `hold-many N`: allocate N 4 KiB buffers through the service, print `held`, hold
/// them until stdin closes.
fn client_hold_many(args: &[String]) {
    let n: usize = args[0].parse().expect("n");
    let alloc = allocator();
    let held: Vec<_> =
        (0..n).map(|_| alloc.allocate(&request("system", 4096, "bench")).expect("hold")).collect();
    println!("held");
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
}

/// `vm_service bench-pages`: 100,000 live ledger entries (BENCHMARKS.md, "Replies of any
/// size"), allocated through the service by 16 clients of 16 uids, and scans shared by
/// hammering clients.
fn bench_pages() {
    const CLIENTS: u32 = 16;
    const EACH: usize = 6250;
    const N: usize = CLIENTS as usize * EACH;
    // Inherited by the clients, which cannot raise it themselves.
    raise_nofile(2 * EACH as u64 + 1000);
    let stack = Stack::start(CONFIG);
    std::thread::sleep(Duration::from_millis(500));
    let pid = stack.pid();
    let baseline = service_rss_kib(pid);
    let t = Instant::now();
    let mut clients: Vec<_> =
        (0..CLIENTS).map(|i| client(10_200 + i, "hold-many", &[&EACH.to_string()])).collect();
    for (_, out) in &mut clients {
        assert_eq!(read_line(out), "held");
    }
    println!("{N} allocations by {CLIENTS} clients in {:.1} s", t.elapsed().as_secs_f64());
    let acct = accounting();
    assert_eq!(code(acct.getLedger(ALL)), codes::ERROR_REPLY_TOO_LARGE);
    println!("\n| query, 100,000 live entries | pages | items | whole reply | service RSS after |");
    println!("|---|---|---|---|---|");
    for round in 1..=2 {
        let t = Instant::now();
        let (entries, pages) = paged_ledger(&acct, i64::from(ALL));
        let took = t.elapsed().as_secs_f64();
        assert_eq!(entries.iter().filter(|e| e.name == "bench").count(), N);
        let rss = service_rss_kib(pid);
        println!(
            "| getLedgerPage, round {round} | {pages} | {} | {took:.2} s | {rss} KiB |",
            entries.len()
        );
        let t = Instant::now();
        let (report, pages) = paged_report(&acct);
        let took = t.elapsed().as_secs_f64();
        assert_eq!(report.buffers.iter().filter(|b| b.name == "bench").count(), N);
        let rss = service_rss_kib(pid);
        let items = convert::report_len(&convert::report_from_aidl(report));
        println!("| getReportPage, round {round} | {pages} | {items} | {took:.2} s | {rss} KiB |");
    }
    let peak = service_rss_kib(pid);
    for (child, _) in &mut clients {
        drop(child.stdin.take());
    }
    for (child, _) in &mut clients {
        assert!(child.wait().expect("client").success());
    }
    std::thread::sleep(Duration::from_secs(1));
    // The next queries prune the ledger; the one after finds the scan stale and drops it.
    let (entries, _) = paged_ledger(&acct, i64::from(ALL));
    assert!(entries.iter().all(|e| e.name != "bench"), "entries of freed buffers left");
    std::thread::sleep(Duration::from_secs(1));
    let _ = paged_ledger(&acct, i64::from(ALL));
    let after = service_rss_kib(pid);
    println!(
        "\nService RSS: {baseline} KiB before, {peak} KiB at the peak, {after} KiB after the \
         buffers died and the next two ledger queries ran."
    );
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for line in rollup.lines().chain(status.lines()).filter(|l| {
        ["Rss:", "Anonymous:", "RssAnon:", "RssFile:", "RssShmem:", "Threads:"]
            .iter()
            .any(|k| l.starts_with(k))
    }) {
        println!("    {line}");
    }
    // Where the rest is: the service's mappings holding more than 256 KiB.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut region = String::new();
    for line in smaps.lines() {
        if line.split_whitespace().next().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
            region = line.to_owned();
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            if kib >= 256 {
                println!("    {kib:>6} KiB  {region}");
            }
        }
    }
    // Once the snapshots of the queries above are past their idle time.
    std::thread::sleep(Duration::from_secs(31));
    let _ = paged_ledger(&acct, i64::from(ALL));
    println!("Service RSS 31 s later, after one more ledger query: {} KiB", service_rss_kib(pid));
    println!("\n| clients hammering getMyUsage for 5 s | calls | scans run | calls per scan |");
    println!("|---|---|---|---|");
    for n in [1u32, 4, 16] {
        let (calls, runs, _) = hammer(n, 5.0);
        println!("| {n} | {calls} | {runs} | {:.1} |", calls as f64 / runs.max(1) as f64);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        match args.get(2).map(String::as_str) {
            Some("alloc") => client_alloc(&args[3..]),
            Some("queries") => client_queries(),
            Some("spam") => client_spam(&args[3..]),
            Some("count") => client_count(&args[3..]),
            Some("hammer") => client_hammer(&args[3..]),
            Some("hold-many") => client_hold_many(&args[3..]),
            other => panic!("unknown client role {other:?}"),
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("bench") {
        bench();
        return;
    }
    if args.get(1).map(String::as_str) == Some("bench-pages") {
        bench_pages();
        return;
    }
    let tests: [(&str, Test); 13] = [
        (
            "non_root_client_gets_a_working_named_attributed_buffer",
            non_root_client_gets_a_working_named_attributed_buffer,
        ),
        ("uid_off_the_allowlist_sees_only_its_own", uid_off_the_allowlist_sees_only_its_own),
        ("every_error_code_reaches_the_client", every_error_code_reaches_the_client),
        ("quota_refusal_code", quota_refusal_code),
        ("service_survives_clients_killed_mid_call", service_survives_clients_killed_mid_call),
        (
            "fd_count_and_memory_stable_after_1000_allocations",
            fd_count_and_memory_stable_after_1000_allocations,
        ),
        ("dump_for_dumpsys", dump_for_dumpsys),
        ("dmabufctl_alloc_hold_through_the_service", dmabufctl_alloc_hold_through_the_service),
        ("ledger_and_report_page_past_one_reply", ledger_and_report_page_past_one_reply),
        ("heap_flags_bit_63_reach_the_heap", heap_flags_bit_63_reach_the_heap),
        ("uid_4294967295_is_a_uid_in_v2", uid_4294967295_is_a_uid_in_v2),
        (
            "dumpsys_off_the_allowlist_sees_only_its_own_uid",
            dumpsys_off_the_allowlist_sees_only_its_own_uid,
        ),
        ("hammering_clients_share_scans", hammering_clients_share_scans),
    ];
    vm_support::run_suite(&tests, CONFIG);
}
