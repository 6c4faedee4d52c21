//! The one integration-test binary: real `redis-server` processes on ephemeral ports, real SQLite
//! files in temp dirs. Each module below owns one area; `support/` holds the harnesses.

// The whole binary is test code: a failed setup step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support; // harnesses: real redis-server, webhook receiver, platform DB, daemon process, fleet rig

mod alert; // outbox delivery to a real webhook: retries, 429, 404, outage, restart, pacing, secrecy
mod check; // `canary check` binary: each invariant red in real stores then green, and failure modes
mod collect; // the collector on real Redis + SQLite: snapshot content, round trips, degradation, outages
mod collect_postgres; // the PostgreSQL read side via `canary check`: verdicts, role refusal, outages, custom SQL
mod custom; // custom SQL invariants end to end: fire/resolve, validation refusals, limits, examples
mod daemon; // `canary run` process: scheduled cycles, SIGTERM shutdown, bad cron, one alert delivered
mod docker; // the Docker source on a private dockerd: listing, env filtering, sick containers, R-01 and H-01 end to end
mod episodes; // bounded state: a 100 000-member flood counted in full, state growth per cycle, episode lifecycle
mod fleet; // simulated fleet: each fault recipe red → one fired → revert → one resolved; clean soak
mod http; // admin HTTP API: probes, auth, metrics, admin routes, single-flight via a gated proxy
mod monitoring; // shipped Prometheus rules + Grafana dashboard: metrics exist in /metrics, promtool check + test rules
mod plans; // the plans of every platform statement on the production-shaped fixture: no history scan, rows read
mod postgres; // the PostgreSQL platform's write side: private server, fixtures, fleet --seed-only, a fault
mod queue_count; // B-01's source via `canary check`: a real HTTP endpoint over a real SQLite platform; drift, re-read, per-agent failures, endpoint down, secrecy
mod redis_cluster; // Redis Cluster via `canary check` and the library: every primary read, round trips per node, redirects followed once, a node down
mod redis_deployed; // Redis as deployed via `canary check`: rediss:// verified, mutual TLS, the README's ACL, validation
mod redis_sentinel; // Sentinel and replica reads via `canary check`: failover followed, sentinels killed, replica lag bound
mod silences; // silences and maintenance windows: what is muted, what is sent when one ends, the CLI
mod slack_payloads; // Slack messages per invariant (fired/reminder/resolved) vs reviewed insta snapshots
mod status_page; // the status page: rendered in headless Chromium (tiles, escaping, timeline, screenshot), access over HTTP
mod store; // state DB files: migrations, record_cycle atomicity, lease, retention, history queries
