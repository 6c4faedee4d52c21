//! The configured key patterns: parsing `keys.slots` and `keys.slot_meta` around their
//! `{agent}` / `{execution_id}` placeholders, the SCAN globs built from them, and splitting the
//! keys SCAN found back into agent and execution id (choosing among ambiguous splits).
//!
//! It must not talk to Redis; everything here is pure.

use canary_invariants::SlotSet;

use super::client::RedisSourceError;

/// The `{agent}` placeholder of key patterns.
pub(super) const AGENT: &str = "{agent}";
/// The `{execution_id}` placeholder of key patterns.
pub(super) const EXECUTION_ID: &str = "{execution_id}";

/// A slot-key pattern split around its `{agent}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SlotKeyPattern {
    pub(super) prefix: String,
    pub(super) suffix: String,
}

impl SlotKeyPattern {
    pub(super) fn parse(pattern: &str) -> Result<SlotKeyPattern, RedisSourceError> {
        let (prefix, suffix) = pattern.split_once(AGENT).ok_or_else(|| {
            RedisSourceError::Pattern(format!("keys.slots {pattern:?} has no {AGENT} placeholder"))
        })?;
        if suffix.contains(AGENT) {
            return Err(RedisSourceError::Pattern(format!(
                "keys.slots {pattern:?} has more than one {AGENT} placeholder"
            )));
        }
        Ok(SlotKeyPattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The `SCAN MATCH` glob: literal parts escaped, `{agent}` → `*`.
    pub(super) fn glob(&self) -> String {
        format!(
            "{}*{}",
            glob_escape(&self.prefix),
            glob_escape(&self.suffix)
        )
    }

    /// The `{agent}` part of a key; `None` when the key does not fit the pattern.
    pub(super) fn agent_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())
    }
}

/// The slot-metadata pattern split around its `{agent}` and `{execution_id}` placeholders
/// (in either order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MetaKeyPattern {
    pub(super) prefix: String,
    pub(super) middle: String,
    pub(super) suffix: String,
    pub(super) agent_first: bool,
}

impl MetaKeyPattern {
    pub(super) fn parse(pattern: &str) -> Result<MetaKeyPattern, RedisSourceError> {
        let bad =
            |why: &str| RedisSourceError::Pattern(format!("keys.slot_meta {pattern:?} {why}"));
        if pattern.matches(AGENT).count() != 1 || pattern.matches(EXECUTION_ID).count() != 1 {
            return Err(bad(&format!(
                "must contain {AGENT} and {EXECUTION_ID} exactly once"
            )));
        }
        let (Some(a), Some(e)) = (pattern.find(AGENT), pattern.find(EXECUTION_ID)) else {
            return Err(bad("lacks a placeholder"));
        };
        let agent_first = a < e;
        let (first, first_len, second, second_len) = if agent_first {
            (a, AGENT.len(), e, EXECUTION_ID.len())
        } else {
            (e, EXECUTION_ID.len(), a, AGENT.len())
        };
        let part = |from: usize, to: usize| {
            pattern
                .get(from..to)
                .map(str::to_owned)
                .ok_or_else(|| bad("has overlapping placeholders"))
        };
        Ok(MetaKeyPattern {
            prefix: part(0, first)?,
            middle: part(first + first_len, second)?,
            suffix: part(second + second_len, pattern.len())?,
            agent_first,
        })
    }

    /// The `SCAN MATCH` glob: literal parts escaped, placeholders → `*`.
    pub(super) fn glob(&self) -> String {
        format!(
            "{}*{}*{}",
            glob_escape(&self.prefix),
            glob_escape(&self.middle),
            glob_escape(&self.suffix)
        )
    }

    /// The metadata key of `agent`'s slot `id`, written over `out` (cleared first): the same
    /// text as `fill` (the tests' reference) on the pattern, since the pattern holds each
    /// placeholder exactly once, without scanning the pattern again for every member.
    pub(super) fn write_key(&self, out: &mut String, agent: &str, id: &str) {
        let (first, second) = if self.agent_first {
            (agent, id)
        } else {
            (id, agent)
        };
        out.clear();
        out.reserve(
            self.prefix.len() + first.len() + self.middle.len() + second.len() + self.suffix.len(),
        );
        out.push_str(&self.prefix);
        out.push_str(first);
        out.push_str(&self.middle);
        out.push_str(second);
        out.push_str(&self.suffix);
    }

