//! Slack payloads as a human sees them: for every catalog invariant a fired, a reminder and a
//! resolved message, plus a custom SQL invariant and the truncation case, each compared with a
//! reviewed snapshot file in `tests/snapshots/` (`insta`).
//!
//! The oracle is the reviewed file, never the builder: nothing here calls `slack::within_limits`
//! or reads the builder's limit constants; Slack's documented limits are written below as
//! literal numbers. The inputs are each invariant's own examples (`Invariant::examples`, kept in
//! its file and shaped like what its check really reports) and the transitions come from the
//! real `transitions::diff`, so a payload is built exactly as a cycle builds it.
//!
//! A new catalog invariant does not compile without its examples, and fails here until its
//! snapshot files exist (insta fails on a missing snapshot under `CI=true` or `INSTA_UPDATE=no`;
//! locally it also fails and writes a `.snap.new` to review).
//! To accept reviewed changes: `INSTA_UPDATE=always cargo test slack_payloads`, then read the
//! diff of `tests/snapshots/` before committing it.
//!
//! Every payload is finished as the cycle finishes it (`slack::with_origin`: the instance and the
//! violation ids it summarises), so the snapshots show what Slack receives.
//!
//! Must not: depend on the clock or randomness (every time is fixed below, so no redaction is
//! needed), or reach any I/O besides insta's own snapshot files.

use std::collections::BTreeMap;

use canary::alert::slack;
use canary_invariants::catalog::{self, CATALOG};
use canary_invariants::custom::{self, CustomResult, CustomRow};
use canary_invariants::testing::example;
use canary_invariants::transitions::diff;
use canary_invariants::{
    Hysteresis, Outcome, Severity, Tier, Transition, TransitionKind, Verdict, Violation,
};
use serde_json::{Value, json};

/// Slack's documented limits (Block Kit reference), written out so the test does not borrow
/// the builder's own constants.
const SLACK_HEADER_TEXT_MAX: usize = 150;
const SLACK_SECTION_TEXT_MAX: usize = 3000;
const SLACK_CONTEXT_ELEMENTS_MAX: usize = 10;
const SLACK_MESSAGE_BLOCKS_MAX: usize = 50;

/// The snapshot time of the first red cycle: 2026-11-18T11:06:40Z.
const T0: i64 = 1_795_000_000_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// `alerts.renotify_after` in the reminder story.
const RENOTIFY_AFTER: i64 = 4 * HOUR;
/// When the resolving green cycle runs in the resolve story.
const RESOLVED_AT: i64 = T0 + 47 * MINUTE;

/// What each check reports on a realistic broken platform: the examples its own file keeps
/// beside the check (`Invariant::examples`, shaped like the violations it builds), at this
/// file's fixed `T0`. A new invariant cannot compile without them, and fails here until its
/// snapshots are reviewed.
fn violations_of(id: &str) -> Vec<Violation> {
    let inv = catalog::find(id).unwrap_or_else(|| panic!("{id} is not in the catalog"));
    let examples = inv.examples(T0);
    assert!(!examples.is_empty(), "{id}: examples() returned nothing");
    examples
}

/// Every catalog invariant's violations, as one red cycle would list them. Each payload is built
/// from the whole list, as the cycle does, so every snapshot also shows that a message keeps only
/// its own invariant's violations.
fn whole_cycle() -> Vec<Violation> {
    CATALOG
        .iter()
        .flat_map(|inv| violations_of(inv.meta().id))
        .collect()
}

fn verdict(violations: &[Violation], id: &str) -> Verdict {
    let own = violations.iter().filter(|v| v.invariant_id == id);
    let worst = own.map(|v| v.severity).max();
    Verdict {
        outcome: if worst.is_some() {
            Outcome::Red
        } else {
            Outcome::Green
        },
        severity: worst,
    }
}

/// Replays cycles for one invariant through the real `transitions::diff` and returns the
/// transitions each cycle produced.
fn replay(id: &str, cycles: &[(i64, Verdict)], hysteresis: Hysteresis) -> Vec<Transition> {
    let mut states = BTreeMap::new();
    let mut all = Vec::new();
    for (at_ms, verdict) in cycles {
        let verdicts = BTreeMap::from([(id.to_owned(), *verdict)]);
        let (next, transitions) = diff(&states, &verdicts, *at_ms, hysteresis);
        for s in next {
            states.insert(s.invariant_id.clone(), s);
        }
        all.extend(transitions);
    }
    all
}

