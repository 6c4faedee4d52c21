//! Silences in the state database (migration 0004): create, list, expire early, and the two
//! reads a cycle makes inside its own transaction: the silences active at its snapshot and the
//! invariants whose latest transition a silence kept out of Slack ("pending"), plus noting the
//! silences whose end this cycle is the first to see (so each end is logged exactly once).
//!
//! It stores and reads; it must not decide what a silence covers (`alert::silence` does, pure)
//! nor log (the caller that handled the change logs it).

use std::collections::BTreeMap;

use canary_invariants::{Millis, Severity, TransitionKind};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::codec;
use super::error::{JsonContext, SqlContext};
use super::{StateDb, StoreError};

/// A silence to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSilence {
    /// Invariant ids (or `source:<name>`), at least one.
    pub invariant_ids: Vec<String>,
    /// Optional subject glob (`*`, `?`).
    pub subject_glob: Option<String>,
    /// Start, unix ms.
    pub starts_at_ms: Millis,
    /// End (exclusive), unix ms; after the start.
    pub ends_at_ms: Millis,
    /// Who made it.
    pub author: String,
    /// Why.
    pub comment: String,
}

/// Where a silence stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts later.
    Pending,
    /// Mutes now.
    Active,
    /// Over: its end passed, or it was expired early.
    Expired,
}

/// A stored silence, with its times in unix ms and RFC 3339 and its state at the read instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Silence {
    /// Row id (`canary silence expire ID`, `DELETE /api/canary/silences/{id}`).
    pub id: i64,
    /// Invariant ids (or `source:<name>`) it matches.
    pub invariant_ids: Vec<String>,
    /// Subject glob, if any.
    pub subject: Option<String>,
    /// Start, unix ms.
    pub starts_at_ms: Millis,
    /// The same, RFC 3339.
    pub starts_at: String,
    /// Planned end, unix ms.
    pub ends_at_ms: Millis,
    /// The same, RFC 3339.
    pub ends_at: String,
    /// Who made it.
    pub author: String,
    /// Why.
    pub comment: String,
    /// When it was created, unix ms.
    pub created_at_ms: Millis,
    /// The same, RFC 3339.
    pub created_at: String,
    /// When an operator expired it early, unix ms.
    pub expired_at_ms: Option<Millis>,
    /// The same, RFC 3339.
    pub expired_at: Option<String>,
    /// At the instant it was read.
    pub state: SilenceState,
}

impl Silence {
    /// When it stops muting: its planned end, or its early expiry if sooner.
    pub fn effective_end_ms(&self) -> Millis {
        self.expired_at_ms
            .map_or(self.ends_at_ms, |e| e.min(self.ends_at_ms))
    }

    /// Its state at `at_ms`.
    pub fn state_at(&self, at_ms: Millis) -> SilenceState {
        if at_ms >= self.effective_end_ms() {
            SilenceState::Expired
        } else if at_ms < self.starts_at_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }
}

/// What `expire` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// No such silence.
    NotFound,
    /// It was already over; nothing changed.
    AlreadyOver(Silence),
    /// Expired now.
    Expired(Silence),
}

/// An invariant (or `source:<name>`) whose latest transition a silence kept out of Slack and
/// that was not released since: what Slack last heard differs, or may differ, from its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The silenced transition.
    pub transition_id: i64,
    /// Its kind.
    pub kind: TransitionKind,
    /// Its severity.
    pub severity: Severity,
    /// What covered it (`silence:<id>`, `window:<n>`).
    pub silenced_by: String,
    /// When it happened, unix ms.
    pub at_ms: Millis,
    /// Whether the last message Slack was sent for this id was a fired one (so Slack shows it
    /// red): the latest announced (never silenced, or released) transition is `fired`.
    pub announced_firing: bool,
}

const COLUMNS: &str = "id, invariant_ids, subject_glob, starts_at, ends_at, author, comment, \
                       created_at, expired_at";

