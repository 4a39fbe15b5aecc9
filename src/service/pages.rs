//! Replies that fit a binder transaction: an upper bound of each parcelable's encoded size, and
//! pages of a snapshot cut at [`PAGE_BYTES`].
//!
//! A reply must fit the receiver's binder buffer (about 1 MB, shared by every transaction in
//! flight to that process), so a page is bounded by encoded bytes, not by item count: names,
//! comms and holder lists make items differ in size by orders of magnitude.

use super::compat::aidl::{
    AppUsage::AppUsage, BufferInfo::BufferInfo, Handoff::Handoff, HeapUsage::HeapUsage,
    LedgerEntry::LedgerEntry, NameUsage::NameUsage, ProcessUsage::ProcessUsage,
    UidBalance::UidBalance,
};

/// Most encoded bytes of items in one reply: a quarter of the smallest binder buffer, so that a
/// client can have a few replies in flight.
pub const PAGE_BYTES: usize = 256 << 10;

/// An upper bound of the bytes an item takes in a parcel, per the AIDL wire format: 4-byte
/// aligned fields, strings as a length plus UTF-16 plus a NUL, byte arrays as a length plus the
/// bytes, each parcelable prefixed by its size and, in an array, a presence marker.
pub trait WireLen {
    /// Encoded bytes of `self`, at most.
    fn wire_len(&self) -> usize;
}

/// Size prefix plus array presence marker of a parcelable.
const PARCELABLE: usize = 8;

fn string(s: &str) -> usize {
    4 + ((s.encode_utf16().count() + 1) * 2).next_multiple_of(4)
}

fn byte_array(b: &[u8]) -> usize {
    4 + b.len().next_multiple_of(4)
}

impl WireLen for LedgerEntry {
    fn wire_len(&self) -> usize {
        PARCELABLE + 8 * 3 + 4 * 3 + string(&self.name) + string(&self.heap)
    }
}

impl WireLen for Handoff {
    fn wire_len(&self) -> usize {
        // A Holder is four ints and the comm.
        let holders: usize = self.holders.iter().map(|h| PARCELABLE + 16 + string(&h.comm)).sum();
        PARCELABLE + self.asked.wire_len() + 4 + holders
    }
}

impl WireLen for UidBalance {
    fn wire_len(&self) -> usize {
        PARCELABLE + 4 * 3 + 8 * 2
    }
}

impl WireLen for BufferInfo {
    fn wire_len(&self) -> usize {
        // A BufferRef is three ints.
        let refs = 4 + self.refs.len() * (PARCELABLE + 12);
        PARCELABLE
            + 8 * 2
            + string(&self.exporter)
            + string(&self.name)
            + refs
            + byte_array(&self.nameBytes)
    }
}

impl WireLen for ProcessUsage {
    fn wire_len(&self) -> usize {
        PARCELABLE + 4 * 2 + 8 * 4 + string(&self.comm)
    }
}

impl WireLen for AppUsage {
    fn wire_len(&self) -> usize {
        PARCELABLE + 4 * 2 + 8 * 2
    }
}

impl WireLen for NameUsage {
    fn wire_len(&self) -> usize {
        PARCELABLE + 4 + 8 + string(&self.name)
    }
}

impl WireLen for HeapUsage {
    fn wire_len(&self) -> usize {
        PARCELABLE + 4 + 8 + string(&self.exporter)
    }
}

/// The items of a snapshot from index `start` on (`items` yields them), as many as fit in
/// [`PAGE_BYTES`] and at least one (an item larger than a page goes alone). Returns them and the
/// index the next page starts at (`None` after the last).
pub fn cut<T: WireLen>(start: usize, items: impl Iterator<Item = T>) -> (Vec<T>, Option<usize>) {
    let mut page = Vec::new();
    let mut bytes = 0;
    for t in items {
        bytes += t.wire_len();
        if bytes > PAGE_BYTES && !page.is_empty() {
            let next = start + page.len();
            return (page, Some(next));
        }
        page.push(t);
    }
    (page, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(usize);
    impl WireLen for Item {
        fn wire_len(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn pages_are_bounded_complete_and_never_empty() {
        let sizes = [100, PAGE_BYTES - 100, 1, PAGE_BYTES + 5, 7];
        let mut start = 0;
        let mut pages = Vec::new();
        loop {
            let (page, next) = cut(start, sizes[start..].iter().map(|&n| Item(n)));
            pages.push(page.iter().map(|s| s.0).collect::<Vec<_>>());
            match next {
                Some(n) => start = n,
                None => break,
            }
        }
        assert_eq!(
            pages,
            vec![vec![100, PAGE_BYTES - 100], vec![1], vec![PAGE_BYTES + 5], vec![7]]
        );
        let (empty, next) = cut(0, std::iter::empty::<Item>());
        assert!(empty.is_empty() && next.is_none());
    }

    #[test]
    fn strings_count_utf16_units_and_the_nul() {
        assert_eq!(string(""), 8);
        assert_eq!(string("a"), 8);
        assert_eq!(string("abc"), 12);
        // U+1F600 is two UTF-16 units.
        assert_eq!(string("\u{1F600}"), 4 + 8);
        assert_eq!(byte_array(b"abcde"), 12);
    }
}
