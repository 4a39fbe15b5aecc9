//! The AIDL interfaces, written once against [`compat`]: argument checks, the call into
//! [`Shared`], and type conversion. Nothing else.

use std::sync::Arc;

use super::compat::aidl::{
    Allocation::Allocation,
    AllocationRequest::AllocationRequest,
    IAccounting::{IAccounting, ALL},
    IAllocator::IAllocator,
    LedgerEntry::LedgerEntry,
    Report::Report,
};
use super::compat::{self, ParcelFileDescriptor, Result};
use super::convert;
use super::errors::to_status;
use super::state::{Request, Shared};
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
        self.0.write_dump(w)
    }
}

impl AccountingService {
    fn write_dump(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.0.write_dump(w)
    }
}

impl IAllocator for AllocatorService {
    fn allocate(&self, request: &AllocationRequest) -> Result<Allocation> {
        let req = Request {
            heap: &request.heap,
            size: request.size,
            name: &request.name,
            heap_flags: request.heapFlags,
        };
        let buf = self.0.allocate(compat::caller(), &req).map_err(|e| to_status(&e))?;
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
        self.0.heaps().map_err(|e| to_status(&e))
    }
}

impl IAccounting for AccountingService {
    fn getReport(&self, uid: i32, pid: i32) -> Result<Report> {
        let filter = Filter {
            uid: selector("uid", uid)?.map(convert::uid_from_aidl),
            pid: selector("pid", pid)?,
        };
        self.0
            .report(compat::caller(), filter)
            .map(|r| convert::report_to_aidl(&r))
            .map_err(|e| to_status(&e))
    }

    fn getMyUsage(&self) -> Result<Report> {
        let caller = compat::caller();
        let filter = Filter { uid: Some(caller.uid), pid: None };
        self.0
            .report(caller, filter)
            .map(|r| convert::report_to_aidl(&r))
            .map_err(|e| to_status(&e))
    }

    fn getLedger(&self, uid: i32) -> Result<Vec<LedgerEntry>> {
        let uid = selector("uid", uid)?.map(convert::uid_from_aidl);
        let entries = self.0.ledger_entries(compat::caller(), uid).map_err(|e| to_status(&e))?;
        Ok(entries.iter().map(convert::entry_to_aidl).collect())
    }
}

/// `ALL` selects everything; other negative values are malformed.
fn selector(what: &str, value: i32) -> Result<Option<i32>> {
    match value {
        ALL => Ok(None),
        v if v >= 0 => Ok(Some(v)),
        v => Err(to_status(&Error::InvalidArgument(format!(
            "{what} {v} is negative and not ALL (-1)"
        )))),
    }
}
