//! **S-07 Sentinel lifetime bounded** — tier A, minor; needs Redis.
//!
//! Rule: a drain sentinel (a slot member starting with the sentinel prefix, `drain-`) lives
//! less than `max_age_seconds` (10): its age is `taken_at − score`. Sentinels whose score is not
//! a number are not judged (the collector notes them as anomalies).
//!
//! Guards: a capacity-maintenance sweep that crashed mid-claim and left its sentinel behind; the
//! sentinel then occupies a slot forever (S-02 does not count it, but the platform may).

use serde_json::json;

use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::params::{Params, Problems, human_seconds_f, invariant_params, seconds_to_ms};
use crate::snapshot::Source;
use crate::violation::{Severity, Tier, Violation};

/// S-07.
#[derive(Debug)]
pub struct S07;

static META: InvariantMeta = InvariantMeta {
    id: "S-07",
    name: "Sentinel lifetime bounded",
    tier: Tier::A,
    severity: Severity::Minor,
    needs: &[Need::Source(Source::Redis)],
    guards: "Drain sweeps that crashed mid-claim and left their sentinel holding a slot.",
    runbook: "Look for a crashed or killed capacity-maintenance sweep at the sentinel's \
              timestamp; ZREM the sentinel once the sweep is healthy.",
};

invariant_params! {
    /// S-07 parameters.
    pub struct S07Params {
        /// A drain sentinel this old (or older) is stale.
        max_age_seconds: f64 = 10.0,
    }
}

impl Invariant for S07 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("A drain sentinel in a slot set lives less than {}.", human_seconds_f(params.s07.max_age_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, _t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Minor;
        let id = META.id;
        vec![v(
            id,
            Minor,
            "agent-0088:drain-1795000000",
            "stale_sentinel",
            "drain sentinel drain-1795000000 of agent agent-0088 is 600 s old",
            json!({"agent": "agent-0088", "sentinel": "drain-1795000000", "age_ms": 600_000, "max_age_ms": 10_000}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        // Zero would call every sentinel stale the instant it is placed.
        problems.positive("max_age_seconds", params.s07.max_age_seconds);
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let now = input.now_ms();
        let max_age_ms = seconds_to_ms(input.params.s07.max_age_seconds);
        let mut violations = Vec::new();
        for set in &input.redis.slot_sets {
            for member in set.members.iter().filter(|m| m.sentinel) {
                let Some(placed_at) = member.acquired_at_ms else {
                    continue;
                };
                let age_ms = now.saturating_sub(placed_at);
                if age_ms < max_age_ms {
                    continue;
                }
                violations.push(input.violation(
                    &META,
                    format!("{}:{}", set.agent_name, member.member),
                    "stale_sentinel",
                    format!(
                        "drain sentinel {} of agent {} is {} s old",
                        member.member,
                        set.agent_name,
                        age_ms / 1000
                    ),
                    json!({
                        "agent": set.agent_name,
                        "sentinel": member.member,
                        "age_ms": age_ms,
                        "max_age_ms": max_age_ms,
                    }),
                ));
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::SlotMember;
    use crate::testing::{SnapshotBuilder, T0, run};

    #[test]
    fn the_rule_shows_the_effective_threshold() {
        use crate::catalog::Invariant;
        let mut params = crate::Params::default();
        assert!(super::S07.rule(&params).contains("less than 10 s"));
        params.s07.max_age_seconds = 120.0;
        assert!(super::S07.rule(&params).contains("less than 120 s"));
    }

    #[test]
    fn a_young_sentinel_holds() {
        let snap = SnapshotBuilder::new()
            .sentinel("a", "drain-1", T0 - 9_999)
            .build();
        assert!(run("S-07", &snap).is_empty());
    }

    #[test]
    fn a_sentinel_of_ten_seconds_fires() {
        let snap = SnapshotBuilder::new()
            .sentinel("a", "drain-1", T0 - 10_000)
            .build();
        let v = run("S-07", &snap);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "a:drain-1");
        assert_eq!(v[0].signal, "stale_sentinel");
        assert_eq!(v[0].severity, crate::Severity::Minor);
    }

    #[test]
    fn executions_are_not_sentinels_and_garbage_scores_are_not_judged() {
        let mut b = SnapshotBuilder::new().slot("a", "e1", T0 - 3_600_000);
        let snap = {
            b = b.sentinel("a", "drain-2", T0);
            let mut s = b.build();
            if let Some(redis) = s.redis.as_mut() {
                redis.slot_sets[0].members.push(SlotMember {
                    member: "drain-3".to_owned(),
                    acquired_at_ms: None,
                    sentinel: true,
                    meta: None,
                });
            }
            s
        };
        assert!(run("S-07", &snap).is_empty());
    }
}
