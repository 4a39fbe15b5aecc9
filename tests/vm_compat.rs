//! What differs between the kernels tests/vm/run boots (`--kernel 5.10`, `6.1`, `6.12`,
//! `latest`), each asserted for the running kernel's version, so every test runs on every kernel
//! and would fail on one that behaves otherwise: fdinfo's `ino:` line, renaming a buffer while a
//! device is attached, the dma_buf tracepoints and BPF iterator, and buffers of another exporter
//! (vgem) on kernels without dma-buf heaps. See docs/kernels.md.
//!
//! `fixtures` (ignored) prints what tests/fixtures/<kernel>/ holds; tests/vm/capture-fixtures
//! runs it.

mod vm_support;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use dmabufd::account::Name;
use dmabufd::procfs::{bufinfo, fdinfo};
use dmabufd::scan::{scan, ScanOptions};
use dmabufd::sys::{self, Errno};
use vm_support::exporter::{Drm, Exporter};

const PAGE: u64 = 4096;
/// The tests hold buffers in this one process and some assert its totals: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running kernel's (major, minor).
fn version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release.trim().split(['.', '-', '+']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("unexpected release {release:?}"),
    }
}

fn fdinfo_text(fd: BorrowedFd<'_>) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).expect("fdinfo")
}

fn inode(fd: BorrowedFd<'_>) -> u64 {
    sys::fstat(fd).expect("fstat").inode
}

/// fdinfo names the inode since 5.14 ("procfs/dmabuf: add inode number to /proc/*/fdinfo");
/// before, `fstat` is the only identity, and the scan must still attribute the buffer.
#[test]
fn fdinfo_has_ino_from_5_14_and_the_scan_needs_none() {
    let _serial = serial();
    let exporter = Exporter::detect();
    let buf = exporter.dma_buf("compat ino", 2 * PAGE);
    let text = fdinfo_text(buf.as_fd());
    let ino = inode(buf.as_fd());
    assert_eq!(text.lines().any(|l| l.starts_with("ino:")), version() >= (5, 14), "{text}");
    let info = fdinfo::parse(text.as_bytes());
    assert_eq!(info.ino, (version() >= (5, 14)).then_some(ino));
    assert_eq!(info.size, Some(2 * PAGE));
    assert_eq!(info.exporter.as_deref(), Some(exporter.exp_name()));
    assert_eq!(info.name.as_deref(), Some(&b"compat ino"[..]));

    let model = scan(&ScanOptions::default()).expect("scan");
    let found = model.buffers.get(&ino).expect("the scan lists the buffer");
    assert_eq!(
        (found.size, found.name.as_ref().and_then(Name::to_str)),
        (2 * PAGE, Some("compat ino"))
    );
    assert_eq!(found.exporter.as_deref(), Some(exporter.exp_name()));
}

/// vgem's PRIME exports are dma-bufs like any other: sized, named, listed, attributed. On the
/// kernels without heaps, vm_account's whole workload runs on them.
#[test]
fn vgem_buffers_are_named_listed_and_attributed() {
    let _serial = serial();
    let buf = Exporter::Vgem.dma_buf("compat vgem", 3 * PAGE);
    let ino = inode(buf.as_fd());
    assert_eq!(sys::fstat(buf.as_fd()).expect("fstat").size, 3 * PAGE);
    assert_eq!(sys::is_dma_buf(buf.as_fd()), Ok(true));
    let rows = bufinfo::parse(&std::fs::read(vm_support::BUFINFO).expect("bufinfo"))
        .expect("bufinfo parses")
        .rows;
    let row = rows.iter().find(|r| r.inode == Some(ino)).expect("bufinfo lists the buffer");
    assert_eq!((row.size, row.exporter.as_str()), (3 * PAGE, "drm"));
    assert_eq!(row.name.as_deref(), Some(&b"compat vgem"[..]));

    let model = scan(&ScanOptions::default()).expect("scan");
    let found = model.buffers.get(&ino).expect("the scan lists the buffer");
    assert_eq!(
        (found.size, found.name.as_ref().and_then(Name::to_str)),
        (3 * PAGE, Some("compat vgem"))
    );
    let me = std::process::id() as i32;
    assert_eq!(found.fd_refs.get(&me), Some(&1), "{found:?}");
    assert!(model.processes.contains_key(&me));
}

