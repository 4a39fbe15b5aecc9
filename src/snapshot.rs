//! Snapshots: a report with when, where and from what it was taken, written as JSON and read
//! back, and the per-group totals ([`Groups`]) that `dmabufctl diff` compares and `dmabufctl top`
//! shows.
//!
//! A snapshot is `dump -o json`'s object (docs/dump.md) with one more key, `snapshot` ([`Meta`]),
//! so every reader of the report keeps working. `dump --watch` writes one per line (JSON Lines);
//! [`pick`] takes one value out of a file holding several. Reading is a pure function over bytes
//! that refuses, with one line saying why, anything that is not JSON, not a snapshot, or of
//! another [`FORMAT_VERSION`].

use std::borrow::Cow;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::account::Report;
use crate::text::escape;
use crate::{report, sys, Error, Result};

/// Version of the snapshot format this build writes and reads. Bump it when a key that readers
/// rely on changes meaning; adding keys does not need it.
pub const FORMAT_VERSION: u32 = 1;

/// When, where and from what a snapshot was taken: the `snapshot` key of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Seconds since the Unix epoch.
    pub time_unix: u64,
    /// The same instant as RFC 3339 in UTC, for people.
    pub time: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Host name (`uname -n`).
    pub host: String,
    /// Where the numbers came from: `procfs` (a scan of `/proc` and the kernel's lists) or
    /// `service` (the dmabufd service's report).
    pub source: String,
}

impl Meta {
    /// The metadata of a snapshot taken now, from `source`.
    pub fn now(source: &str) -> Meta {
        let time_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // uname cannot fail on Linux; a snapshot without these labels is still a snapshot.
        let uname =
            sys::uname().unwrap_or(sys::Uname { release: String::new(), nodename: String::new() });
        Meta {
            format_version: FORMAT_VERSION,
            time_unix,
            time: report::rfc3339_utc(time_unix),
            kernel: uname.release,
            host: uname.nodename,
            source: source.into(),
        }
    }
}

#[derive(Serialize)]
struct Written<'a> {
    snapshot: &'a Meta,
    #[serde(flatten)]
    report: &'a Report,
}

/// The snapshot as JSON: pretty for `dump -o json`, one line (JSON Lines) for `dump --watch`;
/// ends with a newline either way.
pub fn json(report: &Report, meta: &Meta, pretty: bool) -> Result<String> {
    let mut out = Vec::new();
    write_json(&mut out, report, meta, pretty).map_err(|e| Error::io("encoding JSON", e))?;
    String::from_utf8(out).map_err(|e| Error::io("encoding JSON", io::Error::other(e)))
}

/// [`json`] encoded straight into `out`, so that the whole text is never held in memory.
pub fn write_json(
    out: &mut impl io::Write,
    report: &Report,
    meta: &Meta,
    pretty: bool,
) -> io::Result<()> {
    let value = Written { snapshot: meta, report };
    if pretty {
        serde_json::to_writer_pretty(&mut *out, &value)?;
    } else {
        serde_json::to_writer(&mut *out, &value)?;
    }
    out.write_all(b"\n")
}

/// Which groups of a snapshot an [`Item`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Whole-system sums: `exported`, `kernel_only`, `userspace_rss`.
    Total,
    /// Per uid (Rss of its processes), plus `kernel` for buffers no process holds.
    App,
    /// Per purpose name.
    Name,
    /// Per process (Rss).
    Process,
    /// Per exporter (heap).
    Heap,
    /// Per buffer (inode).
    Buffer,
}

impl Kind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Kind; 6] =
        [Kind::Total, Kind::App, Kind::Name, Kind::Process, Kind::Heap, Kind::Buffer];
}

/// One group of one snapshot: its bytes and distinct buffers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Identity across snapshots: uid or `kernel`, escaped name, pid, exporter, inode, or the
    /// total's name.
    pub key: String,
    /// How tables show it: as the key, but `comm:pid` for a process, `inode name` for a buffer
    /// and `<unknown>` for an empty name or exporter.
    pub label: String,
    /// Rss (apps, processes) or summed sizes (names, heaps, totals), or the buffer's size.
    pub bytes: u64,
    /// Distinct buffers.
    pub buffers: u32,
}

/// A snapshot's groups, each list sorted by key (so lookups and joins are binary searches and
/// merges). Built the same from a live [`Report`] and from JSON, so `top` over a replayed file
/// shows what it showed live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    lists: [Vec<Item>; 6],
}

