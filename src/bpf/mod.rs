//! The accounting scan through BPF iterators, and the choice between it and /proc.
//!
//! One pass in the kernel replaces a syscall per fd: `iter/task_file` and `iter/task_vma` walk
//! every task's fd table and address space and write only dma-buf entries, with each holder's
//! name and uid, as binary records ([`records`]), counted with the /proc walk's rules into the
//! same model ([`tally`]); the kernel's buffer list is read around the pass exactly as for /proc
//! ([`crate::scan`]).
//!
//! Loading (BTF parse, CO-RE relocation, the verifier) costs more than a whole /proc walk of a
//! phone's worth of processes, so it is done once and the iterators pinned in bpffs, as
//! Android's bpfloader does at boot: [`pin`] (`dmabufctl bpf pin`, or the service at start)
//! loads and pins, and every scan after that only opens and reads the pinned files, which
//! needs no BTF, no aya and no memory beyond the records. Loading needs the `bpf` feature
//! (Cargo only; docs/bpf.md), root or CAP_BPF+CAP_PERFMON, BTF and a 5.12+ kernel.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::account::Model;
use crate::coverage::{source, SourceState, SourceUse};
use crate::kernel_buffers::Source as KernelSource;
use crate::scan::{self, ScanOptions};
use crate::{Error, Result};

#[cfg(feature = "bpf")]
mod load;
mod read;
pub mod records;
pub mod tally;

/// Which scan to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    /// BPF when its iterators are pinned (loaded once, see [`pin`]), else /proc.
    #[default]
    Auto,
    /// BPF only: the pinned iterators, else loaded for this scan; failing is an error.
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

/// One program of the object: its name there, the kernel iterator it attaches to, and the file
/// it is pinned as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// Function name in `bpf/dmabuf_iter.bpf.c`.
    pub name: &'static str,
    /// Iterator target (`task_file`: the kernel's `bpf_iter_task_file`).
    pub iter: &'static str,
    /// File name under the pin directory.
    pub pin: &'static str,
}

/// Every dma-buf fd of every task.
pub const FDS: Program = Program { name: "dmabuf_fds", iter: "task_file", pin: "fds" };
/// Every dma-buf mapping of every task.
pub const VMAS: Program = Program { name: "dmabuf_vmas", iter: "task_vma", pin: "vmas" };
/// Every exported buffer (6.16+): the kernel's buffer list.
pub const LIST: Program = Program { name: "dmabuf_list", iter: "dmabuf", pin: "buffers" };
/// Every dma-buf fd of every task, each fd table walked in the kernel in one program run, without
/// buffer descriptions: for where [`LIST`] gives them. A run writes up to 1,300 dma-buf fds of
/// a table (its output must fit the kernel's seq buffer) and then where the rest begin, which
/// the scan reads from `/proc`.
pub const TABLES: Program = Program { name: "dmabuf_tables", iter: "task", pin: "tables" };
/// [`VMAS`] without buffer descriptions, for where [`LIST`] gives them.
pub const VMA_REFS: Program =
    Program { name: "dmabuf_vma_refs", iter: "task_vma", pin: "vma_refs" };
/// Records that are not what the object writes: the pass's data is invalid, as a parse failure
/// of any kernel list is.
fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// What a scan runs: who holds what.
const TASKS: [Program; 2] = [FDS, VMAS];
/// What a scan runs once it has read [`LIST`]: the same, describing no buffer. Over half of
/// what [`TASKS`] write is buffer descriptions, and each costs a hash lookup and update.
const REFS: [Program; 2] = [TABLES, VMA_REFS];
/// Everything [`pin`] pins, in order; the reference-only passes ([`TABLES`], [`VMA_REFS`])
/// only with [`LIST`], which they are useless without.
pub const ALL: [Program; 5] = [FDS, VMAS, LIST, TABLES, VMA_REFS];

