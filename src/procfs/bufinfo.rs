//! debugfs `dma_buf/bufinfo`: every exported buffer, including those no process holds.
//!
//! The kernel (`dma_buf_debug_show`, 6.12) prints a banner and a header, then per buffer
//!
//! ```text
//! %08zu\t%08x\t%08x\t%08ld\t%s\t%08lu\t%s\n      size, flags, mode, count, exp_name, ino, name
//! \t<usage> fence:...\n                          zero or more fence lines
//! \tAttached Devices:\n
//! \t<device>\n                                   one line per attachment
//! Total N devices attached\n\n
//! ```
//!
//! and at the end `\nTotal N objects, B bytes\n`. Kernels before 5.3 print no `ino` and `name`
//! columns. The name is printed raw (`<none>` when unset): whoever holds the buffer can set it
//! to any bytes but NUL, newlines and tabs included, so the file is parsed by structure, never
//! line by line. A row's name runs from the sixth tab to the first newline after which the rest
//! of the block really is a block: tab-indented lines, `\tAttached Devices:`, exactly as many
//! attachment lines as the `Total N devices attached` line counts, and a blank line. A name is
//! at most [`MAX_NAME_LEN`] bytes, and that block is longer, so no name can end a row early or
//! start another one: whatever it holds, every other row and the totals parse as the kernel
//! printed them. What it can do is imitate fence lines after a newline of its own (`"x\n\tread
//! fence:..."`): the shortest reading is taken, so such a name alone may read shorter than it
//! is. Anything else that does not have this structure is refused as [`Malformed`], and the
//! row count and byte total are checked against the kernel's `Total` line.

use memchr::memchr_iter;

use super::{lossy, parse_hex, parse_u64};

/// Longest name the kernel stores (`DMA_BUF_NAME_LEN` less the NUL).
pub const MAX_NAME_LEN: usize = crate::sys::DMA_BUF_NAME_LEN - 1;

/// One buffer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufInfoRow {
    /// Size in bytes.
    pub size: u64,
    /// Reference count of the buffer's file.
    pub count: u64,
    /// Exporter name (set by the exporting driver, not by userspace).
    pub exporter: String,
    /// Inode; `None` on kernels without the column.
    pub inode: Option<u64>,
    /// Purpose name, the exact bytes; `None` when the kernel printed `<none>` or nothing, or had
    /// no column.
    pub name: Option<Vec<u8>>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BufInfo {
    /// One entry per buffer, in kernel list order.
    pub rows: Vec<BufInfoRow>,
    /// Bytes from the `Total N objects, B bytes` line, when present (it always is in a complete
    /// file; it then equals the sum of the rows).
    pub total_bytes: Option<u64>,
}

impl BufInfo {
    /// Bytes of all exported buffers: the kernel's total line, else the sum of rows, saturating:
    /// sizes are text from the kernel, and a bogus one must neither panic nor wrap to a small total.
    pub fn exported_bytes(&self) -> u64 {
        self.total_bytes
            .unwrap_or_else(|| self.rows.iter().fold(0u64, |sum, r| sum.saturating_add(r.size)))
    }
}

/// Where a file stops having the kernel's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed debugfs bufinfo at byte {offset}: {what}")]
pub struct Malformed {
    /// Byte offset of the line that broke the structure.
    pub offset: usize,
    /// What was expected there.
    pub what: &'static str,
}

/// Parses a bufinfo file; refuses any file that does not have the structure above.
pub fn parse(bytes: &[u8]) -> Result<BufInfo, Malformed> {
    let mut out = BufInfo::default();
    let mut at = 0;
    while at < bytes.len() {
        let (line, next) = line_at(bytes, at);
        if line.first().is_some_and(u8::is_ascii_digit) {
            let (row, next) = parse_row(bytes, at)?;
            out.rows.push(row);
            at = next;
        } else if let Some(rest) = line.strip_prefix(b"Total ") {
            let (objects, total) = parse_objects_total(rest)
                .ok_or(Malformed { offset: at, what: "`Total N objects, B bytes`" })?;
            check_totals(&out.rows, objects, total)
                .map_err(|what| Malformed { offset: at, what })?;
            out.total_bytes = Some(total);
            if !bytes[next.min(bytes.len())..].iter().all(u8::is_ascii_whitespace) {
                return Err(Malformed { offset: next, what: "end of file after the total" });
            }
            break;
        } else if !out.rows.is_empty() && !line.is_empty() {
            // Before the first row: banner and column header. Between rows: blank lines only.
            return Err(Malformed { offset: at, what: "a buffer row" });
        } else {
            at = next;
        }
    }
    Ok(out)
}

/// The line starting at `at` (without its newline) and where the next one starts.
fn line_at(bytes: &[u8], at: usize) -> (&[u8], usize) {
    let rest = &bytes[at..];
    match memchr::memchr(b'\n', rest) {
        Some(end) => (&rest[..end], at + end + 1),
        None => (rest, bytes.len()),
    }
}

