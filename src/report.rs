//! Text, CSV and JSON renderings of an [`account::Report`](crate::account::Report).
//!
//! The default table keeps AOSP `dmabuf_dump`'s layout (a `comm:pid` line, columns
//! `Name Rss Pss nr_procs Inode Exporter`, a `PROCESS TOTAL` row, a `----------------------`
//! separator and the `dmabuf total: ...` line) so that habits and scripts carry over, including
//! the `kB` unit. Unlike dmabuf_dump, a value that is not a whole number of KiB is printed with
//! three decimals instead of being truncated (a 64 KiB buffer shared by 201 processes has a Pss of
//! 0.318 kB, not 0 kB), and [`Units::Bytes`] prints exact bytes everywhere. CSV and JSON always
//! carry exact bytes. The large renderers write into any `io::Write` as they go ([`write_table`],
//! [`write_csv`]: `dmabufctl dump` streams them to stdout); [`table`] and [`csv`] return the same
//! bytes as a string.
//!
//! Names, command names and exporters are shown [escaped](crate::text::escape) in tables and CSV,
//! so that no name can add a row; JSON keeps their exact bytes. Every renderer costs O(rows): what
//! a row shows of a buffer (its Pss share, its holder count) is computed once per buffer.

use std::borrow::Cow;
use std::fmt::Write;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use crate::account::{pss_share, saturating_sum, BufferView, Exporter, Name, Report};
use crate::handoff::{Handoff, Handoffs};
use crate::ledger::Entry;
use crate::text::{self, escape};

/// What to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Per process, dmabuf_dump's default.
    Processes,
    /// Buffer x process grid (dmabuf_dump -a).
    Grid,
    /// Per buffer and per exporter (dmabuf_dump -b).
    Buffers,
    /// Per uid.
    Apps,
    /// Per purpose name.
    Names,
    /// Per exporter (heap).
    Heaps,
}

/// Units of size columns in text tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// KiB as dmabuf_dump prints them, with decimals where a value is not whole.
    KiB,
    /// Exact bytes.
    Bytes,
}

impl Units {
    fn fmt(self, bytes: u64) -> String {
        self.cell(bytes).as_str().to_owned()
    }

    /// `bytes` in these units, as a [`Cell`].
    fn cell(self, bytes: u64) -> Cell {
        let mut cell = Cell::default();
        match self {
            Units::Bytes => cell.push_u64(bytes),
            Units::KiB if bytes % 1024 == 0 => cell.push_u64(bytes / 1024),
            Units::KiB => {
                // Fits: at most u64::MAX / 1024 * 1000, well below u128::MAX.
                let thousandths = (u128::from(bytes) * 1000).div_ceil(1024);
                cell.push_u64((thousandths / 1000) as u64);
                cell.push(b".");
                let fraction = (thousandths % 1000) as u64;
                cell.push(
                    &[b'0', b'0'][..usize::from(fraction < 100) + usize::from(fraction < 10)],
                );
                cell.push_u64(fraction);
            }
        }
        cell
    }

    fn suffix(self) -> &'static str {
        match self {
            Units::Bytes => " B",
            Units::KiB => " kB",
        }
    }
}

/// KiB with three decimals when not whole, rounded up so that no non-zero value reads as 0.
pub fn kib(bytes: u64) -> String {
    Units::KiB.fmt(bytes)
}

/// A number's text made on the stack: a table's numeric cells are made thousands of times, and
/// the formatter's machinery and a `String` apiece cost more than the digits (under emulation,
/// where every instruction counts, the per-process table took longer than the scan).
#[derive(Default)]
struct Cell {
    /// A u64 in KiB with its decimals is at most 24 bytes.
    text: [u8; 32],
    len: usize,
}

impl Cell {
    /// Appends `bytes`, or as many as fit.
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.text.len() - self.len);
        self.text[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Appends `n` in decimal.
    fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }

    /// The text, as bytes: what an output takes.
    fn bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and '.' are pushed.
        std::str::from_utf8(self.bytes()).unwrap_or_default()
    }
}

impl From<i32> for Cell {
    fn from(n: i32) -> Cell {
        let mut cell = Cell::default();
        if n < 0 {
            cell.push(b"-");
        }
        cell.push_u64(u64::from(n.unsigned_abs()));
        cell
    }
}

impl From<u64> for Cell {
    fn from(n: u64) -> Cell {
        let mut cell = Cell::default();
        cell.push_u64(n);
        cell
    }
}

/// A name as tables show it: escaped, `<unknown>` when unnamed.
fn shown_name(name: &Option<Name>) -> Cow<'_, str> {
    match name {
        Some(n) if !n.is_empty() => escape(n.as_bytes()),
        _ => Cow::Borrowed("<unknown>"),
    }
}

/// An exporter or heap as tables show it: escaped, `<unknown>` when the kernel did not tell.
fn shown_text(text: Option<&str>) -> Cow<'_, str> {
    match text {
        Some(t) if !t.is_empty() => escape(t.as_bytes()),
        _ => Cow::Borrowed("<unknown>"),
    }
}

/// The line printed instead of a table when there is nothing to show, with the coverage footer
/// when the report is partial.
pub fn empty_message(report: &Report, filtered: bool) -> Option<String> {
    if !report.buffers.is_empty() {
        return None;
    }
    let mut message = if filtered {
        "No dma-bufs are referenced by the selected processes.\n".to_string()
    } else if report.totals.exported_bytes.is_none() {
        "No dma-bufs found: no process holds or maps a dma-buf (the kernel's buffer list, debugfs \
         dma_buf/bufinfo, the BPF iterator or /sys/kernel/dmabuf/buffers, was not readable).\n"
            .to_string()
    } else {
        "No dma-bufs found: no process holds or maps a dma-buf and the kernel lists none.\n"
            .to_string()
    };
    message.extend(report.coverage.footer());
    Some(message)
}

/// Renders a text table, and under it the coverage line when the report is partial.
pub fn table(report: &Report, view: View, units: Units) -> String {
    rendered(|out| write_table(out, report, view, units))
}

