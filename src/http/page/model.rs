//! The status page's model: what the state database said ([`Facts`]), shaped into what the
//! template shows ([`StatusPage`]): one tile per invariant, one line per source, the 24 h
//! timeline's bars (SVG geometry computed here, so the template only places them), the latest
//! transitions with their delivery, the active silences.
//!
//! Pure: no I/O and no clock (`now_ms` is an argument), so every wording and every bar is unit
//! tested. It must not escape anything itself: the template escapes every value it prints (the
//! only unescaped output is the static icon markup below).

use std::collections::BTreeMap;

use askama::Template;
use canary_invariants::blind::{self, SOURCES};
use canary_invariants::{InvariantState, Millis, Outcome, TransitionKind};

use crate::alert::slack::human_span;
use crate::clock::format_ms;
use crate::registry::Registry;
use crate::store::{CycleBucket, Delivery, RecentTransition, StoredCycle, StoredViolation};

/// The timeline covers this long, ending at the current bucket's end.
pub const TIMELINE_MS: Millis = 24 * 3600 * 1000;
/// One bar per this long: with the default 5 min interval, one bar per cycle.
pub const BUCKET_MS: Millis = 5 * 60 * 1000;
/// Bars in the timeline.
pub const BUCKETS: u32 = 288;
/// Transitions listed.
pub const TRANSITIONS: u32 = 20;

/// SVG user units per bucket (the bar is one unit narrower: a gap between bars).
const SLOT: u32 = 5;
/// Height of the timeline's drawing area in SVG user units.
const HEIGHT: u32 = 100;

/// What the handler reads from the state database for one page.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Every invariant's and source's state (`source:<name>` for the sources).
    pub states: BTreeMap<String, InvariantState>,
    /// The most recently opened violation episode per invariant.
    pub last_violations: BTreeMap<String, StoredViolation>,
    /// The last recorded cycle.
    pub last_cycle: Option<StoredCycle>,
    /// The last cycle's full violation count per red invariant.
    pub counts: BTreeMap<String, u64>,
    /// The timeline's non-empty buckets.
    pub buckets: Vec<CycleBucket>,
    /// The newest transitions.
    pub transitions: Vec<RecentTransition>,
}

/// A silence that is not over (active, or starting later), as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceView {
    /// Silence id.
    pub id: i64,
    /// What it matches, in words (`S-01, subject fleet-*`).
    pub matchers: String,
    /// Who set it.
    pub author: String,
    /// Why.
    pub comment: String,
    /// When it started.
    pub starts: Stamp,
    /// When it ends.
    pub ends: Stamp,
}

impl SilenceView {
    /// A stored silence seen from `now_ms`; its end is the early expiry when there is one.
    pub fn new(silence: &crate::store::Silence, now_ms: Millis) -> SilenceView {
        let mut matchers = silence.invariant_ids.join(", ");
        if let Some(glob) = &silence.subject {
            matchers.push_str(&format!(", subject {glob}"));
        }
        SilenceView {
            id: silence.id,
            matchers,
            author: silence.author.clone(),
            comment: silence.comment.clone(),
            starts: Stamp::new(silence.starts_at_ms, now_ms),
            ends: Stamp::new(silence.effective_end_ms(), now_ms),
        }
    }
}

/// An instant as shown: machine-readable for `<time datetime>`, and in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// RFC 3339, for the `datetime` attribute.
    pub iso: String,
    /// `14:05:12 UTC (3m ago)`.
    pub text: String,
    /// `14:05:12 UTC` (or with the date when not today).
    pub clock: String,
}

impl Stamp {
    /// `ms` seen from `now_ms`: time of day when it is today (UTC), the date otherwise, and how
    /// long ago (or from now).
    pub fn new(ms: Millis, now_ms: Millis) -> Stamp {
        let iso = format_ms(ms);
        let same_day = ms.div_euclid(86_400_000) == now_ms.div_euclid(86_400_000);
        // format_ms: `2026-11-30T14:05:12.345Z`; cut to what a reader needs.
        let clock = iso.get(11..19).unwrap_or(&iso);
        let shown = if same_day {
            format!("{clock} UTC")
        } else {
            format!("{} {} UTC", iso.get(..10).unwrap_or(&iso), clock)
        };
        let delta = now_ms.saturating_sub(ms);
        let relative = if delta >= 0 {
            format!("{} ago", human_span(delta))
        } else {
            format!("in {}", human_span(-delta))
        };
        Stamp {
            iso,
            text: format!("{shown} ({relative})"),
            clock: shown,
        }
    }
}

