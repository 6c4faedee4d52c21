//! Cross-process leases: the single-flight cycle lease (DESIGN §2, table `cycle_lease`) and the
//! one-active-deliverer lease (table `deliverer_lease`). Each is one row, taken under
//! `BEGIN IMMEDIATE` so the read-check-write cannot interleave with another process doing the
//! same. A holder renews its lease while it works, so the TTL can be short; a lease whose holder
//! was a process on this host that no longer exists is taken over at once (the rule is
//! [`super::holder::judge`]), and one held from another host blocks for at most one TTL.
//!
//! The lease is a token, not a guard that borrows the [`StateDb`]: the holder still needs
//! `&mut StateDb` for `record_cycle` while holding it, and a `Drop` that writes could neither
//! report its error nor run after a crash anyway (expiry covers that case).

use canary_invariants::Millis;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use super::error::SqlContext;
use super::holder::{self, Verdict};
use super::{StateDb, StoreError};

/// A held (or observed) lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Who holds it: unique per lease taken, naming its process (see [`super::holder`]).
    pub holder: String,
    /// When the holder first took it (kept across renewals).
    pub acquired_at_ms: Millis,
    /// When it stops counting; `expires_at_ms < now` means free.
    pub expires_at_ms: Millis,
}

/// Which lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseName {
    /// One cycle at a time across processes.
    Cycle,
    /// One active alert deliverer per state database.
    Deliverer,
}

impl LeaseName {
    fn table(self) -> &'static str {
        match self {
            LeaseName::Cycle => "cycle_lease",
            LeaseName::Deliverer => "deliverer_lease",
        }
    }
}

impl StateDb {
    /// Tries to take (or renew) the cycle lease for `holder` until `now_ms + ttl_ms`.
    ///
    /// Succeeds when no lease exists, when the existing one expired (`expires_at < now`), when
    /// its holder was a process on this host that no longer exists (logged at WARN), or when
    /// `holder` already holds it (renewal keeps `acquired_at`). Returns `Ok(None)` when
    /// another holder's lease is live: "cycle in progress".
    pub fn try_acquire_lease(
        &self,
        holder: &str,
        now_ms: Millis,
        ttl_ms: Millis,
    ) -> Result<Option<Lease>, StoreError> {
        self.try_acquire(LeaseName::Cycle, holder, now_ms, ttl_ms)
    }

    /// Releases the cycle lease if `holder` holds it. Returns whether a lease was released;
    /// `false` means it had already expired and been taken over (or never existed): harmless.
    pub fn release_lease(&self, holder: &str) -> Result<bool, StoreError> {
        self.release(LeaseName::Cycle, holder)
    }

    /// The cycle lease row as stored (live or expired), for diagnostics.
    pub fn current_lease(&self) -> Result<Option<Lease>, StoreError> {
        self.current(LeaseName::Cycle)
    }

    /// [`StateDb::current_lease`] for any lease.
    pub fn current(&self, name: LeaseName) -> Result<Option<Lease>, StoreError> {
        read_lease(&self.conn, name).ctx("current_lease")
    }

    /// [`StateDb::try_acquire_lease`] for any lease.
    pub fn try_acquire(
        &self,
        name: LeaseName,
        holder: &str,
        now_ms: Millis,
        ttl_ms: Millis,
    ) -> Result<Option<Lease>, StoreError> {
        if ttl_ms <= 0 || holder.is_empty() {
            return Err(StoreError::Invalid {
                op: "try_acquire_lease",
                reason: format!("ttl_ms must be > 0 and holder non-empty (ttl_ms = {ttl_ms})"),
            });
        }
        // `new_unchecked` so the lease works through `&self`; no other transaction can be open
        // on this connection because every other transaction is scoped to one method call.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .ctx("try_acquire_lease: begin")?;
        let current = read_lease(&tx, name).ctx("try_acquire_lease: read")?;
        let verdict = holder::judge(
            current.as_ref(),
            holder,
            now_ms,
            holder::Identity::current(),
            holder::probe_pid,
        );
        let acquired_at_ms = match (&verdict, &current) {
            (Verdict::Renew, Some(l)) => l.acquired_at_ms,
            (Verdict::Busy, Some(l)) => {
                tracing::debug!(
                    lease.name = name.table(),
                    lease.holder = holder,
                    lease.held_by = %l.holder,
                    lease.expires_at_ms = l.expires_at_ms,
                    "lease busy"
                );
                tx.rollback().ctx("try_acquire_lease: rollback")?;
                return Ok(None);
            }
            (Verdict::HolderDead { why }, Some(l)) => {
                // Recovered on its own: a crashed holder no longer blocks until expiry.
                tracing::warn!(
                    lease.name = name.table(),
                    lease.holder = holder,
                    lease.dead_holder = %l.holder,
                    lease.age_ms = now_ms.saturating_sub(l.acquired_at_ms),
                    reason = why,
                    "lease held by a process that no longer exists; taking it over"
                );
                now_ms
            }
            _ => now_ms,
        };
        let lease = Lease {
            holder: holder.to_owned(),
            acquired_at_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        };
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO {} (id, holder, acquired_at, expires_at)
                 VALUES (1, ?1, ?2, ?3)",
                name.table()
            ),
            params![lease.holder, lease.acquired_at_ms, lease.expires_at_ms],
        )
        .ctx("try_acquire_lease: write")?;
        tx.commit().ctx("try_acquire_lease: commit")?;
        tracing::debug!(
            lease.name = name.table(),
            lease.holder = holder,
            lease.expires_at_ms = lease.expires_at_ms,
            lease.took_over = current.as_ref().is_some_and(|l| l.holder != holder),
            "lease acquired"
        );
        Ok(Some(lease))
    }

    /// [`StateDb::release_lease`] for any lease.
    pub fn release(&self, name: LeaseName, holder: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                &format!("DELETE FROM {} WHERE id = 1 AND holder = ?1", name.table()),
                [holder],
            )
            .ctx("release_lease")?;
        tracing::debug!(
            lease.name = name.table(),
            lease.holder = holder,
            lease.released = n > 0,
            "lease release"
        );
        Ok(n > 0)
    }
}

