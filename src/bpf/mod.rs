//! The accounting scan through BPF iterators, and the choice between it and /proc.
//!
//! One pass in the kernel replaces a syscall per fd: `iter/task_file` and `iter/task_vma` walk
//! every task's fd table and address space and write only dma-buf entries, as binary records
//! ([`records`]), counted with the /proc walk's rules into the same model ([`tally`]); process
//! names and uids still come from `/proc/<pid>/status`, and the kernel's buffer list is read
//! around the pass exactly as for /proc ([`crate::scan`]). Loading needs the `bpf` feature
//! (Cargo only; docs/bpf.md), root or CAP_BPF+CAP_PERFMON, BTF and a 5.12+ kernel.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::account::Model;
use crate::coverage::{source, SourceState, SourceUse};
#[cfg(feature = "bpf")]
use crate::kernel_buffers::{KernelBuffer, KernelBuffers};
use crate::scan::{self, ScanOptions};
use crate::Result;

#[cfg(feature = "bpf")]
mod load;
pub mod records;
pub mod tally;

/// Which scan to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    /// BPF when it loads, else /proc.
    #[default]
    Auto,
    /// BPF only; failing to load is an error.
    Bpf,
    /// The /proc walk.
    Procfs,
}

/// Which scan ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The BPF iterators.
    Bpf,
    /// The /proc walk.
    Procfs,
}

impl Source {
    /// The name JSON, snapshots and `-b` show.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bpf => "bpf",
            Source::Procfs => "procfs",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Set once a BPF failure has been logged: a service scanning again and again says it once.
static FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

/// Scans with the chosen source. `Auto` tries BPF on the live system (`proc_root` is `/proc`)
/// and falls back to /proc on any failure, logged once; `Bpf` fails instead.
pub fn scan(opts: &ScanOptions, choice: SourceChoice) -> Result<(Model, Source)> {
    let live = opts.proc_root == Path::new("/proc");
    match choice {
        SourceChoice::Procfs => Ok((scan::scan(opts)?, Source::Procfs)),
        SourceChoice::Bpf => Ok((scan_bpf(opts)?, Source::Bpf)),
        SourceChoice::Auto if !live => Ok((scan::scan(opts)?, Source::Procfs)),
        SourceChoice::Auto => match scan_bpf(opts) {
            Ok(model) => Ok((model, Source::Bpf)),
            Err(e) => {
                if !FAILURE_LOGGED.swap(true, Ordering::Relaxed) {
                    log::warn!("BPF scan unavailable, scanning /proc: {e}");
                }
                Ok((scan::scan(opts)?, Source::Procfs))
            }
        },
    }
}

/// The BPF scan, between the same two reads of the kernel's buffer list as the /proc walk.
pub fn scan_bpf(opts: &ScanOptions) -> Result<Model> {
    scan::around_kernel_lists(opts, |_| {
        let records = run_iterators()?;
        let buffers = tally::tally(&records)
            .map_err(|e| crate::Error::io("reading the BPF records", std::io::Error::other(e)))?;
        with_processes(opts, buffers)
    })
}

#[cfg(feature = "bpf")]
fn run_iterators() -> Result<Vec<u8>> {
    let start = std::time::Instant::now();
    let mut object = load::Loaded::new()?;
    let loaded = start.elapsed();
    let mut out = Vec::with_capacity(64 * 1024);
    object.run("dmabuf_fds", "task_file", &mut out)?;
    object.run("dmabuf_vmas", "task_vma", &mut out)?;
    // Where a pass's time goes: loading (BTF, relocation, verifier) is a fixed cost.
    log::debug!(
        "BPF pass: loaded in {loaded:?}, {} bytes of records in {:?}",
        out.len(),
        start.elapsed() - loaded
    );
    Ok(out)
}

#[cfg(not(feature = "bpf"))]
fn run_iterators() -> Result<Vec<u8>> {
    Err(crate::Error::Unsupported("BPF scan (this build lacks the `bpf` feature)"))
}

/// Every exported buffer, as `iter/dmabuf` (Linux 6.16+) lists it: inode, size, name and
/// exporter read in the kernel, no debugfs needed.
#[cfg(feature = "bpf")]
pub fn kernel_buffers() -> Result<KernelBuffers> {
    let mut out = Vec::with_capacity(16 * 1024);
    load::Loaded::new()?.run("dmabuf_list", "dmabuf", &mut out)?;
    let mut list = KernelBuffers::default();
    for record in records::parse(&out) {
        match record {
            Ok(records::Record::Buffer(b)) => list.buffers.push(KernelBuffer {
                inode: b.inode,
                size: b.size,
                exporter: b.exporter_name(),
                name: (!b.name.is_empty()).then(|| b.name.to_vec()),
            }),
            other => {
                let e = format!("not a buffer record: {other:?}");
                return Err(crate::Error::io("reading iter/dmabuf", std::io::Error::other(e)));
            }
        }
    }
    Ok(list)
}

/// The model of `buffers` and their holders' `/proc/<pid>/status`. A holder that has exited
/// or cannot be read is dropped with its references and counted, as the /proc walk does.
fn with_processes(
    opts: &ScanOptions,
    buffers: std::collections::BTreeMap<u64, crate::account::Buffer>,
) -> Result<Model> {
    let root = scan::open_proc_root(opts)?;
    let mut model = Model { buffers, ..Model::default() };
    let mut pids: Vec<i32> = model.buffers.values().flat_map(|b| b.holders()).collect();
    pids.sort_unstable();
    pids.dedup();
    let mut buf = Vec::with_capacity(4096);
    for pid in pids {
        let name = CString::new(pid.to_string()).unwrap_or_default();
        let process = crate::sys::open_dir_at(root.as_fd(), &name)
            .map_err(std::io::Error::from)
            .and_then(|dir| scan::read_status(dir.as_fd(), pid, &mut buf));
        match process {
            Ok(p) => {
                model.processes.insert(pid, p);
            }
            Err(e) => {
                // The kernel just listed it, and root reads every status: it exited since.
                log::debug!("pid {pid} unreadable: {e}");
                model.unreadable_processes += 1;
                model.coverage.vanished += 1;
                for b in model.buffers.values_mut() {
                    b.fd_refs.remove(&pid);
                    b.map_refs.remove(&pid);
                }
            }
        }
    }
    model.buffers.retain(|_, b| !b.fd_refs.is_empty() || !b.map_refs.is_empty());
    let detail = "iter/task_file and iter/task_vma, holders' status from /proc";
    model.coverage.sources = vec![SourceUse::new(source::BPF_SCAN, SourceState::Used, detail)];
    model.coverage.scanner_uid = Some(crate::sys::effective_uid());
    Ok(model)
}
