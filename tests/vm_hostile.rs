//! Hostile input against the running service over kernel binder, in the VM (tests/vm/run).
//!
//! Every case asserts its exact answer: the documented `IAllocator.ERROR_*` code, the page-rounded
//! size of a valid request, an empty report, or, for input the binder stub itself refuses before
//! dmabufd sees it, the exact binder status. After every case the same service process must still
//! be up and a normal allocation must work.
//!
//! Invalid UTF-8 cannot be sent as such: AIDL `String`s travel as UTF-16, and a Rust client can
//! only encode valid text. What a hostile client *can* send is ill-formed UTF-16 (an unpaired
//! surrogate), written here into a raw parcel; rsbinder's stub refuses it with BAD_VALUE while
//! decoding the request, so the service's `NameError::NotUtf8` is unreachable over AIDL.
//!
//! `harness = false`, same stack as tests/vm_service.rs (see tests/vm_support).

mod vm_support;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use dmabufd::buffer::DmaBuf;
use dmabufd::service::compat::aidl::{
    AllocationRequest::AllocationRequest,
    IAccounting::{IAccounting, ALL},
    IAllocator::{self as codes, IAllocator},
};
use dmabufd::service::compat::{Interface, Status, StatusCode};
use rsbinder::Parcel;
use vm_support::{
    accounting, allocator, code, request, served_heaps, wait_freed, Config, Stack, Test,
};

/// Outstanding bytes per uid.
const QUOTA: u64 = 32 << 20;
/// The service's --max-size (see vm_support).
const MAX_SIZE: i64 = 1 << 30;

const CONFIG: Config = Config { heap_dir: "/tmp/vm_hostile-heaps", quota: QUOTA };

/// What a case must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A buffer of exactly this many bytes, named as asked.
    Size(i64),
    /// A service-specific error with this `ERROR_*` code.
    Code(i32),
}

fn req(heap: &str, size: i64, name: &str, heap_flags: i64) -> AllocationRequest {
    AllocationRequest { heap: heap.into(), size, name: name.into(), heapFlags: heap_flags }
}

fn fdinfo_name(fd: &OwnedFd) -> Option<String> {
    let text =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).expect("fdinfo");
    text.lines().find_map(|l| l.strip_prefix("name:\t")).map(str::to_owned)
}

/// The service that answered the first case is the one answering now, and it still allocates.
fn still_serves(stack: &Stack, pid: u32, after: &str) {
    assert_eq!(stack.pid(), pid, "after {after}: dmabufd was restarted");
    assert!(std::fs::metadata(format!("/proc/{pid}")).is_ok(), "after {after}: dmabufd died");
    let a = allocator()
        .allocate(&request("system", 4096, "after"))
        .unwrap_or_else(|s| panic!("after {after}: a normal allocation failed: {s:?}"));
    assert_eq!(a.size, 4096, "after {after}");
    let fd: OwnedFd = a.fd.expect("fd").into();
    assert_eq!(fdinfo_name(&fd).as_deref(), Some("after"), "after {after}");
    // The next case may ask for the whole quota: this buffer must be gone by then.
    drop(fd);
    wait_freed(a.inode as u64);
}

/// Runs each case, checks its answer exactly, then that the service still serves.
fn check_cases(stack: &Stack, cases: &[(&str, AllocationRequest, Expect)]) {
    let pid = stack.pid();
    let alloc = allocator();
    for (label, request, expect) in cases {
        match (alloc.allocate(request), expect) {
            (Ok(a), Expect::Size(size)) => {
                assert_eq!(a.size, *size, "{label}");
                let fd: OwnedFd = a.fd.expect("fd").into();
                // The kernel's name: the whole name, or its prefix for names over 31 bytes.
                let kernel = dmabufd::name::kernel_prefix(&request.name);
                assert_eq!(fdinfo_name(&fd).as_deref(), Some(kernel), "{label}");
                let buf = DmaBuf::from_fd(fd).expect("a dma-buf");
                assert_eq!((buf.inode() as i64, buf.size() as i64), (a.inode, *size), "{label}");
                drop(buf);
                wait_freed(a.inode as u64);
            }
            (result, Expect::Code(want)) => {
                assert_eq!(code(result), *want, "{label}");
            }
            (Err(status), Expect::Size(_)) => panic!("{label}: refused: {status:?}"),
        }
        still_serves(stack, pid, label);
    }
}

