//! Asked-by versus held-by: the ledger joined with a live scan.
//!
//! A central allocator is blamed for every buffer it makes when only `/proc` is read, and a
//! client that asked for a buffer may have handed it on (a camera HAL to the compositor) and
//! closed its own fd. The ledger knows who asked; a scan knows who holds each buffer now. This
//! module puts both in one view: for every live buffer the service handed out, who asked (uid,
//! pid, name, time) and who holds it now (processes by fd or mapping), or nobody, which means
//! only the kernel does: a device still uses it, an fd is in flight over a socket, or it leaked.
//! Per uid it sets the bytes the uid asked for that are still alive against the bytes of those
//! buffers its processes hold now: an asker that holds none of its bytes handed them all on.
//!
//! Only buffers the scan saw are joined: a ledger entry whose buffer is not in the scan died
//! (entries are pruned lazily). Kernel-only buffers are in a scan when the kernel lists its
//! buffers (debugfs or sysfs), which the service needs anyway to prune its ledger.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::account::Model;
use crate::ledger::Entry;

/// A process holding a buffer now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// Thread-group id.
    pub pid: i32,
    /// Real uid.
    pub uid: u32,
    /// Command name, from `/proc/<pid>/status`.
    pub comm: String,
    /// Fds of the process that refer to the buffer.
    pub fds: u32,
    /// Mappings (VMAs) of the buffer in the process.
    pub maps: u32,
}

/// One live buffer the service handed out: who asked, who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handoff {
    /// The ledger's record: who asked, when, for what (the whole name).
    pub asked: Entry,
    /// Processes holding it now, ascending pid; empty when only the kernel does.
    pub holders: Vec<Holder>,
}

impl Handoff {
    /// True when no process holds the buffer (a device, an fd in flight, or a leak).
    pub fn is_kernel_only(&self) -> bool {
        self.holders.is_empty()
    }
}

/// Per uid: bytes asked for and still alive against bytes of those buffers held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UidBalance {
    /// The uid.
    pub uid: u32,
    /// Bytes of live buffers the uid asked for (attributed entries only).
    pub asked_bytes: u64,
    /// Number of those buffers.
    pub asked_buffers: u32,
    /// Bytes of distinct joined buffers that processes of the uid hold now.
    pub held_bytes: u64,
    /// Number of those buffers.
    pub held_buffers: u32,
}

/// The joined view of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Handoffs {
    /// When the view was taken, milliseconds since the Unix epoch: ages are relative to this.
    pub taken_millis: u64,
    /// Oldest first (ties by inode), the ledger's order.
    pub buffers: Vec<Handoff>,
    /// Every uid that asked for or holds a joined buffer, ascending.
    pub uids: Vec<UidBalance>,
}

/// Joins ledger `entries` (oldest first, as [`crate::ledger::Ledger::entries`] returns them)
/// with the scan `model`, taken at `taken_millis`.
pub fn join(entries: Vec<Entry>, model: &Model, taken_millis: u64) -> Handoffs {
    let mut balances: BTreeMap<u32, UidBalance> = BTreeMap::new();
    let mut buffers = Vec::new();
    for asked in entries {
        let Some(buf) = model.buffers.get(&asked.inode) else {
            continue;
        };
        let holders: Vec<Holder> = buf
            .holders()
            .into_iter()
            .filter_map(|pid| {
                let p = model.processes.get(&pid)?;
                Some(Holder {
                    pid,
                    uid: p.uid,
                    comm: p.comm.clone(),
                    fds: buf.fd_refs.get(&pid).copied().unwrap_or(0),
                    maps: buf.map_refs.get(&pid).copied().unwrap_or(0),
                })
            })
            .collect();
        if asked.attributed {
            let b = balance(&mut balances, asked.uid);
            b.asked_bytes = b.asked_bytes.saturating_add(asked.size);
            b.asked_buffers += 1;
        }
        let holding: BTreeSet<u32> = holders.iter().map(|h| h.uid).collect();
        for uid in holding {
            let b = balance(&mut balances, uid);
            b.held_bytes = b.held_bytes.saturating_add(asked.size);
            b.held_buffers += 1;
        }
        buffers.push(Handoff { asked, holders });
    }
    Handoffs { taken_millis, buffers, uids: balances.into_values().collect() }
}

fn balance(balances: &mut BTreeMap<u32, UidBalance>, uid: u32) -> &mut UidBalance {
    balances.entry(uid).or_insert(UidBalance {
        uid,
        asked_bytes: 0,
        asked_buffers: 0,
        held_bytes: 0,
        held_buffers: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{Buffer, Process};

    fn entry(inode: u64, uid: u32, pid: i32, name: &str) -> Entry {
        Entry {
            inode,
            size: inode << 20,
            name: name.into(),
            heap: "system".into(),
            uid,
            pid,
            time_millis: 1000 + inode,
            attributed: true,
        }
    }

    #[test]
    fn a_handed_on_buffer_is_asked_by_one_uid_and_held_by_another() {
        let mut model = Model::default();
        for (pid, uid, comm) in [(10, 1047, "cameraserver"), (20, 1000, "surfaceflinger")] {
            model.processes.insert(pid, Process { pid, uid, comm: comm.into() });
        }
        let mut add = |inode: u64, fds: &[i32], maps: &[i32]| {
            let buf = Buffer {
                inode,
                size: inode << 20,
                fd_refs: fds.iter().map(|&p| (p, 1)).collect(),
                map_refs: maps.iter().map(|&p| (p, 2)).collect(),
                ..Buffer::default()
            };
            model.buffers.insert(inode, buf);
        };
        add(1, &[20], &[20]); // camera asked, compositor holds
        add(2, &[10], &[]); // camera asked and holds
        add(3, &[], &[]); // kernel only
        let rebuilt = Entry {
            uid: crate::ledger::UNKNOWN_UID,
            pid: crate::ledger::UNKNOWN_PID,
            attributed: false,
            ..entry(4, 0, 0, "old")
        };
        add(4, &[20], &[]);
        let entries = vec![
            entry(1, 1047, 10, "CAMERA preview"),
            entry(2, 1047, 10, "CAMERA"),
            entry(3, 1047, 10, "CAMERA lost"),
            rebuilt,
            entry(9, 1047, 10, "freed since"),
        ];
        let view = join(entries, &model, 5000);
        let rows: Vec<_> = view
            .buffers
            .iter()
            .map(|h| {
                let holders: Vec<_> = h.holders.iter().map(|x| (x.pid, x.fds, x.maps)).collect();
                (h.asked.inode, h.asked.uid, h.is_kernel_only(), holders)
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (1, 1047, false, vec![(20, 1, 2)]),
                (2, 1047, false, vec![(10, 1, 0)]),
                (3, 1047, true, vec![]),
                (4, u32::MAX, false, vec![(20, 1, 0)]),
            ]
        );
        assert_eq!(view.buffers[0].holders[0].comm, "surfaceflinger");
        assert_eq!(
            view.uids,
            vec![
                UidBalance {
                    uid: 1000,
                    asked_bytes: 0,
                    asked_buffers: 0,
                    held_bytes: 5 << 20,
                    held_buffers: 2
                },
                UidBalance {
                    uid: 1047,
                    asked_bytes: 6 << 20,
                    asked_buffers: 3,
                    held_bytes: 2 << 20,
                    held_buffers: 1
                },
            ]
        );
        assert_eq!(view.taken_millis, 5000);
    }
}
