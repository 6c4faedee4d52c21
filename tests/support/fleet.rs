//! The end-to-end harness: a synthetic platform (`canary::fleet::rig`: platform database, a SQLite
//! file or a private PostgreSQL, private `redis-server`, the simulated fleet, a fault injector) watched by canary's real
//! sequencer through the daemon's [`CycleRunner`], with alerts delivered by the real deliverer to
//! a real local webhook receiver (`support::webhook`).

use std::sync::Arc;
use std::time::Duration;

use canary::alert::Deliverer;
use canary::config::{Config, Secret};
use canary::cycle::{CycleRequest, CycleResult, Trigger};
use canary::fleet::faults::Recipe;
use canary::fleet::rig::{Backend, Rig};
use canary::fleet::sim::{FleetSpec, FleetStatsSnapshot};
use canary::schedule::runner::CycleRunner;
use canary::store::StateDb;
use canary_invariants::Outcome;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::webhook::{Received, Webhook};

/// A watched synthetic platform with a webhook receiver.
pub struct FleetEnv {
    pub rig: Rig,
    pub runner: CycleRunner,
    pub hook: Webhook,
    wake: Arc<Notify>,
    deliverer: Option<(CancellationToken, JoinHandle<()>)>,
}

/// The configuration the suite watches with: defaults (DESIGN §5 thresholds), the rig's stores,
/// H-01 confirmed after 1 s (its default is one 5 min interval), R-01's dwell 1 s, fast alert
/// pacing.
pub fn config(rig: &Rig, webhook_url: Option<String>) -> Config {
    let mut config = Config {
        platform: rig.platform_config(),
        ..Config::default()
    };
    config.state.path = rig.dir().join("state.db");
    config.invariants.h01.confirm_after_seconds = 1;
    // R-01's dwell likewise (its default is 10 min): a zombie persisting 1 s fires.
    config.invariants.r01.dwell_seconds = 1;
    config.alerts.slack.webhook_url = webhook_url.map(Secret::new);
    config.alerts.slack.min_interval = Duration::from_millis(10);
    config.alerts.slack.timeout = Duration::from_secs(2);
    config.alerts.retry_initial = Duration::from_millis(100);
    config.alerts.retry_max = Duration::from_millis(400);
    config
}

impl FleetEnv {
    /// Starts the platform (fleet of `spec`, sites of `recipes`), the webhook receiver and the
    /// deliverer, and a runner on a fresh state database. The platform database is on `backend`.
    pub async fn start_on(
        backend: Backend,
        spec: &FleetSpec,
        recipes: &[&'static dyn Recipe],
    ) -> FleetEnv {
        let rig = match backend {
            Backend::Sqlite => Rig::start_on(backend, spec, recipes).await,
            Backend::Postgres | Backend::PostgresTyped => {
                let typed = backend == Backend::PostgresTyped;
                Rig::start_on_postgres(crate::support::postgres::shared(), typed, spec, recipes)
                    .await
            }
        };
        let rig = rig.unwrap_or_else(|e| panic!("starting the synthetic platform: {e}"));
        FleetEnv::watch(rig, |_| {}).await
    }

    /// Watches a rig the caller started, with the suite's configuration adjusted by `tweak`
    /// (how canary reaches the platform's Redis, say).
    pub async fn watch(rig: Rig, tweak: impl FnOnce(&mut Config)) -> FleetEnv {
        let hook = Webhook::start(Vec::new()).await;
        let mut config = config(&rig, Some(hook.url()));
        tweak(&mut config);
        let db = StateDb::open(&config.state.path).expect("state db");
        let deliverer = Deliverer::new(
            &config.state.path,
            Some(Secret::new(hook.url())),
            config.alerts.clone(),
        )
        .expect("deliverer")
        .with_poll_interval(Duration::from_millis(50));
        let wake = deliverer.waker();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(deliverer.run(cancel.clone()));
        FleetEnv {
            rig,
            runner: CycleRunner::new(Arc::new(config), db),
            hook,
            wake,
            deliverer: Some((cancel, task)),
        }
    }

    /// One cycle now, through the daemon's single-flight runner; wakes the deliverer after it.
    pub async fn cycle(&self) -> CycleResult {
        let result = self
            .runner
            .run(&CycleRequest {
                trigger: Trigger::Manual,
                only: None,
            })
            .await
            .expect("cycle");
        self.wake.notify_one();
        result
    }

    /// Waits until the receiver holds `n` alerts (panics past `timeout`).
    pub async fn alerts(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.hook.wait_for(n, timeout).await
    }

    /// Reverts any injected fault, stops the deliverer and the fleet; the fleet's counters.
    pub async fn stop(mut self) -> FleetStatsSnapshot {
        if let Some((cancel, task)) = self.deliverer.take() {
            cancel.cancel();
            let _ = task.await;
        }
        self.rig.stop().await.expect("stopping the fleet")
    }
}

/// `(invariant, kind)` of every transition of a cycle.
pub fn transitions(result: &CycleResult) -> Vec<(String, String)> {
    result
        .transitions
        .iter()
        .map(|t| (t.invariant_id.clone(), t.kind.to_owned()))
        .collect()
}

/// Ids of the invariants red in a cycle.
pub fn red(result: &CycleResult) -> Vec<String> {
    result
        .outcomes
        .iter()
        .filter(|(_, o)| **o == Outcome::Red)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The violations of a cycle, one line each (for failure messages).
pub fn describe(result: &CycleResult) -> String {
    let mut lines: Vec<String> = result
        .violations
        .iter()
        .map(|v| {
            format!(
                "{} {} {}: {}",
                v.violation.invariant_id,
                v.violation.subject,
                v.violation.signal,
                v.violation.observed_state
            )
        })
        .collect();
    if !result.sources_unavailable.is_empty() {
        lines.push(format!(
            "sources unavailable: {:?}",
            result.sources_unavailable
        ));
    }
    lines.join("\n")
}

/// The invariant id and kind a webhook message is about (`🔴 S-01 Slot–row … fired: …`).
pub fn alert_of(received: &Received) -> (String, String) {
    let text = received.body["text"].as_str().unwrap_or_default();
    let id = text.split(' ').nth(1).unwrap_or_default().to_owned();
    let kind = if text.contains("resolved") {
        "resolved"
    } else {
        "fired"
    };
    (id, kind.to_owned())
}