fn read_lease(conn: &rusqlite::Connection, name: LeaseName) -> rusqlite::Result<Option<Lease>> {
    conn.query_row(
        &format!(
            "SELECT holder, acquired_at, expires_at FROM {} WHERE id = 1",
            name.table()
        ),
        [],
        |r| {
            Ok(Lease {
                holder: r.get(0)?,
                acquired_at_ms: r.get(1)?,
                expires_at_ms: r.get(2)?,
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_deny_renew_expire_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let a = StateDb::open(&path).unwrap();
        let b = StateDb::open(&path).unwrap();

        let la = a.try_acquire_lease("a", 1_000, 100).unwrap().unwrap();
        assert_eq!((la.acquired_at_ms, la.expires_at_ms), (1_000, 1_100));
        assert_eq!(b.try_acquire_lease("b", 1_050, 100).unwrap(), None);
        // Boundary: expires_at == now is still held.
        assert_eq!(b.try_acquire_lease("b", 1_100, 100).unwrap(), None);
        // Renewal keeps acquired_at.
        let renewed = a.try_acquire_lease("a", 1_090, 100).unwrap().unwrap();
        assert_eq!(
            (renewed.acquired_at_ms, renewed.expires_at_ms),
            (1_000, 1_190)
        );
        // Expired: b takes over; a's late release must not free b's lease.
        let lb = b.try_acquire_lease("b", 1_191, 100).unwrap().unwrap();
        assert_eq!(lb.acquired_at_ms, 1_191);
        assert!(!a.release_lease("a").unwrap());
        assert_eq!(a.current_lease().unwrap(), Some(lb));
        assert!(b.release_lease("b").unwrap());
        assert!(a.current_lease().unwrap().is_none());
        assert!(a.try_acquire_lease("a", 1_200, 100).unwrap().is_some());
    }

    /// A real process that held the lease and died: taken over long before expiry; a live one
    /// (this test process under another holder text) still blocks.
    #[test]
    fn a_dead_local_holder_is_taken_over_at_once_a_live_one_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = StateDb::open(&path).unwrap();
        let me = holder::Identity::current().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = holder::probe_pid(pid).unwrap();
        let dead = format!(
            "cycle:1 host={} boot={} pid={pid} start={start}",
            me.host, me.boot
        );
        let now = 1_000_000;
        assert!(db.try_acquire_lease(&dead, now, 60_000).unwrap().is_some());
        let mine = holder::holder_text("cycle");
        // Alive: it blocks.
        assert_eq!(db.try_acquire_lease(&mine, now + 1, 60_000).unwrap(), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(holder::probe_pid(pid), None);
        let took = db
            .try_acquire_lease(&mine, now + 2, 60_000)
            .unwrap()
            .unwrap();
        assert_eq!(
            (took.holder.as_str(), took.acquired_at_ms),
            (mine.as_str(), now + 2)
        );
        // Another lease of this very process is live: it blocks a second holder too.
        let other = holder::holder_text("cycle");
        assert_eq!(db.try_acquire_lease(&other, now + 3, 60_000).unwrap(), None);
        // The same for the deliverer lease.
        let dead_deliverer = dead.replace("cycle:", "deliverer:");
        assert!(
            db.try_acquire(LeaseName::Deliverer, &dead_deliverer, now, 60_000)
                .unwrap()
                .is_some()
        );
        assert!(
            db.try_acquire(LeaseName::Deliverer, &mine, now + 1, 60_000)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn invalid_arguments_are_rejected() {
        let db = StateDb::open_in_memory().unwrap();
        assert!(matches!(
            db.try_acquire_lease("a", 0, 0),
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            db.try_acquire_lease("", 0, 10),
            Err(StoreError::Invalid { .. })
        ));
    }
}
