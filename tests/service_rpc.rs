//! The dmabufd service over binder RPC (a unix socket), on the host: no kernel binder, no service
//! manager, usually no dma-buf heaps. What this covers without heaps: the registration of both
//! interfaces, heap listing, every error code that is decided before the kernel is asked, the
//! uid allowlist (with the test's own uid left off it), and `dmabufctl --service` end to end.
//! Allocation itself is covered in the VM (tests/vm_service.rs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use dmabufd::service::compat::aidl::{
    AllocationRequest::AllocationRequest,
    IAccounting::{IAccounting, ALL},
    IAllocator::{self as codes, IAllocator},
};
use dmabufd::service::compat::{self, Strong, Transport, ACCOUNTING_INSTANCE, ALLOCATOR_INSTANCE};
use dmabufd::service::errors::from_status;
use dmabufd::Error;

/// A `dmabufd --rpc` child, killed on drop.
struct Service {
    child: Child,
    socket: PathBuf,
}

impl Service {
    fn start(tag: &str, args: &[&str]) -> Service {
        let socket =
            std::env::temp_dir().join(format!("dmabufd-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(env!("CARGO_BIN_EXE_dmabufd"))
            .arg("--rpc")
            .arg(&socket)
            .args(args)
            .spawn()
            .expect("start dmabufd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "dmabufd did not create {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Service { child, socket }
    }

    fn transport(&self) -> Transport {
        Transport::Rpc(self.socket.clone())
    }

    fn allocator(&self) -> Strong<dyn IAllocator> {
        compat::connect(&self.transport(), ALLOCATOR_INSTANCE, Duration::from_secs(10))
            .expect("IAllocator")
    }

    fn accounting(&self) -> Strong<dyn IAccounting> {
        compat::connect(&self.transport(), ACCOUNTING_INSTANCE, Duration::from_secs(10))
            .expect("IAccounting")
    }

    fn dmabufctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
            .args(["--service", "--rpc"])
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run dmabufctl")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn my_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// An allowlist that leaves out the uid running the tests, so it acts as an ordinary app.
fn someone_else() -> String {
    my_uid().wrapping_add(1).to_string()
}

fn code(result: Result<impl std::fmt::Debug, dmabufd::service::compat::Status>) -> i32 {
    match from_status(&result.expect_err("the call must fail")) {
        Error::Service { code, .. } => code,
        other => panic!("not a service-specific error: {other}"),
    }
}

fn request(heap: &str, size: i64, name: &str, flags: i64) -> AllocationRequest {
    AllocationRequest { heap: heap.into(), size, name: name.into(), heapFlags: flags }
}

fn heaps_on_this_host() -> Vec<String> {
    let mut heaps: Vec<String> = std::fs::read_dir(Path::new("/dev/dma_heap"))
        .map(|dir| dir.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    heaps.sort();
    heaps
}

#[test]
fn heaps_match_dev_dma_heap() {
    let service = Service::start("heaps", &[]);
    assert_eq!(service.allocator().getHeaps().expect("getHeaps"), heaps_on_this_host());
    let out = service.dmabufctl(&["heaps"]);
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(listed, heaps_on_this_host());
}

#[test]
fn requests_refused_before_the_kernel_get_their_documented_codes() {
    let service = Service::start("codes", &["--quota", "8K", "--max-size", "1M"]);
    let alloc = service.allocator();
    let cases = [
        (request("system", 0, "GL", 0), codes::ERROR_INVALID_ARGUMENT),
        (request("system", -4096, "GL", 0), codes::ERROR_INVALID_ARGUMENT),
        // Heap flags travel bit for bit, bit 63 included: only the heap may refuse them.
        (request("no-such-heap", 4096, "GL", i64::MIN), codes::ERROR_UNKNOWN_HEAP),
        (request("no-such-heap", 4096, "GL", -1), codes::ERROR_UNKNOWN_HEAP),
        (request("system", 2 << 20, "GL", 0), codes::ERROR_INVALID_ARGUMENT),
        (request("../system", 4096, "GL", 0), codes::ERROR_INVALID_ARGUMENT),
        (request("no-such-heap", 4096, "GL", 0), codes::ERROR_UNKNOWN_HEAP),
        (request("system", 4096, "", 0), codes::ERROR_INVALID_NAME),
        (request("system", 4096, &"n".repeat(129), 0), codes::ERROR_INVALID_NAME),
        (request("system", 4096, "tab\there", 0), codes::ERROR_INVALID_NAME),
        (request("system", 12 << 10, "GL", 0), codes::ERROR_QUOTA_EXCEEDED),
    ];
    for (req, want) in cases {
        assert_eq!(code(alloc.allocate(&req)), want, "{req:?}");
    }
    let acct = service.accounting();
    assert_eq!(code(acct.getReport(-2, ALL)), codes::ERROR_INVALID_ARGUMENT);
    assert_eq!(code(acct.getReport(ALL, -7)), codes::ERROR_INVALID_ARGUMENT);
    assert_eq!(code(acct.getLedger(-3)), codes::ERROR_INVALID_ARGUMENT);
    // V2 uids are `long`: -1 is ALL, 0..=u32::MAX a uid, anything else malformed.
    for uid in [-2, 1 << 32, i64::MIN, i64::MAX] {
        assert_eq!(code(acct.getLedgerPage(uid, 0)), codes::ERROR_INVALID_ARGUMENT, "{uid}");
        assert_eq!(code(acct.getHandoffPage(uid, 0)), codes::ERROR_INVALID_ARGUMENT, "{uid}");
        assert_eq!(code(acct.getReportPage(uid, ALL, 0)), codes::ERROR_INVALID_ARGUMENT, "{uid}");
    }
    assert_eq!(code(acct.getReportPage(i64::from(ALL), -7, 0)), codes::ERROR_INVALID_ARGUMENT);
    // A cursor the service never handed out, or a negative one.
    let me = i64::from(my_uid());
    for cursor in [-5, 1, (77 << 32) | 3, i64::MAX] {
        assert_eq!(code(acct.getLedgerPage(me, cursor)), codes::ERROR_CURSOR_EXPIRED, "{cursor}");
        assert_eq!(
            code(acct.getReportPage(me, ALL, cursor)),
            codes::ERROR_CURSOR_EXPIRED,
            "{cursor}"
        );
    }
}

/// The message of a failed call.
fn message(result: Result<impl std::fmt::Debug, dmabufd::service::compat::Status>) -> String {
    match from_status(&result.expect_err("the call must fail")) {
        Error::Service { message, .. } => message,
        other => panic!("not a service-specific error: {other}"),
    }
}

#[test]
fn v2_selects_uid_4294967295_bit_for_bit_and_v1_reads_it_as_all() {
    let service = Service::start("uidmax", &["--allow-uid", &someone_else()]);
    let acct = service.accounting();
    let me = my_uid();
    // V2: u32::MAX is a uid like any other, so an ordinary caller may not ask for it...
    assert_eq!(
        message(acct.getLedgerPage(i64::from(u32::MAX), 0)),
        format!("permission denied: uid {me} may not query uid 4294967295")
    );
    assert_eq!(
        message(acct.getReportPage(i64::from(u32::MAX), ALL, 0)),
        format!("permission denied: uid {me} may not query uid 4294967295")
    );
    // ... while V1's -1 is documented as ALL.
    assert_eq!(
        message(acct.getLedger(-1)),
        format!("permission denied: uid {me} may only query its own uid ({me})")
    );
    // Its own uid, paged: one page, the last.
    let page = acct.getLedgerPage(i64::from(me), 0).expect("own ledger");
    assert_eq!((page.entries.len(), page.cursor), (0, 0));
    let page = acct.getReportPage(i64::from(me), ALL, 0).expect("own report");
    assert_eq!(page.cursor, 0);
    assert!(page.report.processes.iter().all(|p| p.uid as u32 == me), "{page:?}");
    // The CLI asks V2, so --uid 4294967295 is that uid, not everyone.
    let out = service.dmabufctl(&["ledger", "--uid", "4294967295"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("dmabufctl: permission denied: uid {me} may not query uid 4294967295\n")
    );
    let out = service.dmabufctl(&["dump", "--uid", "4294967295"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn quota_error_names_uid_and_limit() {
    let service = Service::start("quota", &["--quota", "8K"]);
    let status = service
        .allocator()
        .allocate(&request("system", 12 << 10, "GL", 0))
        .expect_err("over quota");
    match from_status(&status) {
        Error::Service { code, message } => {
            assert_eq!(code, codes::ERROR_QUOTA_EXCEEDED);
            assert_eq!(
                message,
                format!("quota exceeded: uid {} holds 0 bytes, limit 8192", my_uid())
            );
        }
        other => panic!("{other}"),
    }
}

#[test]
fn callers_off_the_allowlist_see_only_their_own_uid() {
    let service = Service::start("allow", &["--allow-uid", &someone_else()]);
    let acct = service.accounting();
    let me = i32::from_ne_bytes(my_uid().to_ne_bytes());
    let other = me.wrapping_add(1) & i32::MAX;
    assert_eq!(code(acct.getLedger(ALL)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getLedger(other)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getReport(ALL, ALL)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getReport(other, ALL)), codes::ERROR_PERMISSION_DENIED);
    assert_eq!(code(acct.getReport(ALL, 1)), codes::ERROR_PERMISSION_DENIED);
    assert!(acct.getLedger(me).expect("own ledger").is_empty());
    let mine = acct.getReport(me, ALL).expect("own report");
    assert!(mine.processes.iter().all(|p| p.uid == me), "{mine:?}");
    let usage = acct.getMyUsage().expect("getMyUsage");
    assert!(usage.processes.iter().all(|p| p.uid == me), "{usage:?}");

    // The CLI maps the refusal to exit status 1 and one line on stderr.
    let out = service.dmabufctl(&["ledger"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "dmabufctl: permission denied: uid {0} may only query its own uid ({0})\n",
            my_uid()
        )
    );
    let out = service.dmabufctl(&["ledger", "--uid", &my_uid().to_string(), "-o", "csv"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Inode,Size,Heap,Uid,Pid,TimeMs,Name\n");
}

#[test]
fn allowlisted_callers_see_everyone_and_bad_input_exits_2() {
    let service = Service::start("allowed", &["--allow-uid", &my_uid().to_string()]);
    let report = service.accounting().getReport(ALL, ALL).expect("full report");
    assert!(report.totals.userspaceRss >= 0);
    let out = service.dmabufctl(&["dump", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(json.get("totals").is_some(), "{json}");
    let out =
        service.dmabufctl(&["alloc", "--heap", "no-such-heap", "--size", "4K", "--name", "GL"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
