//! Snapshots that paged queries read from, one page per call, and the cursors that name them.
//!
//! A query too large for one binder reply is answered from a snapshot taken by its first call,
//! so that every page describes the same instant. The service cannot see a client give up, so
//! a snapshot ends when its last page is read, when it has been idle for [`IDLE`], or when its
//! caller (uid) opens more than [`PER_CALLER`] of them; and at most [`MAX_OPEN`] are open at once.
//! Memory held for clients is therefore bounded by `MAX_OPEN` snapshots, whatever they do.
//!
//! A cursor is `id << 32 | index`: the snapshot and where the next page starts. It carries the
//! index, so a page can be asked for again after a failed transaction; it is only honoured for
//! the caller and the query that opened the snapshot, so a guessed cursor reveals nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A snapshot nobody asked a page of for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(30);
/// Open snapshots per caller uid (of one kind); opening one more drops its least recently used.
pub const PER_CALLER: usize = 2;
/// Open snapshots in all (of one kind); opening one more drops the least recently used.
pub const MAX_OPEN: usize = 16;

/// Where a page starts: a new snapshot, or the next page of an open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Cursor 0: take a snapshot.
    Start,
    /// The page starting at item `index` of snapshot `id`.
    Resume {
        /// The snapshot.
        id: u32,
        /// Its first item on this page.
        index: u32,
    },
}

impl Cursor {
    /// Decodes a cursor received from a client; negative cursors are never sent.
    pub fn from_wire(cursor: i64) -> Result<Cursor> {
        let raw = u64::try_from(cursor).map_err(|_| Error::CursorExpired(cursor as u64))?;
        if raw == 0 {
            return Ok(Cursor::Start);
        }
        Ok(Cursor::Resume { id: (raw >> 32) as u32, index: raw as u32 })
    }

    /// The cursor of the page after the one ending before `next` (0 when nothing is left).
    pub fn next_to_wire(id: u32, next: Option<usize>) -> i64 {
        match next.and_then(|n| u32::try_from(n).ok()) {
            // Ids stay below 2^31, so the cursor is positive.
            Some(index) => (i64::from(id) << 32) | i64::from(index),
            None => 0,
        }
    }
}

#[derive(Debug)]
struct Slot<Q, D> {
    owner: u32,
    query: Q,
    data: Arc<D>,
    used: Instant,
}

#[derive(Debug)]
struct Open<Q, D> {
    /// Next id to hand out, 1..2^31 (0 is never an id: cursor 0 means "start").
    next_id: u32,
    slots: HashMap<u32, Slot<Q, D>>,
}

/// Open snapshots of one kind: `Q` is the query a snapshot answers, `D` its data.
#[derive(Debug)]
pub struct Snapshots<Q, D> {
    open: Mutex<Open<Q, D>>,
}

impl<Q: PartialEq, D> Default for Snapshots<Q, D> {
    fn default() -> Self {
        Snapshots { open: Mutex::new(Open { next_id: 1, slots: HashMap::new() }) }
    }
}

impl<Q: PartialEq, D> Snapshots<Q, D> {
    /// Keeps `data` for `owner`'s `query` and returns its id, dropping idle and excess
    /// snapshots first (see the [module docs](self)).
    pub fn open(&self, owner: u32, query: Q, data: Arc<D>) -> u32 {
        let mut open = self.lock();
        let now = Instant::now();
        open.slots.retain(|_, s| now.duration_since(s.used) < IDLE);
        while open.slots.values().filter(|s| s.owner == owner).count() >= PER_CALLER {
            open.drop_least_recent(|s| s.owner == owner);
        }
        while open.slots.len() >= MAX_OPEN {
            open.drop_least_recent(|_| true);
        }
        let id = open.next_id;
        open.next_id = if id >= i32::MAX as u32 { 1 } else { id + 1 };
        open.slots.insert(id, Slot { owner, query, data, used: now });
        if open.slots.capacity() > 4 * MAX_OPEN {
            open.slots.shrink_to(MAX_OPEN);
        }
        id
    }

    /// The data of snapshot `id` if it is open for this `owner` and `query`.
    pub fn get(&self, id: u32, owner: u32, query: &Q) -> Option<Arc<D>> {
        let mut open = self.lock();
        let slot = open.slots.get_mut(&id).filter(|s| s.owner == owner && s.query == *query)?;
        if slot.used.elapsed() >= IDLE {
            open.slots.remove(&id);
            return None;
        }
        slot.used = Instant::now();
        Some(Arc::clone(&slot.data))
    }

