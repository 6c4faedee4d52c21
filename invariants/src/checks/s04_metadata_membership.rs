//! **S-04 Metadata–membership consistency** — tier A, major (critical for a member without
//! metadata); needs Redis.
//!
//! Rule: every non-sentinel member of `agent:slots:{agent}` has its metadata hash
//! `agent:slot:{agent}:{id}` (`member_without_meta`), and every metadata hash found by SCAN
//! belongs to a member of its agent's slot set (`meta_without_member`). One violation per broken
//! slot, named by its execution id.
//!
//! Split with S-03: S-04 owns *existence* in both directions, S-03 owns the TTL of hashes that
//! exist. A member whose hash is gone (`PTTL` -2) is reported here only, so one broken slot raises
//! one alert. It keeps the severity S-03 gave it (critical): a slot without metadata is one whose
//! TTL protection is gone, most often because the TTL expired while the task still ran; a
//! stray hash is major. A configured severity replaces both.
//!
//! Races, both directions, so a healthy platform never turns red:
//! - acquire does ZADD, then HSET + EXPIRE a few ms later: a member whose slot score is younger
//!   than `grace_seconds` (3) is not reported without metadata; a member whose score is unknown
//!   (not a finite number) gets no grace;
//! - release does ZREM, then DEL a few ms later: a hash has no timestamp of its release, so the
//!   collector re-reads every hash whose member was absent after a short delay
//!   (`platform.redis_orphan_recheck_delay`, 1 s, far above the platform's gap) and keeps only
//!   those still present. That costs one extra round trip and the delay only in cycles that saw
//!   a candidate, and no cross-cycle memory.
//!
//! Ownership is by agent and id; a hash named after a drain sentinel belongs to that sentinel
//! (sentinels have no metadata of their own, but a hash naming a present member is not stray).
//! Slot keys of agents absent from the roster are L-03's business; their members are still
//! judged here, since the question is Redis's internal consistency.
//!
//! Guards: acquire paths that ZADD but forget the HSET/EXPIRE (or a TTL that expired under a
//! running task), and release paths that ZREM but forget the DEL (or the reverse).

use std::collections::BTreeSet;

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::lookup::{self, LookupSet};
use crate::params::{Params, Problems, human_seconds_f, invariant_params, seconds_to_ms};
use crate::snapshot::{KeyTtl, Source};
use crate::violation::{Severity, Tier, Violation};

/// S-04.
#[derive(Debug)]
pub struct S04;

static META: InvariantMeta = InvariantMeta {
    id: "S-04",
    name: "Metadata–membership consistency",
    tier: Tier::A,
    severity: Severity::Major,
    needs: &[Need::Source(Source::Redis)],
    guards: "Acquire paths that forget the metadata write (or TTLs that expire under a running \
             task) and release paths that forget the DEL or the ZREM.",
    runbook: "member_without_meta: check the acquire path's HSET + EXPIRE (same MULTI as the \
              ZADD) and whether the TTL was too short; meta_without_member: check the release \
              path's DEL after the ZREM. Remove the stray key once understood.",
};

invariant_params! {
    /// S-04 parameters.
    pub struct S04Params {
        /// A member whose slot score is younger than this is not reported without metadata: the
    /// platform ZADDs, then writes the hash a few ms later.
        grace_seconds: f64 = 3.0,
    }
}

