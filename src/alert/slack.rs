//! Slack Block Kit payloads, pure: a transition plus the cycle's violations in, one JSON message
//! out (DESIGN §7). Built when the cycle is recorded and stored in the outbox, so a message says
//! what was true when it happened, whenever it is finally delivered.
//!
//! Slack's limits are part of the contract and enforced here: header ≤ 150 characters, a section
//! ≤ 3 000, ≤ 50 blocks, and `&`, `<`, `>` escaped in every interpolated value (platform data is
//! untrusted: an execution id like `<!channel>` must not page a whole channel). Nothing here
//! panics, whatever `observed_state` holds; a payload that would break a limit anyway is replaced
//! by a count-only message. It must not do I/O or read a clock.

use canary_invariants::{Severity, Transition, TransitionKind, Violation, catalog};
use serde_json::{Map, Value, json};

/// Slack's limit on a header block's text.
pub const HEADER_MAX: usize = 150;
/// Slack's limit on a section block's text.
pub const SECTION_MAX: usize = 3000;
/// Slack's limit on the number of blocks in a message.
pub const BLOCKS_MAX: usize = 50;
/// Forensic lines shown before "+N more".
pub const FORENSIC_LINES: usize = 5;
/// One forensic line's budget, so five of them always fit a section.
const LINE_MAX: usize = 560;
/// Keys of `observed_state` rendered per line; more is an evidence dump, not a hint.
const KEYS_MAX: usize = 12;
/// Array items rendered per key.
const ITEMS_MAX: usize = 5;
/// A scalar's budget inside a rendered line.
const VALUE_MAX: usize = 80;

/// The Slack message for one transition. `violations` may be the whole cycle's list: only those
/// of the transition's invariant are used. `taken_at_ms` is the snapshot time.
pub fn payload(transition: &Transition, violations: &[Violation], taken_at_ms: i64) -> Value {
    let total = violations
        .iter()
        .filter(|v| v.invariant_id == transition.invariant_id)
        .count();
    payload_counted(transition, violations, total, taken_at_ms)
}

/// [`payload`] when `violations` is capped evidence: `total` is how many the invariant found
/// (the summary says it, "+N more" counts from it), the lines come from the evidence.
pub fn payload_counted(
    transition: &Transition,
    violations: &[Violation],
    total: usize,
    taken_at_ms: i64,
) -> Value {
    let meta = catalog::find(&transition.invariant_id).map_or(
        Meta {
            name: "",
            runbook: "",
        },
        |inv| Meta {
            name: inv.meta().name,
            runbook: inv.meta().runbook,
        },
    );
    payload_with_total(transition, violations, total, taken_at_ms, meta)
}

/// The name and runbook shown for an invariant: the catalog's for built-ins, the configuration's
/// for operator-defined (custom) invariants. Both are escaped like any other interpolated value.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    /// Short name (empty: the header shows the id only).
    pub name: &'a str,
    /// Runbook hint (empty: no runbook section).
    pub runbook: &'a str,
}

/// [`payload`] with the name and runbook given, for invariants outside the catalog.
pub fn payload_with(
    transition: &Transition,
    violations: &[Violation],
    taken_at_ms: i64,
    meta: Meta<'_>,
) -> Value {
    let total = violations
        .iter()
        .filter(|v| v.invariant_id == transition.invariant_id)
        .count();
    payload_with_total(transition, violations, total, taken_at_ms, meta)
}

/// [`payload_with`] when `violations` is capped evidence and `total` the invariant's full count:
/// the message reports `total` and says how many were kept.
pub fn payload_with_total(
    transition: &Transition,
    violations: &[Violation],
    total: usize,
    taken_at_ms: i64,
    meta: Meta<'_>,
) -> Value {
    let own: Vec<&Violation> = violations
        .iter()
        .filter(|v| v.invariant_id == transition.invariant_id)
        .collect();
    // Never report fewer than the evidence shows, whatever the caller passed.
    let total = total.max(own.len());
    let full = build(transition, &own, total, taken_at_ms, meta);
    if within_limits(&full) {
        full
    } else {
        count_only(transition, total, taken_at_ms, meta.name)
    }
}

/// The message `canary alert test` posts.
pub fn test_message() -> Value {
    let text = "canary: test message. If you can read this, alerts reach this channel.";
    json!({
        "text": text,
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": "🧪 canary test message" } },
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
        ],
    })
}

/// Escapes Slack's three control characters (`&` first, so entities are not double-escaped).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Truncates to at most `max` characters on a char boundary, ending in `…` when cut, and never
/// leaving half an escape entity (`&am`) behind.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    // An entity is at most 5 chars (`&amp;`): drop a trailing unterminated one.
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut.truncate(amp);
    }
    cut.push('…');
    cut
}

/// Escapes, then truncates (escaping can only lengthen, so the limit holds on what Slack sees).
fn esc(text: &str, max: usize) -> String {
    truncate(&escape(text), max)
}

fn emoji(kind: TransitionKind, severity: Severity) -> &'static str {
    match (kind, severity) {
        (TransitionKind::Resolved, _) => "✅",
        (TransitionKind::Fired, Severity::Critical) => "🔴",
        (TransitionKind::Fired, Severity::Major) => "🟠",
        (TransitionKind::Fired, Severity::Minor) => "🟡",
    }
}

