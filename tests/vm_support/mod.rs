//! What the VM suites of the service share: a private service manager and `dmabufd` on
//! /dev/vndbinder, clients that are this same test binary re-executed with a uid set, the
//! service's fds and memory, the kernel's buffer list, and a minimal sequential test harness.
//!
//! Each suite uses a subset, hence `dead_code` is allowed for the module.
//!
//! The heap directory of the service under test holds links to /dev/dma_heap plus one
//! self-referencing link `loop`: the only way a client can make the kernel interface fail with
//! an I/O error (ELOOP).
#![allow(dead_code)]

pub mod exporter;
pub mod fdpass;

use std::io::BufRead;
use std::io::BufReader;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use dmabufd::service::compat::aidl::{
    AllocationRequest::AllocationRequest, IAccounting::IAccounting, IAllocator::IAllocator,
};
use dmabufd::service::compat::{
    self, Status, Strong, Transport, ACCOUNTING_INSTANCE, ALLOCATOR_INSTANCE,
};
use dmabufd::service::errors::from_status;
use dmabufd::Error;

/// Binder device of the private service manager.
pub const DEVICE: &str = "/dev/vndbinder";

/// [`DEVICE`], unless `DMABUFD_BINDER_DEVICE` names another: scripts/demo runs vm_handoff's
/// client roles against the service that `tests/vm/run --with-service` started.
pub fn transport() -> Transport {
    let device = std::env::var_os("DMABUFD_BINDER_DEVICE").unwrap_or_else(|| DEVICE.into());
    Transport::Kernel(Some(device.into()))
}

pub fn allocator() -> Strong<dyn IAllocator> {
    compat::connect(&transport(), ALLOCATOR_INSTANCE, Duration::from_secs(10)).expect("IAllocator")
}

pub fn accounting() -> Strong<dyn IAccounting> {
    compat::connect(&transport(), ACCOUNTING_INSTANCE, Duration::from_secs(10))
        .expect("IAccounting")
}

pub fn request(heap: &str, size: u64, name: &str) -> AllocationRequest {
    AllocationRequest { heap: heap.into(), size: size as i64, name: name.into(), heapFlags: 0 }
}

/// The `ERROR_*` code of a call that must fail with a service-specific error.
pub fn code<T: std::fmt::Debug>(result: Result<T, Status>) -> i32 {
    match from_status(&result.expect_err("the call must fail")) {
        Error::Service { code, .. } => code,
        other => panic!("not a service-specific error: {other}"),
    }
}

/// Heaps under /dev/dma_heap, sorted.
pub fn real_heaps() -> Vec<String> {
    let mut heaps: Vec<String> = std::fs::read_dir("/dev/dma_heap")
        .expect("/dev/dma_heap")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    heaps.sort();
    heaps
}

/// What the service under test lists: the real heaps plus `loop`.
pub fn served_heaps() -> Vec<String> {
    let mut heaps = real_heaps();
    heaps.push("loop".into());
    heaps.sort();
    heaps
}

/// Kills a child on drop (and reaps it).
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How the service under test is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// Heap directory (links to /dev/dma_heap plus `loop`).
    pub heap_dir: &'static str,
    /// Outstanding bytes per uid.
    pub quota: u64,
}

/// The service manager and the service under test.
pub struct Stack {
    _hub: Reaped,
    service: Option<Reaped>,
    config: Config,
}

