//! Loads the BPF iterators with aya: the only code that needs aya, BTF or the verifier.
//!
//! The object is relocated against the running kernel's BTF; each program is verified when it
//! is first run or pinned. A run attaches it, reads one pass and drops the link; a pin leaves
//! the link in bpffs, where every later open is a pass (see [`super::Iterators`]). Needs root,
//! or CAP_BPF with CAP_PERFMON, and BTF (`/sys/kernel/btf/vmlinux`).

use std::fs::File;
use std::io;
use std::path::Path;

use aya::programs::iter::IterLink;
use aya::programs::links::FdLink;
use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};

use super::Program;
use crate::{Error, Result};

/// The object build.rs compiled from `bpf/dmabuf_iter.bpf.c`, aligned for the ELF parser.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dmabuf_iter.bpf.o"));

/// A loaded object, ready to run its iterators.
pub(super) struct Loaded {
    btf: Btf,
    ebpf: Ebpf,
}

impl Loaded {
    pub(super) fn new() -> Result<Self> {
        let start = std::time::Instant::now();
        let btf = Btf::from_sys_fs().map_err(|e| failed("reading the kernel's BTF", e))?;
        log::debug!("BPF: kernel BTF parsed in {:?}", start.elapsed());
        let ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(|e| failed("loading the BPF object", e))?;
        Ok(Self { btf, ebpf })
    }

    /// A pass of `program`: reading the file runs it.
    pub(super) fn pass(&mut self, program: &Program) -> Result<File> {
        self.link(program)?.into_file().map_err(|e| failed(context(program), e))
    }

    /// Pins `program`'s link at `path` (on bpffs), where it stays after this process exits.
    pub(super) fn pin(&mut self, program: &Program, path: &Path) -> Result<()> {
        let link =
            FdLink::try_from(self.link(program)?).map_err(|e| failed(context(program), e))?;
        link.pin(path).map_err(|e| failed(format!("pinning {}", path.display()), e))?;
        Ok(())
    }

    /// Verifies `program` (once) and attaches it as its iterator.
    fn link(&mut self, program: &Program) -> Result<IterLink> {
        let context = || context(program);
        let iter: &mut Iter = self
            .ebpf
            .program_mut(program.name)
            .ok_or_else(|| Error::io(context(), io::Error::other("not in the object")))?
            .try_into()
            .map_err(|e| failed(context(), e))?;
        if iter.fd().is_err() {
            iter.load(program.iter, &self.btf).map_err(|e| failed(context(), e))?;
        }
        let link = iter.attach().map_err(|e| failed(context(), e))?;
        iter.take_link(link).map_err(|e| failed(context(), e))
    }
}

fn context(program: &Program) -> String {
    format!("BPF iterator {}", program.iter)
}

fn failed(context: impl Into<String>, e: impl std::error::Error) -> Error {
    // aya's errors carry the cause in their source chain (the verifier log, the errno).
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    // A verifier log runs to many lines; the error stays one (the CLI's promise).
    if let Some((first, _)) = text.split_once('\n') {
        log::debug!("{text}");
        text = format!("{first} (RUST_LOG=debug for the rest)");
    }
    Error::io(context, io::Error::other(text))
}