struct Raw {
    id: i64,
    invariant_ids: String,
    subject: Option<String>,
    starts_at_ms: Millis,
    ends_at_ms: Millis,
    author: String,
    comment: String,
    created_at_ms: Millis,
    expired_at_ms: Option<Millis>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: r.get(0)?,
        invariant_ids: r.get(1)?,
        subject: r.get(2)?,
        starts_at_ms: r.get(3)?,
        ends_at_ms: r.get(4)?,
        author: r.get(5)?,
        comment: r.get(6)?,
        created_at_ms: r.get(7)?,
        expired_at_ms: r.get(8)?,
    })
}

impl Raw {
    fn decode(self, op: &'static str, at_ms: Millis) -> Result<Silence, StoreError> {
        let invariant_ids: Vec<String> = serde_json::from_str(&self.invariant_ids).json_ctx(op)?;
        let mut s = Silence {
            id: self.id,
            invariant_ids,
            subject: self.subject,
            starts_at_ms: self.starts_at_ms,
            starts_at: codec::rfc3339(self.starts_at_ms),
            ends_at_ms: self.ends_at_ms,
            ends_at: codec::rfc3339(self.ends_at_ms),
            author: self.author,
            comment: self.comment,
            created_at_ms: self.created_at_ms,
            created_at: codec::rfc3339(self.created_at_ms),
            expired_at_ms: self.expired_at_ms,
            expired_at: self.expired_at_ms.map(codec::rfc3339),
            state: SilenceState::Active,
        };
        s.state = s.state_at(at_ms);
        Ok(s)
    }
}

fn query(
    conn: &rusqlite::Connection,
    op: &'static str,
    sql: &str,
    args: impl rusqlite::Params,
    at_ms: Millis,
) -> Result<Vec<Silence>, StoreError> {
    let raws = conn
        .prepare_cached(sql)
        .ctx(op)?
        .query_map(args, raw)
        .ctx(op)?
        .collect::<Result<Vec<Raw>, _>>()
        .ctx(op)?;
    raws.into_iter().map(|r| r.decode(op, at_ms)).collect()
}

impl StateDb {
    /// Stores a new silence created at `now_ms`.
    pub fn add_silence(&mut self, new: &NewSilence, now_ms: Millis) -> Result<Silence, StoreError> {
        const OP: &str = "add_silence";
        if new.invariant_ids.is_empty() || new.ends_at_ms <= new.starts_at_ms {
            return Err(StoreError::Invalid {
                op: OP,
                reason: "a silence needs at least one invariant id and an end after its start"
                    .to_owned(),
            });
        }
        let ids = serde_json::to_string(&new.invariant_ids).json_ctx(OP)?;
        self.conn
            .execute(
                "INSERT INTO silences (invariant_ids, subject_glob, starts_at, ends_at, author,
                                       comment, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    ids,
                    new.subject_glob,
                    new.starts_at_ms,
                    new.ends_at_ms,
                    new.author,
                    new.comment,
                    now_ms
                ],
            )
            .ctx(OP)?;
        let id = self.conn.last_insert_rowid();
        self.silence(id, now_ms)?.ok_or(StoreError::Invalid {
            op: OP,
            reason: "the inserted silence is gone".to_owned(),
        })
    }

    /// One silence, its state judged at `at_ms`.
    pub fn silence(&self, id: i64, at_ms: Millis) -> Result<Option<Silence>, StoreError> {
        const OP: &str = "silence";
        let raw = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM silences WHERE id = ?1"),
                [id],
                raw,
            )
            .optional()
            .ctx(OP)?;
        raw.map(|r| r.decode(OP, at_ms)).transpose()
    }

    /// Silences by id; only those not over at `at_ms` unless `all`.
    pub fn silences(&self, at_ms: Millis, all: bool) -> Result<Vec<Silence>, StoreError> {
        let sql = if all {
            format!("SELECT {COLUMNS} FROM silences ORDER BY id")
        } else {
            format!(
                "SELECT {COLUMNS} FROM silences
                 WHERE ends_at > ?1 AND (expired_at IS NULL OR expired_at > ?1) ORDER BY id"
            )
        };
        if all {
            query(&self.conn, "silences", &sql, [], at_ms)
        } else {
            query(&self.conn, "silences", &sql, [at_ms], at_ms)
        }
    }

    /// Per invariant (or `source:<name>`), its latest transition when a silence kept it out of
    /// Slack and it was not released since (for `/api/canary/status`).
    pub fn pending_silenced(&self) -> Result<BTreeMap<String, Pending>, StoreError> {
        pending(&self.conn)
    }

    /// Ends a silence now (`now_ms`). Its end counts as noted: the cycle does not log it again.
    pub fn expire_silence(&mut self, id: i64, now_ms: Millis) -> Result<Expired, StoreError> {
        const OP: &str = "expire_silence";
        let Some(found) = self.silence(id, now_ms)? else {
            return Ok(Expired::NotFound);
        };
        if found.state == SilenceState::Expired {
            return Ok(Expired::AlreadyOver(found));
        }
        self.conn
            .execute(
                "UPDATE silences SET expired_at = ?2, end_noted_at = ?2 WHERE id = ?1",
                params![id, now_ms],
            )
            .ctx(OP)?;
        match self.silence(id, now_ms)? {
            Some(s) => Ok(Expired::Expired(s)),
            None => Ok(Expired::NotFound),
        }
    }
}

