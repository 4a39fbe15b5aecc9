//! The frames of `dmabufctl top`: a snapshot's groups (per process, app, name or heap) sorted,
//! each with its change since the first frame and since the previous one.
//!
//! A [`Session`] keeps the first and the previous snapshot's [`Groups`]; [`Session::frame`] is
//! pure, so switching grouping or sort between refreshes costs no scan. Both renderers (the
//! full-screen one and the plain frames of `--batch`) draw a [`Frame`]'s cells.

use std::cmp::Reverse;

use crate::diff::{against, delta, signed_size, size};
use crate::report::simple_table;
use crate::snapshot::{Groups, Kind, Snapshot};

/// How rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// Largest Rss first.
    Rss,
    /// Largest growth since the first frame first (a new group counts all its bytes).
    Start,
    /// Largest growth since the previous frame first.
    Last,
    /// By label.
    Name,
}

impl Sort {
    /// The next order in the cycle the `s` key walks.
    pub fn next(self) -> Sort {
        match self {
            Sort::Rss => Sort::Start,
            Sort::Start => Sort::Last,
            Sort::Last => Sort::Name,
            Sort::Name => Sort::Rss,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Sort::Rss => "rss",
            Sort::Start => "start",
            Sort::Last => "last",
            Sort::Name => "name",
        }
    }
}

/// One group in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// As tables show it (`comm:pid`, uid, escaped name, exporter).
    pub label: String,
    /// Rss (processes, apps) or summed sizes (names, heaps).
    pub bytes: u64,
    /// Distinct buffers.
    pub buffers: u32,
    /// Change since the first frame; `None` when the group is new since then.
    pub since_start: Option<i64>,
    /// Change since the previous frame; `None` when the group is new since then.
    pub since_last: Option<i64>,
}

/// What one refresh shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// 1 for the first frame.
    pub number: u64,
    /// When the frame's snapshot was taken (RFC 3339, UTC).
    pub time: String,
    /// The grouping.
    pub by: Kind,
    /// The order of `rows`.
    pub sort: Sort,
    /// All dma-buf bytes (the kernel's total when it tells, else held plus kernel-only).
    pub total: u64,
    /// Change of `total` since the first frame.
    pub total_since_start: i64,
    /// Change of `total` since the previous frame.
    pub total_since_last: i64,
    /// Every group of the snapshot, in `sort` order.
    pub rows: Vec<Row>,
}

/// The snapshots a run of `top` has seen that frames are measured against.
#[derive(Debug, Clone)]
pub struct Session {
    start: Groups,
    last: Groups,
    now: Snapshot,
    frames: u64,
}

impl Session {
    /// A session whose first frame is `first`.
    pub fn new(first: Snapshot) -> Session {
        Session { start: first.groups.clone(), last: first.groups.clone(), now: first, frames: 1 }
    }

    /// The next refresh: `next` becomes the current snapshot, the current one the previous.
    pub fn advance(&mut self, next: Snapshot) {
        self.last = std::mem::replace(&mut self.now, next).groups;
        self.frames += 1;
    }

    /// The current frame grouped `by` (process, app, name or heap) in `sort` order.
    pub fn frame(&self, by: Kind, sort: Sort) -> Frame {
        let now = &self.now.groups;
        let from_start = against(now, &self.start, by);
        let from_last = against(now, &self.last, by);
        let mut rows: Vec<Row> = from_start
            .into_iter()
            .zip(from_last)
            .map(|((item, start), (_, last))| Row {
                label: item.label.clone(),
                bytes: item.bytes,
                buffers: item.buffers,
                since_start: start.map(|s| delta(s, item.bytes)),
                since_last: last.map(|l| delta(l, item.bytes)),
            })
            .collect();
        let growth =
            |d: Option<i64>, bytes: u64| d.unwrap_or(i64::try_from(bytes).unwrap_or(i64::MAX));
        // Ties go to the larger group, then by label, so a frame's order is reproducible.
        let primary = |r: &Row| match sort {
            Sort::Rss | Sort::Name => 0,
            Sort::Start => growth(r.since_start, r.bytes),
            Sort::Last => growth(r.since_last, r.bytes),
        };
        match sort {
            Sort::Name => rows.sort_by(|a, b| a.label.cmp(&b.label)),
            _ => rows.sort_by(|a, b| {
                (Reverse(primary(a)), Reverse(a.bytes), &a.label).cmp(&(
                    Reverse(primary(b)),
                    Reverse(b.bytes),
                    &b.label,
                ))
            }),
        }
        let (total, start, last) = (total(now), total(&self.start), total(&self.last));
        Frame {
            number: self.frames,
            time: self.now.meta.time.clone(),
            by,
            sort,
            total,
            total_since_start: delta(start, total),
            total_since_last: delta(last, total),
            rows,
        }
    }
}

/// All dma-buf bytes of a snapshot.
fn total(g: &Groups) -> u64 {
    let bytes = |key| g.get(Kind::Total, key).map_or(0, |i| i.bytes);
    g.get(Kind::Total, "exported")
        .map_or_else(|| bytes("userspace_rss").saturating_add(bytes("kernel_only")), |i| i.bytes)
}

/// The name of a grouping, as the header and the keys say it.
fn grouping(by: Kind) -> &'static str {
    match by {
        Kind::Process => "process",
        Kind::App => "app",
        Kind::Name => "name",
        Kind::Heap => "heap",
        Kind::Total => "total",
        Kind::Buffer => "buffer",
    }
}

