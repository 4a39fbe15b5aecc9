//! dmabufd's `android.hardware.memtrack.IMemtrack/default` over kernel binder, in the VM
//! (tests/vm/run). Runs as root, which is on the service's allowlist as system_server is.
//!
//! The test process allocates named buffers of sizes it chose, shares one with a child (which
//! inherits the fd), and asks memtrack about itself and the child for every type: each answer
//! must be exactly the bytes the names and holders imply (src/memtrack.rs). It also checks why
//! every record says `SMAPS_UNACCOUNTED`: the heap buffer it maps and touches shows no Rss in
//! smaps. `harness = false`: the tests share one private service manager.

mod vm_support;

use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use dmabufd::buffer::DmaBuf;
use dmabufd::heap::{AllocRequest, Allocator};
use dmabufd::service::compat::aidl::IAllocator as codes;
use dmabufd::service::compat::memtrack_aidl::IMemtrack::IMemtrack;
use dmabufd::service::compat::memtrack_aidl::MemtrackRecord::{
    MemtrackRecord, FLAG_PRIVATE, FLAG_SHARED_PSS, FLAG_SMAPS_UNACCOUNTED,
};
use dmabufd::service::compat::memtrack_aidl::MemtrackType::MemtrackType;
use dmabufd::service::compat::{self, Strong, MEMTRACK_INSTANCE};
use vm_support::{code, transport, Config, Reaped, Stack, Test};

const PAGE: u64 = 4096;
const CONFIG: Config = Config { heap_dir: "/tmp/vm_memtrack-heaps", quota: 64 << 20 };

fn memtrack() -> Strong<dyn IMemtrack> {
    compat::connect(&transport(), MEMTRACK_INSTANCE, Duration::from_secs(10)).expect("IMemtrack")
}

fn allocate(name: &str, pages: u64) -> DmaBuf {
    let req =
        AllocRequest { heap: "system", size: pages * PAGE, name: name.as_bytes(), heap_flags: 0 };
    Allocator::new().allocate(&req).expect("allocate")
}

/// (private, shared Pss) of `pid` for `kind`, checking the two records' flags.
fn sizes(service: &Strong<dyn IMemtrack>, pid: i32, kind: MemtrackType) -> (i64, i64) {
    let records = service.getMemory(pid, kind).expect("getMemory");
    let flags: Vec<i32> = records.iter().map(|r: &MemtrackRecord| r.flags).collect();
    assert_eq!(
        flags,
        [FLAG_SMAPS_UNACCOUNTED | FLAG_PRIVATE, FLAG_SMAPS_UNACCOUNTED | FLAG_SHARED_PSS],
        "{kind:?}"
    );
    (records[0].sizeInBytes, records[1].sizeInBytes)
}

fn exact_values_per_type(_: &mut Stack) {
    let pid = std::process::id() as i32;
    let _gl = allocate("GL texture", 3);
    let _gles = allocate("GLES scratch", 1);
    let _camera = allocate("CAMERA raw", 2);
    let _other = allocate("gralloc", 5);
    let codec = allocate("codec:avc", 8);
    // The child inherits the codec buffer's fd: a buffer of two holders, four pages each.
    let raw = codec.as_fd().as_raw_fd();
    rustix::io::fcntl_setfd(codec.as_fd(), rustix::io::FdFlags::empty()).expect("clear CLOEXEC");
    let child =
        Reaped(Command::new("sleep").arg("60").stdin(Stdio::null()).spawn().expect("spawn sleep"));
    rustix::io::fcntl_setfd(codec.as_fd(), rustix::io::FdFlags::CLOEXEC).expect("set CLOEXEC");
    let child_pid = child.0.id() as i32;
    let link = std::fs::read_link(format!("/proc/{child_pid}/fd/{raw}")).expect("child holds it");
    assert!(link.to_string_lossy().starts_with("/dmabuf:"), "{link:?}");

    let service = memtrack();
    let p = |pages: u64| (pages * PAGE) as i64;
    // The service reuses a scan for a moment (src/service/scans.rs), and one ran when it
    // started: wait for a scan that saw these buffers, which only allocations through the
    // service would force.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sizes(&service, pid, MemtrackType::GRAPHICS) != (p(11), p(4)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            sizes(&service, pid, MemtrackType::GRAPHICS)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sizes(&service, pid, MemtrackType::GL), (p(4), 0));
    assert_eq!(sizes(&service, pid, MemtrackType::CAMERA), (p(2), 0));
    assert_eq!(sizes(&service, pid, MemtrackType::MULTIMEDIA), (0, p(4)));
    assert_eq!(sizes(&service, pid, MemtrackType::OTHER), (p(5), 0));
    assert_eq!(sizes(&service, pid, MemtrackType::GRAPHICS), (p(11), p(4)));
    assert_eq!(sizes(&service, child_pid, MemtrackType::MULTIMEDIA), (0, p(4)));
    assert_eq!(sizes(&service, child_pid, MemtrackType::GRAPHICS), (0, p(4)));
    assert_eq!(sizes(&service, child_pid, MemtrackType::GL), (0, 0));
    assert_eq!(service.getGpuDeviceInfo().expect("getGpuDeviceInfo").len(), 0);
    drop(child);
}

fn bad_arguments_are_refused(_: &mut Stack) {
    let service = memtrack();
    assert_eq!(code(service.getMemory(-5, MemtrackType::GRAPHICS)), codes::ERROR_INVALID_ARGUMENT);
    assert_eq!(code(service.getMemory(0, MemtrackType::GRAPHICS)), codes::ERROR_INVALID_ARGUMENT);
    assert_eq!(code(service.getMemory(1, MemtrackType(5))), codes::ERROR_INVALID_ARGUMENT);
    assert_eq!(code(service.getMemory(1, MemtrackType(-1))), codes::ERROR_INVALID_ARGUMENT);
    // The service still answers.
    assert_eq!(sizes(&service, 1, MemtrackType::GRAPHICS), (0, 0));
}

/// Why every record is SMAPS_UNACCOUNTED: a heap buffer's pages, mapped and written, show no
/// Rss in the mapping's smaps entry, so they are not in the process's smaps Pss.
fn heap_mappings_are_not_in_smaps(_: &mut Stack) {
    let buf = allocate("GL smaps probe", 4);
    let map = buf.map().expect("map");
    let w = map.cpu_access(dmabufd::sys::SyncAccess::Write).expect("sync");
    w.fill(0, map.len(), 0x5a).expect("touch every page");
    w.end().expect("sync end");
    let start = format!("{:x}-", map.addr());
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    // The mapping's header line, then its fields up to the next mapping's header.
    let entry: Vec<&str> = smaps.lines().skip_while(|l| !l.starts_with(&start)).collect();
    assert!(entry.first().is_some_and(|l| l.contains("/dmabuf:")), "{entry:?}");
    let rss = entry.iter().find(|l| l.starts_with("Rss:")).expect("Rss line");
    assert_eq!(rss.split_whitespace().nth(1), Some("0"), "{entry:?}");
}

fn main() {
    let tests: [(&str, Test); 3] = [
        ("exact_values_per_type", exact_values_per_type),
        ("bad_arguments_are_refused", bad_arguments_are_refused),
        ("heap_mappings_are_not_in_smaps", heap_mappings_are_not_in_smaps),
    ];
    vm_support::run_suite(&tests, CONFIG);
}