/// "fired", "resolved", or "still red" for a `renotify_after` reminder.
fn verb(t: &Transition) -> &'static str {
    if t.reminder {
        "still red"
    } else {
        t.kind.as_str()
    }
}

fn header_text(t: &Transition, name: &str) -> String {
    let title = if name.is_empty() {
        format!("{} {}", t.invariant_id, verb(t))
    } else {
        format!("{} {} {}", t.invariant_id, name, verb(t))
    };
    format!(
        "{} {}",
        emoji(t.kind, t.severity),
        esc(&title, HEADER_MAX - 2)
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn build(t: &Transition, own: &[&Violation], n: usize, taken_at_ms: i64, meta: Meta<'_>) -> Value {
    let header = header_text(t, meta.name);
    let snapshot = rfc3339(taken_at_ms);
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": header, "emoji": true },
    })];
    let summary = match t.kind {
        TransitionKind::Fired if t.reminder => format!(
            "*Still red* (reminder) · severity *{}* · {n} violation{} · snapshot {snapshot}",
            t.severity.as_str(),
            plural(n)
        ),
        TransitionKind::Fired => format!(
            "*Fired* · severity *{}* · {n} violation{} · snapshot {snapshot}",
            t.severity.as_str(),
            plural(n)
        ),
        TransitionKind::Resolved => format!(
            "*Resolved* · severity *{}* · green again · snapshot {snapshot}",
            t.severity.as_str()
        ),
    };
    blocks.push(section(summary));
    if !own.is_empty() {
        let mut lines: Vec<String> = own
            .iter()
            .take(FORENSIC_LINES)
            .map(|v| forensic_line(v))
            .collect();
        if n > FORENSIC_LINES {
            lines.push(format!("+{} more", n - FORENSIC_LINES));
        }
        blocks.push(section(truncate(&lines.join("\n"), SECTION_MAX)));
    }
    if !meta.runbook.trim().is_empty() {
        let runbook = esc(meta.runbook, SECTION_MAX - 20);
        blocks.push(section(format!("*Runbook:* {runbook}")));
    }
    let mut context = vec![format!(
        "{} · snapshot {snapshot} · {n} violation{}",
        escape(&t.invariant_id),
        plural(n)
    )];
    if own.len() < n {
        context.push(format!("{} of {n} kept as evidence", own.len()));
    }
    if let Some(prev) = t.previous_at_ms {
        let span = human_span(t.at_ms.saturating_sub(prev));
        context.push(match t.kind {
            TransitionKind::Fired if t.reminder => format!("last notified {span} ago"),
            TransitionKind::Fired => format!("last red {span} ago"),
            TransitionKind::Resolved => format!("red for {span}"),
        });
    } else if t.kind == TransitionKind::Fired {
        context.push("first time red".to_owned());
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": truncate(&context.join(" · "), SECTION_MAX) }],
    }));
    json!({ "text": fallback_text(t, n, meta.name), "blocks": blocks })
}

/// The message when the full one would break a limit: header, counts, nothing from the data.
fn count_only(t: &Transition, n: usize, taken_at_ms: i64, name: &str) -> Value {
    json!({
        "text": fallback_text(t, n, name),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": header_text(t, name), "emoji": true } },
            section(format!(
                "*{}* · severity *{}* · {n} violation{} · snapshot {}{DETAILS_OMITTED}",
                verb(t),
                t.severity.as_str(),
                plural(n),
                rfc3339(taken_at_ms),
            )),
        ],
    })
}

/// What a count-only summary ends with.
const DETAILS_OMITTED: &str = " (details omitted: see `canary violations`)";

/// The count-only message derived from a stored `payload` (the deliverer's fallback when Slack
/// answers 400 `invalid_payload`): the same `text`, header and summary line (severity, counts,
/// snapshot, and any note), nothing from the platform's data (no forensic lines, no runbook, no
/// context). Works on whatever JSON is stored, never panics, stays within Slack's limits, and is
/// idempotent: applied to its own result it returns it unchanged (so the fallback is sent once).
pub fn count_only_fallback(payload: &Value) -> Value {
    let blocks = payload
        .get("blocks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let block_text = |kind: &str| {
        blocks
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|b| b.get("text"))
            .and_then(|t| t.get("text"))
            .and_then(Value::as_str)
    };
    let text = payload.get("text").and_then(Value::as_str).unwrap_or("");
    let header = block_text("header").unwrap_or(text);
    let header = if header.trim().is_empty() {
        "canary alert".to_owned()
    } else {
        truncate(header, HEADER_MAX)
    };
    let summary = block_text("section").unwrap_or("").trim_end();
    let summary = if summary.ends_with(DETAILS_OMITTED.trim_start()) {
        truncate(summary, SECTION_MAX)
    } else {
        let budget = SECTION_MAX - DETAILS_OMITTED.chars().count();
        format!("{}{DETAILS_OMITTED}", truncate(summary, budget))
    };
    let text = if text.trim().is_empty() {
        header.clone()
    } else {
        truncate(text, SECTION_MAX)
    };
    json!({
        "text": text,
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": header, "emoji": true } },
            section(summary.trim_start().to_owned()),
        ],
    })
}

