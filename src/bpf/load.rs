//! Loads the BPF iterators with aya and reads what they write: the only BPF I/O.
//!
//! Each pass loads the object afresh (relocated against the running kernel's BTF), runs the
//! iterators once and drops everything: nothing stays attached or pinned, and the `seen` map
//! starts empty. Needs root, or CAP_BPF with CAP_PERFMON, and BTF (`/sys/kernel/btf/vmlinux`).

use std::io::{self, Read};

use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};

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

    /// Runs program `name` as an iterator of kind `iter` (`task_file`: the kernel's
    /// `bpf_iter_task_file`) and appends its whole output to `out`.
    pub(super) fn run(&mut self, name: &str, iter: &str, out: &mut Vec<u8>) -> Result<()> {
        let context = || format!("BPF iterator {iter}");
        let program: &mut Iter = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| Error::io(context(), io::Error::other("not in the object")))?
            .try_into()
            .map_err(|e| failed(context(), e))?;
        program.load(iter, &self.btf).map_err(|e| failed(context(), e))?;
        let link = program.attach().map_err(|e| failed(context(), e))?;
        let link = program.take_link(link).map_err(|e| failed(context(), e))?;
        let mut file = link.into_file().map_err(|e| failed(context(), e))?;
        file.read_to_end(out).map_err(|e| Error::io(context(), e))?;
        Ok(())
    }
}

fn failed(context: impl Into<String>, e: impl std::error::Error) -> Error {
    // aya's errors carry the cause in their source chain (the verifier log, the errno).
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    Error::io(context, io::Error::other(text))
}
