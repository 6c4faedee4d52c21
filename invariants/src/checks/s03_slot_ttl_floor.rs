//! **S-03 Slot TTL floor** — tier A, critical; needs Redis.
//!
//! Rule: every non-sentinel slot member's metadata hash has an expiry (`no_expiry` when `PTTL` is
//! -1) whose *initial* TTL was at least `timeout_seconds + buffer_seconds`
//! (300) minus `tolerance_seconds` (1). The initial TTL is reconstructed as `ttl + age`, with
//! `age = ttl_read_at − slot score`, both measured at the instant the TTL was read. That makes the
//! judgement decay-invariant (an hours-old slot with a correct TTL is green) and absorbs renewals
//! that re-score the slot and re-apply its TTL. Measuring age from the cycle start instead of the
//! read instant produced hundreds of false positives a day in the reference implementation.
//!
//! The floor uses the slot's own `timeout_seconds`: per-execution timeouts may legitimately be
//! lower than the agent's cap, so there is no fallback to the agent's value; without the field,
//! or without a parseable score, `below_floor` is not judged.
//!
//! A member whose hash does not exist (`PTTL` -2) is S-04's `member_without_meta` (critical, with
//! the acquire-race grace this check lacked): S-04 owns existence, S-03 the TTL of what exists,
//! so one broken slot raises one alert.
//!
//! Guards: a slot whose TTL expires while its task still runs (the slot vanishes, capacity is
//! handed out twice), and metadata written without an expiry (a leak that never heals).

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::params::{Params, Problems, human_seconds, human_seconds_f, invariant_params, seconds_to_ms};
use crate::snapshot::{KeyTtl, SlotMember, SlotMeta, Source};
use crate::violation::{Severity, Tier, Violation};

/// S-03.
#[derive(Debug)]
pub struct S03;

static META: InvariantMeta = InvariantMeta {
    id: "S-03",
    name: "Slot TTL floor",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[Need::Source(Source::Redis)],
    guards: "Slot TTLs shorter than the task they guard (capacity handed out twice) and metadata \
             without expiry (leaks that never heal).",
    runbook: "Check the acquire path's EXPIRE: it must use the execution's timeout plus the \
              buffer, and run in the same MULTI as the HSET.",
};

invariant_params! {
    /// S-03 parameters.
    pub struct S03Params {
        /// The platform sets the slot TTL to `timeout_seconds + buffer_seconds` at acquire.
        buffer_seconds: i64 = 300,
        /// Rounding tolerance subtracted from the floor.
        tolerance_seconds: f64 = 1.0,
    }
}

impl Invariant for S03 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("Every slot's metadata hash expires, and was given at least its execution's \
                 timeout_seconds + {} of TTL, less {} of rounding (a missing hash is S-04's).",
                human_seconds(params.s03.buffer_seconds), human_seconds_f(params.s03.tolerance_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Critical;
        let id = META.id;
        vec![
            v(
                id,
                Critical,
                "5e6f7a8b9c0d1e2f",
                "below_floor",
                "slot 5e6f7a8b9c0d1e2f of agent agent-0021: initial TTL below timeout + buffer",
                json!({"agent": "agent-0021", "execution_id": "5e6f7a8b9c0d1e2f", "timeout_seconds": 900, "ttl_ms": 312_000, "age_ms": 240_000, "initial_ttl_ms": 552_000, "floor_ms": 1_199_000}),
            ),
            v(
                id,
                Critical,
                "6f7a8b9c0d1e2f3a",
                "no_expiry",
                "slot 6f7a8b9c0d1e2f3a of agent agent-0021: metadata hash has no expiry",
                json!({"agent": "agent-0021", "execution_id": "6f7a8b9c0d1e2f3a", "timeout_seconds": 900, "ttl": "no_expiry"}),
            ),
        ]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        problems.seconds_at_least("buffer_seconds", params.s03.buffer_seconds, 0);
        problems.non_negative("tolerance_seconds", params.s03.tolerance_seconds);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let p = &input.params.s03;
        let tolerance_ms = seconds_to_ms(p.tolerance_seconds);
        let mut violations = Vec::new();
        for set in &input.redis.slot_sets {
            for member in set.members.iter().filter(|m| !m.sentinel) {
                let Some(meta) = member.meta else { continue };
                let Some((signal, detail)) = judge(member, &meta, p.buffer_seconds, tolerance_ms)
                else {
                    continue;
                };
                let mut observed = json!({
                    "agent": set.agent_name,
                    "execution_id": member.member,
                    "timeout_seconds": meta.timeout_seconds,
                });
                if let (Some(obj), serde_json::Value::Object(extra)) =
                    (observed.as_object_mut(), detail)
                {
                    obj.extend(extra);
                }
                violations.push(input.violation(
                    &META,
                    member.member.as_str(),
                    signal,
                    format!(
                        "slot {} of agent {}: {}",
                        member.member,
                        set.agent_name,
                        match signal {
                            "no_expiry" => "metadata hash has no expiry".to_owned(),
                            _ => "initial TTL below timeout + buffer".to_owned(),
                        }
                    ),
                    observed,
                ));
            }
        }
        violations
    }
}