/// A stored resolved `payload` with the note that the fired alert of its incident was never
/// delivered (`reason`: the fired row's secret-free `last_error`, escaped here). The note goes in
/// the `text` and at the end of the summary section (inserted after the header if there is
/// none), so the count-only fallback keeps it too. Never panics; stays within Slack's limits.
pub fn with_undelivered_note(payload: &Value, reason: &str) -> Value {
    let reason = esc(reason, 300);
    let note = format!("the fired alert for this incident could not be delivered: {reason}");
    with_note(payload, &note, "⚠️")
}

/// A stored or built `payload` with `note` (already escaped) appended to the `text` (` — note:
/// …`) and as a line `<icon> *Note:* …` at the end of the summary section (inserted after the
/// header if there is none), so the count-only fallback keeps it too. Never panics; stays within
/// Slack's limits.
pub fn with_note(payload: &Value, note: &str, icon: &str) -> Value {
    let mut out = match payload {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let text = out
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("resolved");
    let text = truncate(&format!("{text} — note: {note}"), SECTION_MAX);
    out.insert("text".to_owned(), Value::String(text));
    let line = format!("{icon} *Note:* {note}");
    let mut blocks = match out.remove("blocks") {
        Some(Value::Array(blocks)) => blocks,
        _ => Vec::new(),
    };
    let is = |b: &Value, kind: &str| b.get("type").and_then(Value::as_str) == Some(kind);
    let summary = blocks.iter_mut().find(|b| is(b, "section")).and_then(|b| {
        b.get_mut("text")
            .and_then(|t| t.get_mut("text"))
            .filter(|t| t.is_string())
    });
    if let Some(summary) = summary {
        let old = summary.as_str().unwrap_or("");
        let budget = SECTION_MAX.saturating_sub(line.chars().count() + 1);
        *summary = Value::String(format!("{}\n{line}", truncate(old, budget)));
    } else {
        let at = blocks
            .iter()
            .position(|b| is(b, "header"))
            .map_or(0, |i| i + 1);
        blocks.insert(at.min(blocks.len()), section(line));
        blocks.truncate(BLOCKS_MAX);
    }
    out.insert("blocks".to_owned(), Value::Array(blocks));
    Value::Object(out)
}

/// Violation (episode) ids listed in a message before "+N more".
pub const IDS_SHOWN: usize = 10;

/// Who sent a message and which stored rows it summarises (issue 14).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// `alerts.instance`: which canary sent it (several may share a channel).
    pub instance: &'a str,
    /// The violation episode ids the message summarises (`GET /api/canary/violations/{id}`),
    /// in the order shown; duplicates are dropped.
    pub violation_ids: &'a [i64],
}

/// `payload` naming its sender and its rows: the `text` (what a phone notification shows) ends
/// with `· canary <instance>`, and a context element says `canary <instance> · violation ids …` (at most
/// [`IDS_SHOWN`], then "+N more"). The count-only fallback keeps the `text`, so the instance
/// survives it. Never panics; stays within Slack's limits.
pub fn with_origin(payload: &Value, origin: Origin<'_>) -> Value {
    let mut out = match payload {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let instance = esc(origin.instance, 100);
    let text = out.get("text").and_then(Value::as_str).unwrap_or("");
    // At the end, so the text still starts with the emoji and the id (what people and tools
    // read first); the original is cut first so the instance always fits.
    let suffix = format!(" · canary {instance}");
    let text = format!(
        "{}{suffix}",
        truncate(text, SECTION_MAX - suffix.chars().count())
    );
    out.insert("text".to_owned(), Value::String(text));
    let mut ids: Vec<i64> = Vec::new();
    for id in origin.violation_ids {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    let mut line = format!("canary *{instance}*");
    if !ids.is_empty() {
        let shown: Vec<String> = ids.iter().take(IDS_SHOWN).map(i64::to_string).collect();
        line.push_str(&format!(
            " · violation id{} {}",
            if ids.len() == 1 { "" } else { "s" },
            shown.join(", ")
        ));
        if ids.len() > IDS_SHOWN {
            line.push_str(&format!(" +{} more", ids.len() - IDS_SHOWN));
        }
        line.push_str(" (`GET /api/canary/violations/{id}`)");
    }
    let element = json!({ "type": "mrkdwn", "text": truncate(&line, SECTION_MAX) });
    let mut blocks = match out.remove("blocks") {
        Some(Value::Array(blocks)) => blocks,
        _ => Vec::new(),
    };
    let context = blocks
        .iter_mut()
        .rev()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("context"))
        .and_then(|b| b.get_mut("elements"))
        .and_then(Value::as_array_mut)
        .filter(|e| e.len() < 10);
    match context {
        Some(elements) => elements.push(element),
        None => {
            blocks.truncate(BLOCKS_MAX - 1);
            blocks.push(json!({ "type": "context", "elements": [element] }));
        }
    }
    out.insert("blocks".to_owned(), Value::Array(blocks));
    Value::Object(out)
}

fn fallback_text(t: &Transition, n: usize, name: &str) -> String {
    let what = match t.kind {
        TransitionKind::Fired => format!(
            "{}: {n} violation{} ({})",
            verb(t),
            plural(n),
            t.severity.as_str()
        ),
        TransitionKind::Resolved => "resolved".to_owned(),
    };
    truncate(
        &format!(
            "{} {} {} {what}",
            emoji(t.kind, t.severity),
            escape(&t.invariant_id),
            escape(name)
        ),
        SECTION_MAX,
    )
}

fn section(text: String) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

/// `• subject — summary` then the compact evidence on the next line. Subjects go in code spans
/// only after escaping, and backticks are stripped so a subject cannot close the span.
fn forensic_line(v: &Violation) -> String {
    let subject = esc(&v.subject.replace('`', "'"), 120);
    let summary = esc(&v.summary, 300);
    let mut line = format!("• `{subject}` — {summary}");
    if let Some(evidence) = render_observed(&v.observed_state) {
        line.push_str("\n      ");
        line.push_str(&evidence);
    }
    truncate(&line, LINE_MAX)
}

/// A one-line rendering of `observed_state` (`key=value · key=[a, b +3]`), escaped. `None` when
/// there is nothing useful to show (null, empty, or too large to summarise: then the line keeps
/// just the subject and summary).
pub fn render_observed(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::Object(map) => render_object(map)?,
        Value::Array(items) => render_array(items),
        scalar => render_scalar(scalar),
    };
    (!text.is_empty()).then(|| esc(&text, LINE_MAX / 2))
}

