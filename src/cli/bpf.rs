//! `dmabufctl bpf pin|unpin|status`: the pinned BPF iterators `dump` reads (docs/bpf.md).

use std::path::Path;

use super::BpfCommand;
use crate::bpf::{self, FDS, LIST, VMAS};

pub fn bpf(command: &BpfCommand) -> crate::Result<()> {
    let dir = bpf::pin_dir_under(Path::new("/"));
    match command {
        BpfCommand::Pin => {
            let pinned = bpf::pin(&dir)?;
            let names: Vec<_> = pinned.programs.iter().map(|p| p.iter).collect();
            println!("pinned {} at {}", names.join(", "), pinned.dir.display());
        }
        BpfCommand::Unpin => {
            bpf::unpin(&dir)?;
            println!("nothing pinned at {}", dir.display());
        }
        BpfCommand::Status => {
            let names: Vec<_> = [FDS, VMAS, LIST]
                .iter()
                .filter(|p| dir.join(p.pin).exists())
                .map(|p| p.iter)
                .collect();
            if names.is_empty() {
                println!("nothing pinned at {}", dir.display());
            } else {
                println!("pinned {} at {}", names.join(", "), dir.display());
            }
        }
    }
    Ok(())
}
