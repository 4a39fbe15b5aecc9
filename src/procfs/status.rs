//! `/proc/<pid>/status`: the command name and uid of a process in one read.
//!
//! `status` rather than `comm` plus a `stat()` of the directory: one open instead of two, and it
//! gives the real uid (the directory's owner is the effective uid, and root for non-dumpable
//! processes), which is the uid Android assigns to an app.

use super::{lossy, parse_u64, trim};

/// Identity of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Command name (`Name:`), as the kernel escapes it.
    pub comm: String,
    /// Real uid (first field of `Uid:`).
    pub uid: u32,
}

/// Parses a status file; `None` if the `Name:` or `Uid:` line is missing or malformed.
pub fn parse(bytes: &[u8]) -> Option<Status> {
    let mut comm = None;
    let mut uid = None;
    for line in bytes.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"Name:") {
            comm = Some(lossy(v.strip_prefix(b"\t").unwrap_or(v)));
        } else if let Some(v) = line.strip_prefix(b"Uid:") {
            let first = trim(v).split(|b| b.is_ascii_whitespace()).next()?;
            uid = parse_u64(first).and_then(|u| u32::try_from(u).ok());
            // Name precedes Uid in every kernel's status, so nothing more to read.
            break;
        }
    }
    Some(Status { comm: comm?, uid: uid? })
}