impl Groups {
    /// The items of one kind, sorted by key.
    pub fn items(&self, kind: Kind) -> &[Item] {
        &self.lists[kind as usize]
    }

    /// The item of `kind` with `key`, if the snapshot has it.
    pub fn get(&self, kind: Kind, key: &str) -> Option<&Item> {
        let items = self.items(kind);
        items.binary_search_by(|i| i.key.as_str().cmp(key)).ok().map(|i| &items[i])
    }

    /// The groups of a report.
    pub fn from_report(r: &Report) -> Groups {
        let kernel_only = r.buffers.iter().filter(|b| b.is_kernel_only()).count();
        let mut b = Builder::default();
        let t = &r.totals;
        let totals = ReadTotals {
            exported_bytes: t.exported_bytes,
            userspace_rss: t.userspace_rss,
            kernel_only_bytes: t.kernel_only_bytes,
        };
        b.totals(&totals, r.buffers.len(), kernel_only);
        for a in &r.apps {
            b.push(Kind::App, a.uid.to_string(), None, a.rss, a.buffers);
        }
        for n in &r.names {
            b.name(n.name.as_bytes(), n.bytes, n.buffers);
        }
        for p in &r.processes {
            let held = r
                .buffers
                .iter()
                .filter(|b| b.fd_refs.contains_key(&p.pid) || b.map_refs.contains_key(&p.pid));
            b.process(p.pid, &p.comm, p.rss, held.count());
        }
        for h in &r.heaps {
            b.heap(&h.exporter, h.bytes, h.buffers);
        }
        for buf in &r.buffers {
            b.buffer(buf.inode, buf.name.as_ref().map(|n| n.as_bytes()), buf.size);
        }
        b.finish()
    }
}

/// Collects items, then sorts each list once.
#[derive(Default)]
struct Builder {
    lists: [Vec<Item>; 6],
}

impl Builder {
    fn push(&mut self, kind: Kind, key: String, label: Option<String>, bytes: u64, buffers: u32) {
        let label =
            label.unwrap_or_else(|| if key.is_empty() { "<unknown>".into() } else { key.clone() });
        self.lists[kind as usize].push(Item { key, label, bytes, buffers });
    }

    /// The totals, and the `kernel` app (buffers no process holds, as `dump --by app` shows
    /// them).
    fn totals(&mut self, t: &ReadTotals, all_buffers: usize, kernel_only: usize) {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        if let Some(bytes) = t.exported_bytes {
            self.push(Kind::Total, "exported".into(), None, bytes, count(all_buffers));
        }
        let (rss, ko) = (t.userspace_rss, t.kernel_only_bytes);
        self.push(Kind::Total, "kernel_only".into(), None, ko, count(kernel_only));
        let referenced = count(all_buffers.saturating_sub(kernel_only));
        self.push(Kind::Total, "userspace_rss".into(), None, rss, referenced);
        if kernel_only > 0 {
            self.push(Kind::App, "kernel".into(), None, ko, count(kernel_only));
        }
    }

    fn name(&mut self, name: &[u8], bytes: u64, buffers: u32) {
        self.push(Kind::Name, escape(name).into_owned(), None, bytes, buffers);
    }

    fn process(&mut self, pid: i32, comm: &str, rss: u64, buffers: usize) {
        let label = format!("{}:{pid}", escape(comm.as_bytes()));
        let buffers = u32::try_from(buffers).unwrap_or(u32::MAX);
        self.push(Kind::Process, pid.to_string(), Some(label), rss, buffers);
    }

    fn heap(&mut self, exporter: &str, bytes: u64, buffers: u32) {
        self.push(Kind::Heap, escape(exporter.as_bytes()).into_owned(), None, bytes, buffers);
    }

    fn buffer(&mut self, inode: u64, name: Option<&[u8]>, size: u64) {
        let label = format!("{inode} {}", name.map_or(Cow::Borrowed("<unknown>"), escape));
        self.push(Kind::Buffer, inode.to_string(), Some(label), size, 1);
    }

    fn finish(mut self) -> Groups {
        for list in &mut self.lists {
            list.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Groups { lists: self.lists }
    }
}

/// A snapshot read back: its metadata and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When, where and from what it was taken.
    pub meta: Meta,
    /// What it shows per group.
    pub groups: Groups,
}

