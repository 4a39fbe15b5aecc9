//! An owned dma-buf: its identity (inode, size), naming, and CPU access through a mapping.

use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::name::{self, BufName};
use crate::sys::{self, SharedMap, SyncAccess, SyncPhase};
use crate::{Error, Result};

/// A dma-buf fd, with the inode and size read once when it was taken over. Dropping it closes
/// this fd only; the buffer lives on while any other fd or mapping refers to it.
#[derive(Debug)]
pub struct DmaBuf {
    fd: OwnedFd,
    inode: u64,
    size: u64,
}

impl DmaBuf {
    /// Takes over an fd received from elsewhere (a binder reply, a unix socket), after checking
    /// that it really is a dma-buf: anything else would make every later ioctl fail confusingly.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        match sys::is_dma_buf(fd.as_fd()) {
            Ok(true) => Self::from_kernel(fd),
            Ok(false) => Err(Error::InvalidArgument("the file descriptor is not a dma-buf".into())),
            Err(e) => Err(Error::io("fstatfs on a presumed dma-buf", e)),
        }
    }

    /// Wraps an fd the kernel just returned from a heap, which is a dma-buf by construction.
    pub(crate) fn from_kernel(fd: OwnedFd) -> Result<Self> {
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("fstat on a dma-buf", e))?;
        Ok(DmaBuf { fd, inode: st.inode, size: st.size })
    }

    /// The buffer's inode: its identity in fdinfo `ino:`, the maps inode column and bufinfo.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Size in bytes as the kernel allocated it (whole pages).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Gives up ownership of the fd, e.g. to hand it to a client.
    pub fn into_owned_fd(self) -> OwnedFd {
        self.fd
    }

    /// Names (or renames) the buffer.
    pub fn set_name(&self, name: &BufName) -> Result<()> {
        name::set_name(self.fd.as_fd(), name)
    }

    /// Maps the whole buffer shared, readable and writable.
    pub fn map(&self) -> Result<Mapping<'_>> {
        let len = usize::try_from(self.size).map_err(|_| {
            Error::InvalidArgument(format!("a {}-byte buffer cannot be mapped here", self.size))
        })?;
        let map =
            SharedMap::new(self.fd.as_fd(), len).map_err(|e| Error::io("mmap of a dma-buf", e))?;
        Ok(Mapping { map, fd: self.fd.as_fd() })
    }
}

impl AsFd for DmaBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<DmaBuf> for OwnedFd {
    fn from(buf: DmaBuf) -> OwnedFd {
        buf.into_owned_fd()
    }
}

/// A shared mapping of a [`DmaBuf`], unmapped on drop. It borrows the buffer because CPU-access
/// sync is an ioctl on the fd.
///
/// Other processes and devices may write the same pages at any time; the slices this hands out
/// see such writes like any shared memory does. Bracket access with [`Mapping::cpu_access`] so the
/// exporter can keep caches coherent.
#[derive(Debug)]
pub struct Mapping<'a> {
    map: SharedMap,
    fd: BorrowedFd<'a>,
}

impl<'a> Mapping<'a> {
    /// Length of the mapping (the buffer size).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: dma-bufs have at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the range is mapped readable for as long as `self.map` lives, which outlives the
        // borrow of `self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// The mapped bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: mapped writable for the lifetime of `self.map`; `&mut self` makes this the only
        // slice handed out by this mapping.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.map.len()) }
    }

    /// Starts a CPU access window (`DMA_BUF_IOCTL_SYNC` START); the returned guard ends it on drop
    /// or, to see the kernel's answer, with [`CpuAccess::end`].
    pub fn cpu_access(&mut self, access: SyncAccess) -> Result<CpuAccess<'_, 'a>> {
        sys::sync(self.fd, SyncPhase::Start, access)
            .map_err(|e| Error::io("DMA_BUF_IOCTL_SYNC start", e))?;
        Ok(CpuAccess { mapping: self, access, ended: false })
    }
}

/// An open CPU access window on a [`Mapping`]; dereferences to the mapped bytes.
#[derive(Debug)]
pub struct CpuAccess<'m, 'a> {
    mapping: &'m mut Mapping<'a>,
    access: SyncAccess,
    ended: bool,
}

impl CpuAccess<'_, '_> {
    /// Ends the window (`DMA_BUF_IOCTL_SYNC` END) and reports failure, which dropping cannot.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        sys::sync(self.mapping.fd, SyncPhase::End, self.access)
            .map_err(|e| Error::io("DMA_BUF_IOCTL_SYNC end", e))
    }
}

impl Deref for CpuAccess<'_, '_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.mapping.as_slice()
    }
}

impl DerefMut for CpuAccess<'_, '_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.mapping.as_mut_slice()
    }
}

impl Drop for CpuAccess<'_, '_> {
    fn drop(&mut self) {
        if !self.ended {
            if let Err(e) = sys::sync(self.mapping.fd, SyncPhase::End, self.access) {
                log::warn!("DMA_BUF_IOCTL_SYNC end failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_fd_refuses_non_dma_bufs() {
        let err = DmaBuf::from_fd(crate::sys::test_memfd()).expect_err("a memfd is not a dma-buf");
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains("not a dma-buf")),
            "{err}"
        );
    }
}
