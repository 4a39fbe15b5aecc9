//! What the service sees on a device, in the VM's android profile (`tests/vm/run --android-profile`,
//! which runs only this suite): `dmabufd` as uid 1000 (groups system, readproc) without
//! capabilities, debugfs unmounted, /sys/kernel/dmabuf hidden, /proc hidepid=2. There is no
//! SELinux in the VM: the denials come from ptrace_may_access (another uid, no CAP_SYS_PTRACE),
//! the same effect a device's policy has.
//!
//! The workload is this binary re-executed as clients of known uids: two "app" processes of uid
//! 10057 allocating through the service, one of uid 10057 allocating from the heap directly, and
//! one of uid 1000 (the service's own uid, so readable to it) allocating directly. Every query's
//! answer is asserted exactly, and so is its coverage record: which sources, how many processes
//! of which uid could not be read, how many bytes have unknown holders.
//!
//! `harness = false`: the clients are this binary (`vm_android client <role> ...`).

mod vm_support;

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdout, Command};
use std::time::Duration;

use dmabufd::account::{PidCounts, Report};
use dmabufd::buffer::DmaBuf;
use dmabufd::heap::{AllocRequest, Allocator};
use dmabufd::service::compat::aidl::IAccounting::{IAccounting, ALL};
use dmabufd::service::compat::aidl::IAllocator::IAllocator;
use dmabufd::service::compat::{self, Strong, Transport, ACCOUNTING_INSTANCE, ALLOCATOR_INSTANCE};
use dmabufd::service::convert;
use vm_support::{client, read_line, request, Reaped};

const APP: u32 = 10_057;
const SYSTEM: u32 = 1000;

fn allocator() -> Strong<dyn IAllocator> {
    compat::connect(&Transport::Kernel(None), ALLOCATOR_INSTANCE, Duration::from_secs(10))
        .expect("IAllocator (init's dmabufd)")
}

fn accounting() -> Strong<dyn IAccounting> {
    compat::connect(&Transport::Kernel(None), ACCOUNTING_INSTANCE, Duration::from_secs(10))
        .expect("IAccounting (init's dmabufd)")
}

/// Every page of the service's report for `uid` (V2/V3 paged), as a library report.
fn service_report(acct: &Strong<dyn IAccounting>, uid: Option<u32>) -> Report {
    let mut whole = dmabufd::service::compat::aidl::Report::Report::default();
    let mut cursor = 0;
    loop {
        let page = acct
            .getReportPage(convert::uid_selector_to_aidl(uid), ALL, cursor)
            .expect("getReportPage");
        convert::append_page(&mut whole, page.report);
        cursor = page.cursor;
        if cursor == 0 {
            return convert::report_from_aidl(whole);
        }
    }
}

fn hold_until_stdin_closes(buf: &DmaBuf) {
    println!("{} {}", buf.inode(), buf.size());
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Client role `service SIZE NAME`: allocate from the system heap through the service, print
/// `inode size`, hold it until stdin closes.
fn client_service(args: &[String]) {
    let [size, name] = args else { panic!("service SIZE NAME") };
    let allocation = allocator()
        .allocate(&request("system", size.parse().expect("size"), name))
        .expect("allocate");
    let buf = DmaBuf::from_fd(allocation.fd.expect("fd").into()).expect("a dma-buf");
    hold_until_stdin_closes(&buf);
}

/// Client role `direct SIZE NAME`: the same straight from /dev/dma_heap/system (0444 as on a
/// device), so the service's ledger never hears of it.
fn client_direct(args: &[String]) {
    let [size, name] = args else { panic!("direct SIZE NAME") };
    let req = AllocRequest {
        heap: "system",
        size: size.parse().expect("size"),
        name: name.as_bytes(),
        heap_flags: 0,
    };
    let buf = Allocator::new().allocate(&req).expect("allocate from the heap");
    hold_until_stdin_closes(&buf);
}

/// Client role `my-usage`: getMyUsage as JSON on stdout.
fn client_my_usage() {
    let report = accounting().getMyUsage().expect("getMyUsage");
    let json = dmabufd::report::json(&convert::report_from_aidl(report)).expect("JSON");
    print!("{json}");
}

/// A client holding a buffer: the process (killed on drop), its pid, the buffer's inode.
struct Holder {
    child: Reaped,
    _out: BufReader<ChildStdout>,
    pid: i32,
    inode: u64,
}

fn holder(uid: u32, role: &str, size: u64, name: &str) -> Holder {
    let (child, mut out) = client(uid, role, &[&size.to_string(), name]);
    let line = read_line(&mut out);
    let (inode, got) = line.split_once(' ').expect("inode size");
    assert_eq!(got.parse::<u64>().expect("size"), size, "{role} {name}");
    let pid = child.id() as i32;
    Holder { child: Reaped(child), _out: out, pid, inode: inode.parse().expect("inode") }
}

/// Processes per real uid now, from /proc as root sees it (ground truth).
fn processes_by_uid() -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(format!("/proc/{pid}/status")) else { continue };
        if let Some(status) = dmabufd::procfs::status::parse(&bytes) {
            *out.entry(status.uid).or_insert(0) += 1;
        }
    }
    out
}

