//! Load, faults and restart of the service over kernel binder, in the VM (tests/vm/run).
//!
//! * `churn_with_random_kills`: 16 client processes of 4 uids allocate, map and check, pass
//!   buffers on to another client (fd over a unix socket) and free them, for
//!   `DMABUFD_LOAD_SECONDS` (default 20), while clients are SIGKILLed at random and replaced, and
//!   accounting scans (the service's getReport and getLedger, the library's scan) run
//!   back to back. No scan may fail; afterwards no buffer survives in the kernel, the ledger is
//!   empty, the service's fds are exactly the baseline and its RSS is within
//!   [`RSS_MARGIN_KIB`] of it. Prints the figures of BENCHMARKS.md, "Reliability".
//! * `restart_keeps_client_buffers_and_rebuilds_the_ledger`: dmabufd is SIGKILLed while clients
//!   allocate; every buffer they hold still maps and reads back what was written before the
//!   kill; the restarted service's ledger holds exactly the expected rebuilt entries (see
//!   `dmabufd::ledger`), charges quota to sole holder uids, and empties as clients free.
//!
//! The random schedule is replayable: the seed is printed, `DMABUFD_LOAD_SEED` sets it.
//! `harness = false`; the binary doubles as every client role (see tests/vm_support).

mod vm_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dmabufd::buffer::DmaBuf;
use dmabufd::heap::{AllocRequest, Allocator};
use dmabufd::scan::{self, ScanOptions};
use dmabufd::service::compat::aidl::IAccounting::ALL;
use dmabufd::service::compat::aidl::IAllocator::{self as codes};
use dmabufd::service::compat::ALLOCATOR_INSTANCE;
use dmabufd::service::errors::from_status;
use dmabufd::sys::{self, SharedMap, SyncAccess};
use dmabufd::Error;
use nix::sys::socket::{MsgFlags, UnixAddr};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use vm_support::{
    accounting, allocator, bufinfo_inodes, client, fd_targets, fdpass, read_line, request,
    service_rss_kib, Config, Rng, Stack, Test, DEVICE,
};

/// Outstanding bytes per uid: high enough that the load never meets it (a refusal there would
/// be a bug), low enough to check the restart's charges against it.
const QUOTA: u64 = 256 << 20;

const CONFIG: Config = Config { heap_dir: "/tmp/vm_load-heaps", quota: QUOTA };

/// Clients of the load test, and how many uids they are spread over.
const CLIENTS: u32 = 16;
const UIDS: u32 = 4;
/// Buffers a client holds at most (receiving may add a few before it frees).
const MAX_HELD: usize = 8;
/// Sizes a client asks for.
const SIZES: [u64; 5] = [4096, 4097, 65536, 262_144, 1 << 20];
/// How far the service's RSS may end above its baseline: glibc keeps some freed memory in its
/// per-thread arenas, and the reports the service built during the run touched pages that need
/// not return. A leak of one ledger entry or reply per operation would exceed it many times.
const RSS_MARGIN_KIB: u64 = 1024;
/// Shared counters file (`MAP_SHARED`), so that clients killed at any moment still count.
const COUNTERS: &str = "/tmp/vm_load-counters";

// ---- What clients write into buffers and check when they see them again. -------------------

/// Word `i` of buffer `inode`.
fn word(inode: u64, i: usize) -> u64 {
    (inode << 32) ^ (i as u64).wrapping_mul(0x9e37_79b9)
}

fn pattern(len: usize, inode: u64) -> Vec<u8> {
    (0..len / 8).flat_map(|i| word(inode, i).to_ne_bytes()).collect()
}

fn holds_pattern(bytes: &[u8], inode: u64) -> bool {
    bytes.chunks_exact(8).enumerate().all(|(i, w)| w == word(inode, i).to_ne_bytes())
}

fn fill_buf(buf: &DmaBuf) {
    let map = buf.map().expect("map");
    let w = map.cpu_access(SyncAccess::Write).expect("sync");
    w.write_from(0, &pattern(map.len(), buf.inode())).expect("write");
    w.end().expect("sync end");
}

