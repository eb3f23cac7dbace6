//! Helpers shared by capguard's cross-crate tests: where the fixtures are and how to read them, and
//! the contract suites every adapter of a port must pass.

pub mod clock;
pub mod deployed;
pub mod dynamo;
pub mod e2e;
pub mod faults;
pub mod lambda;
pub mod local_ports;
pub mod moto;
pub mod outcomes;
pub mod schedule_contract;
pub mod store_contract;
pub mod template;

use std::path::PathBuf;

/// A binary of the workspace (`capguard`, a function), built beside the test executable
/// (`target/debug/<name>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/debug/deps/<test>-… → target/debug/<name>
    exe.parent().and_then(std::path::Path::parent).expect("target/debug").join(name)
}

/// The folder of webhook bodies (copied byte for byte from the handbook's fixtures).
pub fn webhook_fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("webhooks")
}

/// The raw bytes of a webhook fixture, by file name without `.json`.
pub fn webhook_fixture(name: &str) -> Vec<u8> {
    let path = webhook_fixtures_dir().join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every webhook fixture's name, sorted.
pub fn webhook_fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(webhook_fixtures_dir())
        .expect("the fixtures folder exists")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}