/// The silences active at `at_ms`, read in the cycle's transaction.
pub(crate) fn active_at(
    tx: &rusqlite::Transaction<'_>,
    at_ms: Millis,
) -> Result<Vec<Silence>, StoreError> {
    query(
        tx,
        "record_cycle: active silences",
        &format!(
            "SELECT {COLUMNS} FROM silences
             WHERE starts_at <= ?1 AND ends_at > ?1 AND (expired_at IS NULL OR expired_at > ?1)
             ORDER BY id"
        ),
        [at_ms],
        at_ms,
    )
}

/// Marks as noted the silences that ran to their planned end by `at_ms` and were not noted yet,
/// and returns them (the cycle logs each once).
pub(crate) fn note_ended(
    tx: &rusqlite::Transaction<'_>,
    at_ms: Millis,
) -> Result<Vec<Silence>, StoreError> {
    const OP: &str = "record_cycle: note ended silences";
    let ended = query(
        tx,
        OP,
        &format!(
            "SELECT {COLUMNS} FROM silences
             WHERE end_noted_at IS NULL AND expired_at IS NULL AND ends_at <= ?1 ORDER BY id"
        ),
        [at_ms],
        at_ms,
    )?;
    let mut stmt = tx
        .prepare_cached("UPDATE silences SET end_noted_at = ?2 WHERE id = ?1")
        .ctx(OP)?;
    for s in &ended {
        stmt.execute(params![s.id, at_ms]).ctx(OP)?;
    }
    Ok(ended)
}