/// The signal and evidence for one slot, or `None` when it is fine or cannot be judged.
fn judge(
    member: &SlotMember,
    meta: &SlotMeta,
    buffer_seconds: i64,
    tolerance_ms: i64,
) -> Option<(&'static str, serde_json::Value)> {
    match meta.ttl {
        // Existence is S-04's (`member_without_meta`), so a gone hash is one alert, not two.
        KeyTtl::Missing => None,
        KeyTtl::NoExpiry => Some(("no_expiry", json!({ "ttl": "no_expiry" }))),
        KeyTtl::Remaining(ttl_ms) => {
            let timeout = meta.timeout_seconds?;
            let acquired_at = member.acquired_at_ms?;
            // A score slightly ahead of our clock (skew) must not shrink the reconstruction.
            let age_ms = meta.ttl_read_at_ms.saturating_sub(acquired_at).max(0);
            let initial_ms = ttl_ms.saturating_add(age_ms);
            let floor_ms = timeout
                .saturating_add(buffer_seconds)
                .saturating_mul(1000)
                .saturating_sub(tolerance_ms);
            (initial_ms < floor_ms).then(|| {
                (
                    "below_floor",
                    json!({
                        "ttl_ms": ttl_ms,
                        "age_ms": age_ms,
                        "initial_ttl_ms": initial_ms,
                        "floor_ms": floor_ms,
                    }),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::{KeyTtl, SlotMeta};
    use crate::testing::{SnapshotBuilder, T0, run};

    const HOUR: i64 = 3_600_000;

    fn meta(ttl: KeyTtl, timeout: Option<i64>, read_at: i64) -> SlotMeta {
        SlotMeta {
            ttl,
            timeout_seconds: timeout,
            ttl_read_at_ms: read_at,
        }
    }

    #[test]
    fn a_fresh_slot_with_the_platform_ttl_holds() {
        let snap = SnapshotBuilder::new().slot("a", "e1", T0 - 1_000).build();
        assert!(run("S-03", &snap).is_empty());
    }

    #[test]
    fn an_hours_old_slot_with_a_correct_ttl_holds() {
        // Agent cap 1 h task: timeout 7200 s, acquired 2 h ago, TTL 300 s left.
        let snap = SnapshotBuilder::new()
            .slot_with_meta(
                "a",
                "e1",
                Some(T0 - 2 * HOUR),
                meta(KeyTtl::Remaining(300_000), Some(7200), T0),
            )
            .build();
        assert!(run("S-03", &snap).is_empty());
    }

    #[test]
    fn a_timeout_lower_than_the_agent_cap_holds() {
        // Dispatched with 60 s although the agent allows 900 s: floor is 360 s, not 1200 s.
        let snap = SnapshotBuilder::new()
            .agent("a")
            .slot_with_meta(
                "a",
                "e1",
                Some(T0 - 10_000),
                meta(KeyTtl::Remaining(350_000), Some(60), T0),
            )
            .build();
        assert!(run("S-03", &snap).is_empty());
    }

    #[test]
    fn a_short_ttl_fires_below_floor() {
        let snap = SnapshotBuilder::new()
            .slot_with_meta(
                "a",
                "e1",
                Some(T0 - 10_000),
                meta(KeyTtl::Remaining(60_000), Some(900), T0),
            )
            .build();
        let v = run("S-03", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].signal, "below_floor");
        assert_eq!(v[0].subject, "e1");
        assert_eq!(v[0].observed_state["initial_ttl_ms"], 70_000);
        assert_eq!(v[0].observed_state["floor_ms"], 1_199_000);
    }

    #[test]
    fn one_second_rounding_tolerance() {
        let at = |ttl| {
            SnapshotBuilder::new()
                .slot_with_meta(
                    "a",
                    "e1",
                    Some(T0 - 5_000),
                    meta(KeyTtl::Remaining(ttl), Some(900), T0),
                )
                .build()
        };
        assert!(run("S-03", &at(1_200_000 - 5_000 - 1_000)).is_empty());
        assert_eq!(run("S-03", &at(1_200_000 - 5_000 - 1_001)).len(), 1);
    }

    #[test]
    fn age_is_measured_at_the_read_instant_not_the_cycle_start() {
        // The TTL was read 20 s after taken_at (a slow cycle): using taken_at would under-count
        // the age by 20 s and report a correct slot.
        let read_at = T0 + 20_000;
        let acquired = T0 - 100_000;
        let ttl = 1_200_000 - (read_at - acquired);
        let snap = SnapshotBuilder::new()
            .slot_with_meta(
                "a",
                "e1",
                Some(acquired),
                meta(KeyTtl::Remaining(ttl), Some(900), read_at),
            )
            .build();
        assert!(run("S-03", &snap).is_empty());
    }

    #[test]
    fn no_expiry_fires_and_missing_metadata_is_left_to_s04() {
        let snap = SnapshotBuilder::new()
            .slot_with_meta("a", "e1", Some(T0), meta(KeyTtl::Missing, None, T0))
            .slot_with_meta("a", "e2", Some(T0), meta(KeyTtl::NoExpiry, Some(900), T0))
            .build();
        let v = run("S-03", &snap);
        let signals: Vec<_> = v
            .iter()
            .map(|v| (v.subject.as_str(), v.signal.as_str()))
            .collect();
        assert_eq!(signals, [("e2", "no_expiry")]);
    }

    #[test]
    fn without_timeout_field_or_score_below_floor_is_not_judged() {
        let snap = SnapshotBuilder::new()
            .slot_with_meta("a", "e1", Some(T0), meta(KeyTtl::Remaining(1), None, T0))
            .slot_with_meta("a", "e2", None, meta(KeyTtl::Remaining(1), Some(900), T0))
            .build();
        assert!(run("S-03", &snap).is_empty());
    }

    #[test]
    fn sentinels_are_not_judged() {
        let snap = SnapshotBuilder::new().sentinel("a", "drain-1", T0).build();
        assert!(run("S-03", &snap).is_empty());
    }
}
