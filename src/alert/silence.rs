//! What a silence or a maintenance window covers, and what a cycle does about it (issue 14).
//! Pure: plain data in, decisions out; the cycle calls it inside its transaction (see
//! `cycle::alerts`), the store keeps the silences and the transitions' `silenced_by`.
//!
//! The rules, exactly:
//!
//! - A **matcher** (a silence, or an active `alerts.maintenance_windows` entry) names invariant
//!   ids and optionally a subject glob (`*` any run of characters, `?` one character, everything
//!   else literal, whole-subject match, case-sensitive).
//! - It **covers** a transition when it names the transition's id and, if it has a glob, the
//!   transition has at least one subject and EVERY subject matches the glob. The subjects of a
//!   fired (or reminder) transition are the violating subjects of this cycle; when the evidence
//!   was capped (`state.max_subjects_per_invariant`) the full list is unknown, so a glob covers
//!   nothing (never hide what cannot be checked). The subjects of a resolved transition are the
//!   episodes it closed.
//! - Blind sources (`source:<name>`) are covered only by a matcher naming `source:<name>`
//!   explicitly, and only without a glob (they have no subjects): silencing invariants never
//!   hides that canary cannot see.
//! - A covered transition is recorded with `silenced_by` and not sent. An invariant whose latest
//!   transition was silenced is **pending**. While pending and not covered, each cycle compares
//!   what Slack last heard (`announced_firing`) with the invariant's state: red and firing while
//!   Slack thinks it green → ONE fired message now (the silenced transition is released); green
//!   while Slack thinks it red → one resolved message; equal (a fire and its resolve both inside
//!   the silence) → nothing, ever. Unknown or not evaluated → wait.
//! - A resolve whose fire was never announced is not announced either, even outside the
//!   silence (it inherits the fire's `silenced_by`).

use std::time::Duration;

use canary_invariants::TransitionKind;

use crate::store::NewSilence;

/// A silence or an active maintenance window, as the cycle sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// What to record in `silenced_by`: `silence:<id>` or `window:<n>`.
    pub by: String,
    /// Invariant ids (or `source:<name>`).
    pub invariant_ids: Vec<String>,
    /// Subject glob.
    pub subject: Option<String>,
}

impl Matcher {
    /// Whether this matcher covers a transition of `id` whose subjects are `subjects` (`None`:
    /// unknown, e.g. capped evidence).
    pub fn covers(&self, id: &str, subjects: Option<&[&str]>) -> bool {
        if !self.invariant_ids.iter().any(|i| i == id) {
            return false;
        }
        match &self.subject {
            None => true,
            Some(glob) => match subjects {
                Some(s) if !s.is_empty() => s.iter().all(|x| glob_match(glob, x)),
                _ => false,
            },
        }
    }
}

/// The first matcher covering `id` with `subjects`, by its `by`.
pub fn covered_by<'m>(
    matchers: &'m [Matcher],
    id: &str,
    subjects: Option<&[&str]>,
) -> Option<&'m str> {
    matchers
        .iter()
        .find(|m| m.covers(id, subjects))
        .map(|m| m.by.as_str())
}

/// What Slack last heard about a pending id (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingView<'a> {
    /// The silenced transition's kind.
    pub kind: TransitionKind,
    /// What silenced it.
    pub silenced_by: &'a str,
    /// Slack was last told "fired".
    pub announced_firing: bool,
}

/// A transition of this cycle: announce it or record it silenced (by what).
pub fn decide(
    matchers: &[Matcher],
    id: &str,
    kind: TransitionKind,
    subjects: Option<&[&str]>,
    pending: Option<PendingView<'_>>,
) -> Option<String> {
    if let Some(by) = covered_by(matchers, id, subjects) {
        return Some(by.to_owned());
    }
    match pending {
        // The fire was never announced: its resolve is not either.
        Some(p) if kind == TransitionKind::Resolved && !p.announced_firing => {
            Some(p.silenced_by.to_owned())
        }
        _ => None,
    }
}

/// The state of a pending id this cycle, when it was judged (`None` = not evaluated, or unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Now {
    /// Red and firing.
    Firing,
    /// Green and not firing.
    Clear,
}