/// Only the version, read first so that a snapshot of another version is refused as such
/// rather than for whatever key it lacks.
#[derive(Deserialize)]
struct Head {
    snapshot: Option<HeadMeta>,
}

#[derive(Deserialize)]
struct HeadMeta {
    format_version: Option<u64>,
}

/// The parts of the report's JSON that [`Groups`] needs; unknown keys are ignored.
#[derive(Deserialize)]
struct Read {
    snapshot: Meta,
    buffers: Vec<ReadBuffer>,
    processes: Vec<ReadProcess>,
    apps: Vec<ReadApp>,
    names: Vec<ReadGroup>,
    heaps: Vec<ReadHeap>,
    totals: ReadTotals,
}

/// The totals [`Groups`] shows (also filled from a live report's).
#[derive(Deserialize)]
struct ReadTotals {
    exported_bytes: Option<u64>,
    userspace_rss: u64,
    kernel_only_bytes: u64,
}

#[derive(Deserialize)]
struct ReadBuffer {
    inode: u64,
    size: u64,
    name: Option<String>,
    name_bytes: Option<Vec<u8>>,
    fd_refs: std::collections::BTreeMap<String, u32>,
    map_refs: std::collections::BTreeMap<String, u32>,
}

#[derive(Deserialize)]
struct ReadProcess {
    pid: i32,
    comm: String,
    rss: u64,
}

#[derive(Deserialize)]
struct ReadApp {
    uid: u32,
    rss: u64,
    buffers: u32,
}

#[derive(Deserialize)]
struct ReadGroup {
    name: String,
    name_bytes: Option<Vec<u8>>,
    bytes: u64,
    buffers: u32,
}

#[derive(Deserialize)]
struct ReadHeap {
    exporter: String,
    bytes: u64,
    buffers: u32,
}

/// A name's exact bytes from the JSON: `name_bytes` when present, else the UTF-8 of `name`.
fn exact_name(name: String, bytes: Option<Vec<u8>>) -> Vec<u8> {
    bytes.unwrap_or_else(|| name.into_bytes())
}

impl Snapshot {
    /// Reads one snapshot (one JSON value). Errors say in one line why the bytes are not a
    /// snapshot this build reads.
    pub fn parse(bytes: &[u8]) -> Result<Snapshot> {
        let bad = |why: String| Error::InvalidArgument(why);
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a JSON snapshot: {e}")))?;
        match head.snapshot.map(|m| m.format_version) {
            None => {
                return Err(bad("not a snapshot: no \"snapshot\" key (write one with \
                                `dmabufctl dump -o json`)"
                    .into()))
            }
            Some(Some(v)) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                let v = v.map_or_else(|| "none".into(), |v| v.to_string());
                return Err(bad(format!(
                    "snapshot format version {v}; this dmabufctl reads version {FORMAT_VERSION}"
                )));
            }
        }
        let read: Read =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a snapshot: {e}")))?;
        Ok(read.into_snapshot())
    }
}

impl Read {
    fn into_snapshot(self) -> Snapshot {
        let kernel_only =
            self.buffers.iter().filter(|b| b.fd_refs.is_empty() && b.map_refs.is_empty()).count();
        let mut b = Builder::default();
        b.totals(&self.totals, self.buffers.len(), kernel_only);
        for a in self.apps {
            b.push(Kind::App, a.uid.to_string(), None, a.rss, a.buffers);
        }
        for n in self.names {
            b.name(&exact_name(n.name, n.name_bytes), n.bytes, n.buffers);
        }
        for p in self.processes {
            let pid = p.pid.to_string();
            let held = self
                .buffers
                .iter()
                .filter(|b| b.fd_refs.contains_key(&pid) || b.map_refs.contains_key(&pid));
            b.process(p.pid, &p.comm, p.rss, held.count());
        }
        for h in self.heaps {
            b.heap(&h.exporter, h.bytes, h.buffers);
        }
        for buf in self.buffers {
            let name = match (buf.name, buf.name_bytes) {
                (None, None) => None,
                (name, bytes) => Some(exact_name(name.unwrap_or_default(), bytes)),
            };
            b.buffer(buf.inode, name.as_deref(), buf.size);
        }
        Snapshot { meta: self.snapshot, groups: b.finish() }
    }
}