/// The four verdicts a tile or a source line can show, each with its own text, colour and
/// shape (colour is never the only cue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Evaluated, no violation; a source read.
    Green,
    /// Evaluated, violated; a source unreadable.
    Red,
    /// Not evaluated: a source it needs was unavailable.
    Unknown,
    /// Disabled in the configuration, or a source it needs is not configured.
    NotConfigured,
    /// Enabled but no cycle has judged it yet.
    Pending,
}

impl Status {
    /// CSS class.
    pub fn class(&self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Red => "red",
            Status::Unknown => "unknown",
            Status::NotConfigured | Status::Pending => "off",
        }
    }

    /// The words on the badge.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Red => "red",
            Status::Unknown => "unknown",
            Status::NotConfigured => "not configured",
            Status::Pending => "not evaluated yet",
        }
    }

    /// A small inline SVG whose shape differs per verdict (static markup, printed unescaped).
    pub fn icon(&self) -> &'static str {
        match self {
            Status::Green => ICON_CHECK,
            Status::Red => ICON_ALERT,
            Status::Unknown => ICON_QUESTION,
            Status::NotConfigured | Status::Pending => ICON_OFF,
        }
    }

    /// Order on the page: what needs attention first.
    fn rank(self) -> u8 {
        match self {
            Status::Red => 0,
            Status::Unknown => 1,
            Status::Green => 2,
            Status::Pending => 3,
            Status::NotConfigured => 4,
        }
    }

    fn of(outcome: Outcome) -> Status {
        match outcome {
            Outcome::Green => Status::Green,
            Outcome::Red => Status::Red,
            Outcome::Unknown => Status::Unknown,
        }
    }
}

const ICON_CHECK: &str = r##"<svg class="icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false"><circle cx="8" cy="8" r="7" fill="currentColor"/><path d="M4.5 8.2l2.3 2.3 4.7-4.9" fill="none" stroke="#fff" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"/></svg>"##;
const ICON_ALERT: &str = r##"<svg class="icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false"><path d="M8 1.2l7 13.3H1z" fill="currentColor" stroke="currentColor" stroke-linejoin="round"/><path d="M8 6v4" stroke="#fff" stroke-width="2" stroke-linecap="round"/><circle cx="8" cy="12.3" r="1.1" fill="#fff"/></svg>"##;
const ICON_QUESTION: &str = r##"<svg class="icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false"><rect x="2.3" y="2.3" width="11.4" height="11.4" rx="1.5" transform="rotate(45 8 8)" fill="currentColor"/><path d="M6.2 6.4a1.9 1.9 0 1 1 2.6 1.8c-.6.3-.8.6-.8 1.2v.3" fill="none" stroke="#fff" stroke-width="1.6" stroke-linecap="round"/><circle cx="8" cy="11.6" r=".95" fill="#fff"/></svg>"##;
const ICON_OFF: &str = r##"<svg class="icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false"><circle cx="8" cy="8" r="6.2" fill="none" stroke="currentColor" stroke-width="1.6"/><path d="M5 8h6" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/></svg>"##;

/// One invariant's tile.
#[derive(Debug, Clone)]
pub struct Tile {
    /// Catalog (or custom) id.
    pub id: String,
    /// Short name.
    pub name: String,
    /// Its verdict.
    pub status: Status,
    /// Since when it has had that verdict.
    pub since: Option<Stamp>,
    /// The open incident's severity (while it fires).
    pub severity: Option<&'static str>,
    /// Violations in the last cycle (red only).
    pub violations: Option<u64>,
    /// The latest violation episode.
    pub last: Option<LastViolation>,
}

