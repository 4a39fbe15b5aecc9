//! Kernel side on a real kernel (run inside the VM by `tests/vm/run`, as root): heap allocation,
//! naming, mapping and CPU sync, and every error the kernel can produce, checked against what the
//! kernel itself publishes in /proc and debugfs.
//!
//! Tests run in parallel threads of one process, so every check is keyed by the buffer's inode.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use dmabufd::buffer::DmaBuf;
use dmabufd::error::{NameError, SizeError};
use dmabufd::heap::{AllocRequest, Allocator, DEFAULT_MAX_SIZE, HEAP_DIR};
use dmabufd::sys::{self, Errno, MapAccess, SetNameIoctl, SharedMap, SyncAccess};
use dmabufd::Error;

mod data_bins;

const BUFINFO: &str = "/sys/kernel/debug/dma_buf/bufinfo";

fn dmabufctl_path() -> std::path::PathBuf {
    data_bins::project_bin("dmabufctl", option_env!("CARGO_BIN_EXE_dmabufctl"))
}

fn alloc(size: u64, name: &str) -> DmaBuf {
    let req = AllocRequest { heap: "system", size, name: name.as_bytes(), heap_flags: 0 };
    Allocator::new()
        .allocate(&req)
        .unwrap_or_else(|e| panic!("allocating {size} bytes named {name:?}: {e}"))
}

fn open_system_heap() -> OwnedFd {
    sys::open_heap(format!("{HEAP_DIR}/system").as_ref()).expect("open the system heap")
}

fn fdinfo(fd: &impl AsFd) -> String {
    fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))
        .expect("read fdinfo")
}

fn fd_link(fd: &impl AsFd) -> String {
    let link =
        fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).expect("readlink fd");
    link.to_string_lossy().into_owned()
}