    /// Whether `key` could be a metadata key of this pattern.
    #[cfg(test)]
    pub(super) fn fits(&self, key: &str) -> bool {
        self.split_iter(key).next().is_some()
    }

    /// Every way `key` splits into non-empty (agent, execution id) parts (the tests' view;
    /// the reader walks [`MetaKeyPattern::split_iter`]).
    #[cfg(test)]
    pub(super) fn splits<'k>(&self, key: &'k str) -> Vec<(&'k str, &'k str)> {
        self.split_iter(key).collect()
    }

    /// Every way `key` splits into non-empty (agent, execution id) parts, one at a time,
    /// leftmost first, without collecting the cut points first (most keys split one way only).
    /// The cuts are the char boundaries when the middle is empty, else the middle's
    /// non-overlapping occurrences (`match_indices`).
    fn split_iter<'k>(&self, key: &'k str) -> impl Iterator<Item = (&'k str, &'k str)> {
        let inner = key
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_suffix(self.suffix.as_str()));
        let middle = self.middle.as_str();
        let agent_first = self.agent_first;
        // Where the next cut is looked for; `None` once done.
        let mut from = inner.map(|_| 0usize);
        std::iter::from_fn(move || {
            let inner = inner?;
            loop {
                let start = from?;
                let rest = inner.get(start..)?;
                let at = if middle.is_empty() {
                    let step = rest.chars().next().map_or(0, char::len_utf8);
                    from = (step > 0).then_some(start + step);
                    if step == 0 {
                        return None;
                    }
                    start
                } else {
                    let found = start + rest.find(middle)?;
                    from = Some(found + middle.len());
                    found
                };
                let (Some(first), Some(second)) = (inner.get(..at), inner.get(at + middle.len()..))
                else {
                    continue;
                };
                if first.is_empty() || second.is_empty() {
                    continue;
                }
                return Some(if agent_first {
                    (first, second)
                } else {
                    (second, first)
                });
            }
        })
    }
}

/// The longest common prefix of two strings, on a char boundary.
pub(super) fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let len = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| a.len().min(b.len()));
    a.get(..len).unwrap_or("")
}

