//! Per-family postings: for each label pair (`name="value"`) of a family's series, the
//! slots of the series that carry it. A read whose matcher names labels intersects (walks
//! the smallest list of) its pairs' postings instead of testing every series of the name.
//!
//! Lists are filed by the store's hash of the pair alone, not by its text: the index then
//! stores no string, and two pairs that share a hash (a chance of about 2^-64 per pair,
//! under a random key) merely share a list, which only adds candidates that the reader's
//! check of the full matcher drops. A list is a set (sorted, without duplicates), so a
//! series whose two pairs share a hash is filed once and removed once.

use hashbrown::HashTable;

/// The slots of the series carrying one label pair (or pairs sharing its hash).
#[derive(Debug)]
enum Slots {
    /// One series: the common case for labels like `host` or `instance`, kept without a
    /// heap allocation.
    One(usize),
    /// Several, sorted.
    Many(Vec<usize>),
}

#[derive(Debug)]
struct Posting {
    hash: u64,
    slots: Slots,
}

/// One family's postings.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    table: HashTable<Posting>,
}

impl Postings {
    /// Files `slot` under the pair hashed to `hash`.
    pub(crate) fn insert(&mut self, hash: u64, slot: usize) {
        match self.table.find_mut(hash, |p| p.hash == hash) {
            Some(p) => match &mut p.slots {
                Slots::One(s) if *s == slot => {}
                Slots::One(s) => {
                    let mut v = vec![*s, slot];
                    v.sort_unstable();
                    p.slots = Slots::Many(v);
                }
                Slots::Many(v) => {
                    if let Err(at) = v.binary_search(&slot) {
                        v.insert(at, slot);
                    }
                }
            },
            None => {
                self.table.insert_unique(
                    hash,
                    Posting {
                        hash,
                        slots: Slots::One(slot),
                    },
                    |p| p.hash,
                );
            }
        }
    }

    /// Takes `slot` off the pair hashed to `hash`; a list left empty goes.
    pub(crate) fn remove(&mut self, hash: u64, slot: usize) {
        let Ok(mut entry) = self.table.find_entry(hash, |p| p.hash == hash) else {
            return;
        };
        let emptied = match &mut entry.get_mut().slots {
            Slots::One(s) => *s == slot,
            Slots::Many(v) => {
                if let Ok(at) = v.binary_search(&slot) {
                    v.remove(at);
                }
                match v.as_slice() {
                    [] => true,
                    &[last] => {
                        entry.get_mut().slots = Slots::One(last);
                        false
                    }
                    _ => {
                        // Give back what a list that shrank a lot no longer needs.
                        if v.capacity() > 4 * v.len().max(4) {
                            v.shrink_to(2 * v.len());
                        }
                        false
                    }
                }
            }
        };
        if emptied {
            entry.remove();
        }
    }

    /// The slots filed under `hash`, sorted; empty when none are.
    pub(crate) fn get(&self, hash: u64) -> &[usize] {
        match self.table.find(hash, |p| p.hash == hash).map(|p| &p.slots) {
            None => &[],
            Some(Slots::One(s)) => std::slice::from_ref(s),
            Some(Slots::Many(v)) => v,
        }
    }

    /// How many lists there are (tests).
    #[cfg(test)]
    pub(crate) fn lists(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_a_sorted_set_that_goes_when_emptied() {
        let mut p = Postings::default();
        assert_eq!(p.get(7), &[] as &[usize]);
        p.insert(7, 5);
        assert_eq!(p.get(7), &[5]);
        // Twice is once; slots come back sorted whatever the order they came in.
        p.insert(7, 5);
        p.insert(7, 2);
        p.insert(7, 9);
        p.insert(8, 2);
        assert_eq!(p.get(7), &[2, 5, 9]);
        assert_eq!(p.get(8), &[2]);
        // Removing what is not there changes nothing.
        p.remove(7, 4);
        p.remove(9, 2);
        assert_eq!(p.get(7), &[2, 5, 9]);
        p.remove(7, 5);
        assert_eq!(p.get(7), &[2, 9]);
        p.remove(7, 2);
        assert_eq!(p.get(7), &[9]);
        p.remove(7, 9);
        assert_eq!(p.get(7), &[] as &[usize]);
        assert_eq!(p.lists(), 1, "only 8's list is left");
        p.remove(8, 2);
        assert_eq!(p.lists(), 0);
    }

    #[test]
    fn a_list_shrinks_after_mass_removal_and_keeps_its_order() {
        let mut p = Postings::default();
        for slot in (0..1000).rev() {
            p.insert(1, slot);
        }
        // Remove every slot but the multiples of 100: 10 left, in order.
        for slot in (0..1000).filter(|s| s % 100 != 0) {
            p.remove(1, slot);
        }
        let want: Vec<usize> = (0..10).map(|i| i * 100).collect();
        assert_eq!(p.get(1), want.as_slice());
    }
}
