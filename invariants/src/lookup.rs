//! Lookup-only hash indexes for the checks' per-cycle work (agent name → its cap, remembered
//! execution id → its entry, ...). At 10 000 agents an ordered map with `&str` keys costs a dozen
//! string comparisons and cache misses per lookup; a hash lookup costs one hash and usually one
//! comparison (issue 15 item 3: S-01, E-02, S-04, E-01 were dominated by ordered-map lookups).
//!
//! It owns the hasher choice. It must never decide an output order: the crate bans std's hash
//! maps because their iteration order is random, and these are only ever *asked* (get,
//! contains); what a check reports is built by walking the snapshot or an ordered collection.
//! The hasher is foldhash with its fixed seed, so even a stray iteration would be the same from
//! run to run (no entropy in the pure crate); the keys are the platform's own names and ids.

use std::hash::Hash;

/// A hash map used only for lookups (see the module docs).
pub(crate) type LookupMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// A hash set used only for membership tests (see the module docs).
pub(crate) type LookupSet<K> = hashbrown::HashSet<K, foldhash::fast::FixedState>;

/// An empty [`LookupMap`] with room for `capacity` entries (no rehash while it fills).
pub(crate) fn map<K: Eq + Hash, V>(capacity: usize) -> LookupMap<K, V> {
    LookupMap::with_capacity_and_hasher(capacity, foldhash::fast::FixedState::default())
}

/// An empty [`LookupSet`] with room for `capacity` entries.
pub(crate) fn set<K: Eq + Hash>(capacity: usize) -> LookupSet<K> {
    LookupSet::with_capacity_and_hasher(capacity, foldhash::fast::FixedState::default())
}
