//! An owned dma-buf: its identity (inode, size), naming, and CPU access through a mapping.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::name::{self, BufName};
use crate::sys::{self, MapAccess, MapError, SharedMap, SyncAccess, SyncPhase};
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
        self.map_range(0, len, MapAccess::ReadWrite)
    }

    /// Maps `len` bytes from byte `offset` (a multiple of the page size): a partial mapping, or a
    /// read-only one, is still a reference that makes this process a holder of the whole buffer.
    pub fn map_range(&self, offset: u64, len: usize, access: MapAccess) -> Result<Mapping<'_>> {
        let map = SharedMap::new_range(self.fd.as_fd(), offset, len, access)
            .map_err(|e| Error::io("mmap of a dma-buf", e))?;
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
/// Other processes and devices may write the same pages at any time, so the bytes are never lent
/// out as slices: they are copied in and out, bounds-checked, inside a CPU access window
/// ([`Mapping::cpu_access`]) that lets the exporter keep caches coherent. A buffer can be mapped
/// any number of times; each mapping is one more VMA referencing it.
#[derive(Debug)]
pub struct Mapping<'a> {
    map: SharedMap,
    fd: BorrowedFd<'a>,
}

impl<'a> Mapping<'a> {
    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: mappings have at least one page.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Start address, as `/proc/<pid>/maps` shows it.
    pub fn addr(&self) -> usize {
        self.map.addr()
    }

    /// Starts a CPU access window (`DMA_BUF_IOCTL_SYNC` START); the returned guard copies bytes
    /// in and out and ends the window on drop or, to see the kernel's answer, with
    /// [`CpuAccess::end`].
    pub fn cpu_access(&self, access: SyncAccess) -> Result<CpuAccess<'_, 'a>> {
        sys::sync(self.fd, SyncPhase::Start, access)
            .map_err(|e| Error::io("DMA_BUF_IOCTL_SYNC start", e))?;
        Ok(CpuAccess { mapping: self, access, ended: false })
    }
}

/// An open CPU access window on a [`Mapping`]: reads need [`SyncAccess::Read`] or
/// [`SyncAccess::ReadWrite`], writes [`SyncAccess::Write`] or [`SyncAccess::ReadWrite`], so that
/// what the exporter was told matches what the CPU does. Offsets are from the mapping's start.
#[derive(Debug)]
pub struct CpuAccess<'m, 'a> {
    mapping: &'m Mapping<'a>,
    access: SyncAccess,
    ended: bool,
}

impl CpuAccess<'_, '_> {
    /// Copies `dst.len()` bytes at `offset` out of the mapping.
    pub fn read_to(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.allows(SyncAccess::Read)?;
        self.mapping.map.read_to(offset, dst).map_err(map_error)
    }

    /// Copies `src` into the mapping at `offset`.
    pub fn write_from(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.allows(SyncAccess::Write)?;
        self.mapping.map.write_from(offset, src).map_err(map_error)
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.allows(SyncAccess::Write)?;
        self.mapping.map.fill(offset, len, byte).map_err(map_error)
    }

    /// Ends the window (`DMA_BUF_IOCTL_SYNC` END) and reports failure, which dropping cannot.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        sys::sync(self.mapping.fd, SyncPhase::End, self.access)
            .map_err(|e| Error::io("DMA_BUF_IOCTL_SYNC end", e))
    }

    fn allows(&self, wanted: SyncAccess) -> Result<()> {
        if self.access == wanted || self.access == SyncAccess::ReadWrite {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "a CPU access window opened for {:?} does not allow {wanted:?}",
            self.access
        )))
    }
}

fn map_error(e: MapError) -> Error {
    Error::InvalidArgument(match e {
        MapError::OutOfBounds { offset, len, map_len } => {
            format!("{len} bytes at offset {offset} do not fit in a {map_len}-byte mapping")
        }
        MapError::ReadOnly => "the mapping is read-only".into(),
    })
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