/// [`table`] written into `out` as it is rendered, so that a table of hundreds of thousands of
/// rows (31 MB for 301 processes each mapping 900 buffers) is never held whole in memory.
pub fn write_table(
    out: &mut impl io::Write,
    report: &Report,
    view: View,
    units: Units,
) -> io::Result<()> {
    let size = |b: u64| units.fmt(b) + units.suffix();
    match view {
        View::Processes => processes_table(out, report, units)?,
        View::Grid => grid_table(out, report, units)?,
        View::Buffers => buffers_table(out, report)?,
        // One row per uid, name or heap: small enough to lay out whole (column widths).
        View::Apps => out.write_all(
            simple_table(&["Uid", "Rss", "Pss", "Buffers"], app_rows(report, true, size))
                .as_bytes(),
        )?,
        View::Names => out.write_all(
            simple_table(&["Name", "Size", "Buffers"], name_rows(report, size)).as_bytes(),
        )?,
        View::Heaps => out.write_all(
            simple_table(&["Exporter", "Size", "Buffers"], heap_rows(report, size)).as_bytes(),
        )?,
    }
    match report.coverage.footer() {
        Some(footer) => out.write_all(footer.as_bytes()),
        None => Ok(()),
    }
}

/// What a streaming renderer writes, as a string: for callers that keep the text (tests, the
/// render bench, the service's pages).
fn rendered(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    render(&mut out).expect("writing into a Vec cannot fail");
    String::from_utf8(out).expect("renderers write only str")
}

fn processes_table(out: &mut impl io::Write, report: &Report, units: Units) -> io::Result<()> {
    let u = units.suffix();
    let held = held_by_process(report);
    let mut rows = ProcessRows::new(&report.buffers, &held.holders, units);
    let columns = format!(
        "{:>22} {:>16} {:>16} {:>16} {:>16} {:>22}\n",
        "Name", "Rss", "Pss", "nr_procs", "Inode", "Exporter"
    );
    // A process's own lines, `{:>16}:{:<5}` above its rows and `{:>22} {:>13}{u} {:>13}{u}
    // {:>16}` with the separator below them, laid out by hand into one reused line.
    let mut line = Vec::new();
    for (p, held) in report.processes.iter().zip(held.by_process()) {
        line.clear();
        push_right(&mut line, &escape(p.comm.as_bytes()), 16);
        line.push(b':');
        let pid = Cell::from(p.pid);
        line.extend_from_slice(pid.bytes());
        push_spaces(&mut line, 5usize.saturating_sub(pid.len));
        line.push(b'\n');
        line.extend_from_slice(columns.as_bytes());
        out.write_all(&line)?;
        for h in held {
            rows.write(out, h.index, h.pss)?;
        }
        line.clear();
        push_right(&mut line, "PROCESS TOTAL", 22);
        line.push(b' ');
        push_cell(&mut line, &units.cell(p.rss), 13);
        line.extend_from_slice(u.as_bytes());
        line.push(b' ');
        push_cell(&mut line, &units.cell(p.pss), 13);
        line.extend_from_slice(u.as_bytes());
        line.push(b' ');
        push_spaces(&mut line, 16);
        line.extend_from_slice(b"\n----------------------\n");
        out.write_all(&line)?;
    }
    let t = &report.totals;
    let total = t.exported_bytes.unwrap_or(t.userspace_rss.saturating_add(t.kernel_only_bytes));
    writeln!(
        out,
        "dmabuf total: {}{u} kernel_rss: {}{u} userspace_rss: {}{u} userspace_pss: {}{u}",
        units.fmt(total),
        units.fmt(t.kernel_only_bytes),
        units.fmt(t.userspace_rss),
        units.fmt(t.userspace_pss)
    )
}

/// The per-process table's buffer rows. Every holder's row of a buffer is the same but for the
/// Pss cell, which is `base`, or `base + 1` for the first holders when the size does not divide
/// evenly (the remainder goes one byte each to them); only then is a second line made. A
/// buffer with several holders has its lines laid out the first time one is written, and kept
/// in one text: with thousands of buffers the rows are the table's cost, and a string apiece
/// would cost an allocation each. A buffer with one holder is written once, so its line is
/// laid out where it is written, not kept: a dense scan's own buffers would otherwise keep
/// over a hundred bytes each, fresh memory the command pays for in page faults.
struct ProcessRows<'a> {
    buffers: &'a [BufferView],
    holders: &'a [usize],
    layout: Layout,
    /// The kept lines, one after another; only `str` is ever written in.
    text: Vec<u8>,
    /// Where the kept lines are in `text`.
    rows: Vec<ProcessRow>,
    /// By buffer position, where its lines are in `rows` ([`NOT_KEPT`] if not kept): four
    /// bytes a buffer, where a row apiece would be over forty.
    kept: Vec<u32>,
    /// The line of a buffer with one holder, reused.
    line: Vec<u8>,
}

/// [`ProcessRows::kept`] of a buffer none of whose lines is kept (yet).
const NOT_KEPT: u32 = u32::MAX;

/// Where one buffer's lines are in the text they were laid out in.
struct ProcessRow {
    /// The line for a Pss share of `base`.
    line: Range<usize>,
    /// The line for `base + 1`, when some holder's share is that.
    uneven: Option<Range<usize>>,
    base: u64,
}

impl ProcessRow {
    /// The line for a holder whose share is `pss`.
    fn line(&self, pss: u64) -> Range<usize> {
        match &self.uneven {
            Some(uneven) if pss != self.base => uneven.clone(),
            _ => self.line.clone(),
        }
    }
}

impl<'a> ProcessRows<'a> {
    /// The rows of `buffers`, whose holder counts are `holders`.
    fn new(buffers: &'a [BufferView], holders: &'a [usize], units: Units) -> Self {
        // Every buffer with several holders has its lines kept, a line about 120 bytes.
        let kept = holders.iter().filter(|&&n| n > 1).count();
        ProcessRows {
            buffers,
            holders,
            layout: Layout { units, exporter: None, cells: None },
            text: Vec::with_capacity(kept * 128),
            rows: Vec::with_capacity(kept),
            kept: vec![NOT_KEPT; buffers.len()],
            line: Vec::with_capacity(128),
        }
    }

    /// Writes the row of buffer `index` (in the report) for a holder whose share is `pss`.
    fn write(&mut self, out: &mut impl io::Write, index: usize, pss: u64) -> io::Result<()> {
        let (b, holders) = (&self.buffers[index], self.holders[index]);
        if holders <= 1 {
            self.line.clear();
            let row = self.layout.lay_out(&mut self.line, b, holders);
            return out.write_all(&self.line[row.line(pss)]);
        }
        if self.kept[index] == NOT_KEPT {
            self.kept[index] = self.rows.len() as u32;
            let row = self.layout.lay_out(&mut self.text, b, holders);
            self.rows.push(row);
        }
        out.write_all(&self.text[self.rows[self.kept[index] as usize].line(pss)])
    }
}

