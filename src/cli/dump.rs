//! `dmabufctl dump`, straight from /proc.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{DumpArgs, Format, GroupBy};
use crate::account::{Filter, Report};
use crate::report::{self, Units, View};
use crate::scan::{self, ScanOptions};
use crate::snapshot::{self, Meta};

pub fn dump(args: &DumpArgs) -> crate::Result<()> {
    let options = scan_options(&args.proc_root);
    let filter = Filter { uid: args.uid, pid: args.pid };
    each_report(args, "procfs", || Ok(Report::build(&scan::scan(&options)?, &filter)))
}

/// Prints the report `next` makes as `args` ask, or with `--watch` one snapshot line per
/// interval (`--service` reports too; `source` names where they come from).
pub(super) fn each_report(
    args: &DumpArgs,
    source: &str,
    mut next: impl FnMut() -> crate::Result<Report>,
) -> crate::Result<()> {
    let Some(seconds) = args.watch else {
        return print(&next()?, args, source);
    };
    let start = Instant::now();
    let mut stdout = std::io::stdout().lock();
    for taken in 1.. {
        let line = snapshot::json(&next()?, &Meta::now(source), false)?;
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

/// Renders a report as `args` ask and writes it to stdout.
fn print(report: &Report, args: &DumpArgs, source: &str) -> crate::Result<()> {
    let filtered = args.uid.is_some() || args.pid.is_some();
    let text = render(report, args, filtered, source)?;
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

fn render(report: &Report, args: &DumpArgs, filtered: bool, source: &str) -> crate::Result<String> {
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
        Format::Json => snapshot::json(report, &Meta::now(source), true)?,
        Format::Csv => report::csv(report, view),
        Format::Table => match report::empty_message(report, filtered) {
            Some(message) => message,
            None => report::table(report, view, if args.bytes { Units::Bytes } else { Units::KiB }),
        },
    })
}