/// For a pending id with no transition this cycle: the message to send now, if any.
pub fn release(
    matchers: &[Matcher],
    id: &str,
    pending: PendingView<'_>,
    now: Option<Now>,
    subjects: Option<&[&str]>,
) -> Option<TransitionKind> {
    let kind = match (now?, pending.announced_firing) {
        (Now::Firing, false) => TransitionKind::Fired,
        (Now::Clear, true) => TransitionKind::Resolved,
        _ => return None,
    };
    // Still covered (by the same silence or another): keep waiting.
    let covered = match kind {
        TransitionKind::Fired => covered_by(matchers, id, subjects).is_some(),
        TransitionKind::Resolved => matchers
            .iter()
            .any(|m| m.by == pending.silenced_by || (m.subject.is_none() && m.covers(id, None))),
    };
    (!covered).then_some(kind)
}

/// A silence as an operator asks for it (CLI flags or the API body), before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// `--invariant` (repeatable) / `invariant_ids`.
    pub invariant_ids: Vec<String>,
    /// `--subject` / `subject`: a glob.
    pub subject: Option<String>,
    /// `--start` / `starts_at`, unix ms; `None` = now.
    pub starts_at_ms: Option<i64>,
    /// `--end` / `ends_at`, unix ms (or give a duration).
    pub ends_at_ms: Option<i64>,
    /// `--for` / `duration`, from the start.
    pub duration: Option<Duration>,
    /// `--author` / `author`.
    pub author: String,
    /// `--comment` / `comment`.
    pub comment: String,
}

impl Spec {
    /// The silence to store, or every problem in one message. `known` says whether an id can
    /// be silenced (catalog, custom, `source:<name>`).
    pub fn build(self, now_ms: i64, known: impl Fn(&str) -> bool) -> Result<NewSilence, String> {
        let mut problems = Vec::new();
        if self.invariant_ids.is_empty() {
            problems.push("name at least one invariant id (or source:<name>)".to_owned());
        }
        let unknown: Vec<&str> = self
            .invariant_ids
            .iter()
            .map(String::as_str)
            .filter(|id| !known(id))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!("unknown invariant id(s): {}", unknown.join(", ")));
        }
        let subject = match self.subject {
            Some(g) if g.trim().is_empty() => {
                problems.push("subject: empty glob (omit it to match every subject)".to_owned());
                None
            }
            other => other,
        };
        let start = self.starts_at_ms.unwrap_or(now_ms);
        let end = match (self.ends_at_ms, self.duration) {
            (Some(_), Some(_)) => {
                problems.push("give an end or a duration, not both".to_owned());
                None
            }
            (None, None) => {
                problems.push("give an end or a duration (e.g. 2h)".to_owned());
                None
            }
            (Some(end), None) => Some(end),
            (None, Some(d)) if d.is_zero() => {
                problems.push("duration: must be longer than 0s".to_owned());
                None
            }
            (None, Some(d)) => {
                Some(start.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
            }
        };
        if let Some(end) = end {
            if end <= now_ms {
                problems.push("the end is in the past: this silence would mute nothing".to_owned());
            } else if end <= start {
                problems.push("the end must be after the start".to_owned());
            }
        }
        if self.author.trim().is_empty() {
            problems.push("author: must not be empty".to_owned());
        }
        if self.comment.trim().is_empty() {
            problems.push("comment: say why (it is what the next operator reads)".to_owned());
        }
        match end {
            Some(end) if problems.is_empty() => Ok(NewSilence {
                invariant_ids: self.invariant_ids,
                subject_glob: subject,
                starts_at_ms: start,
                ends_at_ms: end,
                author: self.author.trim().to_owned(),
                comment: self.comment.trim().to_owned(),
            }),
            _ => Err(problems.join("; ")),
        }
    }
}

