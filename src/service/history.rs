//! The service's allocations over time: per-uid and per-name high-water marks and a ring of
//! samples, in bounded memory.
//!
//! A leak shows as growth, and a peak that came and went is gone from any scan. The service sees
//! every allocation, so it keeps the peaks itself. It counts what the ledger counts: an
//! allocation adds its bytes when it is recorded, a freed buffer's bytes go when the ledger is
//! pruned (the service cannot see a buffer die). So the history is fed at exactly those two
//! points, [`History::allocated`] and [`History::pruned`], each with the ledger's numbers.
//!
//! Memory: at most [`MAX_MARKS`] marks of each kind and [`MAX_SAMPLES`] samples, so that the
//! whole history fits one binder reply (IAccounting.getHistory); a name is at most 128 bytes.
//! When a kind is full, the eighth of its marks with the lowest peaks among those at 0 bytes now
//! (then the lowest peaks) make room: a small finished peak is the least interesting to forget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

use serde::Serialize;

use crate::account::Name;
use crate::ledger::Ledger;
use crate::report::{self, pretty_json, simple_table, utc_timestamp};

/// Most marks kept per kind (uids, names).
pub const MAX_MARKS: usize = 256;
/// Samples kept, the latest.
pub const MAX_SAMPLES: usize = 1024;

/// The high-water mark of one uid or name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Most bytes at once since the last reset.
    pub peak_bytes: u64,
    /// When the peak was reached, milliseconds since the epoch.
    pub peak_millis: u64,
    /// Bytes now (as of the last allocation or prune).
    pub current_bytes: u64,
}

impl Mark {
    fn update(&mut self, bytes: u64, now: u64) {
        self.current_bytes = bytes;
        if bytes > self.peak_bytes {
            self.peak_bytes = bytes;
            self.peak_millis = now;
        }
    }
}

/// The ledger's totals at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub time_millis: u64,
    /// Bytes of every entry.
    pub bytes: u64,
    /// Number of entries.
    pub buffers: u32,
}

/// What [`History::view`] returns: marks by key, samples oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Start-up or the last reset, milliseconds since the epoch.
    pub since_millis: u64,
    /// Marks per uid.
    pub uids: BTreeMap<u32, Mark>,
    /// Marks per name.
    pub names: BTreeMap<Name, Mark>,
    /// The latest samples, oldest first.
    pub samples: Vec<Sample>,
}

impl View {
    /// For people: since when, the marks per uid and per name (exact bytes, UTC times), and
    /// the samples, oldest first.
    pub fn table(&self) -> String {
        let mark_rows = |key: String, m: &Mark| {
            vec![
                key,
                m.peak_bytes.to_string(),
                utc_timestamp(m.peak_millis),
                m.current_bytes.to_string(),
            ]
        };
        let uids: report::Rows =
            self.uids.iter().map(|(uid, m)| mark_rows(uid.to_string(), m)).collect();
        let names: report::Rows =
            self.names.iter().map(|(n, m)| mark_rows(n.to_string(), m)).collect();
        let samples: report::Rows = self
            .samples
            .iter()
            .map(|s| vec![utc_timestamp(s.time_millis), s.bytes.to_string(), s.buffers.to_string()])
            .collect();
        let mut out = format!("history since {} UTC\n\n", utc_timestamp(self.since_millis));
        out.push_str(&simple_table(&["Uid", "Peak", "Peak at (UTC)", "Now"], uids));
        if !names.is_empty() || !samples.is_empty() {
            out.push('\n');
            out.push_str(&simple_table(&["Name", "Peak", "Peak at (UTC)", "Now"], names));
            out.push('\n');
            out.push_str(&simple_table(&["Sample (UTC)", "Bytes", "Buffers"], samples));
        }
        out
    }

    /// For programs: `since_millis`, `uids` and `names` (arrays of marks with their `uid` or
    /// `name`), `samples`.
    pub fn json(&self) -> crate::Result<String> {
        #[derive(Serialize)]
        struct Keyed<'a, K: Serialize> {
            #[serde(flatten)]
            key: K,
            #[serde(flatten)]
            mark: &'a Mark,
        }
        #[derive(Serialize)]
        struct UidKey {
            uid: u32,
        }
        #[derive(Serialize)]
        struct NameKey<'a> {
            #[serde(flatten, serialize_with = "Name::serialize_field")]
            name: &'a Name,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            since_millis: u64,
            uids: Vec<Keyed<'a, UidKey>>,
            names: Vec<Keyed<'a, NameKey<'a>>>,
            samples: &'a [Sample],
        }
        pretty_json(&Json {
            since_millis: self.since_millis,
            uids: self
                .uids
                .iter()
                .map(|(&uid, mark)| Keyed { key: UidKey { uid }, mark })
                .collect(),
            names: self
                .names
                .iter()
                .map(|(name, mark)| Keyed { key: NameKey { name }, mark })
                .collect(),
            samples: &self.samples,
        })
    }
}

