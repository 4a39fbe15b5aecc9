//! `dmabufctl bpf pin|unpin|status`: the pinned BPF iterators `dump` reads (docs/bpf.md).

use std::path::Path;

use super::BpfCommand;
use crate::bpf::{self, Program};

pub fn bpf(command: &BpfCommand) -> crate::Result<()> {
    let dir = bpf::pin_dir_under(Path::new("/"));
    match command {
        BpfCommand::Pin => {
            let pinned = bpf::pin(&dir)?;
            say(&pinned.dir, &pinned.programs);
        }
        BpfCommand::Unpin => {
            bpf::unpin(&dir)?;
            say(&dir, &[]);
        }
        BpfCommand::Status => {
            let present: Vec<_> =
                bpf::ALL.into_iter().filter(|p| dir.join(p.pin).exists()).collect();
            say(&dir, &present);
        }
    }
    Ok(())
}

/// Every subcommand ends by saying what is pinned now, in one line: the iterators, each once
/// (a task iterator is pinned both describing buffers and not).
fn say(dir: &Path, programs: &[Program]) {
    if programs.is_empty() {
        println!("nothing pinned at {}", dir.display());
    } else {
        let mut names: Vec<_> = Vec::new();
        for p in programs {
            if !names.contains(&p.iter) {
                names.push(p.iter);
            }
        }
        println!("pinned {} at {}", names.join(", "), dir.display());
    }
}
