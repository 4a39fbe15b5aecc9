//! `dmabufctl heaps` and `dmabufctl alloc`, straight against the kernel.
//!
//! `alloc` prints one line per buffer, stable for scripts:
//! `inode=<ino> size=<bytes> heap=<heap> name="<name>"`, the heap and name
//! [escaped](crate::text::escape) as in every text output; the name is quoted because names may
//! contain spaces, and is last, so it runs to the line's final `"`.
//!
//! Names: the service keeps names of up to 128 bytes in its ledger and gives the kernel their
//! first 31 (whole characters). Straight against the kernel nothing would keep the rest, so the
//! direct path refuses names longer than 31 bytes instead of cutting them silently.

use std::io::Write;
use std::time::Duration;

use super::AllocArgs;
use crate::buffer::{DmaBuf, Mapping};
use crate::heap::{AllocRequest, Allocator};
use crate::sys::SyncAccess;
use crate::text::escape;
use crate::{units, Error, Result};

/// Prints the available heaps, one per line.
pub fn heaps() -> Result<()> {
    let mut out = std::io::stdout().lock();
    for heap in Allocator::new().heaps()? {
        writeln!(out, "{heap}").map_err(|e| Error::io("writing to stdout", e))?;
    }
    Ok(())
}

/// Allocates, optionally maps and touches, prints, then holds the buffers.
pub fn alloc(args: &AllocArgs) -> Result<()> {
    check_count(args)?;
    let req = AllocRequest {
        heap: &args.heap,
        size: units::parse_size(&args.size)?,
        name: args.name.as_bytes(),
        heap_flags: args.flags,
    };
    let allocator = Allocator::new();
    let checked = allocator.check(&req)?;
    // Straight from the heap, the kernel is the only record of the name: refuse what it would cut.
    checked.name().require_whole()?;
    let buffers = (0..args.count)
        .map(|_| allocator.allocate_checked(&checked))
        .collect::<Result<Vec<DmaBuf>>>()?;
    present(args, &buffers)
}

/// `--count 0` is a mistake, not a no-op.
pub(super) fn check_count(args: &AllocArgs) -> Result<()> {
    if args.count == 0 {
        return Err(Error::InvalidArgument("--count must be at least 1".into()));
    }
    Ok(())
}

/// What `alloc` does with its buffers, wherever they came from (`--service` too): optionally
/// maps and touches them, prints them, then holds them.
pub(super) fn present(args: &AllocArgs, buffers: &[DmaBuf]) -> Result<()> {
    let mappings = if args.map {
        buffers.iter().map(map_and_touch).collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };

    let mut out = std::io::stdout().lock();
    for buf in buffers {
        writeln!(
            out,
            "inode={} size={} heap={} name=\"{}\"",
            buf.inode(),
            buf.size(),
            escape(args.heap.as_bytes()),
            escape(args.name.as_bytes())
        )
        .map_err(|e| Error::io("writing to stdout", e))?;
    }
    // Whoever waits on our output (a test, `| head`) must see it before the hold starts.
    out.flush().map_err(|e| Error::io("writing to stdout", e))?;
    drop(out);

    if let Some(seconds) = args.hold {
        std::thread::sleep(Duration::from_secs(seconds));
    }
    drop(mappings);
    Ok(())
}

/// Maps a buffer and writes one byte per page inside a CPU-access window, so heaps that populate
/// mappings lazily have every page in place, and the buffer is shown to be usable. (The system
/// heap maps every page up front as VM_PFNMAP, which smaps never counts as Rss.)
fn map_and_touch(buf: &DmaBuf) -> Result<Mapping<'_>> {
    let mapping = buf.map()?;
    let page = usize::try_from(units::page_size()).unwrap_or(4096).max(1);
    let access = mapping.cpu_access(SyncAccess::Write)?;
    for offset in (0..mapping.len()).step_by(page) {
        access.fill(offset, 1, 0xa5)?;
    }
    access.end()?;
    Ok(mapping)
}
