//! `dmabufctl bpf pin|unpin|status`: the pinned BPF iterators `dump` reads (docs/bpf.md).

use std::path::Path;

use super::BpfCommand;
use crate::bpf::{self, Program, FDS, LIST, VMAS};

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
                [FDS, VMAS, LIST].into_iter().filter(|p| dir.join(p.pin).exists()).collect();
            say(&dir, &present);
        }
    }
    Ok(())
}

/// Every subcommand ends by saying what is pinned now, in one line.
fn say(dir: &Path, programs: &[Program]) {
    if programs.is_empty() {
        println!("nothing pinned at {}", dir.display());
    } else {
        let names: Vec<_> = programs.iter().map(|p| p.iter).collect();
        println!("pinned {} at {}", names.join(", "), dir.display());
    }
}