/// How [`ProcessRows`] lays a buffer's lines out, with what it keeps from the last buffer laid
/// out: neighbours in a process's list mostly share an exporter, a size and a holder count.
struct Layout {
    units: Units,
    /// The exporter of the last buffer (`None`: not known), and the end of its lines: the
    /// exporter escaped and right-aligned, laid out once a run.
    exporter: Option<(Option<Exporter>, Vec<u8>)>,
    /// The size, Pss and nr_procs cells of the last buffer's line, by its size and holder
    /// count: laid out once a run.
    cells: Option<((u64, u64), Vec<u8>)>,
}

impl Layout {
    /// Appends the lines of `b`, whose holder count is `holders`, to `text`.
    fn lay_out(&mut self, text: &mut Vec<u8>, b: &BufferView, holders: usize) -> ProcessRow {
        let units = self.units;
        let holders = holders.max(1) as u64;
        let base = b.size / holders;
        let inode = Cell::from(b.inode);
        // ` {:>13}{u} {:>13}{u} {:>16}`: size, a Pss share and nr_procs, the same for every
        // buffer of one size and holder count.
        let cells = |pss: u64| {
            let mut cells = Vec::with_capacity(64);
            let u = units.suffix().as_bytes();
            cells.push(b' ');
            push_cell(&mut cells, &units.cell(b.size), 13);
            cells.extend_from_slice(u);
            cells.push(b' ');
            push_cell(&mut cells, &units.cell(pss), 13);
            cells.extend_from_slice(u);
            cells.push(b' ');
            push_cell(&mut cells, &Cell::from(holders), 16);
            cells
        };
        let key = (b.size, holders);
        let even_cells = match self.cells.take() {
            Some((last, even_cells)) if last == key => even_cells,
            _ => cells(base),
        };
        let same = match (&b.exporter, &self.exporter) {
            (Some(e), Some((Some(last), _))) => Arc::ptr_eq(e, last),
            (None, Some((None, _))) => true,
            _ => false,
        };
        if !same {
            // `  {:>22}\n`
            let mut end = b"  ".to_vec();
            push_right(&mut end, &shown_text(b.exporter.as_deref()), 22);
            end.push(b'\n');
            self.exporter = Some((b.exporter.clone(), end));
        }
        let end = self.exporter.as_ref().map_or(&[][..], |(_, end)| end);
        // `{:>22} {:>13}{u} {:>13}{u} {:>16} {:>16}  {:>22}`, laid out by hand: the formatter
        // writes each padding space through a call of its own.
        let line = |text: &mut Vec<u8>, cells: &[u8]| {
            let start = text.len();
            push_name(text, &b.name, 22);
            text.extend_from_slice(cells);
            text.push(b' ');
            push_cell(text, &inode, 16);
            text.extend_from_slice(end);
            start..text.len()
        };
        let even = line(text, &even_cells);
        let uneven = (b.size % holders != 0).then(|| line(text, &cells(base + 1)));
        self.cells = Some((key, even_cells));
        ProcessRow { line: even, uneven, base }
    }
}

/// Appends `text` right-aligned in `width` characters, as `{:>width}` lays it out: the width
/// in chars, which for ASCII (nearly every name) is the length, known without a walk.
fn push_right(line: &mut Vec<u8>, text: &str, width: usize) {
    let chars = if text.is_ascii() { text.len() } else { text.chars().count() };
    push_spaces(line, width.saturating_sub(chars));
    line.extend_from_slice(text.as_bytes());
}

/// [`push_right`] for a name as tables show it ([`shown_name`]): a plain one, nearly every
/// name, is copied as it is, its width its length.
fn push_name(line: &mut Vec<u8>, name: &Option<Name>, width: usize) {
    match name {
        Some(n) if !n.is_empty() && text::is_plain(n.as_bytes()) => {
            push_spaces(line, width.saturating_sub(n.as_bytes().len()));
            line.extend_from_slice(n.as_bytes());
        }
        _ => push_right(line, &shown_name(name), width),
    }
}

/// [`push_right`] for a number, whose digits are its width.
fn push_cell(line: &mut Vec<u8>, cell: &Cell, width: usize) {
    push_spaces(line, width.saturating_sub(cell.len));
    line.extend_from_slice(cell.bytes());
}

fn push_spaces(line: &mut Vec<u8>, mut n: usize) {
    const SPACES: &[u8] = b"                                ";
    while n > 0 {
        let k = n.min(SPACES.len());
        line.extend_from_slice(&SPACES[..k]);
        n -= k;
    }
}

fn grid_table(out: &mut impl io::Write, report: &Report, units: Units) -> io::Result<()> {
    let u = units.suffix();
    out.write_all(b"    Dmabuf Inode |            Size |   Fd Ref Counts |  Map Ref Counts |")?;
    for p in &report.processes {
        write!(out, "{:>16}:{:<5} |", escape(p.comm.as_bytes()), p.pid)?;
    }
    out.write_all(b"\n")?;
    for b in &report.buffers {
        write!(
            out,
            "{:>16} |{:>13}{u} |{:>16} |{:>16} |",
            b.inode,
            units.fmt(b.size),
            b.fd_refs.len(),
            b.map_refs.len()
        )?;
        for p in &report.processes {
            let (fds, maps) = (
                b.fd_refs.get(&p.pid).copied().unwrap_or(0),
                b.map_refs.get(&p.pid).copied().unwrap_or(0),
            );
            if fds == 0 && maps == 0 {
                write!(out, "{:>22} |", "--")?;
            } else {
                write!(out, "{fds:>9}({maps:>6}) refs |")?;
            }
        }
        out.write_all(b"\n")?;
    }
    let total = saturating_sum(report.buffers.iter().map(|b| b.size));
    write!(out, "{:<16}  {:>13}{u} |{:>16} |{:>16} |", "TOTALS", units.fmt(total), "n/a", "n/a")?;
    for p in &report.processes {
        write!(out, "{:>19}{u} |", units.fmt(p.rss))?;
    }
    out.write_all(b"\n")
}

