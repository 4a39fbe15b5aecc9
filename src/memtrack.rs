//! What the memtrack HAL (`android.hardware.memtrack.IMemtrack`, AIDL V1) answers for a pid,
//! from an accounting [`Model`]: pure, so the service adapter only converts types.
//!
//! `dumpsys meminfo` asks memtrack per pid and type and sums the records libmemtrack returns:
//! all records of a type for its "total", those flagged `SMAPS_UNACCOUNTED` for its "pss"
//! (`system/memory/libmemtrack`). So the records of one type must not overlap, and a shared
//! buffer must count once across its holders: each type gets two records, the bytes of the
//! pid's buffers no other process holds (`PRIVATE`) and the pid's Pss share of the others
//! (`SHARED_PSS`), both `SMAPS_UNACCOUNTED`: dma-buf heap mappings are `remap_pfn_range` pages,
//! which smaps does not count (tests/vm_memtrack.rs checks the Rss smaps shows is 0), so the
//! bytes are not already in the pid's smaps Pss.
//!
//! `GRAPHICS` is every dma-buf the pid references; `GL`, `CAMERA` and `MULTIMEDIA` are the
//! buffers whose purpose name starts with that type's prefix (defaults in
//! [`PrefixMap::default`], the longest matching prefix wins) and `OTHER` the rest (unnamed
//! buffers included), so `GL + CAMERA + MULTIMEDIA + OTHER = GRAPHICS`.

use crate::account::{pss_share, Model};

/// `MemtrackRecord.FLAG_SMAPS_UNACCOUNTED`.
pub const FLAG_SMAPS_UNACCOUNTED: i32 = 4;
/// `MemtrackRecord.FLAG_SHARED_PSS`.
pub const FLAG_SHARED_PSS: i32 = 16;
/// `MemtrackRecord.FLAG_PRIVATE`.
pub const FLAG_PRIVATE: i32 = 32;

/// `MemtrackType`, with the values of the frozen V1 enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemtrackType {
    /// `OTHER = 0`: buffers no prefix claims.
    Other,
    /// `GL = 1`.
    Gl,
    /// `GRAPHICS = 2`: every dma-buf of the pid.
    Graphics,
    /// `MULTIMEDIA = 3`.
    Multimedia,
    /// `CAMERA = 4`.
    Camera,
}

impl MemtrackType {
    /// The type of a wire value; `None` for values V1 does not define.
    pub fn from_wire(value: i32) -> Option<Self> {
        Some(match value {
            0 => MemtrackType::Other,
            1 => MemtrackType::Gl,
            2 => MemtrackType::Graphics,
            3 => MemtrackType::Multimedia,
            4 => MemtrackType::Camera,
            _ => return None,
        })
    }

    /// Parses a type name as `--memtrack-prefix` spells it (`gl`, `camera`, `multimedia`).
    fn prefixed(name: &str) -> Option<Self> {
        match name {
            "gl" => Some(MemtrackType::Gl),
            "camera" => Some(MemtrackType::Camera),
            "multimedia" => Some(MemtrackType::Multimedia),
            _ => None,
        }
    }
}

/// One `MemtrackRecord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// `FLAG_*` bits.
    pub flags: i32,
    /// Bytes.
    pub size: u64,
}

/// Which purpose-name prefix selects which type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixMap(Vec<(Vec<u8>, MemtrackType)>);

impl Default for PrefixMap {
    /// `GL` → GL, `CAMERA` → CAMERA, `codec` → MULTIMEDIA: the names Android's graphics, camera
    /// and media stacks give their buffers.
    fn default() -> Self {
        PrefixMap(vec![
            (b"GL".to_vec(), MemtrackType::Gl),
            (b"CAMERA".to_vec(), MemtrackType::Camera),
            (b"codec".to_vec(), MemtrackType::Multimedia),
        ])
    }
}

impl PrefixMap {
    /// Builds a map from `TYPE=PREFIX` entries (`gl=GL`, `camera=CAMERA`, `multimedia=codec`);
    /// several prefixes may select one type. An empty list gives the default map.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> crate::Result<Self> {
        if entries.is_empty() {
            return Ok(PrefixMap::default());
        }
        let mut map = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref();
            let bad = || {
                crate::Error::InvalidArgument(format!(
                    "memtrack prefix '{entry}': want TYPE=PREFIX, TYPE one of gl, camera, \
                     multimedia, PREFIX not empty"
                ))
            };
            let (name, prefix) = entry.split_once('=').ok_or_else(bad)?;
            let kind = MemtrackType::prefixed(name).ok_or_else(bad)?;
            if prefix.is_empty() {
                return Err(bad());
            }
            map.push((prefix.as_bytes().to_vec(), kind));
        }
        Ok(PrefixMap(map))
    }

    /// The type of a buffer named `name`: the longest matching prefix's, else OTHER.
    pub fn classify(&self, name: &[u8]) -> MemtrackType {
        self.0
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(MemtrackType::Other, |&(_, kind)| kind)
    }
}