pub(super) fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Substitutes placeholders in one left-to-right pass, so a value that happens to contain a
/// placeholder's text is never substituted again. The reference [`MetaKeyPattern::write_key`]
/// is checked against (the collection builds keys with that, without rescanning the pattern).
#[cfg(test)]
pub(super) fn fill(pattern: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(pattern.len() + 32);
    let mut rest = pattern;
    'scan: while !rest.is_empty() {
        for (name, value) in values {
            if let Some(after) = rest.strip_prefix(name) {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// A metadata key found by SCAN, split into agent and id, and whether a member owned it when the
/// slot sets were read.
#[derive(Debug)]
pub(super) struct FoundMeta {
    pub(super) key: String,
    pub(super) agent: String,
    pub(super) id: String,
    pub(super) owned: bool,
}

/// Splits every metadata key. Where the split is ambiguous (an agent name or id containing the
/// pattern's separator), the split naming a present member wins, then one naming an agent that
/// has a slot set, then the leftmost.
pub(super) fn resolve_meta_keys(
    pattern: &MetaKeyPattern,
    raw: Vec<String>,
    slot_sets: &[SlotSet],
) -> Vec<FoundMeta> {
    // Sorted slices searched by halving: only membership is asked (~30 000 times at L). Hash
    // sets of the 30 000 (agent, member) pairs cost more to build (SipHash and regrowth) than
    // all the look-ups together (benches/RESULTS.md). The slot sets come in agent order, so
    // sorting each set's few members is enough; any other order is sorted whole.
    let mut members: Vec<(&str, &str)> =
        Vec::with_capacity(slot_sets.iter().map(|s| s.members.len()).sum());
    for set in slot_sets {
        let start = members.len();
        let agent = set.agent_name.as_str();
        members.extend(set.members.iter().map(|m| (agent, m.member.as_str())));
        if let Some(own) = members.get_mut(start..) {
            own.sort_unstable();
        }
    }
    if !members.is_sorted() {
        members.sort_unstable();
    }
    let mut agents: Vec<&str> = slot_sets.iter().map(|s| s.agent_name.as_str()).collect();
    if !agents.is_sorted() {
        agents.sort_unstable();
    }
    let mut out = Vec::with_capacity(raw.len());
    for key in raw {
        // One pass over the splits (most keys have exactly one), remembering the fallbacks.
        let (mut owned_split, mut with_agent, mut leftmost) = (None, None, None);
        for split in pattern.split_iter(&key) {
            if members.binary_search(&split).is_ok() {
                owned_split = Some(split);
                break;
            }
            if with_agent.is_none() && agents.binary_search(&split.0).is_ok() {
                with_agent = Some(split);
            }
            leftmost = leftmost.or(Some(split));
        }
        let owned = owned_split.is_some();
        let Some((agent, id)) = owned_split.or(with_agent).or(leftmost) else {
            continue;
        };
        let (agent, id) = (agent.to_owned(), id.to_owned());
        out.push(FoundMeta {
            key,
            agent,
            id,
            owned,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use canary_invariants::SlotMember;

    use super::*;

    #[test]
    fn slot_pattern_extracts_agent_and_builds_glob() {
        let p = SlotKeyPattern::parse("agent:slots:{agent}").unwrap();
        assert_eq!(p.glob(), "agent:slots:*");
        assert_eq!(p.agent_of("agent:slots:alpha"), Some("alpha"));
        assert_eq!(p.agent_of("agent:slots:a:b"), Some("a:b"));
        assert_eq!(p.agent_of("agent:slot:alpha:1"), None);

        let p = SlotKeyPattern::parse("x[1]*:{agent}:slots").unwrap();
        assert_eq!(p.glob(), "x\\[1\\]\\*:*:slots");
        assert_eq!(p.agent_of("x[1]*:bob:slots"), Some("bob"));
        assert_eq!(p.agent_of("x[1]*:bob:slotsX"), None);

        assert!(SlotKeyPattern::parse("agent:slots").is_err());
        assert!(SlotKeyPattern::parse("{agent}:{agent}").is_err());
    }

    #[test]
    fn meta_pattern_splits_keys() {
        let p = MetaKeyPattern::parse("agent:slot:{agent}:{execution_id}").unwrap();
        assert_eq!(p.glob(), "agent:slot:*:*");
        assert_eq!(p.splits("agent:slot:alpha:42"), [("alpha", "42")]);
        assert_eq!(
            p.splits("agent:slot:a:b:c"),
            [("a", "b:c"), ("a:b", "c")],
            "ambiguous: every split, leftmost first"
        );
        assert!(p.splits("agent:slots:alpha").is_empty());
        assert!(p.splits("agent:slot:alpha:").is_empty());
        assert!(!p.fits("agent:slot:alpha"));

        let p = MetaKeyPattern::parse("m/{execution_id}/{agent}/h").unwrap();
        assert_eq!(p.glob(), "m/*/*/h");
        assert_eq!(p.splits("m/7/bob/h"), [("bob", "7")]);

        assert!(MetaKeyPattern::parse("agent:slot:{agent}").is_err());
        assert!(MetaKeyPattern::parse("{agent}{agent}:{execution_id}").is_err());
    }

    #[test]
    fn ambiguous_meta_keys_prefer_present_members() {
        let p = MetaKeyPattern::parse("agent:slot:{agent}:{execution_id}").unwrap();
        let set = SlotSet {
            agent_name: "a:b".to_owned(),
            members: vec![SlotMember {
                member: "c".to_owned(),
                acquired_at_ms: Some(0),
                sentinel: false,
                meta: None,
            }],
        };
        let found = resolve_meta_keys(
            &p,
            vec!["agent:slot:a:b:c".to_owned(), "agent:slot:a:b:d".to_owned()],
            &[set],
        );
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.agent.as_str(), f.id.as_str(), f.owned))
            .collect();
        assert_eq!(got, [("a:b", "c", true), ("a:b", "d", false)]);
    }

    /// The previous `resolve_meta_keys` (hash sets, every split collected), kept as the
    /// reference the sorted-slice version must agree with.
    fn resolve_with_hash_sets(
        pattern: &MetaKeyPattern,
        raw: &[String],
        slot_sets: &[SlotSet],
    ) -> Vec<(String, String, String, bool)> {
        use std::collections::HashSet;
        let members: HashSet<(&str, &str)> = slot_sets
            .iter()
            .flat_map(|s| {
                s.members
                    .iter()
                    .map(move |m| (s.agent_name.as_str(), m.member.as_str()))
            })
            .collect();
        let agents: HashSet<&str> = slot_sets.iter().map(|s| s.agent_name.as_str()).collect();
        let mut out = Vec::new();
        for key in raw {
            let splits = pattern.splits(key);
            let chosen = splits
                .iter()
                .find(|s| members.contains(s))
                .or_else(|| splits.iter().find(|(agent, _)| agents.contains(agent)))
                .or_else(|| splits.first());
            let Some(&(agent, id)) = chosen else { continue };
            let owned = members.contains(&(agent, id));
            out.push((key.clone(), agent.to_owned(), id.to_owned(), owned));
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Names over a tiny alphabet holding the separator, so that most keys split several
        /// ways, agents repeat across sets and members repeat across agents.
        #[test]
        fn meta_keys_resolve_as_with_hash_sets(
            sets in proptest::collection::vec(
                ("[ab:]{0,4}", proptest::collection::vec("[ab:]{0,3}", 0..4)),
                0..6,
            ),
            keys in proptest::collection::vec(("[ab:]{0,4}", "[ab:]{0,3}"), 0..12),
            junk in proptest::collection::vec("[a-z:]{0,12}", 0..3),
        ) {
            let p = MetaKeyPattern::parse("agent:slot:{agent}:{execution_id}").unwrap();
            let slot_sets: Vec<SlotSet> = sets
                .into_iter()
                .map(|(agent_name, members)| SlotSet {
                    agent_name,
                    members: members
                        .into_iter()
                        .map(|member| SlotMember {
                            member,
                            acquired_at_ms: Some(0),
                            sentinel: false,
                            meta: None,
                        })
                        .collect(),
                })
                .collect();
            let raw: Vec<String> = keys
                .iter()
                .map(|(agent, id)| format!("agent:slot:{agent}:{id}"))
                .chain(junk)
                .collect();
            // As read (the sets in agent order, each set's members in score order), and in
            // any order.
            let mut in_agent_order = slot_sets.clone();
            in_agent_order.sort_by(|a, b| a.agent_name.cmp(&b.agent_name));
            for sets in [&slot_sets, &in_agent_order] {
                let got: Vec<_> = resolve_meta_keys(&p, raw.clone(), sets)
                    .into_iter()
                    .map(|f| (f.key, f.agent, f.id, f.owned))
                    .collect();
                proptest::prop_assert_eq!(got, resolve_with_hash_sets(&p, &raw, sets));
            }
        }
    }

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix("agent:slots:", "agent:slot:"), "agent:slot");
        assert_eq!(common_prefix("x", "y"), "");
        assert_eq!(common_prefix("ab", "abc"), "ab");
        assert_eq!(common_prefix("é1", "é2"), "é");
    }

    #[test]
    fn write_key_is_fill() {
        for pattern in [
            "agent:slot:{agent}:{execution_id}",
            "m/{execution_id}/{agent}/h",
            "{agent}{execution_id}",
            "x{execution_id}:{agent}",
        ] {
            let p = MetaKeyPattern::parse(pattern).unwrap();
            let mut out = "left over".to_owned();
            for (agent, id) in [("a", "42"), ("{execution_id}", "é"), ("a:b", "{agent}")] {
                p.write_key(&mut out, agent, id);
                assert_eq!(
                    out,
                    fill(pattern, &[(AGENT, agent), (EXECUTION_ID, id)]),
                    "{pattern} {agent} {id}"
                );
            }
        }
    }

    #[test]
    fn fill_substitutes_once() {
        let p = "agent:slot:{agent}:{execution_id}";
        assert_eq!(
            fill(p, &[(AGENT, "a"), (EXECUTION_ID, "42")]),
            "agent:slot:a:42"
        );
        assert_eq!(
            fill(p, &[(AGENT, "{execution_id}"), (EXECUTION_ID, "é")]),
            "agent:slot:{execution_id}:é"
        );
    }
}