/// Whole-string wildcard match: `*` any run (also empty), `?` exactly one character, everything
/// else literal. Iterative with one backtrack point, so linear-ish and never recursive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(by: &str, ids: &[&str], subject: Option<&str>) -> Matcher {
        Matcher {
            by: by.to_owned(),
            invariant_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            subject: subject.map(str::to_owned),
        }
    }

    #[test]
    fn spec_builds_or_names_every_problem() {
        let known = |id: &str| id == "S-01" || id == "source:redis";
        let spec = Spec {
            invariant_ids: vec!["S-01".into()],
            subject: Some("fleet-*".into()),
            duration: Some(Duration::from_secs(7200)),
            author: " ops ".into(),
            comment: "migration".into(),
            ..Spec::default()
        };
        let s = spec.clone().build(1000, known).unwrap();
        assert_eq!(
            (s.starts_at_ms, s.ends_at_ms, s.author.as_str()),
            (1000, 7_201_000, "ops")
        );
        let err = Spec {
            invariant_ids: vec!["Z-9".into()],
            subject: Some(" ".into()),
            ends_at_ms: Some(500),
            author: String::new(),
            comment: String::new(),
            ..spec.clone()
        }
        .build(1000, known)
        .unwrap_err();
        for part in ["Z-9", "subject", "not both", "author", "comment"] {
            assert!(err.contains(part), "{part}: {err}");
        }
        let err = Spec {
            duration: None,
            ends_at_ms: Some(900),
            starts_at_ms: Some(0),
            ..spec
        }
        .build(1000, known)
        .unwrap_err();
        assert!(err.contains("in the past"), "{err}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("fleet-*", "fleet-1"));
        assert!(glob_match("fleet-*", "fleet-"));
        assert!(!glob_match("fleet-*", "prod-fleet-1"));
        assert!(glob_match("*-1", "fleet-1"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("é*", "élan"));
    }

    #[test]
    fn covers_every_subject_or_nothing() {
        let glob = m("silence:1", &["S-01"], Some("fleet-*"));
        assert!(glob.covers("S-01", Some(&["fleet-1", "fleet-2"])));
        assert!(
            !glob.covers("S-01", Some(&["fleet-1", "prod-2"])),
            "one subject outside"
        );
        assert!(
            !glob.covers("S-01", None),
            "capped evidence: unknown subjects"
        );
        assert!(!glob.covers("S-01", Some(&[])), "no subject to match");
        assert!(
            !glob.covers("E-02", Some(&["fleet-1"])),
            "another invariant"
        );
        let all = m("silence:2", &["S-01", "source:redis"], None);
        assert!(all.covers("S-01", None));
        assert!(all.covers("source:redis", None));
        assert!(!all.covers("source:sqlite", None));
    }

    #[test]
    fn decide_silences_covered_and_unannounced_resolves() {
        let ms = [m("silence:1", &["S-01"], None)];
        assert_eq!(
            decide(&ms, "S-01", TransitionKind::Fired, Some(&["a"]), None).as_deref(),
            Some("silence:1")
        );
        assert_eq!(
            decide(&ms, "E-02", TransitionKind::Fired, Some(&["a"]), None),
            None
        );
        let pending = PendingView {
            kind: TransitionKind::Fired,
            silenced_by: "silence:7",
            announced_firing: false,
        };
        assert_eq!(
            decide(
                &[],
                "S-01",
                TransitionKind::Resolved,
                Some(&["a"]),
                Some(pending)
            )
            .as_deref(),
            Some("silence:7"),
            "a resolve whose fire was never sent is not sent"
        );
        let announced = PendingView {
            announced_firing: true,
            ..pending
        };
        assert_eq!(
            decide(&[], "S-01", TransitionKind::Resolved, None, Some(announced)),
            None
        );
    }

    #[test]
    fn release_sends_only_what_slack_has_not_heard() {
        let fired = PendingView {
            kind: TransitionKind::Fired,
            silenced_by: "silence:1",
            announced_firing: false,
        };
        let s = Some(&["a"][..]);
        assert_eq!(
            release(&[], "S-01", fired, Some(Now::Firing), s),
            Some(TransitionKind::Fired)
        );
        assert_eq!(
            release(&[], "S-01", fired, Some(Now::Clear), s),
            None,
            "fire+resolve inside"
        );
        assert_eq!(release(&[], "S-01", fired, None, s), None, "unknown: wait");
        let still = [m("silence:1", &["S-01"], None)];
        assert_eq!(release(&still, "S-01", fired, Some(Now::Firing), s), None);
        let resolved = PendingView {
            kind: TransitionKind::Resolved,
            silenced_by: "silence:1",
            announced_firing: true,
        };
        assert_eq!(
            release(&[], "S-01", resolved, Some(Now::Clear), None),
            Some(TransitionKind::Resolved)
        );
        assert_eq!(
            release(&still, "S-01", resolved, Some(Now::Clear), None),
            None
        );
    }
}