/// The records of `kind` for `pid` (always two, see the [module docs](self)): private bytes,
/// then the Pss of shared buffers. A pid that holds no dma-buf gets two zero records.
pub fn records(model: &Model, prefixes: &PrefixMap, pid: i32, kind: MemtrackType) -> [Record; 2] {
    let (mut private, mut shared_pss) = (0u64, 0u64);
    for buf in model.buffers.values() {
        if !buf.fd_refs.contains_key(&pid) && !buf.map_refs.contains_key(&pid) {
            continue;
        }
        if kind != MemtrackType::Graphics {
            let name = buf.name.as_ref().map_or(&[][..], |n| n.as_bytes());
            if prefixes.classify(name) != kind {
                continue;
            }
        }
        let holders = buf.holders();
        if holders.len() == 1 {
            private = private.saturating_add(buf.size);
        } else {
            let rank = holders.iter().position(|&p| p == pid).unwrap_or_default();
            shared_pss = shared_pss.saturating_add(pss_share(buf.size, holders.len(), rank));
        }
    }
    [
        Record { flags: FLAG_SMAPS_UNACCOUNTED | FLAG_PRIVATE, size: private },
        Record { flags: FLAG_SMAPS_UNACCOUNTED | FLAG_SHARED_PSS, size: shared_pss },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Buffer, Name, PidCounts};

    fn buffer(inode: u64, size: u64, name: Option<&[u8]>, fds: &[i32], maps: &[i32]) -> Buffer {
        Buffer {
            inode,
            size,
            name: name.map(Name::from),
            fd_refs: fds.iter().map(|&p| (p, 1)).collect::<PidCounts>(),
            map_refs: maps.iter().map(|&p| (p, 1)).collect(),
            ..Buffer::default()
        }
    }

    fn model() -> Model {
        let mut m = Model::default();
        for b in [
            buffer(1, 8192, Some(b"GL:tex"), &[10], &[]),
            // Shared by 10 and 20, mapped only by 20: 3 bytes remainder go to pid 10 first.
            buffer(2, 4099, Some(b"GLES"), &[10], &[20]),
            buffer(3, 4096, Some(b"CAMERA preview"), &[10], &[10]),
            buffer(4, 65536, Some(b"codec:avc"), &[10, 20, 30], &[]),
            buffer(5, 1024, None, &[10], &[]),
            buffer(6, 2048, Some(b"gl lower case"), &[10], &[]),
            buffer(7, 1 << 20, Some(b"GL"), &[30], &[]),
        ] {
            m.buffers.insert(b.inode, b);
        }
        m
    }

    fn sizes(pid: i32, kind: MemtrackType) -> (u64, u64) {
        let [private, shared] = records(&model(), &PrefixMap::default(), pid, kind);
        assert_eq!(private.flags, FLAG_SMAPS_UNACCOUNTED | FLAG_PRIVATE);
        assert_eq!(shared.flags, FLAG_SMAPS_UNACCOUNTED | FLAG_SHARED_PSS);
        (private.size, shared.size)
    }

    #[test]
    fn types_split_graphics_by_prefix() {
        assert_eq!(sizes(10, MemtrackType::Gl), (8192, 2050));
        assert_eq!(sizes(10, MemtrackType::Camera), (4096, 0));
        assert_eq!(sizes(10, MemtrackType::Multimedia), (0, 21846));
        assert_eq!(sizes(10, MemtrackType::Other), (1024 + 2048, 0));
        let graphics = sizes(10, MemtrackType::Graphics);
        assert_eq!(graphics, (8192 + 4096 + 1024 + 2048, 2050 + 21846));
        assert_eq!(sizes(20, MemtrackType::Gl), (0, 2049));
        assert_eq!(sizes(30, MemtrackType::Graphics), (1 << 20, 21845));
        assert_eq!(sizes(99, MemtrackType::Graphics), (0, 0));
    }

    #[test]
    fn shared_pss_sums_to_the_buffer_size_across_holders() {
        let total: u64 = [10, 20, 30].iter().map(|&p| sizes(p, MemtrackType::Multimedia).1).sum();
        assert_eq!(total, 65536);
    }

    #[test]
    fn prefix_map_parses_and_longest_prefix_wins() {
        let map = PrefixMap::parse(&["gl=GL", "camera=GL cam", "multimedia=vid"]).unwrap();
        assert_eq!(map.classify(b"GL cam 1"), MemtrackType::Camera);
        assert_eq!(map.classify(b"GLES"), MemtrackType::Gl);
        assert_eq!(map.classify(b"video"), MemtrackType::Multimedia);
        assert_eq!(map.classify(b"codec"), MemtrackType::Other);
        assert_eq!(map.classify(b""), MemtrackType::Other);
        assert_eq!(PrefixMap::parse::<&str>(&[]).unwrap(), PrefixMap::default());
        for bad in ["gl", "graphics=GL", "other=x", "gl=", "=GL"] {
            assert!(PrefixMap::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn wire_types_are_v1s() {
        let all: Vec<_> = (-1..6).map(MemtrackType::from_wire).collect();
        assert_eq!(
            all,
            [
                None,
                Some(MemtrackType::Other),
                Some(MemtrackType::Gl),
                Some(MemtrackType::Graphics),
                Some(MemtrackType::Multimedia),
                Some(MemtrackType::Camera),
                None
            ]
        );
    }
}