// ---------------------------------------------------------------------------------------------

fn sizes(stack: &mut Stack) {
    use Expect::{Code, Size};
    let invalid = Code(codes::ERROR_INVALID_ARGUMENT);
    let quota = QUOTA as i64;
    check_cases(
        stack,
        &[
            ("size 0", req("system", 0, "GL", 0), invalid),
            ("size 1", req("system", 1, "GL", 0), Size(4096)),
            ("size page-1", req("system", 4095, "GL", 0), Size(4096)),
            ("size page", req("system", 4096, "GL", 0), Size(4096)),
            ("size page+1", req("system", 4097, "GL", 0), Size(8192)),
            ("size -1", req("system", -1, "GL", 0), invalid),
            ("size -4096", req("system", -4096, "GL", 0), invalid),
            ("size i64::MIN", req("system", i64::MIN, "GL", 0), invalid),
            ("size i64::MAX", req("system", i64::MAX, "GL", 0), invalid),
            // Wraps to 0 if rounded up to a page without a check.
            ("size i64::MAX-4094", req("system", i64::MAX - 4094, "GL", 0), invalid),
            ("size max+1", req("system", MAX_SIZE + 1, "GL", 0), invalid),
            // Within --max-size but beyond any uid's quota: quota, not a malformed request.
            ("size quota+1", req("system", quota + 1, "GL", 0), Code(codes::ERROR_QUOTA_EXCEEDED)),
            // Exactly the quota is allowed.
            ("size quota", req("system", quota, "GL", 0), Size(quota)),
        ],
    );
}

fn over_quota_while_holding(stack: &mut Stack) {
    let pid = stack.pid();
    let alloc = allocator();
    let half = req("system", (QUOTA / 2) as i64, "held", 0);
    let held =
        [alloc.allocate(&half).expect("first half"), alloc.allocate(&half).expect("second half")];
    assert_eq!(code(alloc.allocate(&req("system", 1, "GL", 0))), codes::ERROR_QUOTA_EXCEEDED);
    let inodes = held.each_ref().map(|a| a.inode as u64);
    drop(held);
    inodes.into_iter().for_each(wait_freed);
    still_serves(stack, pid, "freeing what was held");
}

/// Clients rename what they hold (DMA_BUF_SET_NAME needs no permission but the fd) to names
/// the kernel prints raw in debugfs bufinfo: a row without inode (which once made every prune
/// fail, so no quota was released again) and a 1 GiB row. Pruning still reads the kernel's list:
/// once freed, the whole quota is free again.
fn forged_names_do_not_stop_pruning(stack: &mut Stack) {
    let pid = stack.pid();
    let alloc = allocator();
    let half = req("system", (QUOTA / 2) as i64, "forger", 0);
    let held = [alloc.allocate(&half).expect("first half"), alloc.allocate(&half).expect("second")];
    let inodes = held.each_ref().map(|a| a.inode as u64);
    let fds: Vec<OwnedFd> = held.into_iter().map(|a| a.fd.expect("fd").into()).collect();
    let names = [c"\n1000000000000000000\t0\t0\t1\tx\n", c"\n1073741824\t0\t0\t1\tx\t1\tv"];
    for (fd, name) in fds.iter().zip(names) {
        dmabufd::sys::set_name(fd.as_fd(), name).expect("a holder may rename");
    }
    // Refused after a prune that read the list despite the names: the quota is really held.
    assert_eq!(code(alloc.allocate(&req("system", 1, "GL", 0))), codes::ERROR_QUOTA_EXCEEDED);
    drop(fds);
    inodes.into_iter().for_each(wait_freed);
    let whole = alloc
        .allocate(&req("system", QUOTA as i64, "whole", 0))
        .expect("freed buffers pruned despite their names");
    assert_eq!(whole.size, QUOTA as i64);
    let whole_inode = whole.inode as u64;
    drop(whole);
    wait_freed(whole_inode);
    still_serves(stack, pid, "forged names");
}

