//! The AIDL interfaces, written once against [`compat`]: argument checks, the call into
//! [`Shared`], paging and type conversion. Nothing else; every failure leaves through
//! [`map_or_log_err`].

use std::sync::Arc;

use super::compat::aidl::{
    Allocation::Allocation,
    AllocationRequest::AllocationRequest,
    HandoffPage::HandoffPage,
    History::History,
    IAccounting::{IAccounting, ALL},
    IAllocator::IAllocator,
    LedgerEntry::LedgerEntry,
    LedgerPage::LedgerPage,
    Report::Report,
    ReportPage::ReportPage,
};
use super::compat::{self, ParcelFileDescriptor, Result};
use super::convert;
use super::errors::map_or_log_err;
use super::pages::{self, PAGE_BYTES};
use super::snapshots::Cursor;
use super::state::{Paged, Shared};
use crate::account::Filter;
use crate::Error;

/// `vendor.dmabufd.IAllocator/default`.
pub struct AllocatorService(pub Arc<Shared>);

/// `vendor.dmabufd.IAccounting/default`.
pub struct AccountingService(pub Arc<Shared>);

compat::impl_interface_with_dump!(AllocatorService);
compat::impl_interface_with_dump!(AccountingService);

impl AllocatorService {
    fn write_dump(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.0.write_dump(compat::caller(), w)
    }
}

impl AccountingService {
    fn write_dump(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.0.write_dump(compat::caller(), w)
    }

    fn report_page(&self, filter: Filter, cursor: i64) -> crate::Result<ReportPage> {
        let (id, report, start) = self.0.report_snapshot(compat::caller(), filter, cursor)?;
        let (items, next) = pages::cut(start, convert::report_items(&report, start));
        if next.is_none() {
            self.0.close_snapshot(id, Paged::Report);
        }
        Ok(ReportPage {
            report: convert::report_of_items(&report, items),
            cursor: Cursor::next_to_wire(id, next),
        })
    }

    fn ledger_page(&self, uid: Option<u32>, cursor: i64) -> crate::Result<LedgerPage> {
        let (id, entries, start) = self.0.ledger_snapshot(compat::caller(), uid, cursor)?;
        let rest = entries.get(start..).unwrap_or_default();
        let (entries, next) = pages::cut(start, rest.iter().map(convert::entry_to_aidl));
        if next.is_none() {
            self.0.close_snapshot(id, Paged::Ledger);
        }
        Ok(LedgerPage { entries, cursor: Cursor::next_to_wire(id, next) })
    }

    fn handoff_page(&self, uid: Option<u32>, cursor: i64) -> crate::Result<HandoffPage> {
        let (id, view, start) = self.0.handoff_snapshot(compat::caller(), uid, cursor)?;
        let (items, next) = pages::cut(start, convert::handoff_items(&view, start));
        if next.is_none() {
            self.0.close_snapshot(id, Paged::Handoff);
        }
        Ok(convert::handoff_page(view.taken_millis, items, Cursor::next_to_wire(id, next)))
    }
}

impl IAllocator for AllocatorService {
    fn allocate(&self, request: &AllocationRequest) -> Result<Allocation> {
        let result = convert::request_from_aidl(request)
            .map_err(Error::from)
            .and_then(|req| self.0.allocate(compat::caller(), &req));
        let buf = map_or_log_err("allocate", result)?;
        let (inode, size) = (buf.inode(), buf.size());
        // The reply parcel takes its own duplicate; this one closes when the Allocation is
        // dropped after the reply is written, so the service keeps nothing.
        Ok(Allocation {
            fd: Some(ParcelFileDescriptor::new(buf.into_owned_fd())),
            inode: i64::try_from(inode).unwrap_or(i64::MAX),
            size: i64::try_from(size).unwrap_or(i64::MAX),
        })
    }

