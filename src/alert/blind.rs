//! The Slack message for a "canary is blind" transition (issue 11 §4): a platform source has been
//! unreadable for `alerts.blind_after` consecutive cycles (fired, critical), is still unreadable
//! (a `renotify_after` reminder), or is readable again (resolved). Pure, like [`super::slack`]:
//! it reuses its escaping, truncation and limits.
//!
//! The error shown is the collector's `sources_unavailable` text, which is secret-free by
//! contract (no URL, no password); it is escaped and truncated here like any interpolated value.
//! It must not do I/O, read a clock, or decide whether a source is blind (the pure diff does).

use canary_invariants::{Transition, TransitionKind};
use serde_json::{Value, json};

use super::slack::{HEADER_MAX, SECTION_MAX, escape, human_span, truncate, within_limits};

/// The longest error text shown (the rest is cut with an ellipsis).
const ERROR_MAX: usize = 500;

/// What the message says about the source, gathered by the cycle from the source's state.
#[derive(Debug, Clone, Copy)]
pub struct Blind<'a> {
    /// The source's name (`redis`, `sqlite`).
    pub source: &'a str,
    /// This cycle's secret-free error (fired/reminder); `None` once it is readable.
    pub error: Option<&'a str>,
    /// Consecutive unreadable cycles: so far (fired), or in total (resolved).
    pub cycles: u32,
    /// When the unreadable run began (unix ms).
    pub since_ms: i64,
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The one-line statement, e.g. `canary is blind: source redis unreadable for 3 cycles:
/// connection refused`. Escaped.
pub fn headline(t: &Transition, blind: &Blind<'_>) -> String {
    let source = escape(blind.source);
    let n = blind.cycles;
    match t.kind {
        TransitionKind::Fired => {
            let still = if t.reminder { "still " } else { "" };
            let error = blind.error.unwrap_or("unknown error");
            format!(
                "canary is {still}blind: source {source} unreadable for {n} cycle{}: {}",
                plural(n),
                truncate(&escape(error), ERROR_MAX)
            )
        }
        TransitionKind::Resolved => format!(
            "canary can see again: source {source} readable after {n} unreadable cycle{}",
            plural(n)
        ),
    }
}

/// The Slack message for a `source:<name>` transition.
pub fn payload(t: &Transition, blind: &Blind<'_>, taken_at_ms: i64) -> Value {
    let source = escape(blind.source);
    let header = match (t.kind, t.reminder) {
        (TransitionKind::Fired, false) => format!("🔴 canary is blind: source {source} unreadable"),
        (TransitionKind::Fired, true) => {
            format!("🔴 canary is still blind: source {source} unreadable")
        }
        (TransitionKind::Resolved, _) => format!("✅ canary can see again: source {source}"),
    };
    let header = truncate(&header, HEADER_MAX);
    let line = headline(t, blind);
    let snapshot = crate::clock::format_ms(taken_at_ms);
    let since = crate::clock::format_ms(blind.since_ms);
    let span = human_span(t.at_ms.saturating_sub(blind.since_ms));
    let summary = match t.kind {
        TransitionKind::Fired => format!(
            "*{}* · severity *{}* · unreadable since {since} ({span}) · snapshot {snapshot}",
            if t.reminder { "Still blind" } else { "Fired" },
            t.severity.as_str()
        ),
        TransitionKind::Resolved => format!(
            "*Resolved* · severity *{}* · blind for {span} · snapshot {snapshot}",
            t.severity.as_str()
        ),
    };
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": header, "emoji": true } }),
        section(truncate(&line, SECTION_MAX)),
        section(summary),
    ];
    if t.kind == TransitionKind::Fired {
        blocks.push(section(format!(
            "*Runbook:* check that canary can reach {source} (address, credentials, file path, \
             permissions). Until it can, every invariant that needs {source} is *unknown*: it \
             can neither fire nor resolve."
        )));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("{} · snapshot {snapshot}", escape(&t.invariant_id)) }],
    }));
    let emoji = if t.kind == TransitionKind::Resolved {
        "✅"
    } else {
        "🔴"
    };
    let text = truncate(
        &format!("{emoji} {} {line}", escape(&t.invariant_id)),
        SECTION_MAX,
    );
    let full = json!({ "text": text, "blocks": blocks });
    if within_limits(&full) {
        full
    } else {
        json!({ "text": text, "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": header, "emoji": true } },
        ] })
    }
}

fn section(text: String) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_invariants::Severity;

    const AT: i64 = 1_795_000_000_000; // 2026-11-18T11:06:40Z

    fn transition(kind: TransitionKind, reminder: bool) -> Transition {
        Transition {
            invariant_id: "source:redis".to_owned(),
            kind,
            severity: Severity::Critical,
            at_ms: AT,
            previous_at_ms: None,
            reminder,
        }
    }

    fn header(p: &Value) -> &str {
        p["blocks"][0]["text"]["text"].as_str().unwrap()
    }

    #[test]
    fn fired_names_source_cycles_and_error() {
        let blind = Blind {
            source: "redis",
            error: Some("connection refused"),
            cycles: 3,
            since_ms: AT - 120_000,
        };
        let p = payload(&transition(TransitionKind::Fired, false), &blind, AT);
        assert_eq!(header(&p), "🔴 canary is blind: source redis unreadable");
        assert_eq!(
            p["blocks"][1]["text"]["text"],
            "canary is blind: source redis unreadable for 3 cycles: connection refused"
        );
        let text = p.to_string();
        assert!(
            text.contains("unreadable since 2026-11-18T11:04:40.000Z (2m)"),
            "{text}"
        );
        assert!(text.contains("*Runbook:*"), "{text}");
        assert_eq!(
            p["text"],
            "🔴 source:redis canary is blind: source redis unreadable for 3 cycles: connection refused"
        );
    }

    #[test]
    fn reminder_and_resolved_say_so() {
        let blind = Blind {
            source: "sqlite",
            error: Some("unable to open database file"),
            cycles: 7,
            since_ms: AT - 3_600_000,
        };
        let p = payload(&transition(TransitionKind::Fired, true), &blind, AT);
        assert_eq!(
            header(&p),
            "🔴 canary is still blind: source sqlite unreadable"
        );
        let resolved = Blind {
            error: None,
            ..blind
        };
        let p = payload(&transition(TransitionKind::Resolved, false), &resolved, AT);
        assert_eq!(header(&p), "✅ canary can see again: source sqlite");
        assert_eq!(
            p["blocks"][1]["text"]["text"],
            "canary can see again: source sqlite readable after 7 unreadable cycles"
        );
        assert!(p.to_string().contains("blind for 1h"), "{p}");
        assert!(!p.to_string().contains("Runbook"), "{p}");
    }

    #[test]
    fn error_text_is_escaped_and_bounded() {
        let long = format!("<!channel> & {}", "x".repeat(10_000));
        let blind = Blind {
            source: "redis",
            error: Some(&long),
            cycles: 3,
            since_ms: AT,
        };
        let p = payload(&transition(TransitionKind::Fired, false), &blind, AT);
        let text = p.to_string();
        assert!(!text.contains("<!channel>") && text.contains("&lt;!channel&gt; &amp;"));
        assert!(within_limits(&p));
        assert!(text.len() < 4_000, "{}", text.len());
    }
}
