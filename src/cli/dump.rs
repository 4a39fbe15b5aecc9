//! `dmabufctl dump`, straight from the kernel (BPF) or /proc.

use std::io::Write;
use std::path::Path;

use super::{DumpArgs, Format, GroupBy};
use crate::account::{Filter, Report};
use crate::bpf::{self, Source};
use crate::report::{self, Units, View};
use crate::scan::ScanOptions;

pub fn dump(args: &DumpArgs) -> crate::Result<()> {
    let (model, source) = bpf::scan(&scan_options(&args.proc_root), args.source)?;
    let filter = Filter { uid: args.uid, pid: args.pid };
    let report = Report::build(&model, &filter);
    print(&report, args, !filter.is_empty(), Some(source))
}

/// Renders a report as `args` ask and writes it to stdout (`--service` reports too, whose
/// `source` this process does not know).
pub(super) fn print(
    report: &Report,
    args: &DumpArgs,
    filtered: bool,
    source: Option<Source>,
) -> crate::Result<()> {
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
fn scan_options(proc_root: &Path) -> ScanOptions {
    match proc_root.parent() {
        Some(root) if proc_root != Path::new("/proc") => {
            ScanOptions { proc_root: proc_root.to_path_buf(), ..ScanOptions::under_root(root) }
        }
        _ => ScanOptions::default(),
    }
}

fn render(
    report: &Report,
    args: &DumpArgs,
    filtered: bool,
    source: Option<Source>,
) -> crate::Result<String> {
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
        Format::Json => match source {
            Some(source) => {
                let with = WithSource { source, report };
                let mut s = serde_json::to_string_pretty(&with)
                    .map_err(|e| crate::Error::io("encoding JSON", e))?;
                s.push('\n');
                s
            }
            None => report::json(report)?,
        },
        Format::Csv => report::csv(report, view),
        Format::Table => {
            let mut text = report::empty_message(report, filtered).unwrap_or_else(|| {
                report::table(report, view, if args.bytes { Units::Bytes } else { Units::KiB })
            });
            if let (View::Buffers, Some(source)) = (view, source) {
                text.push_str(&format!("Scan source: {source}\n"));
            }
            text
        }
    })
}

/// The JSON report with the scan's source as its first member.
#[derive(serde::Serialize)]
struct WithSource<'a> {
    source: Source,
    #[serde(flatten)]
    report: &'a Report,
}