/// Per id, its latest transition when a silence kept it out of Slack and it was not released.
pub(crate) fn pending(tx: &rusqlite::Connection) -> Result<BTreeMap<String, Pending>, StoreError> {
    const OP: &str = "record_cycle: pending silenced transitions";
    type Row = (String, i64, String, String, String, Millis, Option<String>);
    let rows = tx
        .prepare_cached(
            "SELECT t.invariant_id, t.id, t.kind, t.severity, t.silenced_by, t.at,
                    (SELECT a.kind FROM transitions a
                      WHERE a.invariant_id = t.invariant_id
                        AND (a.silenced_by IS NULL OR a.released_at IS NOT NULL)
                      ORDER BY a.id DESC LIMIT 1)
             FROM transitions t
             WHERE t.silenced_by IS NOT NULL AND t.released_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM transitions n
                                WHERE n.invariant_id = t.invariant_id AND n.id > t.id)",
        )
        .ctx(OP)?
        .query_map([], |r| -> rusqlite::Result<Row> {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .ctx(OP)?
        .collect::<Result<Vec<Row>, _>>()
        .ctx(OP)?;
    let mut out = BTreeMap::new();
    for (id, transition_id, kind, severity, silenced_by, at_ms, announced) in rows {
        let announced_firing = match announced.as_deref() {
            None => false,
            Some(k) => codec::parse_kind(OP, "transitions.kind", k)? == TransitionKind::Fired,
        };
        out.insert(
            id,
            Pending {
                transition_id,
                kind: codec::parse_kind(OP, "transitions.kind", &kind)?,
                severity: codec::parse_severity(OP, "transitions.severity", &severity)?,
                silenced_by,
                at_ms,
                announced_firing,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(ids: &[&str], start: Millis, end: Millis) -> NewSilence {
        NewSilence {
            invariant_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            subject_glob: Some("fleet-*".to_owned()),
            starts_at_ms: start,
            ends_at_ms: end,
            author: "ops".to_owned(),
            comment: "migration".to_owned(),
        }
    }

    #[test]
    fn add_list_expire_round_trip() {
        let mut db = StateDb::open_in_memory().unwrap();
        let a = db.add_silence(&new(&["S-01"], 1000, 5000), 500).unwrap();
        assert_eq!(a.state, SilenceState::Pending);
        assert_eq!(a.subject.as_deref(), Some("fleet-*"));
        let b = db
            .add_silence(&new(&["E-02", "source:redis"], 0, 2000), 500)
            .unwrap();
        assert_eq!(b.state, SilenceState::Active);
        assert_eq!(db.silences(1500, false).unwrap().len(), 2);
        assert_eq!(
            db.silences(2000, false).unwrap(),
            vec![db.silence(a.id, 2000).unwrap().unwrap()]
        );
        assert_eq!(db.silences(9000, true).unwrap().len(), 2);

        let Expired::Expired(e) = db.expire_silence(a.id, 3000).unwrap() else {
            panic!("expected expired");
        };
        assert_eq!(
            (e.state, e.expired_at_ms, e.effective_end_ms()),
            (SilenceState::Expired, Some(3000), 3000)
        );
        assert!(matches!(
            db.expire_silence(a.id, 3500).unwrap(),
            Expired::AlreadyOver(_)
        ));
        assert_eq!(db.expire_silence(99, 3500).unwrap(), Expired::NotFound);
        assert!(db.silences(3000, false).unwrap().is_empty());
    }

    #[test]
    fn refuses_an_empty_or_backwards_silence() {
        let mut db = StateDb::open_in_memory().unwrap();
        assert!(db.add_silence(&new(&[], 0, 10), 0).is_err());
        assert!(db.add_silence(&new(&["S-01"], 10, 10), 0).is_err());
    }

    #[test]
    fn in_transaction_reads_and_end_noted_once() {
        let mut db = StateDb::open_in_memory().unwrap();
        db.add_silence(&new(&["S-01"], 0, 1000), 0).unwrap();
        let early = db.add_silence(&new(&["S-02"], 0, 1000), 0).unwrap();
        db.expire_silence(early.id, 10).unwrap();
        let tx = db.conn.transaction().unwrap();
        assert_eq!(active_at(&tx, 500).unwrap().len(), 1);
        assert!(
            active_at(&tx, 1000).unwrap().is_empty(),
            "the end is exclusive"
        );
        assert!(note_ended(&tx, 999).unwrap().is_empty());
        let ended = note_ended(&tx, 1000).unwrap();
        assert_eq!(
            ended.len(),
            1,
            "the expired one was noted when it was expired"
        );
        assert!(note_ended(&tx, 2000).unwrap().is_empty(), "noted once");
        assert!(pending(&tx).unwrap().is_empty());
    }
}