    /// Drops snapshot `id` (its last page was served).
    pub fn close(&self, id: u32) {
        self.lock().slots.remove(&id);
    }

    /// Drops snapshots idle for [`IDLE`]; returns how many are still open.
    pub fn expire(&self) -> usize {
        let mut open = self.lock();
        open.slots.retain(|_, s| s.used.elapsed() < IDLE);
        open.slots.len()
    }

    fn lock(&self) -> MutexGuard<'_, Open<Q, D>> {
        // Every critical section is a few map operations: a poisoned lock is still consistent.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<Q, D> Open<Q, D> {
    fn drop_least_recent(&mut self, pick: impl Fn(&Slot<Q, D>) -> bool) {
        let oldest = self.slots.iter().filter(|(_, s)| pick(s)).min_by_key(|(_, s)| s.used);
        if let Some(id) = oldest.map(|(&id, _)| id) {
            self.slots.remove(&id);
        }
    }
}

/// Resolves `cursor` for `owner`'s `query`: a new snapshot from `take` (cursor 0) or the open
/// one it names. Returns the snapshot's id, its data and the index the page starts at.
pub fn resolve<Q: PartialEq, D>(
    snapshots: &Snapshots<Q, D>,
    owner: u32,
    query: Q,
    cursor: i64,
    take: impl FnOnce() -> Result<D>,
) -> Result<(u32, Arc<D>, usize)> {
    match Cursor::from_wire(cursor)? {
        Cursor::Start => {
            let data = Arc::new(take()?);
            Ok((snapshots.open(owner, query, Arc::clone(&data)), data, 0))
        }
        Cursor::Resume { id, index } => {
            let data =
                snapshots.get(id, owner, &query).ok_or(Error::CursorExpired(cursor as u64))?;
            Ok((id, data, index as usize))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_zero_starts() {
        assert_eq!(Cursor::from_wire(0).unwrap(), Cursor::Start);
        let c = Cursor::next_to_wire(7, Some(12_345));
        assert!(c > 0);
        assert_eq!(Cursor::from_wire(c).unwrap(), Cursor::Resume { id: 7, index: 12_345 });
        assert_eq!(Cursor::next_to_wire(7, None), 0);
        let top = Cursor::next_to_wire(i32::MAX as u32, Some(u32::MAX as usize));
        assert_eq!(
            Cursor::from_wire(top).unwrap(),
            Cursor::Resume { id: i32::MAX as u32, index: u32::MAX }
        );
        assert!(matches!(Cursor::from_wire(-1), Err(Error::CursorExpired(_))));
    }

    #[test]
    fn snapshots_answer_only_their_owner_and_query_and_stay_bounded() {
        let s: Snapshots<i32, Vec<u8>> = Snapshots::default();
        let a = s.open(10, 1, Arc::new(vec![1]));
        assert_eq!(s.get(a, 10, &1).as_deref(), Some(&vec![1]));
        assert!(s.get(a, 11, &1).is_none(), "another uid");
        assert!(s.get(a, 10, &2).is_none(), "another query");
        let b = s.open(10, 1, Arc::new(vec![2]));
        // PER_CALLER is 2: both open.
        assert!(s.get(a, 10, &1).is_some() && s.get(b, 10, &1).is_some());
        let c = s.open(10, 1, Arc::new(vec![3]));
        assert!(s.get(a, 10, &1).is_none(), "least recently used of the caller dropped");
        assert!(s.get(b, 10, &1).is_some() && s.get(c, 10, &1).is_some());
        for uid in 100..100 + MAX_OPEN as u32 {
            s.open(uid, 1, Arc::new(vec![]));
        }
        assert_eq!(s.expire(), MAX_OPEN);
        s.close(c);
        assert!(s.get(c, 10, &1).is_none());
    }

    #[test]
    fn resolve_takes_once_then_resumes() {
        let s: Snapshots<(), u32> = Snapshots::default();
        let (id, data, start) = resolve(&s, 1, (), 0, || Ok(5)).unwrap();
        assert_eq!((*data, start), (5, 0));
        let cursor = Cursor::next_to_wire(id, Some(3));
        let (again, data, start) =
            resolve(&s, 1, (), cursor, || panic!("no new snapshot")).unwrap();
        assert_eq!((again, *data, start), (id, 5, 3));
        assert!(matches!(resolve(&s, 2, (), cursor, || Ok(0)), Err(Error::CursorExpired(_))));
    }
}