/// The latest violation of an invariant, as its tile shows it.
#[derive(Debug, Clone)]
pub struct LastViolation {
    /// What is broken (platform data: escaped by the template).
    pub subject: String,
    /// The summary (platform data too).
    pub summary: String,
    /// `open` or `closed`.
    pub open: bool,
    /// Last seen (open) or closed (closed).
    pub when: Stamp,
}

/// One platform source's line.
#[derive(Debug, Clone)]
pub struct SourceLine {
    /// `redis`, `sqlite`.
    pub name: &'static str,
    /// Readable, unreadable, not read yet.
    pub status: Status,
    /// The words beside the badge.
    pub detail: String,
    /// The last cycle's error for it (secret-free by the collector's contract).
    pub error: Option<String>,
    /// Since when.
    pub since: Option<Stamp>,
}

/// One bar of the timeline (SVG user units).
#[derive(Debug, Clone)]
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// `green`, `red`, `unknown`.
    pub class: &'static str,
    /// The tooltip / accessible text of the bar.
    pub title: String,
}

/// The 24 h timeline.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The bars, oldest first (empty buckets have none: canary did not run then).
    pub bars: Vec<Bar>,
    /// The SVG's width in user units.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// Grid lines every 6 h (x positions).
    pub grid: Vec<u32>,
    /// One sentence for screen readers and for the page: counts per verdict.
    pub summary: String,
}

/// One transition and its delivery.
#[derive(Debug, Clone)]
pub struct TransitionLine {
    /// When.
    pub at: Stamp,
    /// Invariant id or `source:<name>`.
    pub invariant_id: String,
    /// Its name, or "source … blind" for a source.
    pub name: String,
    /// `fired` / `resolved`.
    pub kind: &'static str,
    /// Red for fired, green for resolved.
    pub status: Status,
    /// Severity.
    pub severity: &'static str,
    /// `delivered`, `pending`, `abandoned`, `not sent`.
    pub delivery: &'static str,
    /// CSS class of the delivery badge.
    pub delivery_class: &'static str,
    /// When delivered / next attempt / why abandoned.
    pub delivery_detail: String,
}

/// The page's headline: the worst thing first.
#[derive(Debug, Clone)]
pub struct Headline {
    /// The overall verdict.
    pub status: Status,
    /// One sentence.
    pub text: String,
}

/// The whole page.
#[derive(Debug, Clone, Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    /// `<meta http-equiv="refresh">` seconds.
    pub refresh_secs: u64,
    /// When the page was made.
    pub generated: Stamp,
    /// The overall verdict.
    pub headline: Headline,
    /// The last cycle in words, if any.
    pub last_cycle: Option<String>,
    /// When it was.
    pub last_cycle_at: Option<Stamp>,
    /// Why the daemon is not ready (no recent cycle), if so.
    pub not_ready: Option<String>,
    /// One tile per invariant, catalog order then custom ones.
    pub tiles: Vec<Tile>,
    /// One line per platform source.
    pub sources: Vec<SourceLine>,
    /// The last 24 h.
    pub timeline: Timeline,
    /// The newest transitions.
    pub transitions: Vec<TransitionLine>,
    /// Active silences.
    pub silences: Vec<SilenceView>,
}

/// Everything the model needs besides the facts.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The registry of the running configuration.
    pub registry: Registry<'a>,
    /// `alerts.blind_after`.
    pub blind_after: u32,
    /// The page's refresh interval.
    pub refresh_secs: u64,
    /// `Err(reason)` when the daemon is not ready.
    pub readiness: Result<(), &'a str>,
    /// Now, unix ms.
    pub now_ms: Millis,
}

/// The timeline's window: `BUCKETS` buckets ending at the end of the bucket holding `now_ms`
/// (aligned, so bars do not shift between refreshes). Returns its start.
pub fn timeline_start(now_ms: Millis) -> Millis {
    let end = now_ms.div_euclid(BUCKET_MS).saturating_add(1) * BUCKET_MS;
    end - BUCKET_MS * i64::from(BUCKETS)
}

