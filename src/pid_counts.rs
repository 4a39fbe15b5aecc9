//! A count per process, as a buffer keeps its fds and mappings per holder.
//!
//! A sorted vector, not a `BTreeMap`: a scan has thousands of buffers with one or two holders
//! each, and a map allocates a node of over a hundred bytes for each of them and walks it
//! through a cursor, where a vector takes a few bytes and is walked as a slice. Lookups are
//! binary searches, as the map's are.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Counts by pid, ascending by pid, each pid once. Built, compared, printed and serialised as
/// the `BTreeMap<i32, u32>` it replaces (JSON: an object keyed by pid).
#[derive(Clone)]
pub struct PidCounts(Repr);

/// One pid inline (most buffers have one holder of each kind, and allocate nothing for it),
/// else a vector.
#[derive(Clone)]
enum Repr {
    One([(i32, u32); 1]),
    Many(Vec<(i32, u32)>),
}

impl PidCounts {
    /// No pid.
    pub fn new() -> Self {
        PidCounts(Repr::Many(Vec::new()))
    }

    /// One pid's count.
    pub fn one(pid: i32, n: u32) -> Self {
        PidCounts(Repr::One([(pid, n)]))
    }

    /// The count of `pid`.
    pub fn get(&self, pid: &i32) -> Option<&u32> {
        self.find(*pid).ok().map(|at| &self.pairs()[at].1)
    }

    /// True when `pid` has a count.
    pub fn contains_key(&self, pid: &i32) -> bool {
        self.find(*pid).is_ok()
    }

    /// Sets the count of `pid`, returning the one it replaces.
    pub fn insert(&mut self, pid: i32, n: u32) -> Option<u32> {
        match self.find(pid) {
            Ok(at) => Some(std::mem::replace(&mut self.pairs_mut()[at].1, n)),
            Err(at) => {
                self.with_vec(|all| all.insert(at, (pid, n)));
                None
            }
        }
    }

    /// Adds `n` to the count of `pid` (from 0 when it has none), saturating. Counting by
    /// ascending pid, as a scan meets holders, adds at the end, found without a search.
    pub fn add(&mut self, pid: i32, n: u32) {
        let found = match self.pairs().last() {
            None => return *self = PidCounts::one(pid, n),
            Some(&(last, _)) if last == pid => Ok(self.len() - 1),
            Some(&(last, _)) if last < pid => Err(self.len()),
            Some(_) => self.find(pid),
        };
        match found {
            Ok(at) => {
                let count = &mut self.pairs_mut()[at].1;
                *count = count.saturating_add(n);
            }
            Err(at) => self.with_vec(|all| all.insert(at, (pid, n))),
        }
    }

    /// Number of pids.
    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    /// True when no pid has a count.
    pub fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }

    /// The pids, ascending.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &i32> + ExactSizeIterator + Clone {
        self.pairs().iter().map(|(pid, _)| pid)
    }

    /// The counts, by ascending pid.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &u32> + ExactSizeIterator + Clone {
        self.pairs().iter().map(|(_, n)| n)
    }

    /// Pid and count pairs, ascending by pid.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.pairs().iter())
    }

    fn pairs(&self) -> &[(i32, u32)] {
        match &self.0 {
            Repr::One(one) => one,
            Repr::Many(many) => many,
        }
    }

    fn pairs_mut(&mut self) -> &mut [(i32, u32)] {
        match &mut self.0 {
            Repr::One(one) => one,
            Repr::Many(many) => many,
        }
    }

    /// Runs `change` on the pairs as a vector, to grow or reorder them.
    fn with_vec<R>(&mut self, change: impl FnOnce(&mut Vec<(i32, u32)>) -> R) -> R {
        let mut all = match std::mem::replace(&mut self.0, Repr::Many(Vec::new())) {
            // Grown, it mostly grows by one more: room for a few, as a push would make.
            Repr::One(one) => {
                let mut all = Vec::with_capacity(4);
                all.extend(one);
                all
            }
            Repr::Many(many) => many,
        };
        let changed = change(&mut all);
        self.0 = Repr::Many(all);
        changed
    }

    fn find(&self, pid: i32) -> Result<usize, usize> {
        self.pairs().binary_search_by_key(&pid, |&(p, _)| p)
    }
}

impl Default for PidCounts {
    fn default() -> Self {
        PidCounts::new()
    }
}

/// Equal when the counts are, however they are held.
impl PartialEq for PidCounts {
    fn eq(&self, other: &PidCounts) -> bool {
        self.pairs() == other.pairs()
    }
}

