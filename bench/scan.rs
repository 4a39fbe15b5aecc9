//! Scan benchmark: dmabufd's scanner against a port of AOSP dmabuf_dump's strategy, in the VM.
//!
//! Run with `bench/run-scan-bench` (boots the VM, see BENCHMARKS.md). The driver starts
//! holder processes (this binary in the `holder` role), each holding M dma-bufs by fd and by
//! mapping among K other fds (pipes, sockets, files), then times full scans at each process count
//! in scanner subprocesses (`scan-ours`, `scan-ours-kernel`, `scan-baseline`, and with feature
//! `bpf` `scan-bpf`, the BPF iterators) so that each one's
//! peak RSS (VmHWM) is its own. Both scanners must find the same fd and map references.
//!
//! The baseline follows libdmabufinfo as dmabuf_dump uses it: for every fd of every process,
//! open and read `fdinfo` line by line and keep it if it has `exp_name:`; find the buffer by a
//! linear search of a vector; then read `maps` line by line, parse every line, keep `/dmabuf`
//! paths, and search again. One thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::Instant;

use dmabufd::heap::{AllocRequest, Allocator};
use dmabufd::scan::{scan, ScanOptions};
use dmabufd::sys::{MapAccess, SharedMap};
use rustix::pipe::PipeFlags;

const BUF_SIZE: u64 = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize| -> usize { args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()) };
    match args.first().map(String::as_str) {
        Some("holder") => holder(arg(1) as i32, arg(2) as i32, arg(3), arg(4)),
        Some("scan-ours") => scanner(Scanner::Ours, arg(1)),
        Some("scan-ours-1t") => scanner(Scanner::OursOneThread, arg(1)),
        Some("scan-ours-kernel") => scanner(Scanner::OursWithKernelList, arg(1)),
        Some("scan-baseline") => scanner(Scanner::Baseline, arg(1)),
        Some("scan-bpf") => scanner(Scanner::Bpf, arg(1)),
        Some("ops") => ops(arg(1) as i32),
        _ => driver(&args),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: dmabufd-bench-scan [--procs 50,200,1000] [--bufs 24] [--other 64] [--runs 5]"
    );
    std::process::exit(2)
}

struct Config {
    procs: Vec<usize>,
    bufs: usize,
    other: usize,
    runs: usize,
}

fn parse_config(args: &[String]) -> Config {
    let mut c = Config { procs: vec![50, 200, 1000], bufs: 24, other: 64, runs: 5 };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--procs" => {
                c.procs = value.split(',').map(|v| v.parse().unwrap_or_else(|_| usage())).collect()
            }
            "--bufs" => c.bufs = value.parse().unwrap_or_else(|_| usage()),
            "--other" => c.other = value.parse().unwrap_or_else(|_| usage()),
            "--runs" => c.runs = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    c
}