fn buffers_table(out: &mut impl io::Write, report: &Report) -> io::Result<()> {
    out.write_all(
        b"    Dmabuf Inode |     Size(bytes) |    Exporter Name                    | Name\n",
    )?;
    for b in &report.buffers {
        writeln!(
            out,
            "{:>16} |{:>16} | {:<35} | {}",
            b.inode,
            b.size,
            shown_text(b.exporter.as_deref()),
            shown_name(&b.name)
        )?;
    }
    out.write_all(b"\n")?;
    out.write_all(b"      Exporter Name              | Total Count |     Total Size(bytes)   |\n")?;
    for h in &report.heaps {
        let name = shown_text(Some(&h.exporter));
        writeln!(out, "{:>32} | {:>12}| {}", name, h.buffers, h.bytes)?;
    }
    let total = saturating_sum(report.buffers.iter().map(|b| b.size));
    writeln!(
        out,
        "Total DMA-BUF count: {}, Total DMA-BUF size(bytes): {}",
        report.buffers.len(),
        total
    )
}

pub(crate) type Rows = Vec<Vec<String>>;

/// Per-uid rows; `marked` tags the uid of a partial app (tables; CSV keeps the number and
/// carries coverage in JSON only).
fn app_rows(report: &Report, marked: bool, size: impl Fn(u64) -> String) -> Rows {
    let mut rows: Rows = report
        .apps
        .iter()
        .map(|a| {
            // A uid with processes the scan could not read: its numbers are a lower bound.
            let uid = if a.complete || !marked {
                a.uid.to_string()
            } else {
                format!("{} (partial)", a.uid)
            };
            vec![uid, size(a.rss), size(a.pss), a.buffers.to_string()]
        })
        .collect();
    let holderless: Vec<u64> =
        report.buffers.iter().filter(|b| b.is_kernel_only()).map(|b| b.size).collect();
    if !holderless.is_empty() {
        // No readable process holds them: the kernel alone, unless some process was unreadable.
        let who = if report.coverage.unreadable.is_empty() { "kernel" } else { "unknown" };
        let bytes = saturating_sum(holderless.iter().copied());
        rows.push(vec![who.into(), size(bytes), size(bytes), holderless.len().to_string()]);
    }
    rows
}

fn name_rows(report: &Report, size: impl Fn(u64) -> String) -> Rows {
    report
        .names
        .iter()
        .map(|n| {
            vec![
                if n.name.is_empty() { "<unknown>".into() } else { n.name.to_string() },
                size(n.bytes),
                n.buffers.to_string(),
            ]
        })
        .collect()
}

fn heap_rows(report: &Report, size: impl Fn(u64) -> String) -> Rows {
    report
        .heaps
        .iter()
        .map(|h| {
            vec![shown_text(Some(&h.exporter)).into_owned(), size(h.bytes), h.buffers.to_string()]
        })
        .collect()
}

/// Right-aligned columns, first column left-aligned, two spaces apart.
pub(crate) fn simple_table(headers: &[&str], rows: Rows) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(out, "{cell:<w$}");
            } else {
                let _ = write!(out, "  {cell:>w$}");
            }
        }
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for row in &rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

/// Renders CSV (RFC 4180 quoting), exact bytes. The per-process view is flat: one row per
/// (process, buffer), easier to load into a spreadsheet than dmabuf_dump's per-process blocks.
pub fn csv(report: &Report, view: View) -> String {
    rendered(|out| write_csv(out, report, view))
}

/// [`csv`] written into `out` row by row, as [`write_table`] does.
pub fn write_csv(out: &mut impl io::Write, report: &Report, view: View) -> io::Result<()> {
    let bytes = |b: u64| b.to_string();
    let (headers, rows): (Vec<&str>, Rows) = match view {
        View::Processes => return processes_csv(out, report),
        View::Grid => return grid_csv(out, report),
        View::Buffers => (
            vec!["inode", "size_bytes", "exporter", "name", "nr_procs"],
            report
                .buffers
                .iter()
                .map(|b| {
                    vec![
                        b.inode.to_string(),
                        b.size.to_string(),
                        csv_text(b.exporter.as_deref()),
                        csv_name(&b.name),
                        b.holder_count().to_string(),
                    ]
                })
                .collect(),
        ),
        View::Apps => {
            (vec!["uid", "rss_bytes", "pss_bytes", "buffers"], app_rows(report, false, bytes))
        }
        View::Names => (vec!["name", "bytes", "buffers"], name_rows(report, bytes)),
        View::Heaps => (vec!["exporter", "bytes", "buffers"], heap_rows(report, bytes)),
    };
    write_csv_rows(out, &headers, &rows)
}

