//! `dmabufctl dump`, straight from /proc.

use super::DumpArgs;

pub fn dump(_args: &DumpArgs) -> crate::Result<()> {
    Err(crate::Error::Unsupported("TODO dump"))
}