fn driver(args: &[String]) {
    let cfg = parse_config(args);
    let exe = std::env::current_exe().expect("current exe");
    let (ready_rx, ready_tx) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).expect("pipe");
    let (stop_rx, stop_tx) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).expect("pipe");
    dmabufd::sys::set_inheritable(ready_tx.as_fd(), true).expect("fcntl");
    dmabufd::sys::set_inheritable(stop_rx.as_fd(), true).expect("fcntl");
    let mut ready_rx = File::from(ready_rx);
    let mut children = Vec::new();
    println!(
        "dmabufd scan benchmark: M={} dma-bufs of {} bytes per process (fd + mapping), K={} other fds, {} runs, {} CPUs",
        cfg.bufs,
        BUF_SIZE,
        cfg.other,
        cfg.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!("| procs | fds | dma-buf fds | scanner | median ms | us/proc | us/fd | peak RSS KiB | speedup |");
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for &n in &cfg.procs {
        let start = Instant::now();
        while children.len() < n {
            let child = Command::new(&exe)
                .args([
                    "holder",
                    &ready_tx.as_raw_fd().to_string(),
                    &stop_rx.as_raw_fd().to_string(),
                    &cfg.bufs.to_string(),
                    &cfg.other.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn holder");
            children.push(child);
            let mut byte = [0u8];
            ready_rx.read_exact(&mut byte).expect("holder ready");
        }
        eprintln!("bench: {n} holders up in {:.1}s", start.elapsed().as_secs_f64());
        let (procs, fds) = count_fds();
        let dmabuf_fds = n * cfg.bufs;
        // Interleaved rounds, one scan per scanner process and round (after one untimed warm-up
        // scan in the same process), so load changes on the host hit every scanner alike.
        // The BPF scan where this build has it (feature `bpf`; the VM build enables it).
        let scanners: &[&str] = if cfg!(feature = "bpf") {
            &["scan-baseline", "scan-ours-1t", "scan-ours", "scan-ours-kernel", "scan-bpf"]
        } else {
            &["scan-baseline", "scan-ours-1t", "scan-ours", "scan-ours-kernel"]
        };
        let mut samples: Vec<Vec<ScanResult>> = vec![Vec::new(); scanners.len()];
        for _ in 0..cfg.runs {
            for (i, scanner) in scanners.iter().enumerate() {
                let out = Command::new(&exe).args([scanner, "1"]).output().expect("scanner");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let r =
                    ScanResult::parse(&text).unwrap_or_else(|| panic!("{scanner} failed: {text}"));
                samples[i].push(r);
            }
        }
        let results: Vec<(&str, ScanResult)> =
            scanners.iter().copied().zip(samples.into_iter().map(ScanResult::median)).collect();
        let base = results[0].1.clone();
        for (name, r) in &results {
            assert!(
                r.fd_refs >= dmabuf_fds as u64
                    && r.fd_refs == base.fd_refs
                    && r.map_refs == base.map_refs,
                "{name} disagrees with the baseline: {r:?} vs {base:?}"
            );
            let label = match *name {
                "scan-baseline" => "dmabuf_dump strategy",
                "scan-ours-1t" => "dmabufd, 1 thread",
                "scan-ours" => "dmabufd (fds + maps)",
                "scan-bpf" => "dmabufd BPF iterators",
                _ => "dmabufd + debugfs bufinfo",
            };
            println!(
                "| {procs} | {fds} | {dmabuf_fds} | {label} | {:.1} | {:.1} | {:.2} | {} | {:.1}x |",
                r.median_ms,
                r.median_ms * 1000.0 / procs as f64,
                r.median_ms * 1000.0 / fds as f64,
                r.peak_kib,
                base.median_ms / r.median_ms
            );
        }
    }
    if let Some(first) = children.first() {
        let out = Command::new(&exe).args(["ops", &first.id().to_string()]).output().expect("ops");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    drop(stop_tx);
    for mut c in children {
        let _ = c.wait();
    }
}

/// Cost of each /proc operation the scanners use, on one holder's fds: what the totals are
/// made of.
fn ops(pid: i32) {
    use rustix::fs::{openat, readlinkat, statat, AtFlags, Mode, OFlags, CWD};
    let fd_dir =
        openat(CWD, format!("/proc/{pid}/fd"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .expect("fd dir");
    let (mut dmabuf, mut pipe) = (None, None);
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds").filter_map(|e| e.ok()) {
        let name = e.file_name().into_string().unwrap_or_default();
        let link = std::fs::read_link(e.path()).unwrap_or_default();
        let link = link.to_string_lossy();
        if link.starts_with("/dmabuf:") && dmabuf.is_none() {
            dmabuf = Some(name);
        } else if link.starts_with("pipe:") {
            pipe = Some(name);
        }
    }
    let (Some(dmabuf), Some(pipe)) = (dmabuf, pipe) else { return };
    let fdinfo = |fd: &str| {
        let mut buf = [0u8; 4096];
        let f = openat(CWD, format!("/proc/{pid}/fdinfo/{fd}"), OFlags::RDONLY, Mode::empty())
            .expect("fdinfo");
        let _ = rustix::io::read(&f, &mut buf);
    };
    let time = |what: &str, op: &dyn Fn()| {
        let n = 2000;
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        println!("| {what} | {:.1} |", start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    };
    println!();
    println!("| operation (one holder's fd) | us |");
    println!("|---|---:|");
    time("readlink fd/N, pipe", &|| drop(readlinkat(&fd_dir, pipe.as_str(), Vec::new())));
    time("readlink fd/N, dma-buf", &|| drop(readlinkat(&fd_dir, dmabuf.as_str(), Vec::new())));
    time("stat fd/N, dma-buf", &|| {
        let _ = statat(&fd_dir, dmabuf.as_str(), AtFlags::empty());
    });
    time("open+read+close fdinfo/N, pipe", &|| fdinfo(&pipe));
    time("open+read+close fdinfo/N, dma-buf", &|| fdinfo(&dmabuf));
    time("read whole maps (open, reads, close)", &|| {
        drop(std::fs::read(format!("/proc/{pid}/maps")))
    });
}

/// Processes and fds in /proc right now (what every scanner has to walk).
fn count_fds() -> (usize, usize) {
    let mut procs = 0;
    let mut fds = 0;
    for e in std::fs::read_dir("/proc").expect("/proc").filter_map(|e| e.ok()) {
        if e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()) {
            procs += 1;
            fds += std::fs::read_dir(e.path().join("fd")).map_or(0, |d| d.count());
        }
    }
    (procs, fds)
}

/// Holder role: M named dma-bufs, each held by fd and mapped, plus K other fds; then wait.
fn holder(ready: i32, stop: i32, bufs: usize, other: usize) {
    // SAFETY: the driver passed these inherited fd numbers; nothing else in this process owns them.
    let (ready, stop) = unsafe { (OwnedFd::from_raw_fd(ready), OwnedFd::from_raw_fd(stop)) };
    let alloc = Allocator::new();
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut maps: Vec<SharedMap> = Vec::new();
    for i in 0..bufs {
        let name = format!("bench {i}");
        let buf = alloc
            .allocate(&AllocRequest {
                heap: "system",
                size: BUF_SIZE,
                name: name.as_bytes(),
                heap_flags: 0,
            })
            .expect("allocate")
            .into_owned_fd();
        maps.push(
            SharedMap::new_range(buf.as_fd(), 0, BUF_SIZE as usize, MapAccess::ReadOnly)
                .expect("mmap"),
        );
        keep.push(buf);
    }
    // K other fds, a phone-like mix: pipes, stream and datagram sockets, files.
    let mut other_fds: Vec<OwnedFd> = Vec::new();
    while other_fds.len() < other {
        match other_fds.len() % 4 {
            0 => {
                let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).expect("pipe");
                other_fds.push(r);
                other_fds.push(w);
            }
            1 => {
                let (a, b) = UnixStream::pair().expect("socketpair");
                other_fds.push(a.into());
                other_fds.push(b.into());
            }
            2 => other_fds.push(UnixDatagram::unbound().expect("socket").into()),
            _ => other_fds.push(File::open("/proc/self/status").expect("open").into()),
        }
    }
    other_fds.truncate(other);
    let mut ready = File::from(ready);
    ready.write_all(b"r").expect("ready");
    let _ = File::from(stop).read(&mut [0u8]);
    drop((maps, keep, other_fds));
}

#[derive(Debug, Clone)]
struct ScanResult {
    median_ms: f64,
    fd_refs: u64,
    map_refs: u64,
    peak_kib: u64,
}

impl ScanResult {
    /// Median time of the samples, largest peak RSS (references are equal in every sample).
    fn median(mut samples: Vec<ScanResult>) -> ScanResult {
        samples.sort_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
        let peak = samples.iter().map(|s| s.peak_kib).max().unwrap_or(0);
        ScanResult { peak_kib: peak, ..samples[samples.len() / 2].clone() }
    }

    fn parse(text: &str) -> Option<ScanResult> {
        let line = text.lines().find(|l| l.starts_with("result "))?;
        let v: Vec<&str> = line.split_whitespace().collect();
        Some(ScanResult {
            median_ms: v.get(1)?.parse().ok()?,
            fd_refs: v.get(2)?.parse().ok()?,
            map_refs: v.get(3)?.parse().ok()?,
            peak_kib: v.get(4)?.parse().ok()?,
        })
    }
}

#[derive(Clone, Copy)]
enum Scanner {
    Ours,
    OursOneThread,
    OursWithKernelList,
    Baseline,
    /// The BPF iterators, no kernel buffer list (the same information as `Ours`).
    Bpf,
}

/// Scanner role: `runs` full scans, then `result <median ms> <fd refs> <map refs> <VmHWM KiB>`.
fn scanner(which: Scanner, runs: usize) {
    let mut times = Vec::new();
    let mut refs = (0, 0);
    // One untimed warm-up scan: the first lookups of each /proc entry populate the dcache.
    for run in 0..=runs.max(1) {
        let start = Instant::now();
        refs = match which {
            Scanner::Ours | Scanner::OursOneThread | Scanner::OursWithKernelList | Scanner::Bpf => {
                let mut opts = ScanOptions::default();
                if !matches!(which, Scanner::OursWithKernelList) {
                    opts.debugfs_bufinfo = None;
                    opts.sysfs_buffers = None;
                }
                if matches!(which, Scanner::OursOneThread) {
                    opts.threads = 1;
                }
                let model = if matches!(which, Scanner::Bpf) {
                    dmabufd::bpf::scan_bpf(&opts).expect("BPF scan")
                } else {
                    scan(&opts).expect("scan")
                };
                let fds = model
                    .buffers
                    .values()
                    .flat_map(|b| b.fd_refs.values())
                    .map(|&n| u64::from(n))
                    .sum();
                let maps = model
                    .buffers
                    .values()
                    .flat_map(|b| b.map_refs.values())
                    .map(|&n| u64::from(n))
                    .sum();
                (fds, maps)
            }
            Scanner::Baseline => baseline::scan(),
        };
        if run > 0 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    println!("result {:.3} {} {} {}", times[times.len() / 2], refs.0, refs.1, hwm);
}

/// A port of libdmabufinfo's ReadDmaBufFdRefs + ReadDmaBufMapRefs, as dmabuf_dump runs them.
mod baseline {
    use super::*;

    struct DmaBuffer {
        inode: u64,
        #[allow(dead_code)] // Kept, as dmabuf_dump keeps them, to do the same work.
        meta: (u64, u64, String, String),
        fdrefs: HashMap<i32, u32>,
        maprefs: HashMap<i32, u32>,
    }

    /// Returns (fd refs, map refs) summed over all buffers.
    pub fn scan() -> (u64, u64) {
        let mut bufs: Vec<DmaBuffer> = Vec::new();
        for dent in std::fs::read_dir("/proc").expect("/proc").filter_map(|e| e.ok()) {
            let Some(pid) = dent.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            read_fd_refs(pid, &mut bufs);
            read_map_refs(pid, &mut bufs);
        }
        let fds = bufs.iter().flat_map(|b| b.fdrefs.values()).map(|&n| u64::from(n)).sum();
        let maps = bufs.iter().flat_map(|b| b.maprefs.values()).map(|&n| u64::from(n)).sum();
        (fds, maps)
    }

    fn read_fd_refs(pid: i32, bufs: &mut Vec<DmaBuffer>) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            return;
        };
        for dent in dir.filter_map(|e| e.ok()) {
            let Some(fd) = dent.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(file) = File::open(format!("/proc/{pid}/fdinfo/{fd}")) else {
                continue;
            };
            let (mut name, mut exporter) = ("<unknown>".to_string(), "<unknown>".to_string());
            let (mut count, mut size, mut inode) = (0u64, 0u64, None);
            let mut is_dmabuf = false;
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                let value = |prefix: &str| line.strip_prefix(prefix).map(|v| v.trim().to_string());
                if let Some(v) = value("count:") {
                    count = v.parse().unwrap_or(0);
                } else if let Some(v) = value("exp_name:") {
                    exporter = v;
                    is_dmabuf = true;
                } else if let Some(v) = value("name:") {
                    name = v;
                } else if let Some(v) = value("size:") {
                    size = v.parse().unwrap_or(0);
                } else if let Some(v) = value("ino:") {
                    inode = v.parse().ok();
                }
            }
            if !is_dmabuf {
                continue;
            }
            let inode = match inode {
                Some(i) => i,
                None => match std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) {
                    Ok(m) => std::os::unix::fs::MetadataExt::ino(&m),
                    Err(_) => continue,
                },
            };
            match bufs.iter_mut().find(|b| b.inode == inode) {
                Some(b) => *b.fdrefs.entry(pid).or_default() += 1,
                None => bufs.push(DmaBuffer {
                    inode,
                    meta: (size, count, exporter, name),
                    fdrefs: HashMap::from([(pid, 1)]),
                    maprefs: HashMap::new(),
                }),
            }
        }
    }

    /// libprocinfo parses every maps line into a struct with an owned name, then the callback
    /// filters on the `/dmabuf` prefix.
    fn read_map_refs(pid: i32, bufs: &mut Vec<DmaBuffer>) {
        let Ok(file) = File::open(format!("/proc/{pid}/maps")) else {
            return;
        };
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let mut fields = line.splitn(6, ' ');
            let range = fields.next().unwrap_or("");
            let _perms = fields.next();
            let _offset = fields.next().and_then(|o| u64::from_str_radix(o, 16).ok());
            let _dev = fields.next();
            let inode: u64 = fields.next().and_then(|i| i.parse().ok()).unwrap_or(0);
            let name = fields.next().unwrap_or("").trim_start().to_string();
            let (start, end) = range.split_once('-').map_or((0, 0), |(s, e)| {
                (u64::from_str_radix(s, 16).unwrap_or(0), u64::from_str_radix(e, 16).unwrap_or(0))
            });
            if !name.starts_with("/dmabuf") {
                continue;
            }
            match bufs.iter_mut().find(|b| b.inode == inode) {
                Some(b) => *b.maprefs.entry(pid).or_default() += 1,
                None => bufs.push(DmaBuffer {
                    inode,
                    meta: (end - start, 0, "<unknown>".into(), name),
                    fdrefs: HashMap::new(),
                    maprefs: HashMap::from([(pid, 1)]),
                }),
            }
        }
    }
}