impl Frame {
    /// The two header lines: when, how grouped and sorted; the total and its changes.
    pub fn header(&self, bytes: bool) -> [String; 2] {
        [
            format!(
                "dmabufctl top  {}  frame {}  by {}  sort {}",
                self.time,
                self.number,
                grouping(self.by),
                self.sort.as_str()
            ),
            format!(
                "dma-bufs {}  since start {}  since last {}",
                size(self.total, bytes),
                signed_size(self.total_since_start, bytes),
                signed_size(self.total_since_last, bytes)
            ),
        ]
    }

    /// Column headings of the rows.
    pub fn headings(&self) -> [&'static str; 5] {
        let first = match self.by {
            Kind::Process => "Process",
            Kind::App => "Uid",
            Kind::Name => "Name",
            Kind::Heap => "Exporter",
            Kind::Total => "Total",
            Kind::Buffer => "Buffer",
        };
        [first, "Rss", "Buffers", "Since start", "Since last"]
    }

    /// The rows' cells as text, in order.
    pub fn cells(&self, bytes: bool) -> Vec<Vec<String>> {
        let change = |d: Option<i64>| d.map_or_else(|| "new".into(), |d| signed_size(d, bytes));
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    size(r.bytes, bytes),
                    r.buffers.to_string(),
                    change(r.since_start),
                    change(r.since_last),
                ]
            })
            .collect()
    }

    /// The frame as plain text (`--batch`, dumb terminals): header, a blank line, the table.
    pub fn text(&self, bytes: bool) -> String {
        let [when, total] = self.header(bytes);
        format!("{when}\n{total}\n\n{}", simple_table(&self.headings(), self.cells(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Filter, Report};
    use crate::snapshot::tests::model;
    use crate::snapshot::{Groups, Meta, FORMAT_VERSION};

    fn snapshot(extra_kib: u64, secs: u64) -> Snapshot {
        let meta = Meta {
            format_version: FORMAT_VERSION,
            time_unix: secs,
            time: crate::report::rfc3339_utc(secs),
            kernel: String::new(),
            host: String::new(),
            source: "procfs".into(),
        };
        let groups = Groups::from_report(&Report::build(&model(extra_kib), &Filter::default()));
        Snapshot { meta, groups }
    }

    fn row(label: &str, bytes: u64, buffers: u32, start: Option<i64>, last: Option<i64>) -> Row {
        Row { label: label.into(), bytes, buffers, since_start: start, since_last: last }
    }

    #[test]
    fn changes_since_start_and_since_last() {
        let mut s = Session::new(snapshot(0, 0));
        let first = s.frame(Kind::Process, Sort::Rss);
        assert_eq!(
            first.rows,
            [
                row("camera\\n:200", 73_728, 2, Some(0), Some(0)),
                row("surfaceflinger:100", 69_632, 2, Some(0), Some(0))
            ]
        );
        s.advance(snapshot(64, 2));
        s.advance(snapshot(128, 4));
        let f = s.frame(Kind::Name, Sort::Rss);
        assert_eq!((f.number, f.time.as_str()), (3, "1970-01-01T00:00:04Z"));
        assert_eq!(
            (f.total, f.total_since_start, f.total_since_last),
            (1_257_472, 131_072, 65_536)
        );
        assert_eq!(
            f.rows,
            [
                row("fw", 1 << 20, 1, Some(0), Some(0)),
                row("GL", 196_608, 2, Some(131_072), Some(65_536)),
                row("cam\\xff", 8192, 1, Some(0), Some(0)),
                row("<unknown>", 4096, 1, Some(0), Some(0)),
            ]
        );
        let by_last = s.frame(Kind::Name, Sort::Last);
        assert_eq!(by_last.rows[0].label, "GL");
        let by_name: Vec<String> =
            s.frame(Kind::Name, Sort::Name).rows.into_iter().map(|r| r.label).collect();
        assert_eq!(by_name, ["<unknown>", "GL", "cam\\xff", "fw"]);
        assert_eq!(
            s.frame(Kind::App, Sort::Rss).rows,
            [
                row("kernel", 1 << 20, 1, Some(0), Some(0)),
                row("1047", 204_800, 3, Some(131_072), Some(65_536)),
                row("1000", 69_632, 2, Some(0), Some(0)),
            ]
        );
    }

    #[test]
    fn new_groups_and_the_plain_frame() {
        let mut s = Session::new(snapshot(0, 0));
        let mut later = snapshot(0, 2);
        // A third process appears holding the GL buffer too (its Rss is the buffer's size).
        let mut m = model(0);
        m.processes
            .insert(300, crate::account::Process { pid: 300, uid: 2000, comm: "gpu".into() });
        m.buffers.get_mut(&10).unwrap().fd_refs.insert(300, 1);
        later.groups = Groups::from_report(&Report::build(&m, &Filter::default()));
        s.advance(later);
        let f = s.frame(Kind::Process, Sort::Start);
        assert_eq!(f.rows[0], row("gpu:300", 65_536, 1, None, None));
        assert_eq!(
            f.text(false),
            "dmabufctl top  1970-01-01T00:00:02Z  frame 2  by process  sort start\n\
             dma-bufs 1100 kB  since start 0 kB  since last 0 kB\n\
             \n\
             Process               Rss  Buffers  Since start  Since last\n\
             gpu:300             64 kB        1          new         new\n\
             camera\\n:200        72 kB        2         0 kB        0 kB\n\
             surfaceflinger:100  68 kB        2         0 kB        0 kB\n"
        );
        assert_eq!(Sort::Name.next(), Sort::Rss);
    }
}
