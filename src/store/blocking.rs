//! [`SharedDb`]: the one way async code reaches the state database.
//!
//! rusqlite is synchronous, and a statement may wait up to the busy timeout (5 s) behind another
//! connection's write. Run on a tokio worker, that wait would stall every task scheduled on it
//! (probes, the scheduler, HTTP). So every state-DB call made from async code — the cycle's
//! lease, state loads and `record_cycle`, the admin API's queries, readiness, retention, the
//! alert deliverer — goes through [`SharedDb::call`], which runs it on tokio's blocking pool.
//!
//! It must not change what a call does: one closure is one unit of work on one connection, so a
//! transaction opened inside it (e.g. `record_cycle`'s) commits or rolls back inside it, exactly
//! as when it ran inline. It decides nothing about ordering or single flight (the cycle runner
//! does that).

use std::sync::{Arc, Mutex, PoisonError};

use super::{StateDb, StoreError};

/// One state-database connection shared by async tasks; cheap to clone (it is an `Arc`).
///
/// The connection sits behind a std mutex that is only ever locked inside the blocking pool,
/// never across an `.await`, so two calls on the same handle simply run one after the other.
#[derive(Debug, Clone)]
pub struct SharedDb {
    conn: Arc<Mutex<StateDb>>,
}

impl SharedDb {
    /// Wraps an open connection.
    pub fn new(db: StateDb) -> SharedDb {
        SharedDb {
            conn: Arc::new(Mutex::new(db)),
        }
    }

    /// Runs `f` with the connection on the blocking pool and returns its result.
    ///
    /// A panic in `f` resumes in the caller, as it would have inline. A lock poisoned by such a
    /// panic is taken over: the panicking call's transaction was rolled back when it unwound, so
    /// the connection is consistent. Errors: `f`'s own, or [`StoreError::Task`] when the
    /// runtime is shutting down and the call could not run.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut StateDb) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        // The blocking pool does not inherit the caller's span; carry it over so the store's own
        // log lines keep the request's or cycle's context, as they did when called inline.
        let span = tracing::Span::current();
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut db = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut db)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(StoreError::Task(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_off_the_worker_and_return_their_result() {
        let db = SharedDb::new(StateDb::open_in_memory().unwrap());
        let worker = std::thread::current().id();
        let (thread, last) = db
            .call(|db| Ok((std::thread::current().id(), db.last_cycle()?)))
            .await
            .unwrap();
        assert_ne!(thread, worker, "the call ran on the async worker thread");
        assert!(last.is_none());
    }

    #[tokio::test]
    async fn a_panicking_call_panics_the_caller_and_leaves_the_connection_usable() {
        let db = SharedDb::new(StateDb::open_in_memory().unwrap());
        let other = db.clone();
        let task = tokio::spawn(async move {
            other
                .call(|_| -> Result<(), StoreError> { panic!("boom") })
                .await
        });
        assert!(task.await.unwrap_err().is_panic());
        assert!(db.call(|db| db.last_cycle()).await.unwrap().is_none());
    }
}