fn names(stack: &mut Stack) {
    use Expect::{Code, Size};
    let invalid = Code(codes::ERROR_INVALID_NAME);
    let a31 = "a".repeat(31);
    let a32 = "a".repeat(32);
    let a128 = "a".repeat(128);
    let a129 = "a".repeat(129);
    let a4096 = "a".repeat(4096);
    let a200k = "a".repeat(200_000);
    // The limit is in UTF-8 bytes (what the ledger keeps), not in UTF-16 units (the wire).
    let euro42 = "€".repeat(42); // 126 bytes
    let euro43 = "€".repeat(43); // 129 bytes, 43 UTF-16 units
    check_cases(
        stack,
        &[
            ("name empty", req("system", 4096, "", 0), invalid),
            ("name 1 byte", req("system", 4096, "x", 0), Size(4096)),
            ("name 31 bytes", req("system", 4096, &a31, 0), Size(4096)),
            // Over the kernel's 31: the kernel gets a prefix, the ledger all of it (vm_handoff).
            ("name 32 bytes", req("system", 4096, &a32, 0), Size(4096)),
            ("name 128 bytes", req("system", 4096, &a128, 0), Size(4096)),
            ("name 129 bytes", req("system", 4096, &a129, 0), invalid),
            ("name 4096 bytes", req("system", 4096, &a4096, 0), invalid),
            ("name 200000 bytes", req("system", 4096, &a200k, 0), invalid),
            ("name with NUL", req("system", 4096, "a\0b", 0), invalid),
            ("name NUL only", req("system", 4096, "\0", 0), invalid),
            ("name with newline", req("system", 4096, "a\nb", 0), invalid),
            ("name with tab", req("system", 4096, "a\tb", 0), invalid),
            ("name with ESC", req("system", 4096, "\x1b[31m", 0), invalid),
            ("name with DEL", req("system", 4096, "a\x7f", 0), invalid),
            ("name with space", req("system", 4096, "CAMERA preview", 0), Size(4096)),
            ("name 126 bytes of €", req("system", 4096, &euro42, 0), Size(4096)),
            ("name 129 bytes of €", req("system", 4096, &euro43, 0), invalid),
        ],
    );
}

fn heap_names(stack: &mut Stack) {
    use Expect::Code;
    let invalid = Code(codes::ERROR_INVALID_ARGUMENT);
    let unknown = Code(codes::ERROR_UNKNOWN_HEAP);
    let long = "h".repeat(4096);
    check_cases(
        stack,
        &[
            ("heap empty", req("", 4096, "GL", 0), invalid),
            ("heap .", req(".", 4096, "GL", 0), invalid),
            ("heap ..", req("..", 4096, "GL", 0), invalid),
            ("heap ../", req("../", 4096, "GL", 0), invalid),
            ("heap system/../x", req("system/../x", 4096, "GL", 0), invalid),
            ("heap system/", req("system/", 4096, "GL", 0), invalid),
            ("heap /dev/dma_heap/system", req("/dev/dma_heap/system", 4096, "GL", 0), invalid),
            ("heap ../../../dev/zero", req("../../../dev/zero", 4096, "GL", 0), invalid),
            ("heap with NUL", req("system\0", 4096, "GL", 0), invalid),
            ("heap unknown", req("nope", 4096, "GL", 0), unknown),
            ("heap SYSTEM", req("SYSTEM", 4096, "GL", 0), unknown),
            ("heap system with space", req("system ", 4096, "GL", 0), unknown),
            // Longer than NAME_MAX: not a file name at all.
            ("heap 4096 bytes", req(&long, 4096, "GL", 0), invalid),
            // Exists, but opening it fails in the kernel (ELOOP).
            ("heap loop", req("loop", 4096, "GL", 0), Code(codes::ERROR_IO)),
        ],
    );
    assert_eq!(allocator().getHeaps().expect("getHeaps"), served_heaps());
}

