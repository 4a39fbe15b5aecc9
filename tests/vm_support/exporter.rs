//! Named dma-bufs for tests from whichever exporter the kernel has: the system heap where there is
//! one, else vgem (a DRM dumb buffer exported through PRIME and named with `DMA_BUF_SET_NAME`).
//! Debian's 5.10 and 6.1 kernels have no dma-buf heaps but do have vgem, so accounting is proven
//! there too, on buffers of another exporter.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use dmabufd::heap::{AllocRequest, Allocator};
use dmabufd::name::{set_name, BufName};
use dmabufd::sys;

/// Where test buffers come from on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exporter {
    /// `/dev/dma_heap/system`.
    SystemHeap,
    /// vgem through DRM PRIME.
    Vgem,
}

impl Exporter {
    /// The system heap if the kernel has it, else vgem.
    pub fn detect() -> Exporter {
        if Path::new("/dev/dma_heap/system").exists() {
            Exporter::SystemHeap
        } else {
            Exporter::Vgem
        }
    }

    /// The `exp_name` the kernel prints for this exporter's buffers (fdinfo, bufinfo): PRIME
    /// exports carry the DRM core's module name, not the driver's.
    pub fn exp_name(self) -> &'static str {
        match self {
            Exporter::SystemHeap => "system",
            Exporter::Vgem => "drm",
        }
    }

    /// A buffer of `size` bytes (a multiple of the page size) named `name`.
    pub fn dma_buf(self, name: &str, size: u64) -> OwnedFd {
        match self {
            Exporter::SystemHeap => Allocator::new()
                .allocate(&AllocRequest {
                    heap: "system",
                    size,
                    name: name.as_bytes(),
                    heap_flags: 0,
                })
                .unwrap_or_else(|e| panic!("allocating {name}: {e}"))
                .into_owned_fd(),
            Exporter::Vgem => {
                let vgem = Drm::vgem().expect("vgem (neither dma-buf heaps nor vgem?)");
                let fd = vgem.dma_buf(size);
                let name = BufName::new(name.as_bytes()).expect("a valid name");
                set_name(fd.as_fd(), &name).unwrap_or_else(|e| panic!("naming {name}: {e}"));
                fd
            }
        }
    }
}

/// A named buffer of `size` bytes from [`Exporter::detect`].
pub fn dma_buf(name: &str, size: u64) -> OwnedFd {
    Exporter::detect().dma_buf(name, size)
}

/// An open DRM device: vgem, or the cirrus display QEMU gets as a second DRM device.
#[derive(Debug)]
pub struct Drm {
    dev: OwnedFd,
}

/// Bytes per row of the dumb buffers made here: 1024 pixels of 32 bits, one page.
const ROW: u64 = 4096;

/// The first `/dev/dri/cardN` whose sysfs device link satisfies `is`.
fn find_card(is: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let dir = std::fs::read_dir("/sys/class/drm").ok()?;
    let mut cards: Vec<_> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix("card")?;
            n.bytes().all(|b| b.is_ascii_digit()).then_some((n.to_owned(), e.path()))
        })
        .collect();
    cards.sort();
    cards
        .into_iter()
        .find_map(|(n, path)| is(&path).then(|| PathBuf::from(format!("/dev/dri/card{n}"))))
}

fn open_card(card: PathBuf) -> Drm {
    Drm { dev: sys::open_drm(&card).unwrap_or_else(|e| panic!("{}: {e}", card.display())) }
}

impl Drm {
    /// Opens vgem (its device is vgem's platform device); `None` if the kernel has none.
    pub fn vgem() -> Option<Drm> {
        let card = find_card(|c| {
            std::fs::read_link(c.join("device"))
                .is_ok_and(|d| d.file_name() == Some("vgem".as_ref()))
        })?;
        Some(open_card(card))
    }

    /// Opens the cirrus display's DRM device (tests/vm/run adds one where the driver is a
    /// module): an importer for vgem's own buffers, which vgem itself imports without attaching.
    pub fn cirrus() -> Option<Drm> {
        let card = find_card(|c| {
            std::fs::read_link(c.join("device/driver")).is_ok_and(|d| {
                d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cirrus"))
            })
        })?;
        Some(open_card(card))
    }

    /// An unnamed dma-buf of exactly `size` bytes (a positive multiple of [`ROW`]).
    pub fn dma_buf(&self, size: u64) -> OwnedFd {
        assert!(size > 0 && size % ROW == 0, "vgem buffers here are whole pages, not {size}");
        let height = u32::try_from(size / ROW).expect("size");
        let dumb = sys::drm_create_dumb(self.dev.as_fd(), 1024, height, 32).expect("create dumb");
        assert_eq!(dumb.size, size, "vgem rounded {size} bytes");
        let fd = sys::drm_prime_export(self.dev.as_fd(), dumb.handle).expect("PRIME export");
        // The dma-buf holds its own reference to the object.
        sys::drm_gem_close(self.dev.as_fd(), dumb.handle).expect("GEM close");
        fd
    }

    /// Imports `buf` (another device's buffer), which attaches this device to it until the
    /// returned guard drops.
    pub fn attach<'a>(&'a self, buf: BorrowedFd<'_>) -> Result<Attached<'a>, sys::Errno> {
        let handle = sys::drm_prime_import(self.dev.as_fd(), buf)?;
        Ok(Attached { drm: self, handle })
    }
}

/// An imported buffer's GEM handle: the device is attached to the buffer while it lives.
#[derive(Debug)]
pub struct Attached<'a> {
    drm: &'a Drm,
    handle: u32,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        sys::drm_gem_close(self.drm.dev.as_fd(), self.handle).expect("GEM close");
    }
}
