//! Checks shared by the fuzz targets.
//!
//! Each target feeds libFuzzer's bytes to one parser or validator and asserts what must hold for
//! every input: no panic (libFuzzer reports it), output bounded by input (hostile input must not
//! make the parser allocate more than a constant factor of what it read), and agreement with a
//! simpler formulation or a round trip where one is cheap.

/// `text` came from `input` through `String::from_utf8_lossy`: each invalid input byte becomes
/// at most one U+FFFD (3 bytes), so the text is at most three times the input.
pub fn assert_bounded(text: &str, input: &[u8]) {
    assert!(
        text.len() <= 3 * input.len(),
        "{} bytes of text from {} bytes of input",
        text.len(),
        input.len()
    );
}

/// A buffer name as DMA_BUF_SET_NAME would store it from `data`: NUL bytes dropped (the
/// kernel stops at the first), at most 31 bytes.
pub fn kernel_name(data: &[u8]) -> Vec<u8> {
    data.iter().copied().filter(|&b| b != 0).take(dmabufd::procfs::bufinfo::MAX_NAME_LEN).collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `part` is borrowed from `whole` (zero-copy parsers must not invent bytes).
pub fn is_within(part: &[u8], whole: &[u8]) -> bool {
    let (start, end) = (whole.as_ptr() as usize, whole.as_ptr() as usize + whole.len());
    let p = part.as_ptr() as usize;
    part.is_empty() || (p >= start && p + part.len() <= end)
}

/// The `alloc_request` target's input, decoded from bytes with a fixed layout so that seeds are
/// easy to write by hand (`fuzz/seed-by-hand`): size as i64 LE (bytes 0..8), heap flags as
/// i64 LE (8..16), heap name length as u16 LE (16..18), the heap name, then the purpose name
/// (the rest). Missing bytes read as zero.
#[derive(Debug)]
pub struct AllocInput<'a> {
    /// AIDL `long size`.
    pub size: i64,
    /// AIDL `long heapFlags`, as the wire carries it.
    pub heap_flags: i64,
    /// AIDL `String heap`, before the UTF-8 check the binder layer makes.
    pub heap: &'a [u8],
    /// AIDL `String name`, as bytes.
    pub name: &'a [u8],
}

impl<'a> AllocInput<'a> {
    /// Decodes the layout above; never fails.
    pub fn decode(data: &'a [u8]) -> Self {
        let mut fixed = [0u8; 18];
        let head = data.len().min(fixed.len());
        fixed[..head].copy_from_slice(&data[..head]);
        let rest = &data[head..];
        let [s0, s1, s2, s3, s4, s5, s6, s7, f0, f1, f2, f3, f4, f5, f6, f7, l0, l1] = fixed;
        let heap_len = usize::from(u16::from_le_bytes([l0, l1])).min(rest.len());
        let (heap, name) = rest.split_at(heap_len);
        AllocInput {
            size: i64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            heap_flags: i64::from_le_bytes([f0, f1, f2, f3, f4, f5, f6, f7]),
            heap,
            name,
        }
    }
}
