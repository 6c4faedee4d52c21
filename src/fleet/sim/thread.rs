//! The simulator's thread: [`Fleet::start`] runs the engine on its own thread with its own
//! single-threaded runtime (its blocking SQLite writes never stall the watcher), [`Control`] is
//! what fault recipes turn while it runs, and [`Fleet::stop`] drains it. It must not write to
//! the stores itself.

use crate::fleet::platform_db::PlatformTarget;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use super::engine::Sim;
use super::spec::{AgentPlan, FleetSpec};
use super::stats::{FleetStats, FleetStatsSnapshot};
use crate::fleet::platform::{FleetError, RedisTarget};

/// Knobs a fault recipe turns on the running simulator.
#[derive(Debug, Default)]
pub struct Control {
    /// The capacity sweep is "dead": no sentinels, no dispatch from the sweep, no heartbeat.
    pub sweep_stopped: AtomicBool,
    /// The queue accessor's stale "cache": agents answered with this count instead of their
    /// rows (B-01's drift).
    pub stale_queue_counts: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// A running simulator. Stop it with [`Fleet::stop`] (it then finishes or cancels everything in
/// flight, so the stores are left consistent).
#[derive(Debug)]
pub struct Fleet {
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<Result<(), FleetError>>>,
    stats: Arc<FleetStats>,
    control: Arc<Control>,
    plans: Vec<AgentPlan>,
}

impl Fleet {
    /// Starts the simulator on its own thread against the platform database `target` (a SQLite
    /// path or a [`PlatformTarget`], already provisioned with `plans`) and `redis` (a URL or a
    /// cluster). Returns once both stores are connected.
    pub async fn start(
        target: impl Into<PlatformTarget>,
        redis: impl Into<RedisTarget>,
        spec: &FleetSpec,
        plans: Vec<AgentPlan>,
    ) -> Result<Fleet, FleetError> {
        let cancel = CancellationToken::new();
        let stats = Arc::new(FleetStats::default());
        let control = Arc::new(Control::default());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let args = SimArgs {
            target: target.into(),
            redis: redis.into(),
            spec: spec.clone(),
            plans: plans.clone(),
            stats: Arc::clone(&stats),
            control: Arc::clone(&control),
            cancel: cancel.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("fleet-sim".to_owned())
            .spawn(move || run_thread(args, ready_tx))
            .map_err(|e| FleetError::Setup(format!("spawning the simulator thread: {e}")))?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Fleet {
                cancel,
                thread: Some(thread),
                stats,
                control,
                plans,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(FleetError::Setup(
                    "the simulator thread ended during start-up".to_owned(),
                )),
            },
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> FleetStatsSnapshot {
        self.stats.snapshot()
    }

    /// The knobs fault recipes turn.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// The simulated agents.
    pub fn plans(&self) -> &[AgentPlan] {
        &self.plans
    }

    /// Stops firing, finishes every started execution, cancels queued rows, removes sentinels,
    /// and waits for the thread. Returns the final counters.
    pub async fn stop(mut self) -> Result<FleetStatsSnapshot, FleetError> {
        self.cancel.cancel();
        let stats = Arc::clone(&self.stats);
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| FleetError::Setup(format!("joining the simulator: {e}")))?;
            match joined {
                Ok(result) => result?,
                Err(_) => return Err(FleetError::Setup("the simulator panicked".to_owned())),
            }
        }
        Ok(stats.snapshot())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Not joined here (that would block an async caller); the thread drains and exits.
        self.cancel.cancel();
    }
}

/// What the engine is started with.
pub(super) struct SimArgs {
    pub(super) target: PlatformTarget,
    pub(super) redis: RedisTarget,
    pub(super) spec: FleetSpec,
    pub(super) plans: Vec<AgentPlan>,
    pub(super) stats: Arc<FleetStats>,
    pub(super) control: Arc<Control>,
    pub(super) cancel: CancellationToken,
}

fn run_thread(
    args: SimArgs,
    ready: tokio::sync::oneshot::Sender<Result<(), FleetError>>,
) -> Result<(), FleetError> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let error = FleetError::Setup(format!("simulator runtime: {e}"));
            let _ = ready.send(Err(FleetError::Setup(error.to_string())));
            return Err(error);
        }
    };
    runtime.block_on(async move {
        let sim = match Sim::connect(args).await {
            Ok(mut sim) => {
                // The platform's sweep has run before anyone looks: a watcher's first cycle must
                // see a fresh heartbeat, not "no heartbeat ever written".
                sim.sweep().await;
                let _ = ready.send(Ok(()));
                sim
            }
            Err(e) => {
                let _ = ready.send(Err(FleetError::Setup(e.to_string())));
                return Err(e);
            }
        };
        sim.run().await
    })
}