fn heap_flags(stack: &mut Stack) {
    use Expect::Code;
    let invalid = Code(codes::ERROR_INVALID_ARGUMENT);
    check_cases(
        stack,
        &[
            // Passed through; the mainline system heap answers EINVAL.
            ("heapFlags 1", req("system", 4096, "GL", 1), invalid),
            ("heapFlags 1<<62", req("system", 4096, "GL", 1 << 62), invalid),
            ("heapFlags -1", req("system", 4096, "GL", -1), invalid),
            ("heapFlags i64::MIN", req("system", 4096, "GL", i64::MIN), invalid),
        ],
    );
    // Refusals after the quota reservation give it back: 64 refused requests for half the
    // quota each, then the whole quota in one buffer.
    let alloc = allocator();
    let half = req("system", (QUOTA / 2) as i64, "GL", 1);
    for _ in 0..64 {
        assert_eq!(code(alloc.allocate(&half)), codes::ERROR_INVALID_ARGUMENT);
    }
    let whole = alloc
        .allocate(&req("system", QUOTA as i64, "whole", 0))
        .expect("no quota leaked by refused requests");
    let whole_inode = whole.inode as u64;
    assert_eq!(whole.size, QUOTA as i64);
    drop(whole);
    wait_freed(whole_inode);
}

fn queries_for_nobody(stack: &mut Stack) {
    let pid = stack.pid();
    // Held by this process, so that an unfiltered report is not empty.
    let held = allocator().allocate(&request("system", 65536, "held")).expect("allocate");
    let acct = accounting();
    let all = acct.getReport(ALL, ALL).expect("report");
    assert!(all.buffers.iter().any(|b| b.inode == held.inode));
    let gone = {
        let mut child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id() as i32;
        child.wait().expect("reap");
        pid
    };
    for (uid, pid) in [
        (77_777, ALL),
        (i32::MAX, ALL),
        (ALL, i32::MAX),
        (ALL, gone),
        (0, i32::MAX),
        (77_777, std::process::id() as i32),
    ] {
        let r =
            acct.getReport(uid, pid).unwrap_or_else(|s| panic!("getReport({uid}, {pid}): {s:?}"));
        let shape = (
            r.buffers.len(),
            r.processes.len(),
            r.apps.len(),
            r.names.len(),
            r.heaps.len(),
            r.totals.userspaceRss,
            r.totals.userspacePss,
        );
        assert_eq!(shape, (0, 0, 0, 0, 0, 0, 0), "getReport({uid}, {pid})");
    }
    for uid in [77_777, i32::MAX] {
        assert_eq!(acct.getLedger(uid).expect("ledger").len(), 0, "uid {uid}");
    }
    for (uid, pid) in [(-2, ALL), (ALL, -2), (i32::MIN, ALL), (ALL, i32::MIN), (-3, -3)] {
        assert_eq!(
            code(acct.getReport(uid, pid)),
            codes::ERROR_INVALID_ARGUMENT,
            "getReport({uid}, {pid})"
        );
    }
    for uid in [-2, i32::MIN] {
        assert_eq!(code(acct.getLedger(uid)), codes::ERROR_INVALID_ARGUMENT, "getLedger({uid})");
    }
    drop(held);
    still_serves(stack, pid, "queries");
}

// ---- Raw parcels: what no well-behaved client can send. ---------------------------------------

/// `IAllocator.allocate`'s transaction code (the first method).
const ALLOCATE: u32 = rsbinder::FIRST_CALL_TRANSACTION;

/// Writes a `String16` as the wire has it: unit count, units, a NUL unit, padding to 4 bytes.
fn write_units(p: &mut Parcel, len: i32, units: &[u16]) -> rsbinder::Result<()> {
    p.write_i32(len)?;
    let mut all = units.to_vec();
    all.push(0);
    if all.len() % 2 == 1 {
        all.push(0);
    }
    for pair in all.chunks_exact(2) {
        p.write_u32(u32::from(pair[0]) | (u32::from(pair[1]) << 16))?;
    }
    Ok(())
}

