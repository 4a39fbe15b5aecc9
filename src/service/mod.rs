//! The `dmabufd` binder service: a thin adapter from AIDL calls to the library.
//!
//! Layers: [`compat`] is the only module that names a binder crate (rsbinder under Cargo, AOSP
//! `binder` under Soong); `interfaces` implements the AIDL traits once against it; `state`
//! holds the transport-free logic (policy, quota, ledger); `convert` maps library views to
//! parcelables and back; [`errors`] maps [`crate::Error`] to the documented codes and logs each
//! failed call. Replies of any size: `snapshots` holds what paged queries read, `pages` cuts it
//! into replies that fit a binder transaction; `scans` shares and rate-limits `/proc` scans; [`history`] keeps high-water marks and samples of
//! the service's allocations.

pub mod compat;
pub mod convert;
pub mod errors;
pub mod history;
mod interfaces;
mod memtrack;
mod pages;
mod scans;
mod snapshots;
mod state;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use self::compat::Transport;
use self::interfaces::{AccountingService, AllocatorService};
use self::memtrack::MemtrackService;
use self::state::{Policy, Shared};
use crate::error::{EXIT_FAILURE, EXIT_USAGE};
use crate::heap::{Allocator, HEAP_DIR};
use crate::kernel_buffers::LiveBuffers;
use crate::units;

#[derive(Debug, Parser)]
#[command(
    name = "dmabufd",
    version,
    about = "Named dma-buf allocation service (vendor.dmabufd.IAllocator, IAccounting) and \
             memtrack HAL (android.hardware.memtrack.IMemtrack)"
)]
struct Args {
    /// Uids that may query other uids' accounting data and ledger (comma-separated or repeated).
    /// Everyone may query their own uid.
    #[arg(long = "allow-uid", value_name = "UID", value_delimiter = ',', default_values_t = [0, 1000])]
    allow_uids: Vec<u32>,
    /// Outstanding bytes each uid may hold through the service (K, M, G suffixes), or `none`.
    #[arg(long, value_name = "BYTES", default_value = "1G")]
    quota: String,
    /// Largest single buffer (K, M, G suffixes). Lower than dmabufctl's direct 1 GiB: the service
    /// allocates for any uid, and a cap of a quarter of the default quota keeps one request from
    /// taking a uid's whole allowance (or the system heap into the OOM killer) at once.
    #[arg(long, value_name = "BYTES", default_value = "256M")]
    max_size: String,
    /// Binder threads serving calls.
    #[arg(long, value_name = "N", default_value_t = 4)]
    threads: u32,
    /// Kernel binder device (default: the binder crate's, /dev/binderfs/binder or /dev/binder).
    #[arg(long, value_name = "PATH", conflicts_with = "rpc")]
    device: Option<PathBuf>,
    /// Directory of heap devices (tests point it at a directory of links to /dev/dma_heap).
    #[arg(long, value_name = "DIR", default_value = HEAP_DIR, hide = true)]
    heap_dir: PathBuf,
    /// Which purpose-name prefix makes a buffer memtrack's GL, CAMERA or MULTIMEDIA:
    /// TYPE=PREFIX, TYPE one of gl, camera, multimedia (comma-separated or repeated; the longest
    /// matching prefix wins, no match is OTHER). Default: gl=GL,camera=CAMERA,multimedia=codec.
    #[arg(long = "memtrack-prefix", value_name = "TYPE=PREFIX", value_delimiter = ',')]
    memtrack_prefixes: Vec<String>,
    /// Serve binder RPC on this unix socket instead of registering with a service manager
    /// (host testing; needs feature `rpc`).
    #[arg(long, value_name = "SOCKET")]
    rpc: Option<PathBuf>,
    /// At start, load the BPF scan and pin it (as `dmabufctl bpf pin`), so that the service's
    /// scans and every `dmabufctl dump` read the kernel's own walk (Linux; root or CAP_BPF and
    /// CAP_PERFMON, BTF, feature `bpf`). A failure is logged and the service scans /proc.
    #[arg(long)]
    pin_bpf: bool,
}

impl Args {
    fn policy(&self) -> crate::Result<(Policy, u64)> {
        let quota = match self.quota.as_str() {
            "none" => None,
            text => Some(units::parse_size(text)?),
        };
        let policy = Policy { allowlist: self.allow_uids.iter().copied().collect(), quota };
        Ok((policy, units::parse_size(&self.max_size)?))
    }
}

/// Runs the `dmabufd` service and returns its exit status (it only returns on failure).
pub fn main() -> i32 {
    crate::logging::init("dmabufd", "warn");
    crate::sys::return_large_frees_to_the_kernel();
    // init drops stderr: a panic (of a binder thread, say) must reach the log to be seen.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("panic: {info}");
        default_hook(info);
    }));
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            if !e.use_stderr() {
                let _ = e.print();
                return 0;
            }
            let text = e.render().to_string();
            log::error!("bad arguments: {}", text.lines().next().unwrap_or_default());
            let _ = e.print();
            return EXIT_USAGE;
        }
    };
    let (policy, max_size) = match args.policy() {
        Ok(config) => config,
        Err(e) => {
            log::error!("bad configuration: {e}");
            eprintln!("dmabufd: {e}");
            return EXIT_USAGE;
        }
    };
    let prefixes = match crate::memtrack::PrefixMap::parse(&args.memtrack_prefixes) {
        Ok(prefixes) => prefixes,
        Err(e) => {
            log::error!("bad configuration: {e}");
            eprintln!("dmabufd: {e}");
            return EXIT_USAGE;
        }
    };
    if args.pin_bpf {
        let dir = crate::bpf::pin_dir_under(std::path::Path::new("/"));
        match crate::bpf::pin(&dir) {
            Ok(pinned) => log::info!("BPF scan pinned at {}", pinned.dir.display()),
            Err(e) => log::warn!("BPF scan not pinned, scanning /proc: {e}"),
        }
    }
    let live = LiveBuffers::detect();
    log::info!("policy {policy:?}, max buffer {max_size} bytes, live buffer list from {live}");
    let shared = Arc::new(Shared::new(policy, Allocator::with_dir(args.heap_dir, max_size), live));
    // Before serving, so that quota checks see what clients still hold from an earlier instance.
    match shared.rebuild_ledger() {
        Ok(0) => {}
        Ok(n) => log::info!("ledger: rebuilt {n} unattributed entries of live buffers"),
        Err(e) => log::warn!("ledger: not rebuilt, cannot scan live buffers: {e}"),
    }
    let transport = match args.rpc {
        Some(socket) => Transport::Rpc(socket),
        None => Transport::Kernel(args.device),
    };
    let allocator = compat::new_allocator(AllocatorService(Arc::clone(&shared)));
    let accounting = compat::new_accounting(AccountingService(Arc::clone(&shared)));
    let memtrack = compat::new_memtrack(MemtrackService(shared, prefixes));
    match compat::serve(&transport, args.threads, allocator, accounting, memtrack) {
        Ok(()) => 0,
        Err(code) => {
            log::error!("serving on {transport:?} failed: {code:?}");
            eprintln!("dmabufd: serving on {transport:?} failed: {code:?}");
            EXIT_FAILURE
        }
    }
}