/// The bufinfo row of a buffer, split into its tab-separated columns:
/// size, flags, mode, count, exp_name, ino, name.
fn bufinfo_row(inode: u64) -> Option<Vec<String>> {
    let text = fs::read_to_string(BUFINFO).expect("read debugfs bufinfo (is debugfs mounted?)");
    text.lines()
        .map(|line| line.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .find(|cols| cols.len() == 7 && cols[5].parse::<u64>().ok() == Some(inode))
}

/// Lines of a maps file that belong to this buffer (inode column, then the path).
fn maps_lines(maps: &str, inode: u64) -> Vec<String> {
    maps.lines()
        .filter(|line| {
            let mut cols = line.split_ascii_whitespace();
            cols.nth(4).and_then(|c| c.parse::<u64>().ok()) == Some(inode)
                && cols.next().is_some_and(|path| path.starts_with("/dmabuf:"))
        })
        .map(str::to_owned)
        .collect()
}

/// Every heap device the kernel created, read independently of the library.
fn heaps_on_disk() -> Vec<String> {
    let mut heaps: Vec<String> = fs::read_dir(HEAP_DIR)
        .expect("read /dev/dma_heap")
        .map(|e| e.expect("dir entry").file_name().into_string().expect("utf-8 heap name"))
        .collect();
    heaps.sort();
    heaps
}

#[test]
fn named_buffer_in_fdinfo_fd_link_and_bufinfo_until_closed() {
    let page = dmabufd::units::page_size();
    let buf = alloc(3 * page + 1, "CAMERA");
    assert_eq!(buf.size(), 4 * page, "the kernel rounds to whole pages");
    let st = sys::fstat(buf.as_fd()).expect("fstat");
    assert_eq!((st.inode, st.size), (buf.inode(), 4 * page));
    assert_eq!(sys::is_dma_buf(buf.as_fd()), Ok(true));

    let info = fdinfo(&buf);
    let lines: Vec<&str> = info.lines().collect();
    for expected in [
        "pos:\t0".to_string(),
        "flags:\t02000002".to_string(),
        format!("ino:\t{}", buf.inode()),
        format!("size:\t{}", 4 * page),
        "count:\t1".to_string(),
        "exp_name:\tsystem".to_string(),
        "name:\tCAMERA".to_string(),
    ] {
        assert!(lines.contains(&expected.as_str()), "fdinfo lacks {expected:?}:\n{info}");
    }
    assert_eq!(fd_link(&buf), "/dmabuf:CAMERA");

    let row = bufinfo_row(buf.inode()).expect("bufinfo lists the buffer");
    assert_eq!(row[0], format!("{:08}", 4 * page));
    assert_eq!(row[3], "00000001", "count");
    assert_eq!(row[4], "system");
    assert_eq!(row[6], "CAMERA");

    let inode = buf.inode();
    drop(buf);
    assert_eq!(bufinfo_row(inode), None, "bufinfo still lists the closed buffer");
}

#[test]
fn unnamed_buffer_has_no_name_line() {
    let heap = open_system_heap();
    let fd = sys::heap_alloc(heap.as_fd(), 4096, 0).expect("raw alloc");
    let info = fdinfo(&fd);
    assert!(!info.contains("\nname:"), "{info}");
    assert_eq!(fd_link(&fd), "/dmabuf:");
    let inode = sys::fstat(fd.as_fd()).expect("fstat").inode;
    assert_eq!(bufinfo_row(inode).map(|r| r[6].clone()), Some("<none>".to_string()));
}

#[test]
fn name_with_space_in_fd_link_maps_and_bufinfo() {
    let buf = alloc(8192, "CAMERA preview");
    assert_eq!(fd_link(&buf), "/dmabuf:CAMERA preview");
    assert!(fdinfo(&buf).lines().any(|l| l == "name:\tCAMERA preview"));
    let map = buf.map().expect("map");
    let start = map.addr();
    let maps = fs::read_to_string("/proc/self/maps").expect("read maps");
    let lines = maps_lines(&maps, buf.inode());
    assert_eq!(lines.len(), 1, "{lines:?}");
    let cols: Vec<&str> = lines[0].splitn(6, |c: char| c.is_ascii_whitespace()).collect();
    assert_eq!(cols[0], format!("{:x}-{:x}", start, start + 8192));
    assert_eq!(cols[1], "rw-s");
    assert_eq!(cols[2], "00000000");
    assert_eq!(cols[4], buf.inode().to_string());
    assert_eq!(cols[5].trim_start(), "/dmabuf:CAMERA preview");
    assert_eq!(bufinfo_row(buf.inode()).map(|r| r[6].clone()), Some("CAMERA preview".to_string()));
}

#[test]
fn write_and_read_through_mappings_with_sync() {
    let buf = alloc(16384, "RW");
    let pattern: Vec<u8> = (0..16384).map(|i| (i % 251) as u8).collect();
    let writer = buf.map().expect("map");
    let access = writer.cpu_access(SyncAccess::Write).expect("sync start");
    access.write_from(0, &pattern).expect("write");
    // The window says write: reading through it is refused, not silently incoherent.
    assert!(matches!(access.read_to(0, &mut [0; 1]), Err(Error::InvalidArgument(_))));
    access.end().expect("sync end");
    // A second, independent mapping sees the same pages: it is one shared buffer.
    let reader = buf.map().expect("second map");
    assert_ne!(reader.addr(), writer.addr());
    let access = reader.cpu_access(SyncAccess::Read).expect("sync start");
    let mut got = vec![0; 16384];
    access.read_to(0, &mut got).expect("read");
    assert_eq!(got, pattern);
    assert!(matches!(access.write_from(0, &[1]), Err(Error::InvalidArgument(_))));
    drop(access);
    let rw = writer.cpu_access(SyncAccess::ReadWrite).expect("sync start rw");
    rw.fill(16383, 1, 0xee).expect("fill");
    // Bounds are checked before memory is touched.
    assert!(matches!(rw.fill(16383, 2, 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(rw.read_to(usize::MAX, &mut [0; 2]), Err(Error::InvalidArgument(_))));
    drop(rw);
    let mut last = [0; 1];
    reader.cpu_access(SyncAccess::Read).expect("sync").read_to(16383, &mut last).expect("read");
    assert_eq!(last, [0xee]);
}

#[test]
fn partial_and_read_only_mappings() {
    let buf = alloc(4 * 4096, "PARTIAL");
    let writer = buf.map().expect("map");
    let access = writer.cpu_access(SyncAccess::Write).expect("sync");
    access.fill(4096, 4096, 0x11).expect("fill");
    access.end().expect("sync end");
    let part = buf.map_range(4096, 8192, MapAccess::ReadOnly).expect("partial map");
    assert_eq!(part.len(), 8192);
    let maps = fs::read_to_string("/proc/self/maps").expect("read maps");
    let line = maps_lines(&maps, buf.inode())
        .into_iter()
        .find(|l| l.starts_with(&format!("{:x}-", part.addr())))
        .expect("maps line of the partial mapping");
    let cols: Vec<&str> = line.split_ascii_whitespace().collect();
    assert_eq!(cols[0], format!("{:x}-{:x}", part.addr(), part.addr() + 8192));
    assert_eq!((cols[1], cols[2]), ("r--s", "00001000"));
    let mut got = [0; 4];
    let access = part.cpu_access(SyncAccess::ReadWrite).expect("sync");
    access.read_to(4094, &mut got).expect("read");
    assert_eq!(got, [0x11, 0x11, 0, 0]);
    // Writing a read-only mapping would fault: refused instead.
    assert!(matches!(access.write_from(0, &[1]), Err(Error::InvalidArgument(_))));
    assert!(matches!(access.read_to(8190, &mut got), Err(Error::InvalidArgument(_))));
    drop(access);
    // An offset that is not page-aligned is the kernel's EINVAL.
    assert!(buf.map_range(100, 4096, MapAccess::ReadOnly).is_err());
}

#[test]
fn mapped_buffer_outlives_its_fd() {
    let buf = alloc(4096, "ORPHAN MAP");
    let inode = buf.inode();
    let map = SharedMap::new(buf.as_fd(), 4096).expect("map");
    drop(buf);
    // Only the mapping holds the buffer now; maps still carries its name.
    let maps = fs::read_to_string("/proc/self/maps").expect("read maps");
    let lines = maps_lines(&maps, inode);
    assert_eq!(lines.len(), 1, "{maps}");
    assert!(lines[0].ends_with(" /dmabuf:ORPHAN MAP"), "{}", lines[0]);
    assert_eq!(bufinfo_row(inode).map(|r| r[6].clone()), Some("ORPHAN MAP".to_string()));
    drop(map);
    assert_eq!(bufinfo_row(inode), None);
}

#[test]
fn from_fd_takes_dma_bufs_and_refuses_others() {
    let buf = alloc(4096, "DUP");
    let dup = buf.as_fd().try_clone_to_owned().expect("dup");
    let again = DmaBuf::from_fd(dup).expect("a dma-buf");
    assert_eq!((again.inode(), again.size()), (buf.inode(), 4096));
    let memfd = rustix::fs::memfd_create("plain", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    assert!(matches!(DmaBuf::from_fd(memfd), Err(Error::InvalidArgument(_))));
}

#[test]
fn renaming_is_allowed_and_visible() {
    let buf = alloc(4096, "FIRST");
    buf.set_name(&"SECOND".parse().expect("valid")).expect("rename");
    assert_eq!(fd_link(&buf), "/dmabuf:SECOND");
    assert!(fdinfo(&buf).lines().any(|l| l == "name:\tSECOND"));
    assert_eq!(bufinfo_row(buf.inode()).map(|r| r[6].clone()), Some("SECOND".to_string()));
}

#[test]
fn both_set_name_numbers_work_on_64_bit_kernels() {
    let buf = alloc(4096, "X");
    sys::set_name_using(buf.as_fd(), c"VIA A", SetNameIoctl::A).expect("DMA_BUF_SET_NAME_A");
    assert_eq!(fd_link(&buf), "/dmabuf:VIA A");
    sys::set_name_using(buf.as_fd(), c"VIA B", SetNameIoctl::B).expect("DMA_BUF_SET_NAME_B");
    assert_eq!(fd_link(&buf), "/dmabuf:VIA B");
}

#[test]
fn unknown_heap_lists_the_real_heaps() {
    let req = AllocRequest { heap: "no-such-heap", size: 4096, name: b"X", heap_flags: 0 };
    match Allocator::new().allocate(&req) {
        Err(Error::UnknownHeap { heap, available }) => {
            assert_eq!(heap, "no-such-heap");
            assert_eq!(available, heaps_on_disk());
            assert!(available.iter().any(|h| h == "system"), "{available:?}");
        }
        other => panic!("expected UnknownHeap, got {other:?}"),
    }
    assert_eq!(Allocator::new().heaps().expect("heaps"), heaps_on_disk());
}

#[test]
fn size_zero() {
    let req = AllocRequest { heap: "system", size: 0, name: b"X", heap_flags: 0 };
    assert!(matches!(Allocator::new().allocate(&req), Err(Error::Size(SizeError::Zero))));
    // What validation spares the caller: the kernel's bare EINVAL.
    assert_eq!(sys::heap_alloc(open_system_heap().as_fd(), 0, 0).err(), Some(Errno::INVAL));
}

#[test]
fn size_that_wraps_on_page_rounding() {
    let unlimited = Allocator::with_dir(HEAP_DIR, u64::MAX);
    let req = AllocRequest { heap: "system", size: u64::MAX, name: b"X", heap_flags: 0 };
    assert!(matches!(unlimited.allocate(&req), Err(Error::Size(SizeError::Overflow(u64::MAX)))));
    // The kernel's PAGE_ALIGN wraps to 0 and it answers EINVAL, as for size 0.
    assert_eq!(sys::heap_alloc(open_system_heap().as_fd(), u64::MAX, 0).err(), Some(Errno::INVAL));
}

#[test]
fn size_over_the_maximum() {
    let req =
        AllocRequest { heap: "system", size: DEFAULT_MAX_SIZE + 1, name: b"X", heap_flags: 0 };
    assert!(matches!(
        Allocator::new().allocate(&req),
        Err(Error::Size(SizeError::TooLarge { size, max })) if size == DEFAULT_MAX_SIZE + 1 && max == DEFAULT_MAX_SIZE
    ));
}

/// Set in the child of [`allocation_beyond_ram_meets_the_oom_killer`].
const OOM_CHILD_ENV: &str = "DMABUFD_VM_OOM_CHILD";

fn meminfo_kib(field: &str) -> u64 {
    let text = fs::read_to_string("/proc/meminfo").expect("read meminfo");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in meminfo"))
}

/// What the system heap does with a request larger than RAM: no ENOMEM; it allocates page by
/// page until the OOM killer kills the caller (SIGKILL), then frees everything. This is why the
/// library caps sizes. Done in a child marked as the preferred OOM victim.
#[test]
fn allocation_beyond_ram_meets_the_oom_killer() {
    use std::os::unix::process::ExitStatusExt;
    let total = meminfo_kib("MemTotal");
    let out = Command::new(std::env::current_exe().expect("own test binary"))
        .args(["--ignored", "--exact", "oom_child", "--nocapture"])
        .env(OOM_CHILD_ENV, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "child was not OOM-killed: {:?}\n{stdout}",
        out.status
    );
    assert!(stdout.contains("OOM child: allocating"), "{stdout}");
    assert!(!stdout.contains("OOM child: returned"), "{stdout}");
    // Everything the heap had gathered went back.
    let available = meminfo_kib("MemAvailable");
    assert!(available > total / 2, "MemAvailable {available} kB of {total} kB after the OOM kill");
}

/// Child half of [`allocation_beyond_ram_meets_the_oom_killer`]; does nothing on its own.
#[test]
#[ignore = "run by allocation_beyond_ram_meets_the_oom_killer"]
fn oom_child() {
    if std::env::var_os(OOM_CHILD_ENV).is_none() {
        return;
    }
    fs::write("/proc/self/oom_score_adj", "1000").expect("become the preferred OOM victim");
    let size = 2 * meminfo_kib("MemTotal") * 1024;
    println!("OOM child: allocating {size} bytes");
    let result = sys::heap_alloc(open_system_heap().as_fd(), size, 0);
    println!("OOM child: returned {:?}", result.err());
}

#[test]
fn nonzero_heap_flags_are_refused_by_mainline_heaps() {
    let req = AllocRequest { heap: "system", size: 4096, name: b"X", heap_flags: 1 };
    assert!(matches!(Allocator::new().allocate(&req), Err(Error::InvalidArgument(_))));
    assert_eq!(sys::heap_alloc(open_system_heap().as_fd(), 4096, 1).err(), Some(Errno::INVAL));
}

#[test]
fn name_too_long() {
    let req = AllocRequest { heap: "system", size: 4096, name: &[b'n'; 129], heap_flags: 0 };
    assert!(matches!(
        Allocator::new().allocate(&req),
        Err(Error::Name(NameError::TooLong { len: 129, max: 128 }))
    ));
    // Up to 128 bytes the allocator names the buffer with the kernel's 31-byte prefix.
    let req = AllocRequest { heap: "system", size: 4096, name: &[b'n'; 128], heap_flags: 0 };
    let cut = Allocator::new().allocate(&req).expect("a 128-byte name");
    assert_eq!(fd_link(&cut), format!("/dmabuf:{}", "n".repeat(31)));
    // The kernel keeps 31 bytes and refuses 32 with EINVAL (strndup_user), leaving the old name.
    let buf = alloc(4096, "KEEP");
    let longest = "n".repeat(31);
    let c31 = std::ffi::CString::new(longest.clone()).expect("no NUL");
    let c32 = std::ffi::CString::new("n".repeat(32)).expect("no NUL");
    assert_eq!(sys::set_name(buf.as_fd(), &c32), Err(Errno::INVAL));
    assert_eq!(fd_link(&buf), "/dmabuf:KEEP");
    assert_eq!(sys::set_name(buf.as_fd(), &c31), Ok(()));
    assert_eq!(fd_link(&buf), format!("/dmabuf:{longest}"));
}

#[test]
fn naming_something_that_is_no_dma_buf_is_unsupported() {
    let memfd = rustix::fs::memfd_create("plain", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    let name = "X".parse().expect("valid");
    assert!(matches!(dmabufd::name::set_name(memfd.as_fd(), &name), Err(Error::Unsupported(_))));
    assert_eq!(sys::set_name(memfd.as_fd(), c"X"), Err(Errno::NOTTY));
    // A heap device answers ioctls it does not know with EINVAL, not ENOTTY.
    let heap = open_system_heap();
    assert_eq!(sys::set_name(heap.as_fd(), c"X"), Err(Errno::INVAL));
}

// ---------------------------------------------------------------------------------------------
// dmabufctl

fn dmabufctl(args: &[&str]) -> std::process::Output {
    Command::new(dmabufctl_path()).args(args).output().expect("run dmabufctl")
}

#[test]
fn dmabufctl_heaps_lists_the_heap_directory() {
    let out = dmabufctl(&["heaps"]);
    assert_eq!(out.status.code(), Some(0));
    let expected: String = heaps_on_disk().iter().map(|h| format!("{h}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn dmabufctl_alloc_holds_mapped_named_buffers() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(dmabufctl_path())
        .args([
            "alloc",
            "--heap",
            "system",
            "--size",
            "8K",
            "--name",
            "CLI preview",
            "--count",
            "2",
            "--map",
            "--hold",
            "3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dmabufctl");
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut inodes = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read a line");
        let inode: u64 = line
            .strip_prefix("inode=")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert_eq!(line, format!("inode={inode} size=8192 heap=system name=\"CLI preview\"\n"));
        inodes.push(inode);
    }
    assert_ne!(inodes[0], inodes[1]);

    // While held: the holder's fds, its maps (with resident pages) and debugfs all show them.
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("holder maps");
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).expect("holder smaps");
    for &inode in &inodes {
        let lines = maps_lines(&maps, inode);
        assert_eq!(lines.len(), 1, "{maps}");
        assert!(lines[0].ends_with(" /dmabuf:CLI preview"), "{}", lines[0]);
        // The system heap maps with remap_pfn_range (VM_PFNMAP, "pf"): smaps counts no Rss for
        // dma-buf mappings however many pages are touched, so accounting cannot take Rss from smaps.
        let entry: Vec<&str> = smaps
            .lines()
            .skip_while(|l| *l != lines[0])
            .take_while(|l| !l.starts_with("VmFlags:"))
            .collect();
        assert!(entry.contains(&"Size:                  8 kB"), "{entry:?}");
        assert!(entry.contains(&"Rss:                   0 kB"), "{entry:?}");
        let flags = smaps
            .lines()
            .skip_while(|l| *l != lines[0])
            .find(|l| l.starts_with("VmFlags:"))
            .unwrap_or_default();
        assert!(flags.split_ascii_whitespace().any(|f| f == "pf"), "{flags}");
        let row = bufinfo_row(inode).expect("bufinfo lists a held buffer");
        assert_eq!(
            (row[0].as_str(), row[4].as_str(), row[6].as_str()),
            ("00008192", "system", "CLI preview")
        );
    }
    let held: Vec<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("holder fds")
        .filter_map(|e| fs::metadata(e.ok()?.path()).ok())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .filter(|ino| inodes.contains(ino))
        .collect();
    assert_eq!(held.len(), 2, "both buffers held by fd");

    assert!(child.wait().expect("wait").success());
    for inode in inodes {
        assert_eq!(bufinfo_row(inode), None, "freed when dmabufctl exits");
    }
}

#[test]
fn dmabufctl_without_access_to_the_heap_fails_with_status_1() {
    use std::os::unix::process::CommandExt;
    // Heap devices are 0600 root: an unprivileged user may list heaps but not allocate.
    let unprivileged = |args: &[&str]| {
        Command::new(dmabufctl_path())
            .args(args)
            .uid(1000)
            .gid(1000)
            .output()
            .expect("run dmabufctl as uid 1000")
    };
    let out = unprivileged(&["alloc", "--heap", "system", "--size", "4K", "--name", "X"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "dmabufctl: permission denied: opening /dev/dma_heap/system\n"
    );
    let out = unprivileged(&["heaps"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(), heaps_on_disk());
}

#[test]
fn dmabufctl_bad_input_is_one_line_and_status_2() {
    let heaps = heaps_on_disk().join(", ");
    let cases: &[(&[&str], String)] = &[
        (&["--size", "4X"], "dmabufctl: invalid size: size \"4X\" is not a number of bytes (suffixes K, M, G allowed)".into()),
        (&["--size", "0"], "dmabufctl: invalid size: size must be greater than 0".into()),
        (&["--size", "2G"], "dmabufctl: invalid size: size 2147483648 exceeds the maximum of 1073741824 bytes".into()),
        (&["--heap", "nope"], format!("dmabufctl: unknown heap \"nope\"; available heaps: {heaps}")),
        (&["--heap", "../dma_heap/system"], "dmabufctl: invalid argument: heap name \"../dma_heap/system\" is not a plain file name".into()),
        (&["--name", ""], "dmabufctl: invalid name: name is empty".into()),
        (&["--name", "a\nb"], "dmabufctl: invalid name: name contains control character 0x0a at offset 1".into()),
        (&["--name", &"x".repeat(32)], "dmabufctl: invalid name: name is 32 bytes; the kernel keeps 31 and nothing here would keep the rest (allocate through the service to keep up to 128)".into()),
        (&["--count", "0"], "dmabufctl: invalid argument: --count must be at least 1".into()),
    ];
    for (override_args, expected) in cases {
        // Each case replaces one default (clap refuses a repeated option).
        let mut args = vec!["alloc"];
        let defaults = [("--heap", "system"), ("--size", "4K"), ("--name", "OK")];
        for (flag, value) in defaults {
            if !override_args.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend(override_args.iter());
        let out = dmabufctl(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{expected}\n"), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