/// The field starting at `*at` up to (not including) the next `\t` or `\n`; `*at` moves past
/// the separator, which is returned.
fn field<'a>(bytes: &'a [u8], at: &mut usize) -> Option<(&'a [u8], u8)> {
    let rest = &bytes[*at..];
    let end = memchr::memchr2(b'\t', b'\n', rest)?;
    *at += end + 1;
    Some((&rest[..end], rest[end]))
}

fn parse_row(bytes: &[u8], start: usize) -> Result<(BufInfoRow, usize), Malformed> {
    let bad = |what| Malformed { offset: start, what };
    let mut at = start;
    let mut column = |what| match field(bytes, &mut at) {
        Some((value, b'\t')) => Ok(value),
        _ => Err(bad(what)),
    };
    let size = parse_u64(column("a size column")?).ok_or(bad("a decimal size"))?;
    parse_hex(column("a flags column")?).ok_or(bad("hexadecimal flags"))?;
    parse_hex(column("a mode column")?).ok_or(bad("a hexadecimal mode"))?;
    let count = parse_u64(column("a count column")?).ok_or(bad("a decimal count"))?;
    let (exporter, separator) = field(bytes, &mut at).ok_or(bad("an exporter column"))?;
    let exporter = lossy(exporter);
    if separator == b'\n' {
        // Before 5.3: the exporter ends the row.
        let next = parse_block(bytes, at).ok_or(bad("the row's Attached Devices block"))?;
        return Ok((BufInfoRow { size, count, exporter, inode: None, name: None }, next));
    }
    let (inode, separator) = field(bytes, &mut at).ok_or(bad("an inode column"))?;
    let inode = parse_u64(inode).filter(|_| separator == b'\t').ok_or(bad("a decimal inode"))?;
    let name_start = at;
    let window = &bytes[name_start..bytes.len().min(name_start + MAX_NAME_LEN + 1)];
    for end in memchr_iter(b'\n', window) {
        if let Some(next) = parse_block(bytes, name_start + end + 1) {
            let name = &window[..end];
            let name = (!name.is_empty() && name != b"<none>").then(|| name.to_vec());
            return Ok((BufInfoRow { size, count, exporter, inode: Some(inode), name }, next));
        }
    }
    Err(bad("a name of at most 31 bytes followed by the row's Attached Devices block"))
}

/// Parses what follows a row's first line: fence lines, `\tAttached Devices:`, the attachment
/// lines, `Total N devices attached` with N the number of attachment lines, and a blank line.
/// Returns where the next row starts, or `None` if the bytes at `at` are not such a block.
fn parse_block(bytes: &[u8], mut at: usize) -> Option<usize> {
    let mut next_line = || {
        if at >= bytes.len() {
            return None;
        }
        let (line, next) = line_at(bytes, at);
        // A line must end with its newline: a truncated block is no block.
        (next <= bytes.len() && bytes.get(next - 1) == Some(&b'\n')).then(|| {
            at = next;
            line
        })
    };
    loop {
        let line = next_line()?;
        if line == b"\tAttached Devices:" {
            break;
        }
        if !is_fence_line(line) {
            return None;
        }
    }
    let mut devices = 0u64;
    let total = loop {
        let line = next_line()?;
        if line.first() == Some(&b'\t') {
            devices += 1;
        } else {
            break line;
        }
    };
    let counted = total.strip_prefix(b"Total ")?.strip_suffix(b" devices attached")?;
    if parse_u64(counted)? != devices || !next_line()?.is_empty() {
        return None;
    }
    Some(at)
}

/// `\t<usage> fence:...`: `kernel`, `write`, `read`, `bookkeep` since 5.19, `Exclusive` and
/// `Shared` before.
fn is_fence_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"\t") else {
        return false;
    };
    let word = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    word > 0 && rest[word..].starts_with(b" fence:")
}

/// `N objects, B bytes` (after `Total `).
fn parse_objects_total(rest: &[u8]) -> Option<(u64, u64)> {
    const SEPARATOR: &[u8] = b" objects, ";
    let rest = rest.strip_suffix(b" bytes")?;
    let at = memchr::memmem::find(rest, SEPARATOR)?;
    Some((parse_u64(&rest[..at])?, parse_u64(&rest[at + SEPARATOR.len()..])?))
}