fn render_object(map: &Map<String, Value>) -> Option<String> {
    if map.is_empty() || map.len() > KEYS_MAX * 4 {
        return None;
    }
    let mut parts: Vec<String> = map
        .iter()
        .take(KEYS_MAX)
        .map(|(k, v)| format!("{}={}", truncate(k, 40), render_value(v)))
        .collect();
    if map.len() > KEYS_MAX {
        parts.push(format!("+{} keys", map.len() - KEYS_MAX));
    }
    Some(parts.join(" · "))
}

/// One level deep only: nested containers are counted, never walked (no recursion on
/// attacker-shaped depth).
fn render_value(v: &Value) -> String {
    match v {
        Value::Array(items) => render_array(items),
        Value::Object(m) => format!("{{{} keys}}", m.len()),
        scalar => render_scalar(scalar),
    }
}

fn render_array(items: &[Value]) -> String {
    let mut shown: Vec<String> = items
        .iter()
        .take(ITEMS_MAX)
        .map(|i| match i {
            Value::Array(a) => format!("[{} items]", a.len()),
            Value::Object(m) => format!("{{{} keys}}", m.len()),
            scalar => render_scalar(scalar),
        })
        .collect();
    if items.len() > ITEMS_MAX {
        shown.push(format!("+{}", items.len() - ITEMS_MAX));
    }
    format!("[{}]", shown.join(", "))
}

fn render_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => truncate(s, VALUE_MAX),
        Value::Null => "null".to_owned(),
        other => truncate(&other.to_string(), VALUE_MAX),
    }
}

/// Checks every Slack limit on a built payload.
pub fn within_limits(payload: &Value) -> bool {
    let Some(blocks) = payload.get("blocks").and_then(Value::as_array) else {
        return false;
    };
    if blocks.len() > BLOCKS_MAX {
        return false;
    }
    let chars = |v: Option<&Value>| v.and_then(Value::as_str).map(|s| s.chars().count());
    blocks.iter().all(|b| {
        let block_text = chars(b.get("text").and_then(|t| t.get("text")));
        match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "header" => block_text.is_some_and(|n| n <= HEADER_MAX),
            "section" => block_text.is_some_and(|n| n <= SECTION_MAX),
            "context" => b
                .get("elements")
                .and_then(Value::as_array)
                .is_some_and(|els| {
                    els.len() <= 10
                        && els
                            .iter()
                            .all(|e| chars(e.get("text")).is_some_and(|n| n <= SECTION_MAX))
                }),
            _ => false,
        }
    })
}

