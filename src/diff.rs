//! What changed between two snapshots: per total, app, name, process, heap and buffer, what
//! grew, shrank, appeared and vanished, and by how many bytes.
//!
//! Groups are matched by their [key](crate::snapshot::Item::key): uid, exact name, pid,
//! exporter, inode. A pid reused by a new process between the snapshots is matched with the old
//! one (the snapshot records no start time); the label is the later one's `comm:pid`.

use std::cmp::Ordering;
use std::fmt::Write;

use serde::Serialize;

use crate::report::kib;
use crate::snapshot::{Groups, Item, Kind, Meta, Snapshot};

/// How a group changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// In both, more bytes after.
    Grew,
    /// In both, fewer bytes after.
    Shrank,
    /// Only in the second snapshot.
    Appeared,
    /// Only in the first snapshot.
    Vanished,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Grew => "grew",
            Change::Shrank => "shrank",
            Change::Appeared => "appeared",
            Change::Vanished => "vanished",
        }
    }
}

/// One group that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Which groups.
    pub kind: Kind,
    /// Its identity, as [`Item::key`].
    pub key: String,
    /// As tables show it: the label after (before, for a vanished group).
    pub label: String,
    /// How it changed.
    pub change: Change,
    /// Bytes before (0 when it appeared).
    pub before: u64,
    /// Bytes after (0 when it vanished).
    pub after: u64,
    /// `after - before`, saturated to the range of `i64`.
    pub delta: i64,
    /// Distinct buffers before.
    pub buffers_before: u32,
    /// Distinct buffers after.
    pub buffers_after: u32,
}

/// Two snapshots compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The first snapshot's metadata.
    pub before: Meta,
    /// The second snapshot's metadata.
    pub after: Meta,
    /// Changes smaller than this many bytes are left out.
    pub threshold: u64,
    /// Every change of at least `threshold` bytes, by kind (totals, apps, names, processes,
    /// heaps, buffers), then largest change first, then key.
    pub entries: Vec<Entry>,
}

/// `after - before` in bytes, saturated.
pub fn delta(before: u64, after: u64) -> i64 {
    let d = i128::from(after) - i128::from(before);
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// Compares two snapshots. A group is listed when it appeared, vanished or its bytes changed,
/// and the change is at least `threshold` bytes (a group whose buffers were swapped for others
/// of the same total size is not listed by bytes; its buffers are).
pub fn diff(before: &Snapshot, after: &Snapshot, threshold: u64) -> Diff {
    let mut entries = Vec::new();
    for kind in Kind::ALL {
        let start = entries.len();
        join(before.groups.items(kind), after.groups.items(kind), |b, a| {
            if let Some(e) = entry(kind, b, a).filter(|e| e.delta.unsigned_abs() >= threshold) {
                entries.push(e);
            }
        });
        entries[start..].sort_by(|x, y| {
            y.delta.unsigned_abs().cmp(&x.delta.unsigned_abs()).then_with(|| x.key.cmp(&y.key))
        });
    }
    Diff { before: before.meta.clone(), after: after.meta.clone(), threshold, entries }
}

/// Calls `f` for every key of two key-sorted lists, with the item of each side that has it.
pub(crate) fn join<'a>(
    before: &'a [Item],
    after: &'a [Item],
    mut f: impl FnMut(Option<&'a Item>, Option<&'a Item>),
) {
    let (mut b, mut a) = (before.iter().peekable(), after.iter().peekable());
    loop {
        match (b.peek(), a.peek()) {
            (None, None) => return,
            (Some(x), Some(y)) => match x.key.cmp(&y.key) {
                Ordering::Less => f(b.next(), None),
                Ordering::Greater => f(None, a.next()),
                Ordering::Equal => f(b.next(), a.next()),
            },
            (Some(_), None) => f(b.next(), None),
            (None, Some(_)) => f(None, a.next()),
        }
    }
}

fn entry(kind: Kind, before: Option<&Item>, after: Option<&Item>) -> Option<Entry> {
    let bytes = |i: Option<&Item>| i.map_or(0, |i| i.bytes);
    let buffers = |i: Option<&Item>| i.map_or(0, |i| i.buffers);
    let change = match (before, after) {
        (None, Some(_)) => Change::Appeared,
        (Some(_), None) => Change::Vanished,
        (Some(b), Some(a)) if a.bytes > b.bytes => Change::Grew,
        (Some(b), Some(a)) if a.bytes < b.bytes => Change::Shrank,
        _ => return None,
    };
    let item = after.or(before)?;
    Some(Entry {
        kind,
        key: item.key.clone(),
        label: item.label.clone(),
        change,
        before: bytes(before),
        after: bytes(after),
        delta: delta(bytes(before), bytes(after)),
        buffers_before: buffers(before),
        buffers_after: buffers(after),
    })
}