/// The buffer x process grid as CSV, one line per buffer written as it is made (buffers x
/// processes cells in all).
fn grid_csv(out: &mut impl io::Write, report: &Report) -> io::Result<()> {
    let names: Vec<String> = report
        .processes
        .iter()
        .map(|p| format!("{}:{}", escape(p.comm.as_bytes()), p.pid))
        .collect();
    let headers = ["inode", "size_bytes", "fd_ref_processes", "map_ref_processes"];
    csv_line(out, headers.into_iter().chain(names.iter().map(String::as_str)))?;
    for b in &report.buffers {
        let mut row = vec![
            b.inode.to_string(),
            b.size.to_string(),
            b.fd_refs.len().to_string(),
            b.map_refs.len().to_string(),
        ];
        row.extend(report.processes.iter().map(|p| {
            match (b.fd_refs.get(&p.pid), b.map_refs.get(&p.pid)) {
                (None, None) => String::new(),
                (f, m) => format!("{}({}) refs", f.copied().unwrap_or(0), m.copied().unwrap_or(0)),
            }
        }));
        csv_line(out, row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// One buffer in one holder's rows: where the buffer is in the report and the holder's Pss
/// share. Sixteen bytes, as there is one per (process, buffer) row.
#[derive(Clone, Copy)]
struct Held {
    index: usize,
    pss: u64,
}

/// The buffers each process references, by the process's position in `report.processes`, in
/// report order, each with its Pss share: one pass over buffers x holders instead of one per
/// process or per row, which matters with hundreds of processes each mapping hundreds of
/// buffers. Processes are found by binary search (they are sorted by pid), not hashed: cheaper
/// per row, and a filtered report's buffers also list holders it does not show. The rows are
/// counted per process first and then laid out in one vector, not pushed onto a vector per
/// process grown as it goes.
fn held_by_process(report: &Report) -> Holdings {
    let processes = report.processes.len();
    // Each (buffer, holder) row's process, [`NOT_SHOWN`] for one the report leaves out, and
    // each process's row count (at its position + 1, summed into where its rows start below).
    let mut shown_as = Vec::new();
    let mut starts = vec![0; processes + 1];
    let mut holders = Vec::with_capacity(report.buffers.len());
    // Where the last holder was found. Holders ascend by pid as the processes do, so the next
    // one is mostly that process again (its own buffers, in a row) or the one after it (a
    // buffer's holders, in turn): two compares before a search.
    let mut last = 0;
    for buffer in &report.buffers {
        let before = shown_as.len();
        shown_as.extend(buffer.each_holder().map(|pid| {
            let is = |at: usize| report.processes.get(at).is_some_and(|p| p.pid == pid);
            let found = if is(last) {
                Ok(last)
            } else if is(last + 1) {
                Ok(last + 1)
            } else {
                report.processes.binary_search_by_key(&pid, |p| p.pid)
            };
            match found {
                Ok(at) => {
                    last = at;
                    starts[at + 1] += 1;
                    at as u32
                }
                Err(_) => NOT_SHOWN,
            }
        }));
        holders.push(shown_as.len() - before);
    }
    for at in 0..processes {
        starts[at + 1] += starts[at];
    }
    let mut next = starts.clone();
    let mut held = vec![Held { index: 0, pss: 0 }; starts[processes]];
    let mut rows = shown_as.as_slice();
    for (index, (buffer, &count)) in report.buffers.iter().zip(&holders).enumerate() {
        let (these, rest) = rows.split_at(count);
        rows = rest;
        for (rank, &at) in these.iter().enumerate() {
            if at != NOT_SHOWN {
                let slot = &mut next[at as usize];
                held[*slot] = Held { index, pss: pss_share(buffer.size, count, rank) };
                *slot += 1;
            }
        }
    }
    Holdings { held, starts, holders }
}

/// A holder row of a process the report does not show.
const NOT_SHOWN: u32 = u32::MAX;

/// What [`held_by_process`] finds.
struct Holdings {
    /// Every shown process's rows, one process after another in report order.
    held: Vec<Held>,
    /// Where each process's rows start in `held`, by its position, and where the last ends.
    starts: Vec<usize>,
    /// Each buffer's holder count (`nr_procs`), by its position: the walk over every buffer's
    /// holders counts them anyway, where a count of its own would merge the holder maps again.
    holders: Vec<usize>,
}

impl Holdings {
    /// Each process's rows, in report order.
    fn by_process(&self) -> impl Iterator<Item = &[Held]> {
        self.starts.windows(2).map(|w| &self.held[w[0]..w[1]])
    }
}

/// The per-process CSV, written straight into the output: with hundreds of thousands of rows,
/// a vector of cells per row would cost more than the rows themselves.
fn processes_csv(out: &mut impl io::Write, report: &Report) -> io::Result<()> {
    csv_line(
        out,
        [
            "pid",
            "comm",
            "uid",
            "name",
            "inode",
            "exporter",
            "rss_bytes",
            "pss_bytes",
            "nr_procs",
            "fd_refs",
            "map_refs",
        ],
    )?;
    // What a row shows of its buffer (name, inode, exporter, size; nr_procs) is rendered once
    // per buffer.
    let buffer_cells: Vec<String> = report
        .buffers
        .iter()
        .map(|b| {
            let cells = format!(
                "{},{},{},{},",
                csv_cell(&csv_name(&b.name)),
                b.inode,
                csv_cell(&csv_text(b.exporter.as_deref())),
                b.size
            );
            cells
        })
        .collect();
    let holdings = held_by_process(report);
    let holders = &holdings.holders;
    for (p, held) in report.processes.iter().zip(holdings.by_process()) {
        let process_cells =
            format!("{},{},{},", p.pid, csv_cell(&escape(p.comm.as_bytes())), p.uid);
        for h in held {
            let b = &report.buffers[h.index];
            let (cells, holders) = (&buffer_cells[h.index], holders[h.index]);
            out.write_all(process_cells.as_bytes())?;
            out.write_all(cells.as_bytes())?;
            let fds = b.fd_refs.get(&p.pid).copied().unwrap_or(0);
            let maps = b.map_refs.get(&p.pid).copied().unwrap_or(0);
            writeln!(out, "{},{holders},{fds},{maps}", h.pss)?;
        }
    }
    Ok(())
}

/// A name as CSV carries it: escaped, empty when unnamed.
fn csv_name(name: &Option<Name>) -> String {
    name.as_ref().map_or_else(String::new, Name::to_string)
}

/// An exporter as CSV carries it: escaped, empty when unknown.
fn csv_text(text: Option<&str>) -> String {
    text.map_or_else(String::new, |t| escape(t.as_bytes()).into_owned())
}

fn render_csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    rendered(|out| write_csv_rows(out, headers, rows))
}

fn write_csv_rows(
    out: &mut impl io::Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    csv_line(out, headers.iter().copied())?;
    for row in rows {
        csv_line(out, row.iter().map(String::as_str))?;
    }
    Ok(())
}

fn csv_line<'c>(
    out: &mut impl io::Write,
    cells: impl IntoIterator<Item = &'c str>,
) -> io::Result<()> {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(csv_cell(cell).as_bytes())?;
    }
    out.write_all(b"\n")
}

/// One field, RFC 4180-quoted when it holds a separator, a quote or a line break (escaped text
/// never holds the latter, but a header or a future caller might).
fn csv_cell(cell: &str) -> Cow<'_, str> {
    if cell.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", cell.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(cell)
    }
}

const LEDGER_HEADERS: [&str; 7] = ["Inode", "Size", "Heap", "Uid", "Pid", "TimeMs", "Name"];

/// Uid or pid of who asked; `-` for entries rebuilt after a restart, where nobody is known.
fn requester(e: &Entry, id: impl ToString) -> String {
    if e.attributed {
        id.to_string()
    } else {
        "-".into()
    }
}

fn ledger_rows(entries: &[Entry]) -> Rows {
    entries
        .iter()
        .map(|e| {
            vec![
                e.inode.to_string(),
                e.size.to_string(),
                escape(e.heap.as_bytes()).into_owned(),
                requester(e, e.uid),
                requester(e, e.pid),
                e.time_millis.to_string(),
                e.name.to_string(),
            ]
        })
        .collect()
}

const LEDGER_TABLE_HEADERS: [&str; 7] =
    ["Name", "Inode", "Size", "Heap", "Uid", "Pid", "Time (UTC)"];