/// Where [`pin`] puts the iterators below the root (`/`): bpffs's usual mount, one directory
/// per record layout, so a reader never meets another build's layout.
pub fn pin_dir_under(root: &Path) -> PathBuf {
    root.join(format!("sys/fs/bpf/dmabufd/v{}", records::FORMAT))
}

/// What [`pin`] pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The directory.
    pub dir: PathBuf,
    /// The programs pinned there; [`LIST`] is missing where the kernel lacks `iter/dmabuf`.
    pub programs: Vec<Program>,
}

/// Loads the iterators and pins them in `dir` (on bpffs), replacing what an earlier pin left
/// there: [`FDS`] and [`VMAS`] or nothing, and [`LIST`] where the kernel has it.
#[cfg(feature = "bpf")]
pub fn pin(dir: &Path) -> Result<Pinned> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut object = load::Loaded::new()?;
    let mut programs = Vec::new();
    for program in ALL {
        let path = dir.join(program.pin);
        remove_pin(&path)?;
        if REFS.contains(&program) && !programs.contains(&LIST) {
            continue;
        }
        match object.pin(&program, &path) {
            Ok(()) => programs.push(program),
            // Only the buffer list (6.16+) and what needs it are optional: without both task
            // iterators there is nothing to scan with.
            Err(e) if !TASKS.contains(&program) => log::info!("not pinning {}: {e}", program.name),
            Err(e) => {
                // Leave no half-pinned directory for auto to trust.
                let _ = unpin(dir);
                return Err(e);
            }
        }
    }
    Ok(Pinned { dir: dir.to_path_buf(), programs })
}

/// Without the `bpf` feature nothing can be loaded, hence pinned.
#[cfg(not(feature = "bpf"))]
pub fn pin(_dir: &Path) -> Result<Pinned> {
    Err(Error::Unsupported("loading BPF (this build lacks the `bpf` feature)"))
}

/// Removes what [`pin`] pinned in `dir`, and `dir`; unpinning the last reference to an iterator
/// unloads it. Nothing pinned is not an error.
pub fn unpin(dir: &Path) -> Result<()> {
    for program in ALL {
        remove_pin(&dir.join(program.pin))?;
    }
    let removed = std::fs::remove_dir(dir);
    unless_missing(removed).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}

fn remove_pin(path: &Path) -> Result<()> {
    let removed = std::fs::remove_file(path);
    unless_missing(removed).map_err(|e| Error::io(format!("unpinning {}", path.display()), e))
}