/// A signed size for tables: `+1024 kB`, `-4 kB`, `0 kB`; exact bytes with `bytes`.
pub fn signed_size(delta: i64, bytes: bool) -> String {
    let sign = match delta.cmp(&0) {
        Ordering::Less => "-",
        Ordering::Equal => "",
        Ordering::Greater => "+",
    };
    format!("{sign}{}", size(delta.unsigned_abs(), bytes))
}

/// A size for tables: kB as `dump` prints them, or exact bytes.
pub fn size(value: u64, bytes: bool) -> String {
    if bytes {
        format!("{value} B")
    } else {
        format!("{} kB", kib(value))
    }
}

/// The heading of each kind's section.
fn heading(kind: Kind) -> &'static str {
    match kind {
        Kind::Total => "Total",
        Kind::App => "Uid",
        Kind::Name => "Name",
        Kind::Process => "Process",
        Kind::Heap => "Exporter",
        Kind::Buffer => "Buffer",
    }
}

/// The diff as tables for people: the two snapshots' metadata, then one section per kind that
/// changed, columns `<kind> Change Before After Delta Buffers`.
pub fn table(d: &Diff, bytes: bool) -> String {
    let mut out = String::new();
    for (which, m) in [("before", &d.before), ("after", &d.after)] {
        let _ = writeln!(
            out,
            "{which:<7} {} {} kernel {} ({})",
            m.time,
            crate::text::escape(m.host.as_bytes()),
            crate::text::escape(m.kernel.as_bytes()),
            crate::text::escape(m.source.as_bytes())
        );
    }
    if d.entries.is_empty() {
        match d.threshold {
            0 => out.push_str("\nNo change.\n"),
            t => {
                let _ = writeln!(out, "\nNo change of {} or more.", size(t, bytes));
            }
        }
        return out;
    }
    for kind in Kind::ALL {
        let rows: Vec<Vec<String>> = d
            .entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| {
                vec![
                    e.label.clone(),
                    e.change.as_str().into(),
                    size(e.before, bytes),
                    size(e.after, bytes),
                    signed_size(e.delta, bytes),
                    format!("{} -> {}", e.buffers_before, e.buffers_after),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push('\n');
            let headers = [heading(kind), "Change", "Before", "After", "Delta", "Buffers"];
            out.push_str(&crate::report::simple_table(&headers, rows));
        }
    }
    out
}

/// The diff as pretty JSON (schema in docs/dump.md).
pub fn json(d: &Diff) -> crate::Result<String> {
    let mut s =
        serde_json::to_string_pretty(d).map_err(|e| crate::Error::io("encoding JSON", e))?;
    s.push('\n');
    Ok(s)
}

/// The groups of `kind` of one snapshot joined with another's, for `top`: every group of
/// `now`, with its bytes in `then` (None when it was not there).
pub fn against<'a>(now: &'a Groups, then: &'a Groups, kind: Kind) -> Vec<(&'a Item, Option<u64>)> {
    let mut out = Vec::with_capacity(now.items(kind).len());
    join(then.items(kind), now.items(kind), |t, n| {
        if let Some(n) = n {
            out.push((n, t.map(|t| t.bytes)));
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Filter, Report};
    use crate::snapshot::tests::model;

    fn snapshot(extra_kib: u64, time_unix: u64) -> Snapshot {
        let mut m = model(extra_kib);
        // After: the unnamed buffer 11 freed, the shared GL buffer grown to 128 KiB (a resize
        // is no real dma-buf event, but it exercises "grew" per buffer).
        if time_unix > 0 {
            m.buffers.remove(&11);
            m.buffers.get_mut(&10).unwrap().size = 131_072;
            m.exported_bytes = Some(m.buffers.values().map(|b| b.size).sum());
        }
        let report = Report::build(&m, &Filter::default());
        let meta = Meta {
            format_version: crate::snapshot::FORMAT_VERSION,
            time_unix,
            time: crate::report::rfc3339_utc(time_unix),
            kernel: "6.12.0".into(),
            host: "dut".into(),
            source: "procfs".into(),
        };
        Snapshot::parse(crate::snapshot::json(&report, &meta, false).unwrap().as_bytes()).unwrap()
    }

    fn e(
        kind: Kind,
        key: &str,
        label: &str,
        change: Change,
        b: u64,
        a: u64,
        bufs: (u32, u32),
    ) -> Entry {
        Entry {
            kind,
            key: key.into(),
            label: label.into(),
            change,
            before: b,
            after: a,
            delta: delta(b, a),
            buffers_before: bufs.0,
            buffers_after: bufs.1,
        }
    }

    #[test]
    fn grew_shrank_appeared_vanished_exactly() {
        use Change::*;
        use Kind::*;
        let d = diff(&snapshot(0, 0), &snapshot(256, 60), 0);
        assert_eq!(
            d.entries,
            [
                e(Total, "exported", "exported", Grew, 1_126_400, 1_449_984, (4, 4)),
                e(Total, "userspace_rss", "userspace_rss", Grew, 77_824, 401_408, (3, 3)),
                e(App, "1047", "1047", Grew, 73_728, 401_408, (2, 3)),
                e(App, "1000", "1000", Grew, 69_632, 131_072, (2, 1)),
                e(Name, "GL", "GL", Grew, 65_536, 393_216, (1, 2)),
                e(Name, "", "<unknown>", Vanished, 4096, 0, (1, 0)),
                e(Process, "200", "camera\\n:200", Grew, 73_728, 401_408, (2, 3)),
                e(Process, "100", "surfaceflinger:100", Grew, 69_632, 131_072, (2, 1)),
                e(Heap, "system", "system", Grew, 1_126_400, 1_449_984, (4, 4)),
                e(Buffer, "14", "14 GL", Appeared, 0, 262_144, (0, 1)),
                e(Buffer, "10", "10 GL", Grew, 65_536, 131_072, (1, 1)),
                e(Buffer, "11", "11 <unknown>", Vanished, 4096, 0, (1, 0)),
            ]
        );
        assert_eq!(d.before.time, "1970-01-01T00:00:00Z");
        assert_eq!(d.after.time_unix, 60);
    }

    #[test]
    fn the_threshold_drops_small_changes() {
        let d = diff(&snapshot(0, 0), &snapshot(256, 60), 65_537);
        let keys: Vec<(Kind, &str)> = d.entries.iter().map(|e| (e.kind, e.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                (Kind::Total, "exported"),
                (Kind::Total, "userspace_rss"),
                (Kind::App, "1047"),
                (Kind::Name, "GL"),
                (Kind::Process, "200"),
                (Kind::Heap, "system"),
                (Kind::Buffer, "14"),
            ]
        );
        let same = diff(&snapshot(0, 0), &snapshot(0, 0), 0);
        assert!(same.entries.is_empty());
        assert!(table(&same, false).ends_with(" (procfs)\n\nNo change.\n"));
        let same = diff(&snapshot(0, 0), &snapshot(0, 0), 4096);
        assert!(table(&same, true).ends_with(" (procfs)\n\nNo change of 4096 B or more.\n"));
    }

    #[test]
    fn table_and_json() {
        let d = diff(&snapshot(0, 0), &snapshot(256, 60), 100_000);
        assert_eq!(
            table(&d, false),
            "before  1970-01-01T00:00:00Z dut kernel 6.12.0 (procfs)\n\
             after   1970-01-01T00:01:00Z dut kernel 6.12.0 (procfs)\n\
             \n\
             Total          Change   Before    After    Delta  Buffers\n\
             exported         grew  1100 kB  1416 kB  +316 kB   4 -> 4\n\
             userspace_rss    grew    76 kB   392 kB  +316 kB   3 -> 3\n\
             \n\
             Uid   Change  Before   After    Delta  Buffers\n\
             1047    grew   72 kB  392 kB  +320 kB   2 -> 3\n\
             \n\
             Name  Change  Before   After    Delta  Buffers\n\
             GL      grew   64 kB  384 kB  +320 kB   1 -> 2\n\
             \n\
             Process       Change  Before   After    Delta  Buffers\n\
             camera\\n:200    grew   72 kB  392 kB  +320 kB   2 -> 3\n\
             \n\
             Exporter  Change   Before    After    Delta  Buffers\n\
             system      grew  1100 kB  1416 kB  +316 kB   4 -> 4\n\
             \n\
             Buffer    Change  Before   After    Delta  Buffers\n\
             14 GL   appeared    0 kB  256 kB  +256 kB   0 -> 1\n"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&d).unwrap()).unwrap();
        assert_eq!(v["threshold"], 100_000);
        assert_eq!(v["after"]["time"], "1970-01-01T00:01:00Z");
        assert_eq!(
            v["entries"][6],
            serde_json::json!({"kind": "buffer", "key": "14", "label": "14 GL", "change": "appeared",
                "before": 0, "after": 262_144, "delta": 262_144, "buffers_before": 0, "buffers_after": 1})
        );
    }

    #[test]
    fn deltas_saturate_and_sizes_are_signed() {
        assert_eq!(delta(0, u64::MAX), i64::MAX);
        assert_eq!(delta(u64::MAX, 0), i64::MIN);
        assert_eq!(signed_size(-4096, false), "-4 kB");
        assert_eq!(signed_size(1536, false), "+1.500 kB");
        assert_eq!(signed_size(0, true), "0 B");
        assert_eq!(signed_size(i64::MIN, true), "-9223372036854775808 B");
    }
}