/// Maps the buffer afresh and checks the pattern.
fn check_buf(buf: &DmaBuf) -> bool {
    let map = buf.map().expect("map");
    let r = map.cpu_access(SyncAccess::Read).expect("sync");
    let mut bytes = vec![0; map.len()];
    r.read_to(0, &mut bytes).expect("read");
    let ok = holds_pattern(&bytes, buf.inode());
    r.end().expect("sync end");
    ok
}

// ---- Counters shared by every client. ---------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    Alloc,
    Check,
    Pass,
    Receive,
    Free,
}

const OPS: [(&str, Op); 5] = [
    ("allocate+fill", Op::Alloc),
    ("map+check", Op::Check),
    ("pass on", Op::Pass),
    ("receive+check", Op::Receive),
    ("free", Op::Free),
];

struct Counters(SharedMap);

impl Counters {
    /// `create`: the parent makes a zeroed file; clients map the existing one.
    fn open(create: bool) -> Counters {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .open(COUNTERS)
            .expect("counters file");
        if create {
            file.set_len(4096).expect("counters size");
            // Clients run as other uids.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(COUNTERS, std::fs::Permissions::from_mode(0o666))
                .expect("counters mode");
        }
        Counters(SharedMap::new(file.as_fd(), 4096).expect("mmap counters"))
    }

    fn slots(&self) -> &[AtomicU64] {
        &self.0.as_atomic_u64s().expect("a writable mapping")[..OPS.len()]
    }

    fn add(&self, op: Op) {
        self.slots()[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, op: Op) -> u64 {
        self.slots()[op as usize].load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.slots().iter().for_each(|c| c.store(0, Ordering::Relaxed));
    }
}

// ---- Passing buffers on: datagrams with one fd, to an abstract unix socket per client. -------

fn socket_name(index: u64) -> String {
    format!("dmabufd-vm_load-{index}")
}

fn bind_socket(index: u64) -> OwnedFd {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    let name = SocketAddrUnix::new_abstract_name(socket_name(index).as_bytes());
    rustix::net::bind(&sock, &name.expect("abstract name")).expect("bind");
    sock
}

/// Sends `fd` to client `peer`; false if it is not there (killed) or its queue is full.
fn send_fd(sock: &OwnedFd, peer: u64, fd: BorrowedFd<'_>) -> bool {
    let to = UnixAddr::new_abstract(socket_name(peer).as_bytes()).expect("abstract name");
    fdpass::send_fd_to(sock.as_fd(), Some(&to), fd, MsgFlags::MSG_DONTWAIT).is_ok()
}

/// A buffer some client sent, if one is waiting.
fn receive_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    fdpass::try_recv_fd(sock.as_fd(), MsgFlags::MSG_DONTWAIT).ok().flatten()
}

// ---- Client roles. ----------------------------------------------------------------------------