/// One JSON value out of `bytes`, which hold one (`dump -o json`) or several (`dump --watch`'s
/// JSON Lines): with `which` = None the only one, else number `which` (1 is the first, -1 the
/// last).
pub fn pick(bytes: &[u8], which: Option<i64>) -> Result<&[u8]> {
    let spans = spans(bytes)?;
    let n = spans.len();
    let index = match which {
        None if n == 1 => Some(0),
        None if n == 0 => return Err(Error::InvalidArgument("empty: no snapshot".into())),
        None => {
            return Err(Error::InvalidArgument(format!(
                "holds {n} snapshots (dump --watch lines): pick one as FILE@N (1..{n}, -1 the last)"
            )))
        }
        Some(w) if w > 0 => usize::try_from(w - 1).ok().filter(|&i| i < n),
        Some(w) => {
            usize::try_from(w.unsigned_abs()).ok().filter(|&k| k > 0).and_then(|k| n.checked_sub(k))
        }
    };
    let index = index.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no snapshot @{} here: it holds {n} (1..{n}, or -1 the last)",
            which.unwrap_or(0)
        ))
    })?;
    let (s, e) = spans[index];
    Ok(&bytes[s..e])
}

/// Every snapshot in `bytes` (`dump --watch` output, or one `dump -o json`), in order; the
/// error names the first bad one.
pub fn all(bytes: &[u8]) -> Result<Vec<Snapshot>> {
    spans(bytes)?
        .into_iter()
        .enumerate()
        .map(|(i, (s, e))| {
            Snapshot::parse(&bytes[s..e]).map_err(|e| match e {
                Error::InvalidArgument(why) => {
                    Error::InvalidArgument(format!("snapshot {}: {why}", i + 1))
                }
                e => e,
            })
        })
        .collect()
}

