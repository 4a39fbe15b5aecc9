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

/// A raw command name (the kernel's `comm`, as the BPF scan reads it) as `status` prints it,
/// so both scans give a process the same name: the kernel escapes only newline and backslash
/// there (`proc_task_name`), and the name is kept as lossy UTF-8 like a parsed `Name:` line.
pub fn comm_as_printed(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(b),
        }
    }
    lossy(&out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel printed for a thread named `a\nb\c` (prctl PR_SET_NAME), on 6.12.
    #[test]
    fn raw_comm_reads_as_status_prints_it() {
        let status = parse(b"Name:\ta\\nb\\\\c\nUmask:\t0022\nUid:\t0\t0\t0\t0\n").expect("status");
        assert_eq!(comm_as_printed(b"a\nb\\c"), status.comm);
        assert_eq!(comm_as_printed(b"\xffok"), "\u{fffd}ok");
    }
}