/// The three notifications of one incident: fired (first time red), a reminder after
/// `renotify_after`, and resolved. The resolve story has no reminder in between, so its "red for"
/// is the incident's whole length.
fn incident(id: &str, red: Verdict) -> [Transition; 3] {
    let green = Verdict {
        outcome: Outcome::Green,
        severity: None,
    };
    let reminding = Hysteresis {
        renotify_after_ms: Some(RENOTIFY_AFTER),
        ..Hysteresis::default()
    };
    let [fired, reminder] = replay(
        id,
        &[(T0, red), (T0 + HOUR, red), (T0 + RENOTIFY_AFTER, red)],
        reminding,
    )
    .try_into()
    .unwrap_or_else(|ts: Vec<Transition>| panic!("{id}: expected fired + reminder, got {ts:?}"));
    let [_, resolved] = replay(
        id,
        &[(T0, red), (RESOLVED_AT, green)],
        Hysteresis::default(),
    )
    .try_into()
    .unwrap_or_else(|ts: Vec<Transition>| panic!("{id}: expected fired + resolved, got {ts:?}"));
    // The stories must be what their names say, or the snapshots would be mislabelled.
    assert_eq!((fired.kind, fired.reminder), (TransitionKind::Fired, false));
    assert_eq!(
        (reminder.kind, reminder.reminder),
        (TransitionKind::Fired, true)
    );
    assert_eq!(resolved.kind, TransitionKind::Resolved);
    [fired, reminder, resolved]
}