impl Invariant for S04 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("Every slot member has its metadata hash, and every metadata hash belongs to a member \
                 of its agent's slot set ({} grace after acquire; a stray hash must survive a re-read).",
                human_seconds_f(params.s04.grace_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::{Critical, Major};
        let id = META.id;
        vec![
            v(
                id,
                Critical,
                "7a8b9c0d1e2f3a4b",
                "member_without_meta",
                "slot 7a8b9c0d1e2f3a4b of agent agent-0055 has no metadata hash",
                json!({"agent": "agent-0055", "execution_id": "7a8b9c0d1e2f3a4b", "acquired_at_ms": t0 - 95_000, "age_ms": 95_000}),
            ),
            v(
                id,
                Major,
                "8b9c0d1e2f3a4b5c",
                "meta_without_member",
                "metadata hash of 8b9c0d1e2f3a4b5c (agent agent-0055) has no slot member and never expires",
                json!({"agent": "agent-0055", "execution_id": "8b9c0d1e2f3a4b5c", "ttl_ms": null}),
            ),
        ]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.non_negative("grace_seconds", params.s04.grace_seconds);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let grace_ms = seconds_to_ms(input.params.s04.grace_seconds);
        let severity_override = input.params.severity_override(META.id);
        let mut violations = Vec::new();

        let member_count = input.redis.slot_sets.iter().map(|s| s.members.len()).sum();
        let mut members: LookupSet<(&str, &str)> = lookup::set(member_count);
        for set in &input.redis.slot_sets {
            for member in &set.members {
                members.insert((set.agent_name.as_str(), member.member.as_str()));
            }
        }
        // Only asked about members whose PTTL said -2 (rare): built on first need.
        let mut hashes: Option<LookupSet<(&str, &str)>> = None;

        // Member → hash. The per-member PTTL says -2 and the SCAN (read earlier) must agree: a
        // hash the SCAN saw vanished while the cycle read (expiry, release in progress) and is
        // judged next cycle on a consistent picture.
        let mut reported: BTreeSet<(&str, &str)> = BTreeSet::new();
        for set in &input.redis.slot_sets {
            for member in set.members.iter().filter(|m| !m.sentinel) {
                let Some(meta) = member.meta else { continue };
                if meta.ttl != KeyTtl::Missing {
                    continue;
                }
                let key = (set.agent_name.as_str(), member.member.as_str());
                let hashes = hashes.get_or_insert_with(|| {
                    let mut hashes = lookup::set(input.redis.meta_keys.len());
                    hashes.extend(
                        input
                            .redis
                            .meta_keys
                            .iter()
                            .map(|k| (k.agent_name.as_str(), k.execution_id.as_str())),
                    );
                    hashes
                });
                if hashes.contains(&key) || !reported.insert(key) {
                    continue;
                }
                let in_grace = member
                    .acquired_at_ms
                    .is_some_and(|at| now.saturating_sub(at) < grace_ms);
                if in_grace {
                    continue;
                }
                let mut v = input.violation(
                    &META,
                    member.member.as_str(),
                    "member_without_meta",
                    format!(
                        "slot {} of agent {} has no metadata hash",
                        member.member, set.agent_name
                    ),
                    json!({
                        "agent": set.agent_name,
                        "execution_id": member.member,
                        "acquired_at_ms": member.acquired_at_ms,
                        "age_ms": member.acquired_at_ms.map(|at| now.saturating_sub(at)),
                    }),
                );
                v.severity = severity_override.unwrap_or(Severity::Critical);
                violations.push(v);
            }
        }

        // Hash → member. Only hashes the collector re-read as orphans carry a TTL; a hash
        // listed without one had its member when the slot sets were read, but the snapshot is
        // untrusted, so membership is recomputed here rather than believed.
        let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut stray: Vec<_> = input
            .redis
            .meta_keys
            .iter()
            .filter(|k| !members.contains(&(k.agent_name.as_str(), k.execution_id.as_str())))
            .collect();
        // Deterministic choice of TTL evidence when a key is listed twice.
        stray.sort();
        for key in stray {
            if !seen.insert((key.agent_name.as_str(), key.execution_id.as_str())) {
                continue;
            }
            let ttl = match key.orphan_ttl {
                Some(KeyTtl::Remaining(ms)) => json!(ms),
                Some(KeyTtl::NoExpiry) => json!("no_expiry"),
                Some(KeyTtl::Missing) | None => serde_json::Value::Null,
            };
            let mut v = input.violation(
                &META,
                key.execution_id.as_str(),
                "meta_without_member",
                format!(
                    "metadata hash of {} (agent {}) has no slot member{}",
                    key.execution_id,
                    key.agent_name,
                    if key.orphan_ttl == Some(KeyTtl::NoExpiry) {
                        " and never expires"
                    } else {
                        ""
                    }
                ),
                json!({
                    "agent": key.agent_name,
                    "execution_id": key.execution_id,
                    "ttl_ms": ttl,
                }),
            );
            v.severity = severity_override.unwrap_or(Severity::Major);
            violations.push(v);
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use crate::params::Params;
    use crate::snapshot::KeyTtl;
    use crate::testing::{SnapshotBuilder, T0, run, run_with};
    use crate::violation::Severity;

    #[test]
    fn healthy_slots_hold() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .slot("a", "e1", T0 - 60_000)
            .slot("a", "e2", T0 - 1_000)
            .sentinel("a", "drain-1", T0)
            .build();
        assert!(run("S-04", &snap).is_empty());
    }

    #[test]
    fn a_member_without_metadata_fires_critical() {
        let snap = SnapshotBuilder::new()
            .slot_without_meta("a", "e1", Some(T0 - 60_000))
            .build();
        let v = run("S-04", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "e1");
        assert_eq!(v[0].signal, "member_without_meta");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].observed_state["agent"], "a");
    }

    #[test]
    fn acquire_race_grace_but_none_for_unknown_scores() {
        let at = |acquired: Option<i64>| {
            SnapshotBuilder::new()
                .slot_without_meta("a", "e1", acquired)
                .build()
        };
        assert!(run("S-04", &at(Some(T0 - 2_999))).is_empty(), "in grace");
        assert_eq!(run("S-04", &at(Some(T0 - 3_000))).len(), 1, "grace over");
        assert_eq!(run("S-04", &at(None)).len(), 1, "unknown score");
        // A score ahead of our clock (skew) is within grace.
        assert!(run("S-04", &at(Some(T0 + 10_000))).is_empty());
    }

    #[test]
    fn a_stray_hash_fires_major_with_its_ttl() {
        let snap = SnapshotBuilder::new()
            .slot("a", "e1", T0 - 60_000)
            .orphan_meta("a", "gone", KeyTtl::NoExpiry)
            .orphan_meta("b", "other", KeyTtl::Remaining(5_000))
            .build();
        let mut v = run("S-04", &snap);
        v.sort_by(|x, y| x.subject.cmp(&y.subject));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].subject, "gone");
        assert_eq!(v[0].signal, "meta_without_member");
        assert_eq!(v[0].severity, Severity::Major);
        assert_eq!(v[0].observed_state["ttl_ms"], "no_expiry");
        assert_eq!(v[1].subject, "other");
        assert_eq!(v[1].observed_state["ttl_ms"], 5_000);
    }

    #[test]
    fn a_hash_of_the_same_id_under_another_agent_is_stray() {
        let snap = SnapshotBuilder::new()
            .slot("a", "e1", T0 - 60_000)
            .orphan_meta("b", "e1", KeyTtl::Remaining(1_000))
            .build();
        let v = run("S-04", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].observed_state["agent"], "b");
    }

    #[test]
    fn a_hash_naming_a_sentinel_belongs_to_it() {
        let snap = SnapshotBuilder::new()
            .sentinel("a", "drain-1", T0)
            .orphan_meta("a", "drain-1", KeyTtl::Remaining(1_000))
            .build();
        assert!(run("S-04", &snap).is_empty());
    }

    #[test]
    fn a_hash_that_vanished_during_the_read_is_judged_next_cycle() {
        // SCAN saw the hash, the later PTTL said -2: it went away while the cycle read (an
        // expiry or a release in progress); the next cycle sees a consistent picture.
        let snap = SnapshotBuilder::new()
            .slot_without_meta("a", "e1", Some(T0 - 60_000))
            .meta_key("a", "e1")
            .build();
        assert!(run("S-04", &snap).is_empty());
    }

    #[test]
    fn duplicates_report_once_whatever_the_order() {
        let snap = SnapshotBuilder::new()
            .orphan_meta("a", "x", KeyTtl::Remaining(1_000))
            .orphan_meta("a", "x", KeyTtl::NoExpiry)
            .build();
        let mut reversed = snap.clone();
        if let Some(redis) = reversed.redis.as_mut() {
            redis.meta_keys.reverse();
        }
        let v = run("S-04", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v, run("S-04", &reversed));
    }

    #[test]
    fn a_severity_override_replaces_both() {
        let mut params = Params::default();
        params.s04.severity = Some(Severity::Minor);
        let snap = SnapshotBuilder::new()
            .slot_without_meta("a", "e1", None)
            .orphan_meta("a", "e2", KeyTtl::NoExpiry)
            .build();
        let v = run_with("S-04", &snap, &Default::default(), &params);
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|v| v.severity == Severity::Minor));
    }

    #[test]
    fn unknown_without_redis() {
        let snap = SnapshotBuilder::new()
            .unavailable(crate::snapshot::Source::Redis)
            .build();
        let only = ["S-04".to_owned()];
        let eval = crate::evaluate(
            &snap,
            &Default::default(),
            &Default::default(),
            crate::Selection::Only(&only),
        );
        assert_eq!(eval.outcomes["S-04"], crate::Outcome::Unknown);
    }
}
