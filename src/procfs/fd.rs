//! `/proc/<pid>/fd/<n>` link targets.
//!
//! The link text is the cheapest way to tell a dma-buf fd from the dozens of pipes, sockets and
//! files a process holds: one `readlink`, no extra open. Since Linux 5.3 the dma-buf pseudo
//! filesystem names its dentries `/dmabuf:<name>` (empty name: `/dmabuf:`); older kernels used an
//! anonymous inode shown as `anon_inode:dmabuf`.

/// What a fd link says about the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link<'a> {
    /// A dma-buf on the dmabuf pseudo filesystem; `stat` gives a unique inode and the size.
    DmaBuf {
        /// The buffer's name as the link shows it; empty when unset.
        name: &'a [u8],
    },
    /// A dma-buf on an anonymous inode (kernels before 5.3): every such buffer shares one inode,
    /// so its identity must come from fdinfo.
    AnonDmaBuf,
}

const DMABUF_PREFIX: &[u8] = b"/dmabuf:";
const ANON_DMABUF: &[u8] = b"anon_inode:dmabuf";

/// Classifies a link target; `None` for anything that is not a dma-buf.
pub fn classify_link(target: &[u8]) -> Option<Link<'_>> {
    if let Some(name) = target.strip_prefix(DMABUF_PREFIX) {
        Some(Link::DmaBuf { name })
    } else if target == ANON_DMABUF {
        Some(Link::AnonDmaBuf)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(
            classify_link(b"/dmabuf:CAMERA preview"),
            Some(Link::DmaBuf { name: b"CAMERA preview" })
        );
        assert_eq!(classify_link(b"/dmabuf:"), Some(Link::DmaBuf { name: b"" }));
        assert_eq!(classify_link(b"anon_inode:dmabuf"), Some(Link::AnonDmaBuf));
        assert_eq!(classify_link(b"anon_inode:[eventfd]"), None);
        assert_eq!(classify_link(b"socket:[1234]"), None);
        assert_eq!(classify_link(b"/dmabuf"), None);
        assert_eq!(classify_link(b"/data/dmabuf:x"), None);
        assert_eq!(classify_link(b""), None);
    }
}
