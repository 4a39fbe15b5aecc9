//! `dmabufctl --service ...`: the same subcommands, answered by the dmabufd service.
//!
//! Output is rendered by the same code as the direct path, from library types converted back
//! from the parcelables, so `--service` changes where the answer comes from, not what it looks
//! like. Reports and ledgers come in pages of one snapshot (V2's paged methods), so they arrive
//! complete whatever their size. Kernel binder uses the binder crate's default device unless `DMABUFD_BINDER_DEVICE`
//! names another (tests run a private service manager on /dev/vndbinder).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{alloc, dump, top, AllocArgs, Command, DumpArgs, Format, HistoryArgs, LedgerArgs};
use crate::buffer::DmaBuf;
use crate::handoff::Handoffs;
use crate::heap::AllocRequest;
use crate::service::compat::aidl::{
    IAccounting::{IAccounting, ALL},
    IAllocator::IAllocator,
    Report::Report,
};
use crate::service::compat::{self, Strong, Transport, ACCOUNTING_INSTANCE, ALLOCATOR_INSTANCE};
use crate::service::convert;
use crate::service::errors::from_status;
use crate::{report, units, Error, Result};

/// How long to wait for the service to be registered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(rpc: Option<&Path>, command: Command) -> Result<()> {
    let transport = match rpc {
        Some(socket) => Transport::Rpc(socket.to_path_buf()),
        None => Transport::Kernel(std::env::var_os("DMABUFD_BINDER_DEVICE").map(Into::into)),
    };
    match command {
        Command::Heaps => heaps(&allocator(&transport)?),
        Command::Alloc(args) => alloc(&allocator(&transport)?, &args),
        Command::Dump(args) => dump(&accounting(&transport)?, &args),
        Command::Ledger(args) => ledger(&accounting(&transport)?, &args),
        // Snapshots are files, whoever took them.
        Command::Diff(args) => super::diff::diff(&args),
        Command::Top(args) => {
            let service = accounting(&transport)?;
            top::top(&args, || {
                Ok((report(&service, convert::uid_selector_to_aidl(None), ALL)?, "service"))
            })
        }
        Command::Serve(_) => {
            Err(Error::InvalidArgument("serve scans /proc itself: run it without --service".into()))
        }
        // Pins are this machine's bpffs, whoever asks.
        Command::Bpf(command) => super::bpf::bpf(&command),
        Command::Holders(args) => holders(&accounting(&transport)?, &args),
        Command::History(args) => history(&accounting(&transport)?, &args),
    }
}

fn allocator(transport: &Transport) -> Result<Strong<dyn IAllocator>> {
    compat::connect(transport, ALLOCATOR_INSTANCE, CONNECT_TIMEOUT)
}

fn accounting(transport: &Transport) -> Result<Strong<dyn IAccounting>> {
    compat::connect(transport, ACCOUNTING_INSTANCE, CONNECT_TIMEOUT)
}

fn heaps(service: &Strong<dyn IAllocator>) -> Result<()> {
    let heaps = service.getHeaps().map_err(|s| from_status(&s))?;
    let mut out = std::io::stdout().lock();
    for heap in heaps {
        writeln!(out, "{heap}").map_err(|e| Error::io("writing to stdout", e))?;
    }
    Ok(())
}

fn alloc(service: &Strong<dyn IAllocator>, args: &AllocArgs) -> Result<()> {
    alloc::check_count(args)?;
    let size = units::parse_size(&args.size)?;
    // Flags go bit for bit: which flags a heap accepts is for the service (and the heap) to say.
    let request = convert::request_to_aidl(&AllocRequest {
        heap: &args.heap,
        size,
        name: args.name.as_bytes(),
        heap_flags: args.flags,
    })?;
    let buffers = (0..args.count)
        .map(|_| {
            let allocation = service.allocate(&request).map_err(|s| from_status(&s))?;
            let fd = allocation
                .fd
                .ok_or_else(|| Error::InvalidArgument("the service sent no fd".into()))?;
            // Checks that what arrived really is a dma-buf, and reads inode and size from it.
            DmaBuf::from_fd(fd.into())
        })
        .collect::<Result<Vec<DmaBuf>>>()?;
    alloc::present(args, &buffers)
}

/// Every page of one snapshot, from cursor 0 until the service answers cursor 0.
fn all_pages(mut page: impl FnMut(i64) -> Result<i64>) -> Result<()> {
    let mut cursor = 0;
    loop {
        cursor = page(cursor)?;
        if cursor == 0 {
            return Ok(());
        }
    }
}

fn dump(service: &Strong<dyn IAccounting>, args: &DumpArgs) -> Result<()> {
    let uid = convert::uid_selector_to_aidl(args.uid);
    let pid = args.pid.unwrap_or(ALL);
    dump::each_report(args, || Ok((report(service, uid, pid)?, "service")))
}

/// The service's report for the uid and pid selectors, every page of one snapshot.
fn report(service: &Strong<dyn IAccounting>, uid: i64, pid: i32) -> Result<crate::account::Report> {
    let mut report = Report::default();
    all_pages(|cursor| {
        let page = service.getReportPage(uid, pid, cursor).map_err(|s| from_status(&s))?;
        convert::append_page(&mut report, page.report);
        Ok(page.cursor)
    })?;
    Ok(convert::report_from_aidl(report))
}

fn ledger(service: &Strong<dyn IAccounting>, args: &LedgerArgs) -> Result<()> {
    let uid = convert::uid_selector_to_aidl(args.uid);
    let mut entries = Vec::new();
    all_pages(|cursor| {
        let page = service.getLedgerPage(uid, cursor).map_err(|s| from_status(&s))?;
        entries.extend(page.entries.into_iter().map(convert::entry_from_aidl));
        Ok(page.cursor)
    })?;
    let text = match args.format {
        Format::Table => report::ledger_table(&entries),
        Format::Csv => report::ledger_csv(&entries),
        Format::Json => report::ledger_json(&entries)?,
        Format::Openmetrics => {
            return Err(Error::InvalidArgument("the ledger has no openmetrics output".into()))
        }
    };
    print(&text)
}

fn holders(service: &Strong<dyn IAccounting>, args: &LedgerArgs) -> Result<()> {
    let uid = convert::uid_selector_to_aidl(args.uid);
    let mut view = Handoffs::default();
    all_pages(|cursor| {
        let page = service.getHandoffPage(uid, cursor).map_err(|s| from_status(&s))?;
        let next = page.cursor;
        convert::append_handoff_page(&mut view, page);
        Ok(next)
    })?;
    let text = match args.format {
        Format::Table => report::handoff_table(&view),
        Format::Csv => report::handoff_csv(&view),
        Format::Json => report::handoff_json(&view)?,
        Format::Openmetrics => {
            return Err(Error::InvalidArgument("holders has no openmetrics output".into()))
        }
    };
    print(&text)
}

fn history(service: &Strong<dyn IAccounting>, args: &HistoryArgs) -> Result<()> {
    if matches!(args.format, Format::Csv | Format::Openmetrics) {
        return Err(Error::InvalidArgument("history prints as table or json".into()));
    }
    if args.reset {
        service.resetHistory().map_err(|s| from_status(&s))?;
    }
    let view = convert::history_from_aidl(service.getHistory().map_err(|s| from_status(&s))?);
    let text = if args.format == Format::Json { view.json()? } else { view.table() };
    print(&text)
}

fn print(text: &str) -> Result<()> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing to stdout", e))
}