impl Eq for PidCounts {}

impl std::hash::Hash for PidCounts {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.pairs().hash(state);
    }
}

/// [`PidCounts::iter`]: pairs as a map's iterator gives them.
#[derive(Debug, Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, (i32, u32)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a i32, &'a u32);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(pid, n)| (pid, n))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(pid, n)| (pid, n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a PidCounts {
    type Item = (&'a i32, &'a u32);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for PidCounts {
    type Item = (i32, u32);
    type IntoIter = std::vec::IntoIter<(i32, u32)>;

    fn into_iter(self) -> Self::IntoIter {
        match self.0 {
            Repr::One(one) => Vec::from(one).into_iter(),
            Repr::Many(many) => many.into_iter(),
        }
    }
}

/// As a map's: a pid given twice keeps its last count.
impl Extend<(i32, u32)> for PidCounts {
    fn extend<I: IntoIterator<Item = (i32, u32)>>(&mut self, pairs: I) {
        let mut pairs = pairs.into_iter().peekable();
        if pairs.peek().is_none() {
            return;
        }
        self.with_vec(|all| {
            all.extend(pairs);
            // Stable: of one pid's pairs the last given stays last, and is the one kept.
            all.sort_by_key(|&(pid, _)| pid);
            all.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 = later.1;
                }
                same
            });
        });
    }
}

impl FromIterator<(i32, u32)> for PidCounts {
    fn from_iter<I: IntoIterator<Item = (i32, u32)>>(pairs: I) -> Self {
        let mut counts = PidCounts::new();
        counts.extend(pairs);
        counts
    }
}

impl<const N: usize> From<[(i32, u32); N]> for PidCounts {
    fn from(pairs: [(i32, u32); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for PidCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for PidCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (pid, n) in self.iter() {
            map.serialize_entry(pid, n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever is inserted, added, extended or collected, in any order and with repeats,
        /// the counts read, print and serialise as a `BTreeMap` given the same would.
        #[test]
        fn counts_behave_as_the_map(
            one in proptest::option::of((-3i32..40, any::<u32>())),
            collected in proptest::collection::vec((-3i32..40, any::<u32>()), 0..20),
            steps in proptest::collection::vec((0u8..3, -3i32..40, any::<u32>()), 0..40),
        ) {
            // From one pid held inline, or from none.
            let (mut counts, mut map) = match one {
                Some((pid, n)) => (PidCounts::one(pid, n), BTreeMap::from([(pid, n)])),
                None => (PidCounts::new(), BTreeMap::new()),
            };
            counts.extend(collected.iter().copied());
            map.extend(collected.iter().copied());
            prop_assert!(counts.iter().eq(map.iter()));
            prop_assert_eq!(&counts, &PidCounts::from_iter(map.clone()));
            let mut sums = BTreeMap::<i32, u32>::new();
            for &(pid, n) in &collected {
                let sum = sums.entry(pid).or_default();
                *sum = sum.saturating_add(n);
            }
            // Counted one reference at a time, as a tally counts (a pid again at the end).
            let mut added = PidCounts::new();
            for &(pid, n) in &collected {
                added.add(pid, n);
            }
            prop_assert!(added.iter().eq(sums.iter()));
            for (op, pid, n) in steps {
                match op {
                    0 => prop_assert_eq!(counts.insert(pid, n), map.insert(pid, n)),
                    1 => {
                        counts.add(pid, n);
                        let e = map.entry(pid).or_default();
                        *e = e.saturating_add(n);
                    }
                    _ => {
                        counts.extend([(pid, n), (pid.wrapping_add(1), n / 2)]);
                        map.extend([(pid, n), (pid.wrapping_add(1), n / 2)]);
                    }
                }
                prop_assert_eq!(counts.get(&pid), map.get(&pid));
                prop_assert_eq!(counts.contains_key(&(pid - 1)), map.contains_key(&(pid - 1)));
            }
            prop_assert_eq!(counts.len(), map.len());
            prop_assert_eq!(counts.is_empty(), map.is_empty());
            prop_assert!(counts.iter().eq(map.iter()));
            prop_assert!(counts.keys().eq(map.keys()));
            prop_assert!(counts.values().eq(map.values()));
            prop_assert_eq!(format!("{counts:?}"), format!("{map:?}"));
            prop_assert_eq!(
                serde_json::to_string(&counts).expect("json"),
                serde_json::to_string(&map).expect("json")
            );
            prop_assert!(counts.clone().into_iter().eq(map.into_iter()));
        }
    }
}