impl Stack {
    pub fn start(config: Config) -> Stack {
        let dir = Path::new(config.heap_dir);
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("heap dir");
        for heap in real_heaps() {
            std::os::unix::fs::symlink(Path::new("/dev/dma_heap").join(&heap), dir.join(&heap))
                .expect("heap link");
        }
        std::os::unix::fs::symlink("loop", dir.join("loop")).expect("loop link");

        let hub = Reaped(
            Command::new("rsb_hub")
                .args(["--device", "vndbinder", "--insecure-allow-all"])
                .spawn()
                .expect("rsb_hub on PATH (tests/vm/run puts rsbinder-tools in the guest)"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Command::new("rsb_service")
            .args(["--device", "vndbinder", "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "rsb_hub did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut stack = Stack { _hub: hub, service: None, config };
        stack.start_service();
        stack
    }

    /// Starts `dmabufd` and waits until it answers a call (not merely until its name is
    /// registered: after a restart the name may still point at the dead instance, whose calls
    /// fail).
    pub fn start_service(&mut self) {
        assert!(self.service.is_none(), "dmabufd is already running");
        let service = Reaped(
            Command::new(env!("CARGO_BIN_EXE_dmabufd"))
                .args(["--device", DEVICE, "--heap-dir", self.config.heap_dir])
                .args(["--max-size", "1G"])
                .args(["--quota", &self.config.quota.to_string()])
                .spawn()
                .expect("start dmabufd"),
        );
        self.service = Some(service);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(alloc) = compat::connect::<dyn IAllocator>(
                &transport(),
                ALLOCATOR_INSTANCE,
                Duration::from_secs(1),
            ) {
                if alloc.getHeaps().is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "dmabufd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs `dmabufd` (what a crash or the low-memory killer does) and reaps it.
    pub fn kill_service(&mut self) {
        drop(self.service.take().expect("dmabufd is running"));
    }

    pub fn pid(&self) -> u32 {
        self.service.as_ref().expect("dmabufd is running").0.id()
    }
}

/// Starts this binary as `client ROLE ARGS...` with `uid` (and gid); its stdin is a pipe that
/// keeps it alive, its stdout a pipe to read.
pub fn client(uid: u32, role: &str, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .arg("client")
        .arg(role)
        .args(args)
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start client");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (child, stdout)
}

pub fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read client output");
    line.trim_end().to_owned()
}

/// Targets of a process's fds, sorted.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .map(|e| {
                    std::fs::read_link(e.path())
                        .map_or_else(|e| e.to_string(), |t| t.display().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    targets.sort();
    targets
}

pub fn service_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS kB")
}

pub const BUFINFO: &str = "/sys/kernel/debug/dma_buf/bufinfo";

pub fn bufinfo() -> dmabufd::procfs::bufinfo::BufInfo {
    let text = std::fs::read(BUFINFO).expect("bufinfo");
    dmabufd::procfs::bufinfo::parse(&text).expect("bufinfo has the kernel's structure")
}

pub fn bufinfo_inodes() -> Vec<u64> {
    bufinfo().rows.iter().filter_map(|r| r.inode).collect()
}

/// Waits until the kernel no longer lists buffer `inode`. After a client closes a buffer the
/// service handed out, the service's own copy of the reply's fd may still be open for a moment
/// (it is closed after the reply is sent, and the client can run first); until then the buffer
/// lives and still counts toward the quota.
pub fn wait_freed(inode: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while bufinfo_inodes().contains(&inode) {
        assert!(Instant::now() < deadline, "buffer {inode} is never freed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One test of a suite: gets the running stack (mutable, so a test may restart the service).
pub type Test = fn(&mut Stack);

/// The libtest arguments the custom harness understands: a name filter (the first non-option
/// argument), `--skip NAME` (exact names: tests/vm/run skips tests the kernel cannot run),
/// `--list` and `--ignored` (there are no ignored tests); other options are ignored.
#[derive(Debug, Default)]
struct Args {
    filter: Option<String>,
    skip: Vec<String>,
    list: bool,
    ignored: bool,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args::default();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--skip" => args.skip.extend(it.next()),
                "--list" => args.list = true,
                "--ignored" => args.ignored = true,
                _ if a.starts_with('-') => {}
                _ if args.filter.is_none() => args.filter = Some(a),
                _ => {}
            }
        }
        args
    }

    /// `--list`: prints the names as libtest does and exits, before any stack is started.
    fn list_if_asked<'a>(&self, names: impl Iterator<Item = &'a str>) {
        if self.list {
            for name in names.filter(|_| !self.ignored) {
                println!("{name}: test");
            }
            std::process::exit(0);
        }
    }

    fn selects(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
            && !self.skip.iter().any(|s| s == name)
    }
}

/// Runs `tests` one after another against one stack (one service manager per device), those
/// the arguments select (see [`Args`]), and prints libtest's `test result:` line for
/// tests/vm/run. Exits with 1 if any failed. `--list` prints the names as libtest does.
pub fn run_suite(tests: &[(&str, Test)], config: Config) -> ! {
    let args = Args::parse();
    args.list_if_asked(tests.iter().map(|(name, _)| *name));
    let mut stack = Stack::start(config);
    let failed = run_each(&args, tests, &mut stack, |stack| {
        // A test that failed half-way may have left the service down: later tests need it.
        if stack.service.is_none() {
            stack.start_service();
        }
    });
    drop(stack);
    std::process::exit(i32::from(failed));
}

/// [`run_suite`] for tests that need no service.
pub fn run_plain(tests: &[(&str, fn())]) -> ! {
    let args = Args::parse();
    args.list_if_asked(tests.iter().map(|(name, _)| *name));
    let tests: Vec<_> =
        tests.iter().map(|&(name, test)| (name, move |_: &mut ()| test())).collect();
    let failed = run_each(&args, &tests, &mut (), |_| {});
    std::process::exit(i32::from(failed));
}

/// The loop of [`run_suite`] and [`run_plain`]: true if any test failed.
fn run_each<S, T: Fn(&mut S)>(
    args: &Args,
    tests: &[(&str, T)],
    state: &mut S,
    mut after_each: impl FnMut(&mut S),
) -> bool {
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    for (name, test) in tests {
        if !args.selects(name) {
            filtered += 1;
            continue;
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(state))).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
        after_each(state);
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} \
         filtered out",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    failed > 0
}

/// A small deterministic PRNG (xorshift64*), so that a random schedule can be replayed from the
/// seed a test prints.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `env` if set, else from the clock; prints the seed.
    pub fn from_env(env: &str) -> Rng {
        let seed = std::env::var(env).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        println!("{env}={seed}");
        Rng::new(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
