//! AOSP's pinned dma-buf BPF iterator, `/sys/fs/bpf/dmabuf/prog_dmabufIter_iter_dmabuf`
//! (system/bpfprogs/dmabufIter.c, loaded and pinned by bpfloader at boot, Android 16): the
//! kernel's buffer list where debugfs is not mounted and sysfs stats are gone. Reading the
//! pinned link runs the iterator once over every live dma-buf.
//!
//! Four lines per buffer: inode, size in bytes, name, exporter name. The name line is empty for
//! an unnamed buffer; the program replaces newlines in names with spaces, so a name is exact
//! unless it held a newline. libdmabufinfo (dmabuf_bpf_stats.cpp) treats an empty exporter as a
//! kernel bug and so does this parser.

use super::parse_u64;

/// One buffer as the iterator prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row<'a> {
    /// Inode on the dma-buf pseudo filesystem.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Purpose name bytes as printed (newlines turned into spaces); `None` when unnamed.
    pub name: Option<&'a [u8]>,
    /// Exporter name bytes, never empty.
    pub exporter: &'a [u8],
}

/// Why the iterator's output was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A record's inode or size line is not a decimal number.
    #[error("record {record}: {field} line is not a decimal number")]
    Number {
        /// 0-based record index.
        record: usize,
        /// `"inode"` or `"size"`.
        field: &'static str,
    },
    /// A record's exporter line is empty.
    #[error("record {0}: empty exporter")]
    EmptyExporter(usize),
    /// The output ends inside a record (it is read whole, so this is not a short read).
    #[error("output ends inside record {0}")]
    Truncated(usize),
}

/// Parses the whole output. Borrows from `bytes`; allocates only the row vector.
pub fn parse(bytes: &[u8]) -> Result<Vec<Row<'_>>, ParseError> {
    let mut rows = Vec::new();
    // Every line ends with a newline: split on them and drop the empty piece after the last.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() && bytes.len() <= 1 {
        return Ok(rows);
    }
    let mut lines = body.split(|&b| b == b'\n');
    loop {
        let record = rows.len();
        let Some(inode) = lines.next() else { return Ok(rows) };
        let (Some(size), Some(name), Some(exporter)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(ParseError::Truncated(record));
        };
        let number =
            |line: &[u8], field| parse_u64(line).ok_or(ParseError::Number { record, field });
        let (inode, size) = (number(inode, "inode")?, number(size, "size")?);
        if exporter.is_empty() {
            return Err(ParseError::EmptyExporter(record));
        }
        rows.push(Row { inode, size, name: (!name.is_empty()).then_some(name), exporter });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let out = b"17\n4096\nCAMERA preview\nsystem\n18\n65536\n\nsystem-uncached\n";
        let rows = parse(out).unwrap();
        assert_eq!(
            rows,
            [
                Row { inode: 17, size: 4096, name: Some(b"CAMERA preview"), exporter: b"system" },
                Row { inode: 18, size: 65536, name: None, exporter: b"system-uncached" },
            ]
        );
        assert_eq!(parse(b"").unwrap(), []);
        assert_eq!(parse(b"17\n4096\nx\n"), Err(ParseError::Truncated(0)));
        assert_eq!(parse(b"17\n4096\nx\n\n"), Err(ParseError::EmptyExporter(0)));
        assert_eq!(
            parse(b"17\n4k\nx\nsystem\n"),
            Err(ParseError::Number { record: 0, field: "size" })
        );
    }
}
