//! The use cases' ports on local parts, for tests that drive a handler: an embedded store in a
//! temporary file (removed on drop), the local scheduler on the same file, and the sandbox as the
//! Cloud API, in real time.

use std::sync::Arc;

use chrono::TimeDelta;
use sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use shared::clock::ScaledClock;
use shared::cloud::http::{AccessToken, HttpCloudApi, HttpCloudApiConfig};
use shared::domain::verdict::Rules;
use shared::schedule::local::LocalScheduler;
use shared::store::embedded::EmbeddedStore;
use shared::usecase::{Deps, SendSettings};

pub struct SandboxedPorts {
    pub deps: Deps<EmbeddedStore, LocalScheduler, HttpCloudApi>,
    pub sandbox: Option<SandboxHandle>,
    _file: tempfile::TempPath,
}

impl SandboxedPorts {
    /// Ports whose data file is named after `label`, sending to a sandbox of `seed`.
    pub async fn start(label: &str, seed: u64) -> Self {
        let prefix = format!("capguard-{label}-");
        let file = tempfile::Builder::new().prefix(&prefix).suffix(".redb").tempfile().expect("a temporary file");
        let path = file.into_temp_path();
        let clock = ScaledClock::new(chrono::Utc::now(), 1.0);
        let sandbox = Sandbox::start(SandboxConfig::new(seed, clock)).await.expect("the sandbox starts");
        let store = EmbeddedStore::open(&path, TimeDelta::days(90)).expect("the embedded store opens");
        let clock = Arc::new(clock);
        let scheduler = LocalScheduler::open(store.file(), clock.clone()).expect("the timer table");
        let token = AccessToken::new(sandbox::config::DEFAULT_ACCESS_TOKEN);
        let cloud = HttpCloudApi::new(HttpCloudApiConfig::new(token).with_base_url(sandbox.base_url()))
            .expect("an HTTP client");
        // The clock is the wall's: quiet hours off, or a test run in the recipients' night would
        // see their retries kept for the morning.
        let mut rules = Rules::default();
        rules.policy.quiet_hours = None;
        let deps = Deps::new(store, scheduler, cloud, clock, rules, SendSettings::default());
        Self { deps, sandbox: Some(sandbox), _file: path }
    }

    pub async fn stop(mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.shutdown().await.expect("the sandbox stops");
        }
    }
}