/// The service's allocation ledger as a table for people: the name first, as in the other
/// tables, and the time as a UTC timestamp; exact bytes, oldest first.
pub fn ledger_table(entries: &[Entry]) -> String {
    let rows = ledger_rows(entries)
        .into_iter()
        .zip(entries)
        .map(|(mut row, e)| {
            row.rotate_right(1);
            row[6] = if e.time_millis == 0 { "-".into() } else { utc_timestamp(e.time_millis) };
            row
        })
        .collect();
    simple_table(&LEDGER_TABLE_HEADERS, rows)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` (proleptic Gregorian, UTC), without
/// pulling a date crate into a system service for one column.
pub(crate) fn utc_timestamp(millis: u64) -> String {
    let (date, time) = utc_date_time(millis / 1000);
    format!("{date} {time}.{:03}", millis % 1000)
}

/// Seconds since the epoch as RFC 3339 in UTC, `YYYY-MM-DDTHH:MM:SSZ` (snapshot times).
pub fn rfc3339_utc(secs: u64) -> String {
    let (date, time) = utc_date_time(secs);
    format!("{date}T{time}Z")
}

/// `YYYY-MM-DD` and `HH:MM:SS` of seconds since the epoch.
fn utc_date_time(secs: u64) -> (String, String) {
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", day_secs / 3600, day_secs / 60 % 60, day_secs % 60),
    )
}

/// The service's allocation ledger as CSV for programs: time in milliseconds since the epoch,
/// name last.
pub fn ledger_csv(entries: &[Entry]) -> String {
    render_csv(&LEDGER_HEADERS, &ledger_rows(entries))
}

/// The service's allocation ledger as a pretty JSON array of entries.
pub fn ledger_json(entries: &[Entry]) -> crate::Result<String> {
    pretty_json(entries)
}

const HANDOFF_HEADERS: [&str; 8] =
    ["Name", "Inode", "Size", "Heap", "Asked by uid", "Pid", "Age (s)", "Held by"];
const BALANCE_HEADERS: [&str; 5] = ["Uid", "Asked alive", "Buffers", "Held now", "Buffers"];

/// Who holds a buffer, for one cell: `comm[pid] uid U (F fd, M map)` per holder, or
/// `kernel only` when no process does.
fn holders_cell(h: &Handoff) -> String {
    if h.is_kernel_only() {
        return "kernel only".into();
    }
    let shown: Vec<String> = h
        .holders
        .iter()
        .map(|x| {
            format!(
                "{}[{}] uid {} ({} fd, {} map)",
                escape(x.comm.as_bytes()),
                x.pid,
                x.uid,
                x.fds,
                x.maps
            )
        })
        .collect();
    shown.join("; ")
}

/// Seconds from `from` to `to` (milliseconds since the epoch), one decimal; `-` when unknown.
fn age(from: u64, to: u64) -> String {
    if from == 0 {
        return "-".into();
    }
    let ms = to.saturating_sub(from);
    format!("{}.{}", ms / 1000, ms % 1000 / 100)
}

fn handoff_rows(view: &Handoffs) -> Rows {
    view.buffers
        .iter()
        .map(|h| {
            let e = &h.asked;
            vec![
                e.name.to_string(),
                e.inode.to_string(),
                e.size.to_string(),
                escape(e.heap.as_bytes()).into_owned(),
                requester(e, e.uid),
                requester(e, e.pid),
                age(e.time_millis, view.taken_millis),
                holders_cell(h),
            ]
        })
        .collect()
}

fn balance_rows(view: &Handoffs) -> Rows {
    view.uids
        .iter()
        .map(|u| {
            vec![
                u.uid.to_string(),
                u.asked_bytes.to_string(),
                u.asked_buffers.to_string(),
                u.held_bytes.to_string(),
                u.held_buffers.to_string(),
            ]
        })
        .collect()
}

/// Asked-by versus held-by for people: every live buffer the service handed out, oldest first,
/// then per uid the bytes it asked for that are alive against the bytes it holds now. Exact
/// bytes.
pub fn handoff_table(view: &Handoffs) -> String {
    let mut out = simple_table(&HANDOFF_HEADERS, handoff_rows(view));
    out.push('\n');
    out.push_str(&simple_table(&BALANCE_HEADERS, balance_rows(view)));
    out
}

/// Asked-by versus held-by as CSV: one row per buffer (holders in one cell, as in the table);
/// the per-uid balance is the JSON's.
pub fn handoff_csv(view: &Handoffs) -> String {
    render_csv(&HANDOFF_HEADERS, &handoff_rows(view))
}

/// Asked-by versus held-by as pretty JSON: `taken_millis`, `buffers` (each `asked`, a ledger
/// entry, and `holders`) and `uids`.
pub fn handoff_json(view: &Handoffs) -> crate::Result<String> {
    pretty_json(view)
}

/// Renders the whole report as pretty JSON (schema in docs/dump.md).
pub fn json(report: &Report) -> crate::Result<String> {
    pretty_json(report)
}

pub(crate) fn pretty_json(value: &(impl serde::Serialize + ?Sized)) -> crate::Result<String> {
    let mut s =
        serde_json::to_string_pretty(value).map_err(|e| crate::Error::io("encoding JSON", e))?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::account::{Buffer, Filter, Model, PidCounts, Process};
    use crate::ledger::{UNKNOWN_PID, UNKNOWN_UID};

    /// One process holding one buffer per name, with a hostile command name and exporter.
    fn hostile_report(names: &[Vec<u8>], comm: &str, exporter: &str) -> Report {
        let buffers = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let inode = 100 + i as u64;
                let buffer = Buffer {
                    inode,
                    size: 4096,
                    exporter: Some(exporter.into()),
                    name: Some(Name::from(name.clone())),
                    fd_refs: PidCounts::from([(7, 1)]),
                    ..Buffer::default()
                };
                (inode, buffer)
            })
            .collect();
        let process = Process { pid: 7, uid: 1000, comm: comm.into() };
        let model = Model {
            buffers,
            processes: BTreeMap::from([(7, process)]),
            exported_bytes: Some(4096 * names.len() as u64),
            unreadable_processes: 0,
            coverage: Default::default(),
        };
        Report::build(&model, &Filter::default())
    }

    /// Every line is free of control characters, and there are exactly `lines` of them.
    fn assert_rows(text: &str, lines: usize) -> std::result::Result<(), TestCaseError> {
        prop_assert!(text.ends_with('\n'));
        let rows: Vec<&str> = text.lines().collect();
        prop_assert_eq!(rows.len(), lines, "{}", text);
        for row in rows {
            prop_assert!(!row.chars().any(|c| c.is_control()), "{:?}", row);
            prop_assert!(!row.contains(['\u{2028}', '\u{2029}', '\u{202e}']), "{:?}", row);
        }
        Ok(())
    }

    #[test]
    fn shared_buffer_rows_carry_each_holders_share() {
        let mut model = Model::default();
        let buffer = Buffer {
            inode: 9,
            size: 4097,
            exporter: Some("system".into()),
            name: Some("GL".into()),
            fd_refs: PidCounts::from([(1, 1), (2, 1)]),
            map_refs: PidCounts::from([(3, 1)]),
            ..Buffer::default()
        };
        model.buffers.insert(9, buffer);
        for pid in 1..=3 {
            model.processes.insert(pid, Process { pid, uid: 0, comm: format!("p{pid}") });
        }
        let r = Report::build(&model, &Filter::default());
        let table = table(&r, View::Processes, Units::Bytes);
        let rows: Vec<&str> = table.lines().filter(|l| l.trim_start().starts_with("GL ")).collect();
        let want = |pss: u64| {
            format!("{:>22} {:>13} B {pss:>13} B {:>16} {:>16}  {:>22}", "GL", 4097, 3, 9, "system")
        };
        // 4097 = 3 x 1365 + 2: the two lowest pids get the remainder bytes.
        assert_eq!(rows, [want(1366), want(1366), want(1365)]);
        // A report of one holder shows its share among all three.
        for (pid, pss) in [(1, 1366), (3, 1365)] {
            let r = Report::build(&model, &Filter { uid: None, pid: Some(pid) });
            let shown = super::table(&r, View::Processes, Units::Bytes);
            let rows: Vec<&str> =
                shown.lines().filter(|l| l.trim_start().starts_with("GL ")).collect();
            assert_eq!(rows, [want(pss)], "pid {pid}");
        }
    }

    #[test]
    fn kib_rounds_up_to_thousandths() {
        let cases = [(1, "0.001"), (1025, "1.001"), (1124, "1.098"), (10 * 1024 + 512, "10.500")];
        for (bytes, shown) in cases {
            assert_eq!(kib(bytes), shown, "{bytes}");
        }
        assert_eq!(kib(u64::MAX), "18014398509481984.000");
        assert_eq!(kib(0), "0");
    }

    proptest! {
        /// Each shown process's rows are the buffers it holds, in report order, with its share
        /// (as [`BufferView::pss_of`] reckons it), however holders skip processes or fall outside
        /// a filtered report; each buffer's holder count is all its holders.
        #[test]
        fn held_by_process_finds_each_holders_rows(
            holders in proptest::collection::vec(
                (proptest::collection::btree_set(1i32..9, 0..9), 1u64..5000),
                1..12,
            ),
            pid in proptest::option::of(1i32..9),
        ) {
            let mut model = Model::default();
            for (inode, (pids, size)) in (1..).zip(&holders) {
                let fd_refs = pids.iter().map(|&pid| (pid, 1)).collect();
                model.buffers.insert(inode, Buffer { inode, size: *size, fd_refs, ..Buffer::default() });
            }
            for pid in 1..9 {
                model.processes.insert(pid, Process { pid, uid: 0, comm: String::new() });
            }
            let report = Report::build(&model, &Filter { uid: None, pid });
            let held = held_by_process(&report);
            for (p, rows) in report.processes.iter().zip(held.by_process()) {
                let got: Vec<(usize, u64)> = rows.iter().map(|h| (h.index, h.pss)).collect();
                let want: Vec<(usize, u64)> = (report.buffers.iter().enumerate())
                    .filter(|(_, b)| b.holders().contains(&p.pid))
                    .map(|(index, b)| (index, b.pss_of(p.pid)))
                    .collect();
                prop_assert_eq!(got, want, "pid {}", p.pid);
            }
            let counts: Vec<usize> = report.buffers.iter().map(BufferView::holder_count).collect();
            prop_assert_eq!(&held.holders, &counts);
        }

        /// The hand-laid rows are the formatter's layout, for names and exporters of any length
        /// and width (wider than their columns, too) and sizes of any magnitude, also where a
        /// row reuses what the one before laid out (the same exporter, size and holder count).
        #[test]
        fn process_rows_lay_out_as_the_formatter_does(
            exporters in proptest::collection::vec("\\PC{0,40}", 1..3),
            buffers in proptest::collection::vec(
                (
                    "\\PC{0,40}",
                    0usize..3,
                    prop_oneof![Just(65536u64), Just(4097), any::<u64>()],
                    any::<u64>(),
                    1usize..5,
                ),
                1..6,
            ),
            bytes in any::<bool>(),
        ) {
            let units = if bytes { Units::Bytes } else { Units::KiB };
            // One `Arc` per exporter, shared by every buffer of it, as a scan's are.
            let exporters: Vec<Exporter> = exporters.iter().map(|e| e.as_str().into()).collect();
            let views: Vec<BufferView> = buffers
                .iter()
                .map(|(name, exporter, size, inode, holders)| BufferView {
                    inode: *inode,
                    size: *size,
                    exporter: exporters.get(*exporter).cloned(),
                    name: Some(Name::from(name.as_bytes())),
                    fd_refs: (0..*holders as i32).map(|pid| (pid, 1)).collect(),
                    map_refs: PidCounts::new(),
                })
                .collect();
            let counts: Vec<usize> = buffers.iter().map(|b| b.4).collect();
            let mut rows = ProcessRows::new(&views, &counts, units);
            let u = units.suffix();
            for (index, (b, &holders)) in views.iter().zip(&counts).enumerate() {
                let base = b.size / holders as u64;
                let uneven = b.size % holders as u64 != 0;
                for pss in [base, base.saturating_add(1)].into_iter().take(1 + usize::from(uneven)) {
                    let want = format!(
                        "{:>22} {:>13}{u} {:>13}{u} {:>16} {:>16}  {:>22}\n",
                        shown_name(&b.name), units.fmt(b.size), units.fmt(pss), holders, b.inode,
                        shown_text(b.exporter.as_deref())
                    );
                    // Twice: as first laid out, and as kept (or laid out again).
                    for _ in 0..2 {
                        let mut got = Vec::new();
                        rows.write(&mut got, index, pss).expect("into a Vec");
                        prop_assert_eq!(String::from_utf8(got).expect("utf-8"), want.clone());
                    }
                }
            }
        }

        /// Sizes made on the stack read as the formatter writes them: whole KiB plain, else
        /// rounded up to thousandths with the leading zeros of the fraction; bytes plain.
        #[test]
        fn size_cells_read_as_the_formatter_writes(
            bytes in prop_oneof![any::<u64>(), 0u64..1 << 20, (0u64..1 << 44).prop_map(|k| k * 1024 + 1)],
        ) {
            let want = if bytes % 1024 == 0 {
                (bytes / 1024).to_string()
            } else {
                let thousandths = (u128::from(bytes) * 1000).div_ceil(1024);
                format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
            };
            prop_assert_eq!(kib(bytes), want);
            prop_assert_eq!(Units::Bytes.fmt(bytes), bytes.to_string());
        }

        /// Whatever bytes names, command names and exporters hold, every text output keeps one
        /// line per row.
        #[test]
        fn hostile_bytes_never_add_rows(
            names in proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..=31), 1..4),
            comm in "\\PC{0,15}|[\n\t\x1b\u{85}\u{2028}a]{1,15}",
            exporter in "[\n\r\x7f,\"a-z]{1,12}",
        ) {
            let r = hostile_report(&names, &comm, &exporter);
            let n = names.len();
            let groups = r.names.len();
            assert_rows(&table(&r, View::Processes, Units::KiB), 2 + n + 2 + 1)?;
            assert_rows(&table(&r, View::Buffers, Units::KiB), 1 + n + 1 + 1 + 1 + 1)?;
            assert_rows(&table(&r, View::Grid, Units::KiB), 1 + n + 1)?;
            assert_rows(&table(&r, View::Names, Units::KiB), 1 + groups)?;
            assert_rows(&table(&r, View::Heaps, Units::KiB), 1 + 1)?;
            assert_rows(&csv(&r, View::Processes), 1 + n)?;
            assert_rows(&csv(&r, View::Buffers), 1 + n)?;
            assert_rows(&csv(&r, View::Names), 1 + groups)?;
            let entries: Vec<Entry> = names.iter().map(|name| Entry {
                name: Name::from(name.clone()),
                heap: exporter.clone(),
                ..entry(1, "", 0, 0, 0)
            }).collect();
            assert_rows(&ledger_table(&entries), 1 + n)?;
            assert_rows(&ledger_csv(&entries), 1 + n)?;
        }
    }

    /// A writer that takes `room` bytes, then fails as a closed pipe does.
    struct Closing {
        room: usize,
    }

    impl io::Write for Closing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_stops_every_renderer_with_its_error() {
        let r = hostile_report(&[b"a".to_vec(), b"b".to_vec()], "p", "system");
        for view in [View::Processes, View::Grid, View::Buffers, View::Apps, View::Names] {
            let table = write_table(&mut Closing { room: 20 }, &r, view, Units::KiB);
            assert_eq!(table.unwrap_err().kind(), io::ErrorKind::BrokenPipe, "{view:?}");
            let csv = write_csv(&mut Closing { room: 20 }, &r, view);
            assert_eq!(csv.unwrap_err().kind(), io::ErrorKind::BrokenPipe, "{view:?}");
        }
    }

    fn entry(inode: u64, name: &str, uid: u32, pid: i32, time_millis: u64) -> Entry {
        let attributed = time_millis != 0;
        Entry {
            inode,
            size: 4096 * inode,
            name: name.into(),
            heap: "system".into(),
            uid,
            pid,
            time_millis,
            attributed,
        }
    }

    #[test]
    fn ledger_table_and_csv() {
        let entries = [
            entry(3, "CAMERA preview", 1047, 190, 1_795_597_200_615),
            entry(12, "GL", UNKNOWN_UID, UNKNOWN_PID, 0),
        ];
        assert_eq!(
            ledger_table(&entries),
            "Name            Inode   Size    Heap   Uid  Pid               Time (UTC)\n\
             CAMERA preview      3  12288  system  1047  190  2026-11-25 09:00:00.615\n\
             GL                 12  49152  system     -    -                        -\n"
        );
        assert_eq!(
            ledger_csv(&entries),
            "Inode,Size,Heap,Uid,Pid,TimeMs,Name\n3,12288,system,1047,190,1795597200615,CAMERA preview\n\
             12,49152,system,-,-,0,GL\n"
        );
    }

    #[test]
    fn handoff_table_shows_asker_holders_and_balance() {
        use crate::handoff::{Handoff, Handoffs, Holder, UidBalance};
        let holder =
            Holder { pid: 456, uid: 1000, comm: "surface\nflinger".into(), fds: 1, maps: 2 };
        let view = Handoffs {
            taken_millis: 1_795_597_212_915,
            buffers: vec![
                Handoff {
                    asked: entry(3, "CAMERA", 1047, 190, 1_795_597_200_615),
                    holders: vec![holder],
                },
                Handoff { asked: entry(12, "GL", UNKNOWN_UID, UNKNOWN_PID, 0), holders: vec![] },
            ],
            uids: vec![UidBalance {
                uid: 1047,
                asked_bytes: 12288,
                asked_buffers: 1,
                held_bytes: 0,
                held_buffers: 0,
            }],
        };
        assert_eq!(
            handoff_table(&view),
            "Name    Inode   Size    Heap  Asked by uid  Pid  Age (s)                                       Held by\n\
             CAMERA      3  12288  system          1047  190     12.3  surface\\nflinger[456] uid 1000 (1 fd, 2 map)\n\
             GL         12  49152  system             -    -        -                                   kernel only\n\
             \n\
             Uid   Asked alive  Buffers  Held now  Buffers\n\
             1047        12288        1         0        0\n"
        );
        assert_eq!(handoff_csv(&view).lines().count(), 3);
    }

    #[test]
    fn utc_timestamps_match_the_calendar() {
        for (millis, want) in [
            (0, "1970-01-01 00:00:00.000"),
            (951_782_400_000, "2000-02-29 00:00:00.000"),
            (1_709_164_800_000, "2024-02-29 00:00:00.000"),
            (1_795_597_200_615, "2026-11-25 09:00:00.615"),
            (4_102_444_799_999, "2099-12-31 23:59:59.999"),
        ] {
            assert_eq!(utc_timestamp(millis), want, "{millis}");
        }
        assert_eq!(rfc3339_utc(1_795_597_200), "2026-11-25T09:00:00Z");
        assert_eq!(rfc3339_utc(951_868_799), "2000-02-29T23:59:59Z");
    }
}