/// A removal's error, unless it found nothing to remove.
fn unless_missing(removed: std::io::Result<()>) -> std::io::Result<()> {
    match removed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The iterators a scan reads: pinned files, or an object loaded for this scan alone.
enum Iterators {
    Pinned(PathBuf),
    #[cfg(feature = "bpf")]
    Loaded(Box<load::Loaded>),
}

impl Iterators {
    /// The iterators pinned under `root`, if every one of `needs` is there.
    fn pinned(root: &Path, needs: &[Program]) -> Option<Self> {
        let pinned = Iterators::Pinned(pin_dir_under(root));
        pinned.has(needs).then_some(pinned)
    }

    /// The pinned iterators, else a fresh load.
    fn pinned_or_loaded(root: &Path, needs: &[Program]) -> Result<Self> {
        if let Some(pinned) = Self::pinned(root, needs) {
            return Ok(pinned);
        }
        #[cfg(feature = "bpf")]
        return Ok(Iterators::Loaded(Box::new(load::Loaded::new()?)));
        #[cfg(not(feature = "bpf"))]
        Err(Error::Unsupported("BPF scan (nothing pinned, and this build lacks the `bpf` feature)"))
    }

    /// A pass of `program`: reading the file runs it.
    fn open(&mut self, program: &Program) -> Result<std::fs::File> {
        match self {
            // Each open of a pinned iterator link is a fresh pass of it.
            Iterators::Pinned(dir) => std::fs::File::open(dir.join(program.pin))
                .map_err(|e| Error::io(format!("opening BPF iterator {}", program.iter), e)),
            #[cfg(feature = "bpf")]
            Iterators::Loaded(object) => object.pass(program),
        }
    }

    /// True when every one of `programs` can run: always for a loaded object (it has them all).
    fn has(&self, programs: &[Program]) -> bool {
        match self {
            Iterators::Pinned(dir) => programs.iter().all(|p| dir.join(p.pin).exists()),
            #[cfg(feature = "bpf")]
            Iterators::Loaded(_) => true,
        }
    }

    /// Which `programs` ran, and how they were reached: the BPF source's coverage detail.
    fn describe(&self, programs: &[Program]) -> String {
        let how = match self {
            Iterators::Pinned(dir) => format!("pinned at {}", dir.display()),
            #[cfg(feature = "bpf")]
            Iterators::Loaded(_) => "loaded for this scan".to_string(),
        };
        let names: Vec<_> = programs.iter().map(|p| p.name).collect();
        format!("{}, {how}", names.join(" and "))
    }
}

/// The pinned `iter/dmabuf` list at `path`, parsed as it is read.
pub(crate) fn read_list(path: &Path) -> Result<crate::kernel_buffers::KernelBuffers> {
    let context = || format!("reading {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
    read_list_from(file).map_err(|e| Error::io(context(), e))
}

fn read_list_from(file: impl Read + Send) -> std::io::Result<crate::kernel_buffers::KernelBuffers> {
    let mut list = crate::kernel_buffers::KernelBuffers::default();
    read::read_alongside(vec![file], |bytes| list.add_records(bytes)).map_err(|(_, e)| e)?;
    Ok(list)
}

/// Set once a BPF failure has been logged: a service scanning again and again says it once.
static FAILURE_LOGGED: AtomicBool = AtomicBool::new(false);

/// Scans with the chosen source. `Auto` uses the pinned iterators on the live system
/// (`proc_root` is `/proc`) and scans /proc where none are pinned or on any failure, logged
/// once; `Bpf` loads the iterators for this scan when none are pinned, and fails instead.
pub fn scan(opts: &ScanOptions, choice: SourceChoice) -> Result<(Model, Source)> {
    let live = opts.proc_root == Path::new("/proc");
    let procfs = || Ok((scan::scan(opts)?, Source::Procfs));
    match choice {
        SourceChoice::Procfs => procfs(),
        SourceChoice::Bpf => Ok((scan_bpf(opts)?, Source::Bpf)),
        SourceChoice::Auto if !live => procfs(),
        SourceChoice::Auto => {
            let Some(iterators) = Iterators::pinned(Path::new("/"), &TASKS) else {
                log::debug!("no BPF iterators pinned (`dmabufctl bpf pin`), scanning /proc");
                return procfs();
            };
            match scan_with(opts, iterators) {
                Ok(model) => Ok((model, Source::Bpf)),
                Err(e) => {
                    if !FAILURE_LOGGED.swap(true, Ordering::Relaxed) {
                        log::warn!("BPF scan failed, scanning /proc: {e}");
                    }
                    procfs()
                }
            }
        }
    }
}

/// The BPF scan of the live system: through the pinned iterators, else loaded for this scan.
pub fn scan_bpf(opts: &ScanOptions) -> Result<Model> {
    scan_with(opts, Iterators::pinned_or_loaded(Path::new("/"), &TASKS)?)
}

/// One pass of both task iterators, between the same two reads of the kernel's buffer list as
/// the /proc walk. Where the first read is the pinned `iter/dmabuf`, it describes every buffer
/// and the passes that only reference them run ([`REFS`]); the rest of a table too large for
/// one run of [`TABLES`] is read from `/proc` after them.
fn scan_with(opts: &ScanOptions, mut iterators: Iterators) -> Result<Model> {
    scan::around_kernel_lists(opts, |before| {
        let start = std::time::Instant::now();
        let listed = match before {
            Some((KernelSource::Pinned(_), list)) if iterators.has(&REFS) => Some(list),
            _ => None,
        };
        let (programs, mut counter) = match listed {
            Some(list) => (&REFS, tally::Counter::described_by(list)),
            None => (&TASKS, tally::Counter::default()),
        };
        let passes = programs.iter().map(|p| iterators.open(p)).collect::<Result<Vec<_>>>()?;
        read::read_alongside(passes, |bytes| counter.add(bytes)).map_err(|(at, e)| {
            Error::io(format!("reading BPF iterator {}", programs[at].iter), e)
        })?;
        log::debug!("BPF passes read at {:?}", start.elapsed());
        let counting = |e: tally::TallyError| Error::io("counting BPF records", invalid(e));
        let cuts = counter.take_cuts().map_err(counting)?;
        for cut in &cuts {
            let context =
                || format!("reading fds {}.. of thread {} from /proc", cut.next_fd, cut.tid);
            let rest = scan::dma_buf_fds_from(&opts.proc_root, cut.tgid, cut.tid, cut.next_fd)
                .map_err(|e| Error::io(context(), e))?;
            for st in rest {
                counter
                    .add_fd(cut, st.inode, st.size)
                    .map_err(|e| Error::io(context(), invalid(e)))?;
            }
        }
        let tally = counter.finish().map_err(counting)?;
        let mut model =
            Model { buffers: tally.buffers, processes: tally.processes, ..Model::default() };
        let mut detail = iterators.describe(programs);
        if !cuts.is_empty() {
            let n = cuts.len();
            detail.push_str(&format!("; {n} fd table(s) past one run read on from /proc"));
        }
        model.coverage.sources = vec![SourceUse::new(source::BPF_SCAN, SourceState::Used, detail)];
        model.coverage.scanner_uid = Some(crate::sys::effective_uid());
        Ok(model)
    })
}

/// Every exported buffer, as `iter/dmabuf` (Linux 6.16+) lists it: inode, size, name and
/// exporter read in the kernel, no debugfs needed. Pinned, else loaded for this read.
pub fn kernel_buffers() -> Result<crate::kernel_buffers::KernelBuffers> {
    let pass = Iterators::pinned_or_loaded(Path::new("/"), &[LIST])?.open(&LIST)?;
    read_list_from(pass).map_err(|e| Error::io(format!("reading BPF iterator {}", LIST.iter), e))
}

#[cfg(test)]
mod tests {
    use super::read::tests::Trickle;
    use super::*;

    fn buffer(inode: u64) -> Vec<u8> {
        let mut r = [1u32, 0].map(u32::to_ne_bytes).concat();
        r.extend([inode, 4096 * inode].map(u64::to_ne_bytes).concat());
        r.resize(24 + records::NAME_LEN + records::EXPORTER_LEN, 0);
        r[24..28].copy_from_slice(b"n\nm\t");
        r[24 + records::NAME_LEN..][..6].copy_from_slice(b"system");
        r
    }

    #[test]
    fn a_list_read_in_pieces_is_the_list_parsed_whole() {
        let bytes: Vec<u8> = (1..=50).flat_map(buffer).collect();
        let whole = crate::kernel_buffers::KernelBuffers::from_records(&bytes).expect("records");
        assert_eq!(whole.buffers.len(), 50);
        assert_eq!(
            whole.buffers[49].name.as_ref().map(crate::text::Name::as_bytes),
            Some(&b"n\nm\t"[..])
        );
        for step in [1, 7, 120, 4096, 128 * 1024] {
            assert_eq!(read_list_from(Trickle(&bytes, step)).expect("records"), whole, "{step}");
        }
    }

    #[test]
    fn a_pass_ending_inside_a_record_is_invalid_data_at_that_record() {
        let mut bytes: Vec<u8> = (1..=3).flat_map(buffer).collect();
        let whole = bytes.len();
        bytes.extend(&buffer(4)[..30]);
        let e = read_list_from(Trickle(&bytes, 50)).expect_err("cut short");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), format!("BPF record cut short at byte {whole}"));
    }
}