fn units(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// A request parcelable with raw string units for heap and name.
fn write_request(p: &mut Parcel, heap: &[u16], size: i64, name: &[u16]) -> rsbinder::Result<()> {
    p.write_i32(1)?; // non-null
    p.sized_write(|p| {
        write_units(p, heap.len() as i32, heap)?;
        p.write_i64(size)?;
        write_units(p, name.len() as i32, name)?;
        p.write_i64(0)
    })
}

/// Sends a hand-written transaction to the allocator: the transaction's own error, or the
/// status at the head of the reply.
fn raw(
    code: u32,
    write: impl FnOnce(&mut Parcel) -> rsbinder::Result<()>,
) -> Result<Status, StatusCode> {
    let binder = allocator().as_binder();
    let remote = binder.as_remote().expect("a remote binder");
    let mut data = remote.prepare_transact(true)?;
    write(&mut data)?;
    let mut reply = remote
        .submit_transact(code, &data, rsbinder::FLAG_CLEAR_BUF)?
        .ok_or(StatusCode::UnexpectedNull)?;
    reply.read::<Status>()
}

fn raw_parcels(stack: &mut Stack) {
    let pid = stack.pid();
    let (system, gl) = (units("system"), units("GL"));
    // The raw encoding itself is right: a well-formed request succeeds.
    let ok = raw(ALLOCATE, |p| write_request(p, &system, 4096, &gl)).expect("transaction");
    assert!(ok.is_ok(), "{ok:?}");
    still_serves(stack, pid, "raw well-formed request");

    let transaction_error = |label: &str, want: StatusCode, r: Result<Status, StatusCode>| {
        match r {
            Err(got) => assert_eq!(got, want, "{label}"),
            Ok(status) => panic!("{label}: answered {status:?}, expected {want:?}"),
        }
        still_serves(stack, pid, label);
    };
    // Ill-formed UTF-16: what "invalid UTF-8" becomes on the AIDL wire.
    for (label, bad) in [
        ("name lone high surrogate", vec![0x61, 0xd800]),
        ("name lone low surrogate", vec![0xdc00, 0x61]),
        ("name reversed pair", vec![0xdc00, 0xd800]),
    ] {
        transaction_error(
            label,
            StatusCode::BadValue,
            raw(ALLOCATE, |p| write_request(p, &system, 4096, &bad)),
        );
    }
    transaction_error(
        "heap lone surrogate",
        StatusCode::BadValue,
        raw(ALLOCATE, |p| write_request(p, &[0xd800], 4096, &gl)),
    );
    transaction_error(
        "null request",
        StatusCode::UnexpectedNull,
        raw(ALLOCATE, |p| p.write_i32(0)),
    );
    transaction_error(
        "parcelable size beyond the data",
        StatusCode::NotEnoughData,
        raw(ALLOCATE, |p| {
            p.write_i32(1)?;
            p.write_i32(1 << 20)
        }),
    );
    transaction_error(
        "string length -2",
        StatusCode::UnexpectedNull,
        raw(ALLOCATE, |p| {
            p.write_i32(1)?;
            p.sized_write(|p| p.write_i32(-2))
        }),
    );
    transaction_error(
        "string length beyond the data",
        StatusCode::NotEnoughData,
        raw(ALLOCATE, |p| {
            p.write_i32(1)?;
            p.sized_write(|p| write_units(p, 1 << 28, &[0x61]))
        }),
    );
    transaction_error(
        "unknown transaction",
        StatusCode::UnknownTransaction,
        raw(rsbinder::FIRST_CALL_TRANSACTION + 77, |_| Ok(())),
    );
    // A parcelable with no fields decodes to the defaults (stable AIDL's forward
    // compatibility): heap "" is a malformed request, answered by dmabufd itself.
    let empty = raw(ALLOCATE, |p| {
        p.write_i32(1)?;
        p.sized_write(|_| Ok(()))
    })
    .expect("transaction");
    assert_eq!(code(Err::<(), _>(empty)), codes::ERROR_INVALID_ARGUMENT);
    still_serves(stack, pid, "parcelable without fields");
    // Let the binder threads finish with whatever they were given.
    std::thread::sleep(Duration::from_millis(100));
    still_serves(stack, pid, "raw parcels");
}

fn main() {
    let tests: [(&str, Test); 8] = [
        ("sizes", sizes),
        ("over_quota_while_holding", over_quota_while_holding),
        ("forged_names_do_not_stop_pruning", forged_names_do_not_stop_pruning),
        ("names", names),
        ("heap_names", heap_names),
        ("heap_flags", heap_flags),
        ("queries_for_nobody", queries_for_nobody),
        ("raw_parcels", raw_parcels),
    ];
    vm_support::run_suite(&tests, CONFIG);
}
