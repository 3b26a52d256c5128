//! Decisions already taken by one policy set, for the requests that repeat them.
//!
//! A decision is a pure function of the policy set and of what its entities and context
//! are built from: the asker (department, system, operator), the action, the resource's
//! attributes and the context. [`Key`] writes all of those down, so an equal key is an
//! equal decision. The memo lives inside its [`crate::cedar::Policies`]: a reload builds
//! a new set with an empty memo, so no decision outlives the policies that took it.
//! This is the decision caching AWS Verified Permissions and Envoy's external
//! authorisation recommend for repeated requests; here it is exact, not time-bounded.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;

/// How many decisions one memo holds. Keys can be chosen by callers (an operator name
/// is asserted by the calling system), so the memo is emptied when it reaches this
/// rather than growing; a few thousand covers every caller × service × field set of a
/// large catalog.
pub const CAPACITY: usize = 4096;

/// The inputs of one decision, written unambiguously: every part is length-prefixed, so
/// no two different sequences of parts give the same key.
#[derive(Debug, Default)]
pub struct Key(String);

impl Key {
    pub fn new(kind: &str) -> Self {
        let mut k = Key(String::with_capacity(128));
        k.part(kind);
        k
    }

    pub fn part(&mut self, s: &str) -> &mut Self {
        // Writing to a String cannot fail.
        let _ = write!(self.0, "{}:", s.len());
        self.0.push_str(s);
        self
    }

    /// A list of parts, its length first (so `[a, b]` then `c` differs from `[a]` then
    /// `b, c`).
    pub fn parts<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) -> &mut Self {
        let _ = write!(self.0, "#{}:", items.len());
        for s in items {
            self.part(s);
        }
        self
    }
}

/// Decisions by [`Key`], bounded by [`CAPACITY`].
#[derive(Debug)]
pub struct Memo<V> {
    map: RwLock<HashMap<String, V>>,
    capacity: usize,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo::with_capacity(CAPACITY)
    }
}

impl<V> Memo<V> {
    pub fn with_capacity(capacity: usize) -> Self {
        Memo {
            map: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }
}

impl<V: Clone> Memo<V> {
    pub fn get(&self, key: &Key) -> Option<V> {
        // A poisoned lock still holds whole entries (each insert is one call).
        let map = match self.map.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(&key.0).cloned()
    }

    pub fn put(&self, key: Key, value: V) {
        let mut map = match self.map.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if map.len() >= self.capacity && !map.contains_key(&key.0) {
            map.clear();
        }
        map.insert(key.0, value);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self.map.read() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Key {
        let mut k = Key::new("t");
        for p in parts {
            k.part(p);
        }
        k
    }

    #[test]
    fn keys_of_different_parts_differ() {
        // Plain concatenation would make all three "abc".
        let a = key(&["ab", "c"]);
        let b = key(&["a", "bc"]);
        let c = key(&["abc"]);
        assert_ne!(a.0, b.0);
        assert_ne!(a.0, c.0);
        assert_ne!(b.0, c.0);
        let mut l1 = Key::new("t");
        l1.parts(["a", "b"].into_iter()).part("c");
        let mut l2 = Key::new("t");
        l2.parts(["a"].into_iter()).part("b").part("c");
        assert_ne!(l1.0, l2.0);
        assert_eq!(key(&["ab", "c"]).0, a.0);
    }

    #[test]
    fn the_memo_is_bounded_and_still_answers() {
        let m = Memo::with_capacity(3);
        for i in 0..10 {
            m.put(key(&[&i.to_string()]), i);
            assert!(m.len() <= 3, "{} entries", m.len());
            assert_eq!(m.get(&key(&[&i.to_string()])), Some(i));
        }
        // Replacing an entry of a full memo keeps the others.
        let before = m.len();
        m.put(key(&["9"]), 90);
        assert_eq!(m.len(), before);
        assert_eq!(m.get(&key(&["9"])), Some(90));
        assert_eq!(m.get(&key(&["nothing"])), None);
    }
}