/// `12m`, `3h 5m`, `2d 4h`, `40s`: how long, for "red for" and "last red … ago".
pub fn human_span(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn rfc3339(ms: i64) -> String {
    crate::clock::format_ms(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_invariants::Tier;
    use proptest::prelude::*;

    const AT: i64 = 1_795_000_000_000; // 2026-11-18T11:06:40Z

    fn fired(id: &str, severity: Severity, previous: Option<i64>) -> Transition {
        Transition {
            invariant_id: id.to_owned(),
            kind: TransitionKind::Fired,
            severity,
            at_ms: AT,
            previous_at_ms: previous,
            reminder: false,
        }
    }

    fn resolved(id: &str, fired_at: i64) -> Transition {
        Transition {
            kind: TransitionKind::Resolved,
            previous_at_ms: Some(fired_at),
            ..fired(id, Severity::Critical, None)
        }
    }

    fn violation(id: &str, subject: &str, summary: &str, observed: Value) -> Violation {
        Violation {
            invariant_id: id.to_owned(),
            tier: Tier::A,
            severity: Severity::Critical,
            subject: subject.to_owned(),
            summary: summary.to_owned(),
            observed_state: observed,
            signal: "test".to_owned(),
        }
    }

    fn texts(p: &Value) -> Vec<String> {
        p["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                b["text"]["text"]
                    .as_str()
                    .or_else(|| b["elements"][0]["text"].as_str())
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    /// What Slack must receive for a catalog text, written independently of [`escape`] (the
    /// builder's own helper must not compute the expected value): `&` first, then `<` and `>`.
    fn escaped(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    /// Slack's documented Block Kit limits, checked independently of [`within_limits`] (the
    /// builder's own check must not be the oracle of its output): the numbers are written out.
    fn assert_slack_limits(p: &Value) {
        let blocks = p["blocks"].as_array().unwrap();
        assert!(
            !blocks.is_empty() && blocks.len() <= 50,
            "{} blocks",
            blocks.len()
        );
        assert!(p["text"].is_string(), "no fallback text");
        let chars = |v: &Value| v.as_str().map_or(usize::MAX, |s| s.chars().count());
        for b in blocks {
            match b["type"].as_str() {
                Some("header") => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    assert!(chars(&b["text"]["text"]) <= 150, "header: {b}");
                }
                Some("section") => assert!(chars(&b["text"]["text"]) <= 3000, "section: {b}"),
                Some("context") => {
                    let els = b["elements"].as_array().unwrap();
                    assert!(!els.is_empty() && els.len() <= 10, "context: {b}");
                    for e in els {
                        assert!(chars(&e["text"]) <= 3000, "context: {b}");
                    }
                }
                other => panic!("unexpected block type {other:?}"),
            }
        }
    }

    fn core_violation(id: &str) -> Violation {
        match id {
            "S-01" => violation(
                id,
                "agent-a",
                "slot set and running rows differ",
                json!({"agent": "agent-a", "in_redis_only": ["x1"], "in_sql_only": [], "slot_count": 2, "running_rows": 1}),
            ),
            "E-02" => violation(
                id,
                "exec-9",
                "terminal execution is running again",
                json!({"execution_id": "exec-9", "agent": "agent-b", "previous_status": "success", "current_status": "running", "seen_terminal_at_ms": AT - 60_000}),
            ),
            "L-03" => violation(
                id,
                "agent-gone",
                "rows reference a deleted agent",
                json!({"agent": "agent-gone", "tables": ["agent_tags"], "slot_key": null}),
            ),
            "S-02" => violation(
                id,
                "agent-d",
                "agent agent-d holds 4 slots but its cap is 3",
                json!({"agent": "agent-d", "slot_count": 4, "max_parallel_tasks": 3, "members": ["a", "b", "c", "d"]}),
            ),
            "S-07" => violation(
                id,
                "agent-e:drain-7",
                "drain sentinel drain-7 of agent agent-e is 600 s old",
                json!({"agent": "agent-e", "sentinel": "drain-7", "age_ms": 600_000, "max_age_ms": 10_000}),
            ),
            _ => violation(
                id,
                "exec-3",
                "slot TTL below floor",
                json!({"agent": "agent-c", "execution_id": "exec-3", "timeout_seconds": 600, "ttl_ms": 1000, "age_ms": 5000, "initial_ttl_ms": 6000, "floor_ms": 899000}),
            ),
        }
    }

    #[test]
    fn s01_fired_full_payload() {
        let p = payload(
            &fired("S-01", Severity::Critical, None),
            &[core_violation("S-01")],
            AT,
        );
        let runbook = escaped(catalog::find("S-01").unwrap().meta().runbook);
        let expected = json!({
            "text": "🔴 S-01 Slot–row bijection fired: 1 violation (critical)",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "🔴 S-01 Slot–row bijection fired", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Fired* · severity *critical* · 1 violation · snapshot 2026-11-18T11:06:40.000Z"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "• `agent-a` — slot set and running rows differ\n      agent=agent-a · in_redis_only=[x1] · in_sql_only=[] · running_rows=1 · slot_count=2"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Runbook:* {runbook}")}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "S-01 · snapshot 2026-11-18T11:06:40.000Z · 1 violation · first time red"}]},
            ],
        });
        assert_eq!(p, expected);
    }

    #[test]
    fn every_invariant_fired_and_resolved() {
        for id in canary_invariants::catalog::ids() {
            let meta = catalog::find(id).unwrap().meta();
            let v = core_violation(id);
            let p = payload(
                &fired(id, meta.severity, None),
                std::slice::from_ref(&v),
                AT,
            );
            let t = texts(&p);
            assert_eq!(t.len(), 5, "{id}: {t:?}");
            let icon = match meta.severity {
                Severity::Critical => "🔴",
                Severity::Major => "🟠",
                Severity::Minor => "🟡",
            };
            assert_eq!(t[0], format!("{icon} {id} {} fired", escaped(meta.name)));
            assert!(
                t[1].starts_with(&format!(
                    "*Fired* · severity *{}* · 1 violation",
                    meta.severity
                )),
                "{t:?}"
            );
            assert!(
                t[2].contains(&v.subject) && t[2].contains(&v.summary),
                "{t:?}"
            );
            assert!(t[3].starts_with("*Runbook:* "));
            assert_slack_limits(&p);

            let p = payload(&resolved(id, AT - 12 * 60_000), &[], AT);
            let t = texts(&p);
            assert_eq!(t.len(), 4, "{id}: {t:?}");
            assert_eq!(t[0], format!("✅ {id} {} resolved", escaped(meta.name)));
            assert!(t[1].starts_with("*Resolved*"));
            assert!(t[3].ends_with("0 violations · red for 12m"), "{t:?}");
            assert!(p["text"].as_str().unwrap().ends_with("resolved"));
        }
    }

    #[test]
    fn severity_emoji() {
        for (s, e) in [
            (Severity::Critical, "🔴"),
            (Severity::Major, "🟠"),
            (Severity::Minor, "🟡"),
        ] {
            let p = payload(&fired("L-03", s, None), &[], AT);
            assert!(texts(&p)[0].starts_with(e));
        }
    }

    #[test]
    fn capped_evidence_reports_the_full_count_and_says_how_much_was_kept() {
        let vs: Vec<Violation> = (0..7)
            .map(|i| violation("S-04", &format!("leaked-{i}"), "no meta", json!({})))
            .collect();
        let t = fired("S-04", Severity::Critical, None);
        let p = payload_counted(&t, &vs, 100_000, AT);
        let texts = texts(&p);
        assert!(texts[1].contains("100000 violations"), "{texts:?}");
        assert!(texts[2].ends_with("+99995 more"), "{}", texts[2]);
        let context = p["blocks"].as_array().unwrap().last().unwrap().to_string();
        assert!(
            context.contains("7 of 100000 kept as evidence"),
            "{context}"
        );
        assert!(
            p["text"].as_str().unwrap().contains("100000"),
            "{}",
            p["text"]
        );
        // A total below the evidence is never reported.
        let p = payload_counted(&t, &vs, 3, AT);
        assert!(super::tests::texts(&p)[1].contains("7 violations"));
    }

    #[test]
    fn only_the_transitions_violations_and_plus_n_more() {
        let mut vs: Vec<Violation> = (0..12)
            .map(|i| {
                violation(
                    "S-01",
                    &format!("agent-{i:02}"),
                    "differ",
                    json!({"agent": i}),
                )
            })
            .collect();
        vs.push(violation("E-02", "other", "not mine", json!({})));
        let p = payload(&fired("S-01", Severity::Critical, None), &vs, AT);
        let t = texts(&p);
        assert!(t[1].contains("12 violations"));
        let lines: Vec<&str> = t[2].lines().filter(|l| l.starts_with('•')).collect();
        assert_eq!(lines.len(), 5);
        assert!(t[2].ends_with("+7 more"), "{}", t[2]);
        assert!(!t[2].contains("not mine"));
    }

    #[test]
    fn last_red_ago_on_reopening() {
        let p = payload(
            &fired("E-02", Severity::Critical, Some(AT - 47 * 60_000)),
            &[core_violation("E-02")],
            AT,
        );
        assert!(
            texts(&p)[4].ends_with("· last red 47m ago"),
            "{:?}",
            texts(&p)
        );
    }

    #[test]
    fn a_reminder_says_still_red_and_when_it_was_last_notified() {
        let mut t = fired("S-01", Severity::Critical, Some(AT - 4 * 3_600_000));
        t.reminder = true;
        let p = payload(&t, &[core_violation("S-01")], AT);
        let all = texts(&p);
        assert!(
            all[0].contains("S-01 Slot–row bijection still red"),
            "{all:?}"
        );
        assert!(all[1].starts_with("*Still red* (reminder)"), "{all:?}");
        assert!(all[4].ends_with("· last notified 4h ago"), "{all:?}");
    }

    #[test]
    fn platform_data_is_escaped() {
        let v = violation(
            "S-01",
            "<!channel>",
            "see <https://evil|x> & more",
            json!({"agent": "<!here>", "<k>": ["<@U123>"]}),
        );
        let p = payload(&fired("S-01", Severity::Critical, None), &[v], AT);
        let all = p.to_string();
        for bad in [
            "<!channel>",
            "<https://evil|x>",
            "<!here>",
            "<@U123>",
            "<k>",
        ] {
            assert!(!all.contains(bad), "{bad} leaked: {all}");
        }
        let t = texts(&p);
        assert!(
            t[2].contains("`&lt;!channel&gt;` — see &lt;https://evil|x&gt; &amp; more"),
            "{}",
            t[2]
        );
        assert!(t[2].contains("&lt;k&gt;=[&lt;@U123&gt;]"), "{}", t[2]);
    }

    #[test]
    fn backticks_cannot_close_the_code_span() {
        let v = violation("S-01", "a` <!channel> `b", "s", Value::Null);
        let p = payload(&fired("S-01", Severity::Critical, None), &[v], AT);
        assert!(texts(&p)[2].starts_with("• `a' &lt;!channel&gt; 'b` — s"));
    }

    #[test]
    fn limits_hold_with_a_100kb_summary() {
        let huge = "<&>".repeat(35_000);
        let vs: Vec<Violation> = (0..8)
            .map(|i| violation("S-01", &huge, &huge, json!({ "blob": huge, "i": i })))
            .collect();
        let p = payload(&fired("S-01", Severity::Critical, None), &vs, AT);
        assert_slack_limits(&p);
        for t in texts(&p) {
            assert!(t.chars().count() <= 3000);
            // No half entity left behind by truncation.
            for (i, _) in t.match_indices('&') {
                let rest = &t[i..];
                assert!(
                    rest.starts_with("&amp;")
                        || rest.starts_with("&lt;")
                        || rest.starts_with("&gt;"),
                    "broken entity at {i}"
                );
            }
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("ab&amp;", 5), "ab…");
        assert_eq!(truncate("🔴🔴🔴", 2), "🔴…");
    }

    #[test]
    fn human_spans() {
        assert_eq!(human_span(40_000), "40s");
        assert_eq!(human_span(12 * 60_000), "12m");
        assert_eq!(human_span(3 * 3_600_000), "3h");
        assert_eq!(human_span(3 * 3_600_000 + 5 * 60_000), "3h 5m");
        assert_eq!(human_span(2 * 86_400_000 + 4 * 3_600_000), "2d 4h");
        assert_eq!(human_span(-5), "0s");
    }

    #[test]
    fn odd_observed_state_renders_or_is_omitted() {
        assert_eq!(render_observed(&Value::Null), None);
        assert_eq!(render_observed(&json!({})), None);
        assert_eq!(render_observed(&json!(7)).as_deref(), Some("7"));
        assert_eq!(
            render_observed(&json!([1, [2], {"a": 1}, 4, 5, 6, 7])).as_deref(),
            Some("[1, [1 items], {1 keys}, 4, 5, +2]")
        );
        let wide: Map<String, Value> = (0..1000).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(render_observed(&Value::Object(wide)), None);
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!({ "d": deep });
        }
        assert_eq!(render_observed(&deep).as_deref(), Some("d={1 keys}"));
    }

    #[test]
    fn test_message_fits() {
        assert_slack_limits(&test_message());
        assert!(within_limits(&test_message()));
    }

    /// `within_limits` decides when the builder falls back to the count-only message: it must
    /// reject each limit broken by one, against Slack's documented numbers written out here.
    #[test]
    fn within_limits_rejects_each_broken_limit() {
        let header = |n: usize| json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(n)}});
        let section = |n: usize| json!({"type": "section", "text": {"type": "mrkdwn", "text": "s".repeat(n)}});
        let context = |els: usize, n: usize| {
            let e: Vec<Value> = (0..els)
                .map(|_| json!({"type": "mrkdwn", "text": "c".repeat(n)}))
                .collect();
            json!({"type": "context", "elements": e})
        };
        let msg = |blocks: Vec<Value>| json!({"text": "t", "blocks": blocks});
        assert!(within_limits(&msg(vec![
            header(150),
            section(3000),
            context(10, 3000)
        ])));
        assert!(!within_limits(&msg(vec![header(151)])));
        assert!(!within_limits(&msg(vec![section(3001)])));
        assert!(!within_limits(&msg(vec![context(11, 1)])));
        assert!(!within_limits(&msg(vec![context(1, 3001)])));
        assert!(within_limits(&msg(vec![section(1); 50])));
        assert!(!within_limits(&msg(vec![section(1); 51])));
        assert!(!within_limits(&msg(vec![json!({"type": "image"})])));
        assert!(!within_limits(&json!({"text": "no blocks"})));
    }

    #[test]
    fn count_only_fallback_keeps_header_and_counts_drops_the_data() {
        let vs = [
            violation(
                "S-01",
                "agent-<x>",
                "leaked slot exec-77",
                json!({"slots": 3}),
            ),
            violation(
                "S-01",
                "agent-b",
                "leaked slot exec-78",
                json!({"slots": 4}),
            ),
        ];
        let full = payload(&fired("S-01", Severity::Critical, None), &vs, AT);
        let minimal = count_only_fallback(&full);
        assert_slack_limits(&minimal);
        assert_eq!(minimal["text"], full["text"]);
        assert_eq!(
            texts(&minimal),
            [
                "🔴 S-01 Slot–row bijection fired".to_owned(),
                "*Fired* · severity *critical* · 2 violations · snapshot 2026-11-18T11:06:40.000Z \
                 (details omitted: see `canary violations`)"
                    .to_owned(),
            ]
        );
        let all = minimal.to_string();
        for gone in ["agent-", "exec-77", "slots", "Runbook", "first time red"] {
            assert!(!all.contains(gone), "{gone} in {all}");
        }
        // Idempotent, so the deliverer sends the fallback at most once; a stored count-only
        // message (over-limit payload) is already its own fallback.
        assert_eq!(count_only_fallback(&minimal), minimal);
        let stored = count_only(&fired("S-01", Severity::Critical, None), 2, AT, "Slot");
        assert_eq!(count_only_fallback(&stored), stored);
    }

    #[test]
    fn count_only_fallback_of_garbage_is_still_a_message() {
        for garbage in [
            json!(null),
            json!("x"),
            json!({"blocks": 3}),
            json!({"text": ""}),
        ] {
            let m = count_only_fallback(&garbage);
            assert_slack_limits(&m);
            assert_eq!(count_only_fallback(&m), m, "{garbage}");
        }
    }

    #[test]
    fn undelivered_note_on_a_resolved_message() {
        let p = payload(&resolved("S-01", AT - 600_000), &[], AT);
        let noted = with_undelivered_note(&p, "HTTP 404: <!channel> no_service");
        assert_slack_limits(&noted);
        assert_eq!(
            noted["text"],
            "✅ S-01 Slot–row bijection resolved — note: the fired alert for this \
             incident could not be delivered: HTTP 404: &lt;!channel&gt; no_service"
        );
        let t = texts(&noted);
        assert_eq!(t.len(), texts(&p).len(), "no block added");
        assert!(
            t[1].starts_with("*Resolved*")
                && t[1].ends_with(
                    "\n⚠️ *Note:* the fired alert for this incident could not be delivered: \
                     HTTP 404: &lt;!channel&gt; no_service"
                ),
            "{}",
            t[1]
        );
        // The count-only fallback keeps the note.
        let minimal = count_only_fallback(&noted);
        assert!(
            texts(&minimal)[1].contains("could not be delivered"),
            "{minimal}"
        );
        // A payload without a section gets one after its header; garbage still makes a message.
        let bare = json!({"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h"}}]});
        let noted = with_undelivered_note(&bare, "x");
        assert_eq!(noted["blocks"][1]["type"], "section");
        assert_slack_limits(&with_undelivered_note(&json!(7), &"r".repeat(10_000)));
    }

    #[test]
    fn origin_names_the_instance_and_the_rows() {
        let p = payload(&fired("S-01", Severity::Critical, None), &[], AT);
        let ids: Vec<i64> = (1..=13).chain([3]).collect();
        let o = with_origin(
            &p,
            Origin {
                instance: "prod<eu>",
                violation_ids: &ids,
            },
        );
        assert_slack_limits(&o);
        assert!(
            o["text"]
                .as_str()
                .unwrap()
                .ends_with(" · canary prod&lt;eu&gt;"),
            "{o}"
        );
        let blocks = o["blocks"].as_array().unwrap();
        let context = &blocks[blocks.len() - 1];
        assert_eq!(context["type"], "context");
        assert_eq!(
            context["elements"][1]["text"],
            "canary *prod&lt;eu&gt;* · violation ids 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 +3 more \
             (`GET /api/canary/violations/{id}`)"
        );
        // The count-only fallback keeps the instance (in the text).
        assert!(
            count_only_fallback(&o)["text"]
                .as_str()
                .unwrap()
                .ends_with("canary prod&lt;eu&gt;")
        );
        // No context block: one is added; garbage still makes a message within the limits.
        let bare = json!({"text": "t", "blocks": []});
        let o = with_origin(
            &bare,
            Origin {
                instance: "i",
                violation_ids: &[],
            },
        );
        assert_eq!(o["blocks"][0]["elements"][0]["text"], "canary *i*");
        assert_slack_limits(&with_origin(
            &json!(7),
            Origin {
                instance: &"x".repeat(5000),
                violation_ids: &[],
            },
        ));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,400}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 16, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..20).prop_map(Value::from),
                prop::collection::btree_map(".{0,30}", inner, 0..20)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn never_panics_and_respects_limits(
            observed in prop::collection::vec(arb_json(), 0..12),
            subject in ".{0,300}",
            summary in ".{0,3000}",
            id in prop_oneof![Just("S-01".to_owned()), Just("L-03".to_owned()), ".{0,200}"],
            resolved_kind in any::<bool>(),
            previous in proptest::option::of(any::<i64>()),
            at in any::<i64>(),
        ) {
            let t = Transition {
                invariant_id: id.clone(),
                kind: if resolved_kind { TransitionKind::Resolved } else { TransitionKind::Fired },
                severity: Severity::Major,
                at_ms: at,
                previous_at_ms: previous,
                reminder: !resolved_kind && at % 2 == 0,
            };
            let vs: Vec<Violation> = observed
                .into_iter()
                .map(|o| violation(&id, &subject, &summary, o))
                .collect();
            let p = payload(&t, &vs, at);
            assert_slack_limits(&p);
            let blocks = p["blocks"].as_array().unwrap();
            prop_assert!(blocks.len() <= 50);
            prop_assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
            let noted = with_undelivered_note(&p, &summary);
            assert_slack_limits(&noted);
            let minimal = count_only_fallback(&noted);
            assert_slack_limits(&minimal);
            prop_assert_eq!(count_only_fallback(&minimal), minimal);
        }

        #[test]
        fn fallback_and_note_never_panic_on_stored_garbage(stored in arb_json(), reason in ".{0,500}") {
            let minimal = count_only_fallback(&stored);
            assert_slack_limits(&minimal);
            prop_assert_eq!(count_only_fallback(&minimal), minimal);
            assert_slack_limits(&count_only_fallback(&with_undelivered_note(&stored, &reason)));
        }
    }
}
