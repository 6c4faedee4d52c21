//! The fleet simulator: a synthetic platform that runs agents the way the reference platform
//! does, step by step, with its real race windows, so canary can be watched catching faults in a
//! busy fleet (and staying quiet while the fleet is healthy).
//!
//! The protocol of one execution, as simulated:
//!
//! 1. A schedule fires (`agent_schedules.next_run_at` reached): a `queued` row is inserted with
//!    `queued_at` and valid-JSON `backlog_metadata`, and `next_run_at` is advanced. A schedule that
//!    fires while its agent's queue is long inserts a `skipped` row instead.
//! 2. Claim, when the agent has a free slot (slots held < `max_parallel_tasks`; queued rows wait
//!    otherwise): the row goes `running` (`started_at`, a `claude_session_id`) and, a few ms apart
//!    and in either order, the slot is taken in one `MULTI`: `ZADD agent:slots:{a}` (score = unix
//!    seconds), `HSET agent:slot:{a}:{id} timeout_seconds`, `EXPIRE timeout + 300`. Per-execution
//!    timeouts are often lower than the agent's cap.
//! 3. Finish: the row goes terminal (`completed_at`, `duration_ms`) and, a few ms apart, the slot
//!    is released in one `MULTI` (`ZREM` + `DEL`); the next queued row is dispatched.
//!
//! Around it: pull workers claim some rows with a lease (`lease_expires_at`, `running`, never in
//! the slot set) that a reaper finishes; a capacity sweep places short-lived `drain-…` sentinels
//! (< 10 s), dispatches waiting rows and writes the drain heartbeat `canary:drain_tick_at`; soft-
//! deleted agents keep their rows. Timestamps are written in every shape of DESIGN §4.
//!
//! The two halves of a claim or a finish are separate events, so canary's collection interleaves
//! with them exactly as it would with the real platform; the gap stays far below S-01's 3 s grace.
//!
//! The simulator runs on its own thread with its own single-threaded runtime: its blocking SQLite
//! writes never stall the watcher it is being watched by. It only writes to the stores it was
//! explicitly given.
//!
//! Beside it, `accessor` serves the platform's queued-count endpoint (B-01) over the same
//! database.
//!
//! Layout: `shapes` (timestamps in every shape, the wall clock), `spec` (what to simulate,
//! the per-agent plans), `setup` (opening, provisioning and recovering the stores), `stats`
//! (the counters), `thread` (the simulator's thread: start, control, stop) and `engine` (the
//! event loop and the protocol steps it schedules).

mod accessor;
mod engine;
mod setup;
mod shapes;
mod spec;
mod stats;
mod thread;

pub use accessor::QueueAccessor;
pub use setup::{BUSY_TIMEOUT, open_db, provision, recover};
pub use shapes::{Shape, stamp};
pub use spec::{AgentPlan, FleetSpec, plan};
pub use stats::{FleetStats, FleetStatsSnapshot};
pub use thread::{Control, Fleet};
