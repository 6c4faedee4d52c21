//! The private Docker Engine of the tests is the crate's (`canary::fleet::docker_engine`, shared
//! with `canary demo --docker`: no second copy): a `dockerd` per test with its data root, exec
//! root, pid file and socket in a temp dir, a busybox-static image imported, stopped on drop.
//! Starting it fails (never skips) with the install hint when `dockerd`, `docker` or `busybox`
//! is missing or the tests do not run as root.

pub use canary::fleet::docker_engine::{DockerEngine, IMAGE_WITHOUT_PS};

/// A started private engine; panics with the engine's error (the install hint when a binary is
/// missing).
pub fn start() -> DockerEngine {
    DockerEngine::start().unwrap_or_else(|e| panic!("{e}"))
}