/// Before 5.14, vgem mapped its PRIME exports itself and swapped the mapping's file for the GEM
/// object's shmem file, so /proc/<pid>/maps never names the dma-buf: maps-based accounting
/// cannot see those mappings (observed on 5.10). On the shmem helpers (6.1 here) the mapping
/// keeps the dma-buf file. tests/vm/init's `maps` feature follows the same rule.
#[test]
fn vgem_mappings_name_the_dma_buf_from_5_14() {
    let _serial = serial();
    let buf = Exporter::Vgem.dma_buf("compat vgem map", 2 * PAGE);
    let ino = inode(buf.as_fd());
    let map = sys::SharedMap::new(buf.as_fd(), PAGE as usize).expect("mmap");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let start = format!("{:x}-", map.addr());
    let line = maps.lines().find(|l| l.starts_with(&start)).expect("the mapping is listed");
    let mut found = Vec::new();
    dmabufd::procfs::maps::for_each_dmabuf(line.as_bytes(), |m| found.push((m.inode, m.name)));
    if version() >= (5, 14) {
        assert_eq!(found, vec![(ino, &b"compat vgem map"[..])], "{line}");
    } else {
        assert_eq!(found, vec![], "{line}");
    }
}

/// Until 5.16 ("dma-buf: remove restriction of IOCTL:DMA_BUF_SET_NAME") the kernel refused to
/// rename a buffer while a device was attached, with EBUSY; since then it renames. A heap
/// buffer is attached by importing it into vgem; where there are no heaps, a vgem buffer by
/// importing it into the cirrus display (vgem imports its own buffers without attaching).
#[test]
fn rename_while_attached_is_ebusy_before_5_16() {
    let _serial = serial();
    let exporter = Exporter::detect();
    let buf = exporter.dma_buf("before attach", PAGE);
    let importer = match exporter {
        Exporter::SystemHeap => Drm::vgem().expect("vgem"),
        Exporter::Vgem => Drm::cirrus().expect("the cirrus display (tests/vm/run adds it)"),
    };
    let attached = importer.attach(buf.as_fd()).expect("PRIME import attaches");
    let renamed = sys::set_name(buf.as_fd(), c"while attached");
    if version() < (5, 16) {
        assert_eq!(renamed, Err(Errno::BUSY));
    } else {
        assert_eq!(renamed, Ok(()));
    }
    drop(attached);
    assert_eq!(sys::set_name(buf.as_fd(), c"after detach"), Ok(()));
    let info = fdinfo::parse(fdinfo_text(buf.as_fd()).as_bytes());
    assert_eq!(info.name.as_deref(), Some(&b"after detach"[..]));
}

/// The dma_buf trace events came with 7.0, the BPF dma-buf iterator (`iter/dmabuf`) with 6.16.
#[test]
fn tracepoints_from_7_0_and_bpf_iterator_from_6_16() {
    let _serial = serial();
    let events = Path::new("/sys/kernel/tracing/events/dma_buf");
    assert_eq!(events.is_dir(), version() >= (7, 0), "{}", events.display());
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("BTF (every kernel here has it)");
    let has_iter = memchr::memmem::find(&btf, b"bpf_iter__dmabuf\0").is_some();
    assert_eq!(has_iter, version() >= (6, 16));
    if events.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(events)
            .expect("events")
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        println!("dma_buf events: {names:?}");
        assert!(!names.is_empty());
    }
}