/// The history itself; the service keeps it behind a mutex taken after the ledger's.
#[derive(Debug)]
pub struct History {
    since_millis: u64,
    uids: HashMap<u32, Mark>,
    names: HashMap<Name, Mark>,
    samples: VecDeque<Sample>,
}

impl History {
    /// An empty history starting at `now` (milliseconds since the epoch).
    pub fn new(now: u64) -> Self {
        History {
            since_millis: now,
            uids: HashMap::new(),
            names: HashMap::new(),
            samples: VecDeque::new(),
        }
    }

    /// After `ledger` recorded an allocation for `uid` named `name`.
    pub fn allocated(&mut self, ledger: &Ledger, uid: u32, name: &Name, now: u64) {
        update(&mut self.uids, &uid, ledger.outstanding(uid), now);
        update(&mut self.names, name, ledger.name_bytes(name), now);
        self.sample(ledger, now);
    }

    /// After `ledger` was pruned: every mark's current bytes may have dropped.
    pub fn pruned(&mut self, ledger: &Ledger, now: u64) {
        for (uid, m) in &mut self.uids {
            m.update(ledger.outstanding(*uid), now);
        }
        for (name, m) in &mut self.names {
            m.update(ledger.name_bytes(name), now);
        }
        self.sample(ledger, now);
    }

    /// Starts afresh at `now`: every peak becomes the current bytes, the samples go, and marks
    /// at 0 bytes are forgotten.
    pub fn reset(&mut self, now: u64) {
        self.since_millis = now;
        self.samples.clear();
        reset(&mut self.uids, now);
        reset(&mut self.names, now);
    }

    /// A copy: every mark, or (`only`) the mark of one uid and no names or samples.
    pub fn view(&self, only: Option<u32>) -> View {
        let uids = self
            .uids
            .iter()
            .filter(|(uid, _)| only.is_none_or(|o| o == **uid))
            .map(|(&uid, &m)| (uid, m))
            .collect();
        let (names, samples) = match only {
            Some(_) => (BTreeMap::new(), Vec::new()),
            None => (
                self.names.iter().map(|(n, &m)| (n.clone(), m)).collect(),
                self.samples.iter().copied().collect(),
            ),
        };
        View { since_millis: self.since_millis, uids, names, samples }
    }

    fn sample(&mut self, ledger: &Ledger, now: u64) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        let buffers = u32::try_from(ledger.len()).unwrap_or(u32::MAX);
        self.samples.push_back(Sample { time_millis: now, bytes: ledger.bytes(), buffers });
    }
}

fn reset<K>(marks: &mut HashMap<K, Mark>, now: u64) {
    marks.retain(|_, m| m.current_bytes > 0);
    for m in marks.values_mut() {
        *m = Mark { peak_bytes: m.current_bytes, peak_millis: now, current_bytes: m.current_bytes };
    }
}

/// Sets the current bytes of `key`'s mark, making one (and room for it) if there is none.
fn update<K: Eq + Hash + Clone>(marks: &mut HashMap<K, Mark>, key: &K, bytes: u64, now: u64) {
    if let Some(m) = marks.get_mut(key) {
        m.update(bytes, now);
        return;
    }
    make_room(marks);
    let mut m = Mark { peak_bytes: 0, peak_millis: now, current_bytes: 0 };
    m.update(bytes, now);
    marks.insert(key.clone(), m);
}

/// Marks forgotten at once when a kind is full: a walk of every mark for each new key would
/// cost each allocation of a client cycling through new names that walk.
const EVICT: usize = MAX_MARKS / 8;