fn dmabufd_pid() -> i32 {
    let pids: Vec<i32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "dmabufd\n")
        })
        .collect();
    assert_eq!(pids.len(), 1, "one dmabufd: {pids:?}");
    pids[0]
}

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with(field)).expect(field);
    line[field.len()..].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The profile is what it claims: the service is uid 1000 with no capability at all, in groups
/// system and readproc; debugfs and sysfs stats are gone.
fn service_runs_as_system_without_capabilities() {
    let pid = dmabufd_pid();
    assert_eq!(status_field(pid, "Uid:"), "1000 1000 1000 1000");
    assert_eq!(status_field(pid, "Gid:"), "1000 1000 1000 1000");
    assert_eq!(status_field(pid, "Groups:"), "1000 3009");
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        assert_eq!(status_field(pid, caps), "0000000000000000", "{caps}");
    }
    assert!(!std::path::Path::new("/sys/kernel/debug/dma_buf").exists(), "debugfs unmounted");
    assert!(!std::path::Path::new("/sys/kernel/dmabuf/buffers").exists(), "sysfs stats hidden");
}

/// Fails unless `f` sees the same processes per uid before and after it runs (so a count taken
/// around it is exact); retries a few times, as kernel workers may come and go.
fn with_stable_processes<T>(mut f: impl FnMut() -> T) -> (T, BTreeMap<u32, u32>) {
    for _ in 0..5 {
        let before = processes_by_uid();
        let out = f();
        if processes_by_uid() == before {
            return (out, before);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("processes kept changing around the query");
}

/// Waits until no scan the service ran since `since` can be reused: it reuses one for up to
/// five times what it took (src/service/scans.rs), and each took at most `since.elapsed()`. A
/// query after this sees processes started or gone since.
fn wait_out_scan_reuse(since: std::time::Instant) {
    std::thread::sleep((since.elapsed() * 5).max(Duration::from_millis(200)));
}

fn every_query_and_its_coverage() {
    let sys = holder(SYSTEM, "direct", 12_288, "SYS direct");
    let app_direct = holder(APP, "direct", 8192, "APP direct");
    let preview = holder(APP, "service", 65_536, "APP preview");
    let thumb = holder(APP, "service", 16_384, "APP thumb");
    let service_pid = dmabufd_pid();
    // A scan from before the direct allocations could still be fresh.
    std::thread::sleep(Duration::from_secs(1));
    let acct = accounting();
    let queries = std::time::Instant::now();

    // getReportPage(ALL) as root (on the allowlist): the service sees the uid-1000 client's
    // buffer only; everything of uid 10057 and of root is closed to it.
    let (all, truth) = with_stable_processes(|| service_report(&acct, None));
    let inodes: Vec<u64> = all.buffers.iter().map(|b| b.inode).collect();
    assert_eq!(inodes, [sys.inode], "{all:#?}");
    let b = &all.buffers[0];
    assert_eq!(
        (b.size, b.exporter.as_deref(), b.name.as_ref().and_then(|n| n.to_str())),
        (12_288, Some("system"), Some("SYS direct"))
    );
    assert_eq!(b.fd_refs, PidCounts::from([(sys.pid, 1)]));
    let rows: Vec<_> = all.processes.iter().map(|p| (p.pid, p.uid, p.rss, p.pss)).collect();
    assert_eq!(rows, [(sys.pid, SYSTEM, 12_288, 12_288)]);
    let apps: Vec<_> = all.apps.iter().map(|a| (a.uid, a.rss, a.complete)).collect();
    assert_eq!(apps, [(SYSTEM, 12_288, true)]);
    let t = &all.totals;
    // Readable: the service itself and the uid-1000 client; nothing else.
    let others: u32 = truth.iter().filter(|(&uid, _)| uid != SYSTEM).map(|(_, n)| n).sum();
    assert_eq!(
        (t.exported_bytes, t.userspace_rss, t.kernel_only_bytes, t.unreadable_processes),
        (None, 12_288, 0, others)
    );
    let c = &all.coverage;
    assert_eq!(c.scanner_uid, Some(SYSTEM));
    let sources: Vec<(&str, &str)> =
        c.sources.iter().map(|s| (s.source.as_str(), s.state.as_str())).collect();
    assert_eq!(
        sources,
        [
            ("procfs", "used"),
            ("debugfs-bufinfo", "absent"),
            ("bpf-iter", "absent"),
            ("sysfs-stats", "absent"),
            ("dmabuf_rss", "absent"),
            ("ledger", "used"),
        ],
        "{:#?}",
        c.sources
    );
    assert_eq!(c.sources[0].detail, "/proc read as uid 1000");
    let unreadable: Vec<_> = c.unreadable.iter().map(|u| (u.uid, u.processes)).collect();
    let expected: Vec<_> =
        truth.iter().filter(|(&uid, _)| uid != SYSTEM).map(|(&uid, &n)| (uid, n)).collect();
    assert_eq!(unreadable, expected, "ground truth {truth:?}");
    // The three app clients are all of uid 10057's processes.
    assert_eq!(truth.get(&APP), Some(&3));
    assert!(c.unreadable.iter().all(|u| u.dmabuf_rss.is_none() && u.counted_processes == 0));
    assert_eq!(c.vanished_processes, 0);
    // The ledger knows the two service allocations; nobody readable holds them and no kernel
    // list can say more. The direct app buffer is invisible to the service: said, not hidden.
    assert_eq!((c.unknown_holder_buffers, c.unknown_holder_bytes), (2, 65_536 + 16_384));
    let requested: Vec<_> =
        c.requested.iter().map(|r| (r.uid, r.buffers, r.bytes, r.held_bytes)).collect();
    assert_eq!(requested, [(APP, 2, 81_920, 0)]);

    // getLedger: who asked for what, exactly, whether or not the service can see the holders.
    let mut ledger: Vec<_> = acct
        .getLedger(ALL)
        .expect("getLedger")
        .into_iter()
        .map(|e| (e.inode as u64, e.size, e.name, e.uid as u32, e.pid, e.attributed))
        .collect();
    ledger.sort();
    let mut want = vec![
        (preview.inode, 65_536, "APP preview".to_string(), APP, preview.pid, true),
        (thumb.inode, 16_384, "APP thumb".to_string(), APP, thumb.pid, true),
    ];
    want.sort();
    assert_eq!(ledger, want);

    // getMyUsage as uid 10057 (a fourth process of the uid): nothing it can be shown is
    // visible, and the coverage says so: its processes are unreadable, the ledger knows 80 KiB.
    wait_out_scan_reuse(queries);
    let asked = std::time::Instant::now();
    let (mut me, mut out) = client(APP, "my-usage", &[]);
    let mut json = String::new();
    out.read_to_string(&mut json).expect("my-usage output");
    assert!(me.wait().expect("my-usage").success(), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["buffers"], serde_json::json!([]));
    assert_eq!(v["apps"], serde_json::json!([]));
    assert_eq!(
        v["coverage"]["unreadable"],
        serde_json::json!([{"uid": APP, "processes": 4, "dmabuf_rss": null, "dmabuf_rss_hwm": null,
                            "dmabuf_pss": null, "counted_processes": 0}])
    );
    assert_eq!(v["coverage"]["unknown_holder_bytes"], 81_920);
    assert_eq!(v["coverage"]["unknown_holder_buffers"], 2);
    assert_eq!(
        v["coverage"]["requested"],
        serde_json::json!([{"uid": APP, "buffers": 2, "bytes": 81_920, "held_bytes": 0}])
    );

    // The text table says it is partial, in one line under the table (once the fourth
    // process, gone now, is out of the service's latest scan).
    wait_out_scan_reuse(asked);
    let text = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["--service", "dump", "--bytes"])
        .output()
        .expect("dmabufctl --service dump");
    let text = String::from_utf8(text.stdout).expect("UTF-8");
    let footer = text.lines().last().expect("a footer");
    let (prefix, rest) = footer.split_once(" unreadable processes: ").expect(footer);
    assert_eq!(prefix, "coverage: partial; procfs read as uid 1000; sources: procfs, ledger;");
    assert!(rest.contains(&format!("uid {APP} x3")), "{footer}");
    assert!(rest.ends_with("; holders unknown: 2 buffers, 81920 bytes"), "{footer}");

    // dmabufctl as root, as dumpstate runs dmabuf_dump: every process is readable, so every
    // buffer is seen with its holder; only the kernel's list is missing.
    let root = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["dump", "-o", "json"])
        .output()
        .expect("dmabufctl dump");
    let v: serde_json::Value = serde_json::from_slice(&root.stdout).expect("JSON");
    let mut seen: Vec<(u64, u64)> = v["buffers"]
        .as_array()
        .expect("buffers")
        .iter()
        .map(|b| (b["inode"].as_u64().unwrap(), b["size"].as_u64().unwrap()))
        .collect();
    seen.sort();
    let mut want = vec![
        (sys.inode, 12_288),
        (app_direct.inode, 8192),
        (preview.inode, 65_536),
        (thumb.inode, 16_384),
    ];
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(v["coverage"]["scanner_uid"], 0);
    assert_eq!(v["coverage"]["unreadable"], serde_json::json!([]));
    assert_eq!(v["totals"]["exported_bytes"], serde_json::Value::Null);

    // dmabufctl as an app (uid 10057, not in readproc): /proc hides every other uid's processes
    // (hidepid=2), so it cannot even count them; the coverage says so instead of reporting a
    // complete-looking view of its own three holders.
    let app = Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["dump", "-o", "json"])
        .uid(APP)
        .gid(APP)
        .output()
        .expect("dmabufctl dump as the app");
    let v: serde_json::Value = serde_json::from_slice(&app.stdout).expect("JSON");
    let procfs = &v["coverage"]["sources"][0];
    assert_eq!((&procfs["source"], &procfs["state"]), (&"procfs".into(), &"denied".into()));
    assert!(procfs["detail"].as_str().unwrap().contains("hidden"), "{procfs}");
    let mut seen: Vec<u64> = v["buffers"]
        .as_array()
        .expect("buffers")
        .iter()
        .map(|b| b["inode"].as_u64().unwrap())
        .collect();
    seen.sort();
    let mut own = vec![app_direct.inode, preview.inode, thumb.inode];
    own.sort();
    assert_eq!(seen, own, "its own uid's buffers, nothing else");
    assert_eq!(v["coverage"]["unreadable"], serde_json::json!([]));
    assert_eq!(dmabufd_pid(), service_pid, "the service did not restart");
    drop((sys.child, app_direct.child, preview.child, thumb.child));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        match args.get(2).map(String::as_str) {
            Some("service") => client_service(&args[3..]),
            Some("direct") => client_direct(&args[3..]),
            Some("my-usage") => client_my_usage(),
            other => panic!("unknown client role {other:?}"),
        }
        return;
    }
    vm_support::run_plain(&[
        (
            "service_runs_as_system_without_capabilities",
            service_runs_as_system_without_capabilities,
        ),
        ("every_query_and_its_coverage", every_query_and_its_coverage),
    ]);
}