/// Role `worker INDEX SECONDS SEED MODE`: churn until the time is up. MODE `pass` passes
/// buffers on to client INDEX+1; MODE `survive` does not, and when the service dies it stops,
/// checks every buffer it holds, prints `held N`, then `INODE SIZE` per buffer and `checked`,
/// and holds them until stdin closes.
fn client_worker(args: &[String]) {
    let [index, seconds, seed, mode] = args else { panic!("worker INDEX SECONDS SEED MODE") };
    let index: u64 = index.parse().expect("index");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.parse().expect("seconds"));
    let mut rng = Rng::new(seed.parse().expect("seed"));
    let passing = mode == "pass";
    let counters = Counters::open(false);
    let sock = passing.then(|| bind_socket(index));
    let alloc = allocator();
    let name = format!("load-{}", rustix::process::getuid().as_raw());
    let mut held: Vec<DmaBuf> = Vec::new();
    println!("ready");
    std::io::stdout().flush().expect("flush");
    while Instant::now() < deadline {
        if let Some(sock) = &sock {
            while let Some(fd) = receive_fd(sock) {
                let buf = DmaBuf::from_fd(fd).expect("a dma-buf arrived");
                assert!(check_buf(&buf), "a buffer passed on lost its contents");
                held.push(buf);
                counters.add(Op::Receive);
            }
        }
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        match rng.below(10) {
            0..=3 if held.len() < MAX_HELD => {
                let size = SIZES[pick(&mut rng, SIZES.len())];
                match alloc.allocate(&request("system", size, &name)) {
                    Ok(a) => {
                        let buf = DmaBuf::from_fd(a.fd.expect("fd").into()).expect("dma-buf");
                        assert_eq!(buf.size(), size.next_multiple_of(4096));
                        fill_buf(&buf);
                        held.push(buf);
                        counters.add(Op::Alloc);
                    }
                    Err(status) => match from_status(&status) {
                        Error::Service { code, message } => panic!("refused {code}: {message}"),
                        _ if !passing => return survive(held),
                        other => panic!("allocate: {other}"),
                    },
                }
            }
            4..=5 if !held.is_empty() => {
                assert!(check_buf(&held[pick(&mut rng, held.len())]), "contents lost");
                counters.add(Op::Check);
            }
            6..=7 if !held.is_empty() && passing => {
                let buf = held.swap_remove(pick(&mut rng, held.len()));
                let peer = (index + 1) % u64::from(CLIENTS);
                if let Some(sock) = &sock {
                    if send_fd(sock, peer, buf.as_fd()) {
                        counters.add(Op::Pass);
                    }
                }
            }
            _ if !held.is_empty() => {
                drop(held.swap_remove(pick(&mut rng, held.len())));
                counters.add(Op::Free);
            }
            _ => {}
        }
    }
}

/// The service died: check and report what this client holds, then keep it until stdin closes.
fn survive(held: Vec<DmaBuf>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "held {}", held.len()).expect("write");
    for buf in &held {
        assert!(check_buf(buf), "buffer {} lost its contents", buf.inode());
        writeln!(out, "{} {}", buf.inode(), buf.size()).expect("write");
    }
    writeln!(out, "checked").expect("write");
    out.flush().expect("flush");
    drop(out);
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Role `hold SIZE NAME MAPONLY`: allocate through the service and fill; with MAPONLY=1 keep
/// only a mapping (close the fd). Prints `INODE SIZE`; on each stdin line checks the contents
/// and prints `ok`; exits when stdin closes.
fn client_hold(args: &[String]) {
    let [size, name, map_only] = args else { panic!("hold SIZE NAME MAPONLY") };
    let a = allocator()
        .allocate(&request("system", size.parse().expect("size"), name))
        .expect("allocate");
    let buf = DmaBuf::from_fd(a.fd.expect("fd").into()).expect("dma-buf");
    fill_buf(&buf);
    let (inode, size) = (buf.inode(), buf.size());
    let mut kept = Some(buf);
    let mut map = None;
    if map_only == "1" {
        let buf = kept.take().expect("buffer");
        map = Some(SharedMap::new(buf.as_fd(), size as usize).expect("map"));
        drop(buf);
    }
    println!("{inode} {size}");
    std::io::stdout().flush().expect("flush");
    for line in std::io::stdin().lock().lines() {
        line.expect("stdin");
        let ok = match (&kept, &map) {
            (Some(buf), _) => check_buf(buf),
            (None, Some(map)) => {
                let mut bytes = vec![0; map.len()];
                map.read_to(0, &mut bytes).expect("read");
                holds_pattern(&bytes, inode)
            }
            (None, None) => false,
        };
        println!("{}", if ok { "ok" } else { "lost" });
        std::io::stdout().flush().expect("flush");
    }
}

