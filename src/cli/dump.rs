//! `dmabufctl dump`, straight from /proc.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{DumpArgs, Format, GroupBy};
use crate::account::{Filter, Grouping, Report};
use crate::bpf;
use crate::report::{self, Units, View};
use crate::scan::ScanOptions;
use crate::snapshot::{self, Meta};

pub fn dump(args: &DumpArgs) -> crate::Result<()> {
    let options = scan_options(&args.proc_root);
    let filter = Filter { uid: args.uid, pid: args.pid };
    each_report(args, || {
        let start = Instant::now();
        let (model, source) = bpf::scan(&options, args.source)?;
        log::debug!("scan in {:?}", start.elapsed());
        let report = Report::from_model(model, &filter, grouping(args));
        log::debug!("report built at {:?}", start.elapsed());
        Ok((report, source.as_str()))
    })
}

/// Prints the report `next` makes as `args` ask, or with `--watch` one snapshot line per
/// interval (`--service` reports too); `next` also names where its report came from.
pub(super) fn each_report(
    args: &DumpArgs,
    mut next: impl FnMut() -> crate::Result<(Report, &'static str)>,
) -> crate::Result<()> {
    let Some(seconds) = args.watch else {
        let (report, source) = next()?;
        let start = Instant::now();
        let printed = print(&report, args, source);
        log::debug!("printed in {:?}", start.elapsed());
        // The process exits next: freeing a large report an allocation at a time (1.5 ms
        // natively for 300 processes x 16 buffers, ten times that under emulation) would only
        // repeat what the exit does at once.
        std::mem::forget(report);
        return printed;
    };
    let start = Instant::now();
    let mut stdout = std::io::stdout().lock();
    for taken in 1.. {
        let (report, source) = next()?;
        let line = snapshot::json(&report, &Meta::now(source), false)?;
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| crate::Error::io("writing a snapshot", e))?;
        if args.count.is_some_and(|n| taken >= n) {
            break;
        }
        // Snapshots keep to the interval from the first one, however long each scan took.
        let due = start + Duration::from_secs(seconds.saturating_mul(taken));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    Ok(())
}

/// Renders a report as `args` ask and writes it to stdout as it is rendered, through a buffer:
/// the output of a large system (31 MB of table for 301 processes each mapping 900 buffers) is
/// never held whole in memory.
fn print(report: &Report, args: &DumpArgs, source: &str) -> crate::Result<()> {
    let filtered = args.uid.is_some() || args.pid.is_some();
    let mut stdout = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    render(&mut stdout, report, args, filtered, source)
        .and_then(|()| stdout.flush())
        .map_err(|e| crate::Error::io("writing the report", e))?;
    if report.totals.unreadable_processes > 0 && args.format == Format::Table {
        eprintln!(
            "dmabufctl: processes skipped: {} (exited during the scan, or not readable by this user)",
            report.totals.unreadable_processes
        );
    }
    Ok(())
}

/// The real system for `/proc`; for a capture rooted elsewhere (`<dir>/proc`), the kernel's
/// lists are looked up under `<dir>/sys` too, so one directory holds a whole fixture.
pub(super) fn scan_options(proc_root: &Path) -> ScanOptions {
    match proc_root.parent() {
        Some(root) if proc_root != Path::new("/proc") => {
            ScanOptions { proc_root: proc_root.to_path_buf(), ..ScanOptions::under_root(root) }
        }
        _ => ScanOptions::default(),
    }
}

/// The view `args` ask for (the per-process table by default).
fn view(args: &DumpArgs) -> View {
    if args.a {
        View::Grid
    } else if args.b {
        View::Buffers
    } else {
        match args.by {
            GroupBy::Process => View::Processes,
            GroupBy::App => View::Apps,
            GroupBy::Name => View::Names,
            GroupBy::Heap => View::Heaps,
        }
    }
}

/// Whether what `args` print shows the per-name or per-heap view: only a table of another
/// view does not (JSON, CSV, OpenMetrics and `--watch`'s snapshots carry them).
fn grouping(args: &DumpArgs) -> Grouping {
    let ungrouped = matches!(view(args), View::Processes | View::Grid | View::Apps);
    if args.format == Format::Table && args.watch.is_none() && ungrouped {
        Grouping::None
    } else {
        Grouping::All
    }
}

fn render(
    out: &mut impl Write,
    report: &Report,
    args: &DumpArgs,
    filtered: bool,
    source: &str,
) -> std::io::Result<()> {
    let view = view(args);
    match args.format {
        Format::Json => snapshot::write_json(out, report, &Meta::now(source), true),
        Format::Csv => report::write_csv(out, report, view),
        Format::Openmetrics => out.write_all(crate::openmetrics::render(report).as_bytes()),
        Format::Table => {
            match report::empty_message(report, filtered) {
                Some(message) => out.write_all(message.as_bytes())?,
                None => report::write_table(
                    out,
                    report,
                    view,
                    if args.bytes { Units::Bytes } else { Units::KiB },
                )?,
            }
            // A local scan says which source it used; the service's reports are its own.
            if view == View::Buffers && source != "service" {
                writeln!(out, "Scan source: {source}")?;
            }
            Ok(())
        }
    }
}