/// The kernel counts the rows it printed and adds up their sizes under the same lock: a file
/// whose rows disagree with its total line was not parsed as the kernel printed it.
fn check_totals(rows: &[BufInfoRow], objects: u64, total: u64) -> Result<(), &'static str> {
    if u64::try_from(rows.len()).ok() != Some(objects) {
        return Err("as many rows as the total line counts");
    }
    let sum = rows.iter().try_fold(0u64, |sum, r| sum.checked_add(r.size));
    if sum != Some(total) {
        return Err("rows whose sizes add up to the total line");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] =
        b"\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n";

    fn row(size: u64, inode: u64, name: &[u8], devices: &[&str]) -> Vec<u8> {
        let mut out =
            format!("{size:08}\t00000002\t00080007\t00000001\tsystem\t{inode:08}\t").into_bytes();
        out.extend_from_slice(name);
        out.extend_from_slice(b"\n\tAttached Devices:\n");
        for d in devices {
            out.extend_from_slice(format!("\t{d}\n").as_bytes());
        }
        out.extend_from_slice(format!("Total {} devices attached\n\n", devices.len()).as_bytes());
        out
    }

    fn file(rows: &[Vec<u8>], total: u64) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        rows.iter().for_each(|r| out.extend_from_slice(r));
        out.extend_from_slice(
            format!("\nTotal {} objects, {total} bytes\n", rows.len()).as_bytes(),
        );
        out
    }

    /// Found by the `bufinfo` fuzz target: without a total line, rows whose sizes add up past
    /// u64 panicked (debug builds) or wrapped (release builds).
    #[test]
    fn row_sum_saturates() {
        let mut text = HEADER.to_vec();
        text.extend(row(u64::MAX, 1, b"a", &[]));
        text.extend(row(4096, 2, b"b", &[]));
        let info = parse(&text).expect("parses");
        assert_eq!(info.rows.len(), 2);
        assert_eq!(info.total_bytes, None);
        assert_eq!(info.exported_bytes(), u64::MAX);
    }

    /// The issue's attack: a name that would be a 1 GiB row of another inode, then a row of an
    /// invented 10^18-byte buffer without inode.
    #[test]
    fn names_cannot_forge_rows() {
        let forged: &[&[u8]] = &[
            b"\n01073741824\t0\t0\t1\tsystem\t7\tx",
            b"\n\tAttached Devices:\nTotal 0 dev",
            b"x\n\tAttached Devices:\n",
            b"x\n\tAttached Devices:\n\tgpu",
            b"x\n\tgpu",
            b"\nTotal 9 objects, 9 bytes\n",
            b"\n1000000000000000000\t0\t0\t1\tx\n",
            b"\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
            b"<none>\n",
            b"\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t",
        ];
        for name in forged {
            assert!(name.len() <= MAX_NAME_LEN);
            let text = file(
                &[
                    row(4096, 1, b"before", &[]),
                    row(8192, 2, name, &["gpu"]),
                    row(4096, 3, b"after", &[]),
                ],
                16384,
            );
            let info = parse(&text).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            let rows: Vec<_> =
                info.rows.iter().map(|r| (r.size, r.inode, r.name.as_deref())).collect();
            assert_eq!(
                rows,
                [
                    (4096, Some(1), Some(&b"before"[..])),
                    (8192, Some(2), Some(&name[..])),
                    (4096, Some(3), Some(&b"after"[..]))
                ],
                "{name:?}"
            );
            assert_eq!(info.total_bytes, Some(16384));
        }
    }

    /// A name that imitates a fence line reads as the shortest name the structure allows;
    /// the row, and every other row, stay as printed.
    #[test]
    fn fence_lookalike_reads_short() {
        let text =
            file(&[row(4096, 1, b"x\n\tread fence: seq 1", &[]), row(4096, 2, b"y", &[])], 8192);
        let info = parse(&text).unwrap();
        let rows: Vec<_> = info.rows.iter().map(|r| (r.size, r.inode, r.name.as_deref())).collect();
        assert_eq!(rows, [(4096, Some(1), Some(&b"x"[..])), (4096, Some(2), Some(&b"y"[..]))]);
        let real_fence =
            b"00004096\t0\t0\t1\tsystem\t1\tGL\n\tread fence:drm gfx seq 9 signalled\n\
\tAttached Devices:\n\tgpu\nTotal 1 devices attached\n\n";
        let info = parse(real_fence).unwrap();
        assert_eq!(info.rows[0].name.as_deref(), Some(&b"GL"[..]));
    }

    #[test]
    fn structure_violations_are_refused() {
        let good = file(&[row(4096, 1, b"a", &[])], 4096);
        assert!(parse(&good).is_ok());
        let wrong_total = file(&[row(4096, 1, b"a", &[])], 8192);
        assert_eq!(
            parse(&wrong_total).unwrap_err().what,
            "rows whose sizes add up to the total line"
        );
        let long_name = file(&[row(4096, 1, &[b'a'; 32], &[])], 4096);
        assert!(parse(&long_name).is_err());
        let mut truncated = good.clone();
        truncated.truncate(HEADER.len() + 40);
        assert!(parse(&truncated).is_err());
        let mut bad_count = row(4096, 1, b"a", &["gpu"]);
        let at = bad_count.len() - 20;
        bad_count[at..].copy_from_slice(b"Total 2 devices at\n\n");
        assert!(parse(&file(&[bad_count], 4096)).is_err());
    }
}
