//! `android.hardware.memtrack.IMemtrack/default`: AOSP's memtrack HAL V1 over the same scans as
//! `IAccounting`. Argument checks and type conversion only; the records come from
//! [`crate::memtrack`].

use std::sync::Arc;

use super::compat::memtrack_aidl::{
    DeviceInfo::DeviceInfo, IMemtrack::IMemtrack, MemtrackRecord::MemtrackRecord,
    MemtrackType::MemtrackType,
};
use super::compat::{self, Result};
use super::errors::map_or_log_err;
use super::state::Shared;
use crate::memtrack::PrefixMap;

/// The memtrack service: the shared state and the purpose-name prefixes of each type.
pub struct MemtrackService(pub Arc<Shared>, pub PrefixMap);

compat::impl_interface_with_dump!(MemtrackService);

impl MemtrackService {
    fn write_dump(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(w, "memtrack prefixes: {:?}", self.1)?;
        self.0.write_dump(compat::caller(), w)
    }
}

impl IMemtrack for MemtrackService {
    fn getMemory(&self, pid: i32, kind: MemtrackType) -> Result<Vec<MemtrackRecord>> {
        let result = self.0.memtrack(compat::caller(), pid, kind.0, &self.1);
        let records = map_or_log_err("getMemory", result)?;
        Ok(records
            .iter()
            .map(|r| MemtrackRecord {
                flags: r.flags,
                sizeInBytes: i64::try_from(r.size).unwrap_or(i64::MAX),
            })
            .collect())
    }

    /// dmabufd is no GPU driver: it knows no GPU device.
    fn getGpuDeviceInfo(&self) -> Result<Vec<DeviceInfo>> {
        Ok(Vec::new())
    }
}