/// Forgets the [`EVICT`] least interesting marks if `marks` is full (see the
/// [module docs](self)).
fn make_room<K: Eq + Hash + Clone>(marks: &mut HashMap<K, Mark>) {
    if marks.len() < MAX_MARKS {
        return;
    }
    let mut ranked: Vec<(bool, u64, &K)> =
        marks.iter().map(|(k, m)| (m.current_bytes > 0, m.peak_bytes, k)).collect();
    ranked.select_nth_unstable_by_key(EVICT - 1, |&(busy, peak, _)| (busy, peak));
    let victims: Vec<K> = ranked[..EVICT].iter().map(|&(_, _, k)| k.clone()).collect();
    for k in victims {
        marks.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Entry;

    fn entry(inode: u64, uid: u32, size: u64, name: &str) -> Entry {
        Entry {
            inode,
            size,
            name: name.into(),
            heap: "system".into(),
            uid,
            pid: 1,
            time_millis: inode,
            attributed: true,
        }
    }

    fn allocate(l: &mut Ledger, h: &mut History, e: Entry, now: u64) {
        let (uid, name) = (e.uid, e.name.clone());
        l.commit(0, e);
        h.allocated(l, uid, &name, now);
    }

    #[test]
    fn peaks_survive_frees_and_reset_starts_from_now() {
        let (mut l, mut h) = (Ledger::new(), History::new(5));
        allocate(&mut l, &mut h, entry(1, 10, 1 << 20, "CAM"), 10);
        allocate(&mut l, &mut h, entry(2, 10, 2 << 20, "CAM"), 20);
        allocate(&mut l, &mut h, entry(3, 20, 4 << 20, "GL"), 30);
        // Buffers 1 and 2 died; a prune notices.
        l.retain_live(l.generation(), |i| i == 3);
        h.pruned(&l, 40);
        let v = h.view(None);
        assert_eq!(v.since_millis, 5);
        let m = |bytes, at, now| Mark { peak_bytes: bytes, peak_millis: at, current_bytes: now };
        assert_eq!(v.uids, [(10, m(3 << 20, 20, 0)), (20, m(4 << 20, 30, 4 << 20))].into());
        assert_eq!(
            v.names,
            [("CAM".into(), m(3 << 20, 20, 0)), ("GL".into(), m(4 << 20, 30, 4 << 20))].into()
        );
        let samples: Vec<_> =
            v.samples.iter().map(|s| (s.time_millis, s.bytes, s.buffers)).collect();
        assert_eq!(
            samples,
            vec![(10, 1 << 20, 1), (20, 3 << 20, 2), (30, 7 << 20, 3), (40, 4 << 20, 1)]
        );
        let json: serde_json::Value =
            serde_json::from_str(&v.json().expect("json")).expect("parse");
        assert_eq!(
            json["uids"][0],
            serde_json::json!({"uid": 10, "peak_bytes": 3 << 20, "peak_millis": 20, "current_bytes": 0})
        );
        assert_eq!(json["names"][1]["name"], "GL");
        assert_eq!(
            json["samples"][3],
            serde_json::json!({"time_millis": 40, "bytes": 4 << 20, "buffers": 1})
        );
        assert!(
            v.table().contains("\nCAM   3145728  1970-01-01 00:00:00.020        0\n"),
            "{}",
            v.table()
        );
        // Off the allowlist: one uid's mark.
        let own = h.view(Some(20));
        assert_eq!((own.uids.len(), own.names.len(), own.samples.len()), (1, 0, 0));

        h.reset(50);
        let v = h.view(None);
        assert_eq!(v.since_millis, 50);
        assert_eq!(v.uids, [(20, m(4 << 20, 50, 4 << 20))].into());
        assert_eq!(v.names, [("GL".into(), m(4 << 20, 50, 4 << 20))].into());
        assert!(v.samples.is_empty());
        allocate(&mut l, &mut h, entry(4, 10, 1 << 20, "CAM"), 60);
        assert_eq!(h.view(Some(10)).uids, [(10, m(1 << 20, 60, 1 << 20))].into());
    }

    #[test]
    fn memory_is_bounded() {
        let (mut l, mut h) = (Ledger::new(), History::new(0));
        for i in 0..(MAX_MARKS as u64 + 10) {
            allocate(&mut l, &mut h, entry(i, i as u32, 4096 + i, &format!("n{i}")), i);
        }
        for i in 0..MAX_SAMPLES as u64 {
            h.pruned(&l, 1000 + i);
        }
        let v = h.view(None);
        // Full at MAX_MARKS: the eighth with the lowest peaks (all alive) made room at once.
        let kept = MAX_MARKS - EVICT + 10;
        assert_eq!((v.uids.len(), v.names.len(), v.samples.len()), (kept, kept, MAX_SAMPLES));
        assert!(!v.uids.contains_key(&(EVICT as u32 - 1)) && v.uids.contains_key(&(EVICT as u32)));
        assert!(v.uids.contains_key(&(MAX_MARKS as u32 + 9)));
        assert_eq!(v.samples[0].time_millis, 1000);
    }
}
