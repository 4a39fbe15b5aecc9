//! `dmabufctl heaps` and `dmabufctl alloc`, straight against the kernel.

use super::AllocArgs;

pub fn heaps() -> crate::Result<()> {
    Err(crate::Error::Unsupported("TODO heaps"))
}

pub fn alloc(_args: &AllocArgs) -> crate::Result<()> {
    Err(crate::Error::Unsupported("TODO alloc"))
}