/// Builds the page.
pub fn build(facts: &Facts, ctx: &Context<'_>, silences: Vec<SilenceView>) -> StatusPage {
    let now = ctx.now_ms;
    let mut tiles = tiles(facts, ctx);
    // The worst first, catalog order within a verdict (the sort is stable).
    tiles.sort_by_key(|t| t.status.rank());
    let sources = sources(facts, ctx);
    let headline = headline(&tiles, &sources);
    StatusPage {
        refresh_secs: ctx.refresh_secs,
        generated: Stamp::new(now, now),
        headline,
        last_cycle: facts.last_cycle.as_ref().map(|c| {
            format!(
                "Last cycle #{} ({}, {:.0} ms, {} violation{})",
                c.id,
                c.trigger,
                c.duration_ms,
                c.violation_count,
                plural(c.violation_count)
            )
        }),
        last_cycle_at: facts
            .last_cycle
            .as_ref()
            .map(|c| Stamp::new(c.taken_at_ms, now)),
        not_ready: ctx.readiness.err().map(str::to_owned),
        tiles,
        sources,
        timeline: timeline(&facts.buckets, timeline_start(now)),
        transitions: facts
            .transitions
            .iter()
            .map(|t| transition_line(t, ctx))
            .collect(),
        silences,
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn tiles(facts: &Facts, ctx: &Context<'_>) -> Vec<Tile> {
    let now = ctx.now_ms;
    ctx.registry
        .all()
        .iter()
        .map(|d| {
            let id = d.id();
            let state = facts.states.get(id);
            let status = match (ctx.registry.configured(d), state) {
                (false, _) => Status::NotConfigured,
                (true, None) => Status::Pending,
                (true, Some(s)) => Status::of(s.state),
            };
            let last = facts.last_violations.get(id).map(|v| LastViolation {
                subject: v.subject.clone(),
                summary: v.summary.clone(),
                open: v.closed_at_ms.is_none(),
                when: Stamp::new(v.closed_at_ms.unwrap_or(v.last_seen_ms), now),
            });
            Tile {
                id: id.to_owned(),
                name: d.name().to_owned(),
                status,
                since: state
                    .filter(|_| status != Status::NotConfigured)
                    .map(|s| Stamp::new(s.since_ms, now)),
                severity: state
                    .filter(|s| s.firing)
                    .and_then(|s| s.severity)
                    .map(|s| s.as_str()),
                violations: (status == Status::Red)
                    .then(|| facts.counts.get(id).copied())
                    .flatten(),
                last,
            }
        })
        .collect()
}

fn sources(facts: &Facts, ctx: &Context<'_>) -> Vec<SourceLine> {
    let now = ctx.now_ms;
    SOURCES
        .into_iter()
        .map(|source| {
            let state = facts.states.get(&blind::state_id(source));
            let error = facts.last_cycle.as_ref().and_then(|c| {
                c.sources_unavailable
                    .iter()
                    .find(|u| u.source == source)
                    .map(|u| u.error.clone())
            });
            let (status, detail) = match state {
                None => (
                    Status::Pending,
                    "not read yet (or not used by this configuration)".to_owned(),
                ),
                Some(s) => match s.state {
                    Outcome::Green => (Status::Green, "readable".to_owned()),
                    Outcome::Red if s.firing => (
                        Status::Red,
                        format!(
                            "blind: unreadable for {} cycle{}; alert fired",
                            s.consecutive,
                            plural(u64::from(s.consecutive))
                        ),
                    ),
                    Outcome::Red => (
                        Status::Red,
                        format!(
                            "unreadable for {} cycle{} (alerts after {})",
                            s.consecutive,
                            plural(u64::from(s.consecutive)),
                            ctx.blind_after
                        ),
                    ),
                    Outcome::Unknown => (Status::Unknown, "unknown".to_owned()),
                },
            };
            SourceLine {
                name: source.as_str(),
                status,
                detail,
                error: error.filter(|_| status == Status::Red),
                since: state.map(|s| Stamp::new(s.since_ms, now)),
            }
        })
        .collect()
}

fn headline(tiles: &[Tile], sources: &[SourceLine]) -> Headline {
    let count = |st: Status| tiles.iter().filter(|t| t.status == st).count();
    let (red, unknown, green) = (
        count(Status::Red),
        count(Status::Unknown),
        count(Status::Green),
    );
    let blind: Vec<&str> = sources
        .iter()
        .filter(|s| s.status == Status::Red)
        .map(|s| s.name)
        .collect();
    let invariants = |n: usize| if n == 1 { "invariant" } else { "invariants" };
    let mut parts = Vec::new();
    if red > 0 {
        parts.push(format!("{red} {} red", invariants(red)));
    }
    if unknown > 0 {
        parts.push(format!("{unknown} unknown"));
    }
    if !blind.is_empty() {
        parts.push(format!("source unreadable: {}", blind.join(", ")));
    }
    let status = if red > 0 {
        Status::Red
    } else if unknown > 0 || !blind.is_empty() {
        Status::Unknown
    } else if green > 0 {
        Status::Green
    } else {
        Status::Pending
    };
    let text = match status {
        Status::Green => format!("All {green} evaluated {} green", invariants(green)),
        Status::Pending | Status::NotConfigured => "No verdict yet: no cycle recorded".to_owned(),
        Status::Red | Status::Unknown => parts.join(" · "),
    };
    Headline { status, text }
}

/// The bars: height says the verdict (green short, unknown middle, red tall, taller with more
/// violations, on a log scale), so the shape carries it as well as the colour.
fn timeline(buckets: &[CycleBucket], start_ms: Millis) -> Timeline {
    let max = buckets.iter().map(|b| b.max_violations).max().unwrap_or(0);
    let bars = buckets
        .iter()
        .filter(|b| b.index < BUCKETS && b.cycles > 0)
        .map(|b| {
            let (class, height) = if b.red > 0 {
                // 40..=100 by log(1 + violations) relative to the window's worst bucket.
                let scale = (1.0 + b.max_violations as f64).ln() / (1.0 + max as f64).ln();
                ("red", 40 + (scale.clamp(0.0, 1.0) * 60.0).round() as u32)
            } else if b.unknown > 0 {
                ("unknown", 26)
            } else {
                ("green", 12)
            };
            let from = start_ms + BUCKET_MS * i64::from(b.index);
            let clock = |ms: Millis| format_ms(ms).get(11..16).unwrap_or_default().to_owned();
            let green = b.cycles - b.red - b.unknown;
            let title = format!(
                "{}–{} UTC: {} cycle{} ({} red, {} unknown, {} green), at most {} violation{}",
                clock(from),
                clock(from + BUCKET_MS),
                b.cycles,
                plural(b.cycles),
                b.red,
                b.unknown,
                green,
                b.max_violations,
                plural(b.max_violations)
            );
            Bar {
                x: b.index * SLOT,
                y: HEIGHT - height,
                width: SLOT - 1,
                height,
                class,
                title,
            }
        })
        .collect();
    let sum = |f: fn(&CycleBucket) -> u64| buckets.iter().map(f).sum::<u64>();
    let (cycles, red, unknown) = (sum(|b| b.cycles), sum(|b| b.red), sum(|b| b.unknown));
    let summary = if cycles == 0 {
        "No cycle recorded in the last 24 hours.".to_owned()
    } else {
        format!(
            "{cycles} cycle{} in the last 24 hours: {} green, {red} red, {unknown} unknown; \
             at most {max} violation{} in one cycle.",
            plural(cycles),
            cycles - red - unknown,
            plural(max)
        )
    };
    Timeline {
        bars,
        width: BUCKETS * SLOT,
        height: HEIGHT,
        grid: (1..4).map(|q| q * BUCKETS * SLOT / 4).collect(),
        summary,
    }
}

fn transition_line(t: &RecentTransition, ctx: &Context<'_>) -> TransitionLine {
    let now = ctx.now_ms;
    let name = match blind::source_of(&t.invariant_id) {
        Some(source) => format!("source {} unreadable (canary blind)", source.as_str()),
        None => ctx.registry.find(&t.invariant_id).map_or_else(
            || "(no longer configured)".to_owned(),
            |d| d.name().to_owned(),
        ),
    };
    let (delivery, delivery_class, delivery_detail) = match &t.delivery {
        Delivery::Delivered { at_ms } => (
            "delivered",
            "green",
            format!("sent {}", Stamp::new(*at_ms, now).text),
        ),
        Delivery::Pending {
            attempts,
            next_attempt_at_ms,
            last_error,
        } => (
            "pending",
            "unknown",
            match last_error {
                Some(e) => format!(
                    "{attempts} attempt{} failed ({e}); next {}",
                    plural(u64::from(*attempts)),
                    Stamp::new(*next_attempt_at_ms, now).text
                ),
                None => "waiting for the deliverer".to_owned(),
            },
        ),
        Delivery::Abandoned { at_ms, last_error } => (
            "abandoned",
            "red",
            format!(
                "given up {}: {}",
                Stamp::new(*at_ms, now).text,
                last_error.as_deref().unwrap_or("no error recorded")
            ),
        ),
        Delivery::NotQueued => ("not sent", "off", "no Slack webhook configured".to_owned()),
    };
    TransitionLine {
        at: Stamp::new(t.at_ms, now),
        invariant_id: t.invariant_id.clone(),
        name,
        kind: match t.kind {
            TransitionKind::Fired => "fired",
            TransitionKind::Resolved => "resolved",
        },
        status: match t.kind {
            TransitionKind::Fired => Status::Red,
            TransitionKind::Resolved => Status::Green,
        },
        severity: t.severity.as_str(),
        delivery,
        delivery_class,
        delivery_detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use canary_invariants::{Severity, Source, SourceUnavailable, Tier};

    const NOW: Millis = 1_795_000_000_000; // 2026-11-18T11:06:40Z

    fn state(id: &str, outcome: Outcome, since: Millis, firing: bool) -> InvariantState {
        InvariantState {
            invariant_id: id.to_owned(),
            state: outcome,
            since_ms: since,
            consecutive: 3,
            firing,
            severity: firing.then_some(Severity::Critical),
            last_fired_at_ms: None,
            last_resolved_at_ms: None,
        }
    }

    fn episode(id: &str, subject: &str, summary: &str) -> StoredViolation {
        StoredViolation {
            id: 7,
            cycle_id: 3,
            invariant_id: id.to_owned(),
            tier: Tier::A,
            severity: Severity::Critical,
            subject: subject.to_owned(),
            summary: summary.to_owned(),
            observed_state: serde_json::json!({}),
            signal: "sig".to_owned(),
            taken_at_ms: NOW - 60_000,
            taken_at: String::new(),
            first_cycle_id: 1,
            first_seen_ms: NOW - 600_000,
            first_seen: String::new(),
            last_seen_ms: NOW - 60_000,
            last_seen: String::new(),
            cycles: 4,
            status: "open",
            closed_at_ms: None,
            closed_at: None,
        }
    }

    fn facts() -> Facts {
        let mut f = Facts::default();
        for (id, outcome) in [("S-01", Outcome::Red), ("E-02", Outcome::Green)] {
            f.states.insert(
                id.to_owned(),
                state(id, outcome, NOW - 600_000, outcome == Outcome::Red),
            );
        }
        f.states.insert(
            "S-03".to_owned(),
            state("S-03", Outcome::Unknown, NOW - 60_000, false),
        );
        f.states.insert(
            "source:redis".to_owned(),
            state("source:redis", Outcome::Red, NOW - 60_000, true),
        );
        f.states.insert(
            "source:sqlite".to_owned(),
            state("source:sqlite", Outcome::Green, NOW - 600_000, false),
        );
        f.last_violations.insert(
            "S-01".to_owned(),
            episode(
                "S-01",
                "<script>alert(1)</script> & co",
                "agent <b>x</b> & y",
            ),
        );
        f.counts.insert("S-01".to_owned(), 2);
        f.last_cycle = Some(StoredCycle {
            id: 9,
            started_at_ms: NOW - 60_010,
            finished_at_ms: NOW - 59_990,
            duration_ms: 12.4,
            taken_at_ms: NOW - 60_000,
            taken_at: String::new(),
            trigger: "schedule".to_owned(),
            checks_run: vec![],
            outcomes: BTreeMap::new(),
            sources_unavailable: vec![SourceUnavailable {
                source: Source::Redis,
                error: "connection refused <&>".to_owned(),
            }],
            violation_count: 2,
        });
        let last = BUCKETS - 1;
        f.buckets = vec![
            CycleBucket {
                index: 0,
                cycles: 1,
                red: 0,
                unknown: 0,
                max_violations: 0,
            },
            CycleBucket {
                index: 10,
                cycles: 2,
                red: 0,
                unknown: 1,
                max_violations: 0,
            },
            CycleBucket {
                index: last,
                cycles: 1,
                red: 1,
                unknown: 0,
                max_violations: 2,
            },
        ];
        f.transitions = vec![
            RecentTransition {
                id: 2,
                invariant_id: "source:redis".to_owned(),
                kind: TransitionKind::Fired,
                severity: Severity::Critical,
                at_ms: NOW - 60_000,
                delivery: Delivery::Abandoned {
                    at_ms: NOW - 1000,
                    last_error: Some("HTTP 404 no_service".to_owned()),
                },
            },
            RecentTransition {
                id: 1,
                invariant_id: "S-01".to_owned(),
                kind: TransitionKind::Fired,
                severity: Severity::Critical,
                at_ms: NOW - 600_000,
                delivery: Delivery::Delivered {
                    at_ms: NOW - 599_000,
                },
            },
        ];
        f
    }

    fn config() -> Config {
        Config {
            invariants: serde_json::from_value(serde_json::json!({ "L-03": { "enabled": false } }))
                .unwrap(),
            ..Config::default()
        }
    }

    fn page(facts: &Facts, config: &Config, readiness: Result<(), &str>) -> StatusPage {
        let ctx = Context {
            registry: Registry::new(config),
            blind_after: 3,
            refresh_secs: 30,
            readiness,
            now_ms: NOW,
        };
        build(facts, &ctx, Vec::new())
    }

    #[test]
    fn tiles_say_each_verdict_worst_first() {
        let config = config();
        let p = page(&facts(), &config, Ok(()));
        assert_eq!(p.tiles.len(), CATALOG_LEN);
        let by = |id: &str| p.tiles.iter().find(|t| t.id == id).unwrap();
        assert_eq!(p.tiles[0].id, "S-01", "red first");
        assert_eq!(p.tiles[1].id, "S-03", "then unknown");
        let s01 = by("S-01");
        assert_eq!(
            (s01.status, s01.violations, s01.severity),
            (Status::Red, Some(2), Some("critical"))
        );
        assert_eq!(s01.since.as_ref().unwrap().text, "10:56:40 UTC (10m ago)");
        let last = s01.last.as_ref().unwrap();
        assert!(last.open && last.subject.starts_with("<script>"));
        assert_eq!(by("E-02").status, Status::Green);
        assert_eq!(by("L-03").status, Status::NotConfigured);
        // No platform.docker: R-01 is not run, so not configured rather than pending.
        assert_eq!(by("R-01").status, Status::NotConfigured);
        let last_two: Vec<&str> = p
            .tiles
            .iter()
            .rev()
            .take(2)
            .map(|t| t.id.as_str())
            .collect();
        assert!(
            last_two.contains(&"L-03") && last_two.contains(&"R-01"),
            "not configured last: {last_two:?}"
        );
        assert_eq!(by("S-02").status, Status::Pending);
        assert_eq!(by("S-02").status.label(), "not evaluated yet");
        assert_eq!(
            p.headline.text,
            "1 invariant red · 1 unknown · source unreadable: redis"
        );
        assert_eq!(p.headline.status, Status::Red);
        assert_eq!(
            p.last_cycle.as_deref(),
            Some("Last cycle #9 (schedule, 12 ms, 2 violations)")
        );
    }

    const CATALOG_LEN: usize = canary_invariants::CATALOG.len();

    #[test]
    fn sources_and_transitions() {
        let config = config();
        let p = page(&facts(), &config, Err("no cycle has completed since start"));
        let redis = p.sources.iter().find(|s| s.name == "redis").unwrap();
        assert_eq!(redis.status, Status::Red);
        assert_eq!(redis.detail, "blind: unreadable for 3 cycles; alert fired");
        assert_eq!(redis.error.as_deref(), Some("connection refused <&>"));
        let sqlite = p.sources.iter().find(|s| s.name == "sqlite").unwrap();
        assert_eq!(
            (sqlite.status, sqlite.error.as_deref()),
            (Status::Green, None)
        );

        assert_eq!(p.transitions[0].delivery, "abandoned");
        assert!(p.transitions[0].name.contains("source redis"));
        assert!(
            p.transitions[0].delivery_detail.contains("HTTP 404"),
            "{:?}",
            p.transitions[0]
        );
        assert_eq!(p.transitions[1].delivery, "delivered");
        assert_eq!(p.transitions[1].name, "Slot–row bijection");
        assert_eq!(
            p.not_ready.as_deref(),
            Some("no cycle has completed since start")
        );
    }

    #[test]
    fn timeline_bars_encode_the_verdict_in_height() {
        let config = config();
        let p = page(&facts(), &config, Ok(()));
        let t = &p.timeline;
        assert_eq!((t.width, t.height, t.grid.len()), (1440, 100, 3));
        let bars: Vec<(&str, u32, u32)> = t.bars.iter().map(|b| (b.class, b.x, b.height)).collect();
        assert_eq!(
            bars,
            [("green", 0, 12), ("unknown", 50, 26), ("red", 1435, 100)]
        );
        assert!(t.bars.iter().all(|b| b.y + b.height == 100));
        assert!(t.bars[2].title.contains("1 red") && t.bars[2].title.contains("2 violations"));
        assert_eq!(
            t.summary,
            "4 cycles in the last 24 hours: 2 green, 1 red, 1 unknown; at most 2 violations in one cycle."
        );
        let empty = timeline(&[], 0);
        assert!(empty.bars.is_empty());
        assert_eq!(empty.summary, "No cycle recorded in the last 24 hours.");
        // The window ends with the bucket holding now, aligned.
        let start = timeline_start(NOW);
        assert_eq!(start % BUCKET_MS, 0);
        assert!(start + TIMELINE_MS > NOW && start + TIMELINE_MS - BUCKET_MS <= NOW);
    }

    #[test]
    fn rendered_page_escapes_platform_data() {
        let config = config();
        let p = page(&facts(), &config, Ok(()));
        let html = p.render().unwrap();
        assert!(!html.contains("<script"), "a script tag reached the page");
        assert!(!html.contains("<b>x</b>"));
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; co"),
            "{html}"
        );
        assert!(html.contains("connection refused &#60;&#38;&#62;"));
        assert!(html.contains(r#"<meta http-equiv="refresh" content="30">"#));
        assert!(html.contains(r#"<html lang="en">"#));
        assert!(html.contains(r#"data-invariant="S-01" data-state="red""#));
        assert!(html.contains("No active silences"));
        assert!(html.contains(r#"role="img" aria-labelledby="timeline-title timeline-desc""#));
    }

    #[test]
    fn stamps() {
        assert_eq!(Stamp::new(NOW, NOW).text, "11:06:40 UTC (0s ago)");
        assert_eq!(
            Stamp::new(NOW - 86_400_000, NOW).text,
            "2026-11-17 11:06:40 UTC (1d ago)"
        );
        assert_eq!(Stamp::new(NOW + 60_000, NOW).text, "11:07:40 UTC (in 1m)");
        assert_eq!(Stamp::new(NOW, NOW).iso, "2026-11-18T11:06:40.000Z");
        assert_eq!(Stamp::new(NOW, NOW).clock, "11:06:40 UTC");
    }
}