/// Where each JSON value in `bytes` starts and ends.
fn spans(bytes: &[u8]) -> Result<Vec<(usize, usize)>> {
    let mut spans = Vec::new();
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<IgnoredAny>();
    let mut start = 0;
    while let Some(value) = values.next() {
        value.map_err(|e| Error::InvalidArgument(format!("not a JSON snapshot: {e}")))?;
        let end = values.byte_offset();
        spans.push((start, end));
        start = end;
    }
    Ok(spans)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::account::{Buffer, Filter, Model, Name, Process};

    /// Two processes of two uids, a shared named buffer, an unnamed one, a non-UTF-8 name and
    /// a kernel-only buffer.
    pub(crate) fn model(extra_kib: u64) -> Model {
        let buf = |inode: u64, size: u64, name: Option<&[u8]>, fds: &[i32]| Buffer {
            inode,
            size,
            exporter: Some("system".into()),
            name: name.map(|n| Name::from(n.to_vec())),
            fd_refs: fds.iter().map(|&p| (p, 1)).collect(),
            ..Buffer::default()
        };
        let mut buffers = BTreeMap::new();
        for b in [
            buf(10, 65536, Some(b"GL"), &[100, 200]),
            buf(11, 4096, None, &[100]),
            buf(12, 8192, Some(b"cam\xff"), &[200]),
            buf(13, 1 << 20, Some(b"fw"), &[]),
        ] {
            buffers.insert(b.inode, b);
        }
        if extra_kib > 0 {
            buffers.insert(14, buf(14, extra_kib * 1024, Some(b"GL"), &[200]));
        }
        let processes = BTreeMap::from([
            (100, Process { pid: 100, uid: 1000, comm: "surfaceflinger".into() }),
            (200, Process { pid: 200, uid: 1047, comm: "camera\n".into() }),
        ]);
        let exported = buffers.values().map(|b| b.size).sum();
        Model {
            buffers,
            processes,
            exported_bytes: Some(exported),
            unreadable_processes: 0,
            coverage: Default::default(),
        }
    }

    fn meta() -> Meta {
        Meta {
            format_version: FORMAT_VERSION,
            time_unix: 1_795_597_200,
            time: "2026-11-25T09:00:00Z".into(),
            kernel: "6.12.0".into(),
            host: "dut".into(),
            source: "procfs".into(),
        }
    }

    fn row(key: &str, label: &str, bytes: u64, buffers: u32) -> Item {
        Item { key: key.into(), label: label.into(), bytes, buffers }
    }

    #[test]
    fn groups_of_a_report() {
        let g = Groups::from_report(&Report::build(&model(0), &Filter::default()));
        assert_eq!(
            g.items(Kind::Total),
            [
                row("exported", "exported", 1_126_400, 4),
                row("kernel_only", "kernel_only", 1 << 20, 1),
                row("userspace_rss", "userspace_rss", 77_824, 3),
            ]
        );
        assert_eq!(
            g.items(Kind::App),
            [
                row("1000", "1000", 69_632, 2),
                row("1047", "1047", 73_728, 2),
                row("kernel", "kernel", 1 << 20, 1)
            ]
        );
        assert_eq!(
            g.items(Kind::Name),
            [
                row("", "<unknown>", 4096, 1),
                row("GL", "GL", 65536, 1),
                row("cam\\xff", "cam\\xff", 8192, 1),
                row("fw", "fw", 1 << 20, 1)
            ]
        );
        assert_eq!(
            g.items(Kind::Process),
            [row("100", "surfaceflinger:100", 69_632, 2), row("200", "camera\\n:200", 73_728, 2)]
        );
        assert_eq!(g.items(Kind::Heap), [row("system", "system", 1_126_400, 4)]);
        assert_eq!(g.items(Kind::Buffer)[1], row("11", "11 <unknown>", 4096, 1));
        assert_eq!(g.get(Kind::Buffer, "12"), Some(&row("12", "12 cam\\xff", 8192, 1)));
        assert_eq!(g.get(Kind::Buffer, "99"), None);
    }

    #[test]
    fn a_written_snapshot_reads_back_as_the_same_groups() {
        let report = Report::build(&model(64), &Filter::default());
        for pretty in [true, false] {
            let text = json(&report, &meta(), pretty).unwrap();
            assert_eq!(text.lines().count() == 1, !pretty);
            let read = Snapshot::parse(text.as_bytes()).unwrap();
            assert_eq!(read.meta, meta());
            assert_eq!(read.groups, Groups::from_report(&report));
        }
    }

    #[test]
    fn bad_snapshots_are_refused_in_one_line() {
        let report = Report::build(&model(0), &Filter::default());
        let good = json(&report, &meta(), false).unwrap();
        let v2 = good.replace("\"format_version\":1", "\"format_version\":2");
        let cases: [(&[u8], &str); 4] = [
            (b"hello", "not a JSON snapshot: expected value at line 1 column 1"),
            (
                b"{\"buffers\": []}",
                "not a snapshot: no \"snapshot\" key (write one with `dmabufctl dump -o json`)",
            ),
            (v2.as_bytes(), "snapshot format version 2; this dmabufctl reads version 1"),
            (
                b"{\"snapshot\": {\"format_version\": 1}}",
                "not a snapshot: missing field `time_unix` at line 1 column 34",
            ),
        ];
        for (bytes, want) in cases {
            let e = Snapshot::parse(bytes).unwrap_err();
            assert_eq!(e.to_string(), format!("invalid argument: {want}"));
            assert_eq!(e.exit_status(), crate::error::EXIT_USAGE);
        }
    }

    #[test]
    fn pick_takes_one_line_of_json_lines() {
        let text = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        assert_eq!(pick(text, Some(1)).unwrap(), b"{\"a\":1}");
        assert_eq!(pick(text, Some(2)).unwrap(), b"\n{\"a\":2}");
        assert_eq!(pick(text, Some(-1)).unwrap(), b"\n{\"a\":3}");
        assert_eq!(pick(b" {\"a\":1}\n", None).unwrap(), b" {\"a\":1}");
        let err = |bytes: &[u8], which| pick(bytes, which).unwrap_err().to_string();
        assert_eq!(
            err(text, None),
            "invalid argument: holds 3 snapshots (dump --watch lines): pick one as FILE@N (1..3, -1 the last)"
        );
        assert_eq!(
            err(text, Some(4)),
            "invalid argument: no snapshot @4 here: it holds 3 (1..3, or -1 the last)"
        );
        assert_eq!(
            err(text, Some(-4)),
            "invalid argument: no snapshot @-4 here: it holds 3 (1..3, or -1 the last)"
        );
        assert_eq!(
            err(text, Some(0)),
            "invalid argument: no snapshot @0 here: it holds 3 (1..3, or -1 the last)"
        );
        assert_eq!(err(b"  \n", None), "invalid argument: empty: no snapshot");
        assert_eq!(
            err(b"{\"a\":1}\n{oops", Some(1)),
            "invalid argument: not a JSON snapshot: key must be a string at line 2 column 2"
        );
    }
}