/// Every text Slack renders in a payload (block texts and context elements), checked against
/// Slack's documented limits, with the literal numbers above.
fn assert_slack_limits(name: &str, payload: &Value) {
    let blocks = payload["blocks"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no blocks: {payload}"));
    assert!(
        !blocks.is_empty() && blocks.len() <= SLACK_MESSAGE_BLOCKS_MAX,
        "{name}: {} blocks",
        blocks.len()
    );
    assert!(payload["text"].is_string(), "{name}: no fallback text");
    for block in blocks {
        let chars = |v: &Value| v.as_str().map(|s| s.chars().count());
        match block["type"].as_str() {
            Some("header") => {
                assert_eq!(block["text"]["type"], "plain_text", "{name}");
                let n = chars(&block["text"]["text"]).unwrap_or(usize::MAX);
                assert!(n <= SLACK_HEADER_TEXT_MAX, "{name}: header of {n} chars");
            }
            Some("section") => {
                let n = chars(&block["text"]["text"]).unwrap_or(usize::MAX);
                assert!(n <= SLACK_SECTION_TEXT_MAX, "{name}: section of {n} chars");
            }
            Some("context") => {
                let elements = block["elements"].as_array().map_or(&[][..], Vec::as_slice);
                assert!(
                    !elements.is_empty() && elements.len() <= SLACK_CONTEXT_ELEMENTS_MAX,
                    "{name}: {} context elements",
                    elements.len()
                );
                for e in elements {
                    let n = chars(&e["text"]).unwrap_or(usize::MAX);
                    assert!(n <= SLACK_SECTION_TEXT_MAX, "{name}: context of {n} chars");
                }
            }
            other => panic!("{name}: unexpected block type {other:?}"),
        }
    }
}

/// The instance every snapshot is sent from (`alerts.instance`).
const INSTANCE: &str = "canary-prod-eu";
/// The violation (episode) ids a cycle would have assigned to the message's violations.
const IDS: [i64; 2] = [17, 18];

/// Compares `payload`, as the cycle finishes it (naming its instance and violation ids), with
/// its reviewed snapshot, after checking Slack's limits on what would be sent.
fn snapshot(name: &str, payload: &Value) {
    snapshot_with_ids(name, payload, &IDS);
}

fn snapshot_with_ids(name: &str, payload: &Value, ids: &[i64]) {
    let sent = slack::with_origin(
        payload,
        slack::Origin {
            instance: INSTANCE,
            violation_ids: ids,
        },
    );
    assert_slack_limits(name, &sent);
    assert!(
        sent["text"].as_str().unwrap_or("").ends_with(INSTANCE),
        "{name}: the text names the instance"
    );
    insta::assert_json_snapshot!(name, sent);
}

#[test]
fn every_catalog_invariant_fired_reminder_and_resolved() {
    let cycle = whole_cycle();
    for inv in CATALOG {
        let id = inv.meta().id;
        let [fired, reminder, resolved] = incident(id, verdict(&cycle, id));
        // A cycle builds its payloads with its own snapshot time, which is the transition's.
        snapshot(
            &format!("{id}_fired"),
            &slack::payload(&fired, &cycle, fired.at_ms),
        );
        snapshot(
            &format!("{id}_reminder"),
            &slack::payload(&reminder, &cycle, reminder.at_ms),
        );
        // The resolving cycle is green: it has no violations of this invariant, others may stay.
        let still_red: Vec<Violation> = cycle
            .iter()
            .filter(|v| v.invariant_id != id)
            .cloned()
            .collect();
        snapshot(
            &format!("{id}_resolved"),
            &slack::payload(&resolved, &still_red, resolved.at_ms),
        );
    }
}

/// A custom SQL invariant as `config/examples/custom-chat-sessions.yaml` defines it: its rows
/// judged by the real `custom::judge`, its name and runbook from the configuration.
#[test]
fn custom_sql_invariant_fired_and_resolved() {
    let row = |session: &str, agent: &str, started_at: &str, deleted_at: &str| -> CustomRow {
        BTreeMap::from([
            ("subject".to_owned(), json!(format!("session {session}"))),
            ("agent_name".to_owned(), json!(agent)),
            ("started_at".to_owned(), json!(started_at)),
            ("agent_deleted_at".to_owned(), json!(deleted_at)),
            (
                "summary".to_owned(),
                json!(format!("active chat session on soft-deleted agent {agent}")),
            ),
        ])
    };
    let result = CustomResult {
        id: "C-10".to_owned(),
        name: "Active chat sessions on live agents".to_owned(),
        tier: Tier::B,
        severity: Severity::Major,
        rows: Ok(vec![
            row(
                "cs-81f2",
                "agent-0666",
                "2026-11-18 09:12:03",
                "2026-11-18 10:40:00",
            ),
            row(
                "cs-9a07",
                "agent-0666",
                "2026-11-18 10:01:44",
                "2026-11-18 10:40:00",
            ),
        ]),
        truncated: false,
    };
    let judged = custom::judge(&result);
    assert_eq!(judged.outcome, Outcome::Red);
    let runbook = "A chat session is still active on a soft-deleted agent: users may be talking \
                   to an agent that no longer exists. End the session (status, ended_at) and \
                   check the delete path.";
    let meta = slack::Meta {
        name: &result.name,
        runbook,
    };
    let [fired, reminder, resolved] = incident("C-10", verdict(&judged.violations, "C-10"));
    let payload = |t: &Transition, vs: &[Violation]| slack::payload_with(t, vs, t.at_ms, meta);
    snapshot("custom_C-10_fired", &payload(&fired, &judged.violations));
    snapshot(
        "custom_C-10_reminder",
        &payload(&reminder, &judged.violations),
    );
    snapshot("custom_C-10_resolved", &payload(&resolved, &[]));
}

/// A large incident: 400 S-01 violations with long, hostile evidence. The message shows five
/// lines and a count; every text stays within Slack's limits (literal numbers, checked on what
/// was built, not with the builder's own check), and nothing raw from the data leaks.
#[test]
fn many_violations_are_truncated_within_slack_limits() {
    let long = "x&<".repeat(700);
    let vs: Vec<Violation> = (0..400)
        .map(|i| {
            example(
                "S-01",
                Severity::Critical,
                &format!("agent-{i:04}-{long}"),
                "in_redis_only",
                &format!("agent agent-{i:04}: {long}"),
                json!({"agent": format!("agent-{i:04}"), "in_redis_only": vec![long.clone(); 40], "slot_count": 40, "running_rows": 0, "note": long}),
            )
        })
        .collect();
    let [fired, ..] = incident("S-01", verdict(&vs, "S-01"));
    let p = slack::payload(&fired, &vs, fired.at_ms);
    assert_slack_limits("S-01_truncated", &p);

    // Concrete facts, independent of the builder: header, summary, forensic lines, runbook,
    // context; five forensic lines then "+395 more".
    let blocks = p["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 5, "{p}");
    let forensic = blocks[2]["text"]["text"].as_str().unwrap();
    assert_eq!(forensic.lines().filter(|l| l.starts_with("• ")).count(), 5);
    assert!(forensic.ends_with("\n+395 more"), "{forensic}");
    assert!(forensic.chars().count() <= SLACK_SECTION_TEXT_MAX);
    assert!(
        blocks[1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("400 violations")
    );
    // Escaped everywhere: no raw `<` reaches Slack, and no entity is cut in half.
    let all = p.to_string();
    assert!(!all.contains('<'), "raw < leaked");
    for (i, _) in all.match_indices('&') {
        let rest = &all[i..];
        assert!(
            rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"),
            "broken entity at {i}: {}",
            &rest[..rest.len().min(12)]
        );
    }
    let ids: Vec<i64> = (1..=400).collect();
    snapshot_with_ids("S-01_truncated", &p, &ids);
}

/// The snapshot directory holds exactly the reviewed cases above: a snapshot left behind by a
/// removed invariant (or a renamed case) is an unreviewed file nobody compares against.
/// (Only `.snap` files count: insta's pending `.snap.new` files are never committed. When
/// snapshots are first generated with `INSTA_UPDATE=always`, this test may run before the others
/// have written theirs; rerun once they exist.)
#[test]
fn no_stale_snapshot_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut expected: Vec<String> = CATALOG
        .iter()
        .flat_map(|inv| {
            let id = inv.meta().id;
            ["fired", "reminder", "resolved"].map(|k| format!("{id}_{k}"))
        })
        .chain(["fired", "reminder", "resolved"].map(|k| format!("custom_C-10_{k}")))
        .chain(["S-01_truncated".to_owned()])
        .map(|name| format!("integration__slack_payloads__{name}.snap"))
        .collect();
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("integration__slack_payloads__") && f.ends_with(".snap"))
        .collect();
    found.sort();
    assert_eq!(found, expected);
}
