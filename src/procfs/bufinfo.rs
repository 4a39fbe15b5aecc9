//! debugfs `dma_buf/bufinfo`: every exported buffer, including those no process holds.
//!
//! 6.12 prints a `Dma-buf Objects:` banner, a header `size flags mode count exp_name ino name`,
//! then per buffer a tab-separated row (`%08zu %08x %08x %08ld %s %08lu %s`, name `<none>` when
//! unset and possibly containing spaces), fence lines and `Attached Devices:` lines (all
//! tab-indented), `Total N devices attached`, and at the end `Total N objects, B bytes`.
//! Kernels before 5.3 have no `ino` and `name` columns: their rows are counted but cannot be
//! matched to fds or mappings.

use super::{lossy, parse_u64};

/// One buffer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufInfoRow {
    /// Size in bytes.
    pub size: u64,
    /// Reference count of the buffer's file.
    pub count: Option<u64>,
    /// Exporter name.
    pub exporter: String,
    /// Inode; `None` on kernels without the column.
    pub inode: Option<u64>,
    /// Purpose name; `None` when the kernel printed `<none>` or had no column.
    pub name: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BufInfo {
    /// One entry per buffer, in kernel list order.
    pub rows: Vec<BufInfoRow>,
    /// Bytes from the `Total N objects, B bytes` line, when present.
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

/// Parses a bufinfo file. Lines that are neither buffer rows nor the total line are ignored.
pub fn parse(bytes: &[u8]) -> BufInfo {
    let mut out = BufInfo::default();
    for line in bytes.split(|&b| b == b'\n') {
        if let Some(total) = line.strip_prefix(b"Total ") {
            // "Total N objects, B bytes" (but not "Total N devices attached").
            if let Some(bytes_part) = total.strip_suffix(b" bytes") {
                let last = bytes_part.rsplit(|&b| b == b' ').next().unwrap_or_default();
                if let Some(n) = parse_u64(last) {
                    out.total_bytes = Some(n);
                }
            }
            continue;
        }
        if let Some(row) = parse_row(line) {
            out.rows.push(row);
        }
    }
    out
}

fn parse_row(line: &[u8]) -> Option<BufInfoRow> {
    // Rows start with the zero-padded size; indented and header lines do not start with a digit.
    if !line.first()?.is_ascii_digit() {
        return None;
    }
    let mut fields = line.splitn(7, |&b| b == b'\t');
    let size = parse_u64(fields.next()?.trim_ascii())?;
    let _flags = fields.next()?;
    let _mode = fields.next()?;
    let count = parse_u64(fields.next()?.trim_ascii());
    let exporter = lossy(fields.next()?.trim_ascii());
    let inode = fields.next().and_then(|f| parse_u64(f.trim_ascii()));
    let name = fields.next().filter(|n| !n.is_empty() && *n != b"<none>").map(lossy);
    Some(BufInfoRow { size, count, exporter, inode, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `bufinfo` fuzz target: without a total line, rows whose sizes add up past
    /// u64 panicked (debug builds) or wrapped (release builds).
    #[test]
    fn row_sum_saturates() {
        let text =
            b"18446744073709551615\t0\t0\t1\tsystem\t1\ta\n00004096\t0\t0\t1\tsystem\t2\tb\n";
        let info = parse(text);
        assert_eq!(info.rows.len(), 2);
        assert_eq!(info.total_bytes, None);
        assert_eq!(info.exported_bytes(), u64::MAX);
    }
}
