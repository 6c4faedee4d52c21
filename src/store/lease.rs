//! Cross-process leases: the single-flight cycle lease (DESIGN §2, table `cycle_lease`) and the
//! one-active-deliverer lease (table `deliverer_lease`). Each is one row, taken under
//! `BEGIN IMMEDIATE` so the read-check-write cannot interleave with another process doing the
//! same, and expires so a crashed holder blocks for at most one TTL.
//!
//! The lease is a token, not a guard that borrows the [`StateDb`]: the holder still needs
//! `&mut StateDb` for `record_cycle` while holding it, and a `Drop` that writes could neither
//! report its error nor run after a crash anyway (expiry covers that case).

use canary_invariants::Millis;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use super::error::SqlContext;
use super::{StateDb, StoreError};

/// A held (or observed) lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Who holds it: unique per process and run (e.g. `daemon:<pid>:<start ms>`).
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
    /// Succeeds when no lease exists, when the existing one expired (`expires_at < now`), or
    /// when `holder` already holds it (renewal keeps `acquired_at`). Returns `Ok(None)` when
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
        read_lease(&self.conn, LeaseName::Cycle).ctx("current_lease")
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
        let acquired_at_ms = match &current {
            None => now_ms,
            Some(l) if l.expires_at_ms < now_ms => now_ms,
            Some(l) if l.holder == holder => l.acquired_at_ms,
            Some(l) => {
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