/// `dmabufctl dump` end to end on this kernel's exporter: a buffer held by this process through
/// two fds and mapped once, another only mapped; the JSON report for this pid has their exact
/// sizes, names, exporter, refs and this process's Rss.
#[test]
fn dmabufctl_dump_reports_this_kernels_buffers() {
    let _serial = serial();
    let exporter = Exporter::detect();
    let held = exporter.dma_buf("compat dump held", 3 * PAGE);
    let dup = held.try_clone().expect("dup");
    let _held_map = sys::SharedMap::new(held.as_fd(), PAGE as usize).expect("mmap");
    let mapped = exporter.dma_buf("compat dump mapped", 2 * PAGE);
    let _mapped_map = sys::SharedMap::new(mapped.as_fd(), 2 * PAGE as usize).expect("mmap");
    let (held_ino, mapped_ino) = (inode(held.as_fd()), inode(mapped.as_fd()));
    drop(mapped);
    let me = std::process::id();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dmabufctl"))
        .args(["dump", &me.to_string(), "-o", "json"])
        .output()
        .expect("run dmabufctl");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let buffer = |ino: u64| {
        report["buffers"].as_array().expect("buffers").iter().find(|b| b["inode"] == ino)
    };
    let me_key = me.to_string();
    let h = buffer(held_ino).unwrap_or_else(|| panic!("held buffer missing: {report}"));
    assert_eq!(
        (h["size"].as_u64(), h["name"].as_str()),
        (Some(3 * PAGE), Some("compat dump held"))
    );
    assert_eq!(h["exporter"].as_str(), Some(exporter.exp_name()));
    assert_eq!(h["fd_refs"][&me_key].as_u64(), Some(2), "{h}");
    // Where mappings are not the dma-buf in maps (vgem before 5.14), the mapped-only buffer is
    // invisible to the scan: not this process's.
    let maps_visible = exporter == Exporter::SystemHeap || version() >= (5, 14);
    let m = buffer(mapped_ino);
    if maps_visible {
        let m = m.unwrap_or_else(|| panic!("mapped buffer missing: {report}"));
        assert_eq!(
            (m["size"].as_u64(), m["name"].as_str()),
            (Some(2 * PAGE), Some("compat dump mapped"))
        );
        assert_eq!(h["map_refs"][&me_key].as_u64(), Some(1), "{h}");
        assert_eq!(m["map_refs"][&me_key].as_u64(), Some(1), "{m}");
    } else {
        assert_eq!(m, None);
        assert_eq!(h["map_refs"][&me_key], serde_json::Value::Null, "{h}");
    }
    let process = &report["processes"][0];
    assert_eq!(process["pid"].as_u64(), Some(u64::from(me)));
    let rss = if maps_visible { 5 * PAGE } else { 3 * PAGE };
    assert_eq!(
        (process["rss"].as_u64(), process["fd_bytes"].as_u64()),
        (Some(rss), Some(3 * PAGE))
    );
    drop(dup);
}

/// Prints what tests/fixtures/<kernel>/ holds, between `=== FILE` lines: a named and an unnamed
/// buffer's fdinfo and fd link, this process's maps lines of them, and bufinfo.
#[test]
#[ignore = "run by tests/vm/capture-fixtures"]
fn fixtures() {
    let _serial = serial();
    let exporter = Exporter::detect();
    let named = exporter.dma_buf("CAMERA preview", 2 * PAGE);
    let unnamed = match exporter {
        Exporter::SystemHeap => {
            let heap = sys::open_heap(Path::new("/dev/dma_heap/system")).expect("system heap");
            sys::heap_alloc(heap.as_fd(), PAGE, 0).expect("allocate")
        }
        Exporter::Vgem => Drm::vgem().expect("vgem").dma_buf(PAGE),
    };
    let maps: Vec<sys::SharedMap> = [&named, &unnamed]
        .iter()
        .map(|fd| sys::SharedMap::new(fd.as_fd(), PAGE as usize).expect("mmap"))
        .collect();
    let link = |fd: BorrowedFd<'_>| {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .expect("fd link")
            .display()
            .to_string()
    };
    let inodes = [inode(named.as_fd()), inode(unnamed.as_fd())];
    let own_maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let dmabuf_maps: String = own_maps
        .lines()
        .filter(|l| inodes.iter().any(|i| l.split_whitespace().nth(4) == Some(&i.to_string())))
        .map(|l| format!("{l}\n"))
        .collect();
    let files = [
        ("fdinfo-named.txt", fdinfo_text(named.as_fd())),
        ("fdinfo-unnamed.txt", fdinfo_text(unnamed.as_fd())),
        ("fd-links.txt", format!("{}\n{}\n", link(named.as_fd()), link(unnamed.as_fd()))),
        ("maps.txt", dmabuf_maps),
        ("bufinfo.txt", std::fs::read_to_string(vm_support::BUFINFO).expect("bufinfo")),
    ];
    // libtest has printed `test fixtures ... ` without a newline.
    println!();
    for (file, text) in files {
        println!("=== {file}\n{text}=== end");
    }
    drop(maps);
}