    fn getHeaps(&self) -> Result<Vec<String>> {
        map_or_log_err("getHeaps", self.0.heaps())
    }
}

impl IAccounting for AccountingService {
    fn getReport(&self, uid: i32, pid: i32) -> Result<Report> {
        let result = v1_filter(uid, pid)
            .and_then(|filter| self.0.report(compat::caller(), filter))
            .and_then(|r| {
                whole(convert::report_len(&r), convert::report_items(&r, 0), |items| {
                    convert::report_of_items(&r, items)
                })
            });
        map_or_log_err("getReport", result)
    }

    fn getMyUsage(&self) -> Result<Report> {
        let caller = compat::caller();
        let filter = Filter { uid: Some(caller.uid), pid: None };
        let result = self.0.report(caller, filter).and_then(|r| {
            whole(convert::report_len(&r), convert::report_items(&r, 0), |items| {
                convert::report_of_items(&r, items)
            })
        });
        map_or_log_err("getMyUsage", result)
    }

    fn getLedger(&self, uid: i32) -> Result<Vec<LedgerEntry>> {
        let result = v1_selector("uid", uid)
            .and_then(|uid| {
                self.0.ledger_entries(compat::caller(), uid.map(convert::uid_from_aidl))
            })
            .and_then(|e| whole(e.len(), e.iter().map(convert::entry_to_aidl), |items| items));
        map_or_log_err("getLedger", result)
    }

    fn getReportPage(&self, uid: i64, pid: i32, cursor: i64) -> Result<ReportPage> {
        let result = convert::uid_selector_from_aidl(uid)
            .and_then(|uid| Ok(Filter { uid, pid: v1_selector("pid", pid)? }))
            .and_then(|filter| self.report_page(filter, cursor));
        map_or_log_err("getReportPage", result)
    }

    fn getLedgerPage(&self, uid: i64, cursor: i64) -> Result<LedgerPage> {
        let result =
            convert::uid_selector_from_aidl(uid).and_then(|uid| self.ledger_page(uid, cursor));
        map_or_log_err("getLedgerPage", result)
    }

    fn getHandoffPage(&self, uid: i64, cursor: i64) -> Result<HandoffPage> {
        let result =
            convert::uid_selector_from_aidl(uid).and_then(|uid| self.handoff_page(uid, cursor));
        map_or_log_err("getHandoffPage", result)
    }

    fn getHistory(&self) -> Result<History> {
        Ok(convert::history_to_aidl(&self.0.history(compat::caller())))
    }

    fn resetHistory(&self) -> Result<()> {
        map_or_log_err("resetHistory", self.0.reset_history(compat::caller()))
    }
}

/// A V1 reply: all `len` items in one page, or [`Error::ReplyTooLarge`] (binder could not
/// deliver more; the V2 methods page).
fn whole<T: pages::WireLen, R>(
    len: usize,
    items: impl Iterator<Item = T>,
    reply: impl FnOnce(Vec<T>) -> R,
) -> crate::Result<R> {
    match pages::cut(0, items) {
        (items, None) => Ok(reply(items)),
        (_, Some(_)) => Err(Error::ReplyTooLarge { items: len, limit: PAGE_BYTES }),
    }
}

/// V1's `int` uid and pid: ALL selects everything; other negative values are malformed. So
/// uid 4294967295, which reads as -1, cannot be selected through V1 (V2 takes `long` uids).
fn v1_selector(what: &str, value: i32) -> crate::Result<Option<i32>> {
    match value {
        ALL => Ok(None),
        v if v >= 0 => Ok(Some(v)),
        v => Err(Error::InvalidArgument(format!("{what} {v} is negative and not ALL (-1)"))),
    }
}

fn v1_filter(uid: i32, pid: i32) -> crate::Result<Filter> {
    Ok(Filter {
        uid: v1_selector("uid", uid)?.map(convert::uid_from_aidl),
        pid: v1_selector("pid", pid)?,
    })
}
