//! `dmabufctl dump`, straight from /proc.

use std::io::Write;
use std::path::Path;

use super::{DumpArgs, Format, GroupBy};
use crate::account::{Filter, Report};
use crate::report::{self, Units, View};
use crate::scan::{self, ScanOptions};

pub fn dump(args: &DumpArgs) -> crate::Result<()> {
    let model = scan::scan(&scan_options(&args.proc_root))?;
    let filter = Filter { uid: args.uid, pid: args.pid };
    let report = Report::build(&model, &filter);
    print(&report, args, !filter.is_empty())
}

/// Renders a report as `args` ask and writes it to stdout (`--service` reports too).
pub(super) fn print(report: &Report, args: &DumpArgs, filtered: bool) -> crate::Result<()> {
    let text = render(report, args, filtered)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).map_err(|e| crate::Error::io("writing the report", e))?;
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

fn render(report: &Report, args: &DumpArgs, filtered: bool) -> crate::Result<String> {
    let view = if args.a {
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
    };
    Ok(match args.format {
        Format::Json => report::json(report)?,
        Format::Csv => report::csv(report, view),
        Format::Openmetrics => crate::openmetrics::render(report),
        Format::Table => match report::empty_message(report, filtered) {
            Some(message) => message,
            None => report::table(report, view, if args.bytes { Units::Bytes } else { Units::KiB }),
        },
    })
}