/// Role `adopt FD`: hold an inherited buffer (another uid filled it) until stdin closes.
fn client_adopt(args: &[String]) {
    let raw: i32 = args[0].parse().expect("fd");
    // SAFETY: the parent passed this fd open and owns no other reference to it in this process.
    let buf = DmaBuf::from_fd(unsafe { OwnedFd::from_raw_fd(raw) }).expect("dma-buf");
    assert!(check_buf(&buf));
    println!("{}", buf.inode());
    std::io::stdout().flush().expect("flush");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Role `try SIZE`: one allocation; prints `ok` or the refusal as `CODE MESSAGE`.
fn client_try(args: &[String]) {
    match allocator().allocate(&request("system", args[0].parse().expect("size"), "try")) {
        Ok(_) => println!("ok"),
        Err(status) => match from_status(&status) {
            Error::Service { code, message } => println!("{code} {message}"),
            other => println!("transport {other}"),
        },
    }
}

// ---- The tests. -------------------------------------------------------------------------------

fn load_uid(index: u32) -> u32 {
    10_600 + index % UIDS
}

/// A worker and its stdout (kept open: a worker writing to a closed pipe would fail).
type Worker = (Child, BufReader<ChildStdout>);

fn spawn_worker(index: u32, seconds: f64, seed: u64, mode: &str) -> Worker {
    client(
        load_uid(index),
        "worker",
        &[&index.to_string(), &format!("{seconds:.3}"), &seed.to_string(), mode],
    )
}

/// Waits until every buffer not in `before` is gone from the kernel's list.
fn wait_back_to(before: &BTreeSet<u64>, within: Duration) -> Vec<u64> {
    let deadline = Instant::now() + within;
    loop {
        let extra: Vec<u64> =
            bufinfo_inodes().into_iter().filter(|i| !before.contains(i)).collect();
        if extra.is_empty() || Instant::now() >= deadline {
            return extra;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `CLIENTS` workers for `seconds` (killing one at random every 50–400 ms if `kill`);
/// returns how many were killed. Panics if a worker failed on its own.
fn run_workers(seconds: f64, rng: &mut Rng, kill: bool) -> u32 {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut workers: Vec<Worker> =
        (0..CLIENTS).map(|i| spawn_worker(i, seconds, rng.next(), "pass")).collect();
    let mut kills = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50 + rng.below(350)));
        let left = end.saturating_duration_since(Instant::now()).as_secs_f64();
        if !kill || left < 1.0 {
            break;
        }
        let victim = rng.below(u64::from(CLIENTS)) as usize;
        let worker = &mut workers[victim].0;
        let _ = worker.kill();
        let status = worker.wait().expect("reap");
        assert!(
            status.signal() == Some(9),
            "worker {victim} failed before it was killed: {status}"
        );
        kills += 1;
        workers[victim] = spawn_worker(victim as u32, left, rng.next(), "pass");
    }
    for (i, (mut w, _)) in workers.into_iter().enumerate() {
        let status = w.wait().expect("reap");
        assert!(status.success(), "worker {i}: {status}");
    }
    kills
}

/// Accounting during the churn: one thread per kind, back to back until `stop`.
#[derive(Default)]
struct Scans {
    ok: AtomicU64,
    slowest_us: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Scans {
    fn run(&self, stop: &AtomicBool, scan: impl Fn() -> Result<(), String>) {
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            match scan() {
                Ok(()) => {
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    self.slowest_us.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                Err(e) => self.failures.lock().expect("lock").push(e),
            }
        }
    }
}

fn settled_fds(pid: u32) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(300));
    fd_targets(pid)
}

/// What one phase of churn did.
struct Phase {
    kills: u32,
    elapsed: f64,
    /// The service's getReport, its getLedger, the library's scan.
    scans: [(&'static str, Scans); 3],
    peak_rss: u64,
}

/// `seconds` of churn by [`CLIENTS`] workers (with random kills if `kill`) while the accounting
/// scans run back to back. Panics if a scan failed or none ran.
fn phase(seconds: f64, rng: &mut Rng, kill: bool, pid: u32) -> Phase {
    let stop = AtomicBool::new(false);
    let scans = [
        ("service getReport(ALL, ALL)", Scans::default()),
        ("service getLedger(ALL)", Scans::default()),
        ("library scan + report", Scans::default()),
    ];
    let peak_rss = AtomicU64::new(service_rss_kib(pid));
    let start = Instant::now();
    let kills = std::thread::scope(|s| {
        s.spawn(|| {
            let acct = accounting();
            scans[0].1.run(&stop, || {
                peak_rss.fetch_max(service_rss_kib(pid), Ordering::Relaxed);
                acct.getReport(ALL, ALL).map(drop).map_err(|e| format!("getReport: {e:?}"))
            })
        });
        s.spawn(|| {
            let acct = accounting();
            scans[1].1.run(&stop, || {
                acct.getLedger(ALL).map(drop).map_err(|e| format!("getLedger: {e:?}"))
            })
        });
        s.spawn(|| {
            scans[2].1.run(&stop, || {
                let model = scan::scan(&ScanOptions::default()).map_err(|e| e.to_string())?;
                let report = dmabufd::account::Report::build(&model, &Default::default());
                // Every buffer is counted once: per-process Pss adds up to the bytes referenced.
                let pss: u64 = report.processes.iter().map(|p| p.pss).sum();
                if pss != report.totals.userspace_rss {
                    return Err(format!("Pss {pss} != {}", report.totals.userspace_rss));
                }
                Ok(())
            })
        });
        let kills = run_workers(seconds, rng, kill);
        stop.store(true, Ordering::Relaxed);
        kills
    });
    let elapsed = start.elapsed().as_secs_f64();
    for (what, scans) in &scans {
        let failures = scans.failures.lock().expect("lock");
        assert!(failures.is_empty(), "{what} failed: {failures:?}");
        assert!(scans.ok.load(Ordering::Relaxed) > 0, "no {what} ran");
    }
    Phase { kills, elapsed, scans, peak_rss: peak_rss.load(Ordering::Relaxed) }
}

fn service_threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads:")
}

fn churn_with_random_kills(stack: &mut Stack) {
    let seconds: f64 =
        std::env::var("DMABUFD_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20.0);
    let mut rng = Rng::from_env("DMABUFD_LOAD_SEED");
    let counters = Counters::open(true);
    let before: BTreeSet<u64> = bufinfo_inodes().into_iter().collect();
    let pid = stack.pid();

    // Warm-up, the same load without kills: brings up every binder thread of the service (each
    // with its stack and malloc arena), so that the baseline is the service's steady state
    // rather than its freshly started one.
    phase(5.0, &mut rng, false, pid);
    assert_eq!(wait_back_to(&before, Duration::from_secs(10)), Vec::<u64>::new());
    let (base_fds, base_rss, base_threads) =
        (settled_fds(pid), service_rss_kib(pid), service_threads(pid));
    counters.reset();

    let Phase { kills, elapsed, scans, peak_rss } = phase(seconds, &mut rng, true, pid);

    let leftover = wait_back_to(&before, Duration::from_secs(10));
    assert_eq!(leftover, Vec::<u64>::new(), "buffers outlived every client");
    let entries = accounting().getLedger(ALL).expect("ledger");
    assert!(entries.is_empty(), "ledger not empty: {entries:?}");
    let (end_fds, end_rss, end_threads) =
        (settled_fds(pid), service_rss_kib(pid), service_threads(pid));
    assert_eq!(end_fds, base_fds, "the service's fds changed");
    assert!(
        end_rss <= base_rss + RSS_MARGIN_KIB,
        "service RSS {end_rss} KiB, baseline {base_rss} KiB"
    );

    let total: u64 = OPS.iter().map(|(_, op)| counters.get(*op)).sum();
    println!("\n<!-- vm_load figures -->");
    println!(
        "{CLIENTS} client processes over {UIDS} uids, {elapsed:.1} s, {kills} clients SIGKILLed \
         and replaced; sizes {SIZES:?} bytes.\n"
    );
    println!("| operation | count | per second |");
    println!("|---|---|---|");
    for (label, op) in OPS {
        let n = counters.get(op);
        println!("| {label} | {n} | {:.0} |", n as f64 / elapsed);
    }
    println!("| **all** | {total} | {:.0} |", total as f64 / elapsed);
    println!("\n| concurrent accounting scan | completed | failed | slowest |");
    println!("|---|---|---|---|");
    for (label, scans) in &scans {
        println!(
            "| {label} | {} | 0 | {:.1} ms |",
            scans.ok.load(Ordering::Relaxed),
            scans.slowest_us.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
    println!(
        "\nService after the run: {} fds (baseline {}, must be equal); RSS {end_rss} KiB \
         (baseline {base_rss} KiB, peak {peak_rss} KiB, allowed baseline + {RSS_MARGIN_KIB} \
         KiB); {end_threads} threads (baseline {base_threads}); buffers left in bufinfo: 0; \
         ledger entries: 0.",
        end_fds.len(),
        base_fds.len(),
    );
    println!("<!-- end vm_load figures -->\n");
}

/// `(uid, buffers, bytes)` per uid from the service's dump.
fn dump_usage() -> Vec<(u32, u64, u64)> {
    let out = Command::new("rsb_service")
        .args(["--device", "vndbinder", "dump", ALLOCATOR_INSTANCE])
        .output()
        .expect("rsb_service dump");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("  uid ")?;
            let (uid, rest) = rest.split_once(": ")?;
            let (buffers, rest) = rest.split_once(" buffers, ")?;
            let bytes = rest.strip_suffix(" bytes")?;
            Some((uid.parse().ok()?, buffers.parse().ok()?, bytes.parse().ok()?))
        })
        .collect()
}

/// What the rebuilt ledger must say about one buffer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rebuilt {
    inode: i64,
    size: i64,
    name: String,
}

fn restart_keeps_client_buffers_and_rebuilds_the_ledger(stack: &mut Stack) {
    Counters::open(true);
    let before: BTreeSet<u64> = bufinfo_inodes().into_iter().collect();
    let mut expected: BTreeSet<Rebuilt> = BTreeSet::new();
    let mut charged: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut expect = |inode: u64, size: u64, name: &str, charge: Option<u32>| {
        expected.insert(Rebuilt { inode: inode as i64, size: size as i64, name: name.into() });
        if let Some(uid) = charge {
            let c = charged.entry(uid).or_default();
            *c = (c.0 + 1, c.1 + size);
        }
    };
    let parse_pair = |line: &str| -> (u64, u64) {
        let (a, b) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        (a.parse().expect("inode"), b.parse().expect("size"))
    };

    // Holders of one uid: one by fd, one by mapping only.
    let mut holders = Vec::new();
    for (size, name, map_only) in [("1000000", "held by fd", "0"), ("65536", "mapped only", "1")] {
        let (child, mut out) = client(10_700, "hold", &[size, name, map_only]);
        let (inode, size) = parse_pair(&read_line(&mut out));
        expect(inode, size, name, Some(10_700));
        holders.push((child, out));
    }
    // Shared by two uids (root, this process, and 10_701): charged to nobody.
    let shared = allocator().allocate(&request("system", 8192, "shared")).expect("allocate");
    let shared_buf = DmaBuf::from_fd(shared.fd.expect("fd").into()).expect("dma-buf");
    fill_buf(&shared_buf);
    let inheritable = rustix::io::dup(&shared_buf).expect("dup");
    let (adopter, mut out) = client(10_701, "adopt", &[&inheritable.as_raw_fd().to_string()]);
    drop(inheritable);
    assert_eq!(read_line(&mut out), shared_buf.inode().to_string());
    expect(shared_buf.inode(), 8192, "shared", None);
    // Allocated straight from the heap, named: indistinguishable, rebuilt and charged to root.
    let direct = Allocator::new()
        .allocate(&AllocRequest { heap: "system", size: 12288, name: b"direct", heap_flags: 0 })
        .expect("direct allocation");
    fill_buf(&direct);
    expect(direct.inode(), 12288, "direct", Some(0));
    // Unnamed: never the service's.
    let heap = sys::open_heap(std::path::Path::new("/dev/dma_heap/system")).expect("heap");
    let unnamed = sys::heap_alloc(heap.as_fd(), 4096, 0).expect("unnamed allocation");

    // Load, then the kill.
    let mut workers: Vec<(u32, Child, _)> = (0..4)
        .map(|i| {
            let uid = 10_710 + i;
            let (child, out) = client(
                uid,
                "worker",
                &[&(100 + i).to_string(), "120", &(i + 1).to_string(), "survive"],
            );
            (uid, child, out)
        })
        .collect();
    for (_, _, out) in &mut workers {
        assert_eq!(read_line(out), "ready");
    }
    std::thread::sleep(Duration::from_secs(2));
    stack.kill_service();

    // Every client still has working buffers.
    for (uid, _, out) in &mut workers {
        let line = read_line(out);
        let n: usize = line
            .strip_prefix("held ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("worker of uid {uid}: {line:?}"));
        for _ in 0..n {
            let (inode, size) = parse_pair(&read_line(out));
            expect(inode, size, &format!("load-{uid}"), Some(*uid));
        }
        assert_eq!(read_line(out), "checked", "worker of uid {uid}");
    }
    for (child, out) in &mut holders {
        writeln!(child.stdin.as_mut().expect("stdin")).expect("ask");
        assert_eq!(read_line(out), "ok");
    }
    assert!(check_buf(&shared_buf) && check_buf(&direct));

    stack.start_service();
    let mut got: BTreeSet<Rebuilt> = BTreeSet::new();
    for e in accounting().getLedger(ALL).expect("ledger") {
        if before.contains(&(e.inode as u64)) {
            continue;
        }
        assert_eq!(
            (e.heap.as_str(), e.uid, e.pid, e.timeMillis, e.attributed),
            ("system", -1, -1, 0, false),
            "{e:?}"
        );
        got.insert(Rebuilt { inode: e.inode, size: e.size, name: e.name });
    }
    assert_eq!(got, expected, "rebuilt ledger");
    let usage: Vec<(u32, u64, u64)> = dump_usage();
    let want: Vec<(u32, u64, u64)> = charged.iter().map(|(&u, &(n, b))| (u, n, b)).collect();
    assert_eq!(usage, want, "quota charges");
    // The charge is a real quota charge: uid 10_700 may allocate exactly what is left.
    let held_by_10700 = charged[&10_700].1;
    let (mut t, mut out) = client(10_700, "try", &[&(QUOTA - held_by_10700 + 4096).to_string()]);
    assert_eq!(
        read_line(&mut out),
        format!(
            "{} quota exceeded: uid 10700 holds {held_by_10700} bytes, limit {QUOTA}",
            codes::ERROR_QUOTA_EXCEEDED
        )
    );
    assert!(t.wait().expect("try").success());

    // Everyone lets go: the rebuilt entries die with their buffers, like any other.
    for (_, mut child, _) in workers {
        drop(child.stdin.take());
        assert!(child.wait().expect("worker").success());
    }
    for (mut child, _) in holders {
        drop(child.stdin.take());
        assert!(child.wait().expect("holder").success());
    }
    let mut adopter = adopter;
    drop(adopter.stdin.take());
    assert!(adopter.wait().expect("adopter").success());
    drop((shared_buf, direct, unnamed));
    assert_eq!(wait_back_to(&before, Duration::from_secs(10)), Vec::<u64>::new());
    let left = accounting().getLedger(ALL).expect("ledger");
    assert!(left.iter().all(|e| before.contains(&(e.inode as u64))), "{left:?}");
    assert_eq!(dump_usage(), vec![]);
    assert!(fd_targets(stack.pid()).iter().any(|t| t == DEVICE));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        match args.get(2).map(String::as_str) {
            Some("worker") => client_worker(&args[3..]),
            Some("hold") => client_hold(&args[3..]),
            Some("adopt") => client_adopt(&args[3..]),
            Some("try") => client_try(&args[3..]),
            other => panic!("unknown client role {other:?}"),
        }
        return;
    }
    let tests: [(&str, Test); 2] = [
        ("churn_with_random_kills", churn_with_random_kills),
        (
            "restart_keeps_client_buffers_and_rebuilds_the_ledger",
            restart_keeps_client_buffers_and_rebuilds_the_ledger,
        ),
    ];
    vm_support::run_suite(&tests, CONFIG);
}
