//! How long each Lambda function takes to start, as deployed: its binary spawned behind the
//! Runtime API stand-in with the template's environment, until its first request for an
//! invocation (configuration read, secrets fetched from SSM, AWS and HTTP clients built, the Cloud
//! API connection opened). Also each binary's size and its deflated size, which is what a Lambda
//! zip holds.
//!
//! `cargo build --release -p webhook-intake -p send-dispatch -p retry-executor` then
//! `cargo bench -p capguard-tests --bench init` measures the release artifacts over 7 cold starts
//! each (DynamoDB Local and moto must be running: `source scripts/services; start_services`);
//! under `cargo test` it starts the debug binaries once, as a smoke test.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use capguard_tests::deployed::{Secrets, Stack};
use capguard_tests::workspace_binary;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use sandbox::SandboxConfig;
use shared::clock::ScaledClock;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let starts = if full { 7 } else { 1 };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let mut times: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for _ in 0..starts {
        runtime.block_on(async {
            let config = SandboxConfig::new(5, ScaledClock::new(chrono::Utc::now(), 1.0));
            let secrets = Secrets {
                app_secret: "init-bench-app-secret".into(),
                access_token: "init-bench-token".into(),
                verify_token: "init-bench-verify".into(),
            };
            let stack = Stack::start(config, secrets, &[]).await;
            for (name, took) in stack.init_times() {
                times.entry(name).or_default().push(took);
            }
        });
    }
    assert_eq!(times.len(), 3, "each of the three functions started: {times:?}");
    println!("{starts} cold starts each; init = spawn to the first request for an invocation");
    for (name, mut took) in times {
        assert_eq!(took.len(), starts);
        took.sort();
        let ms = |at: usize| took[at].as_secs_f64() * 1e3;
        let (median, min, max) = (ms(took.len() / 2), ms(0), ms(took.len() - 1));
        print!("{name}: init median {median:.0} ms (min {min:.0}, max {max:.0})");
        // The sizes of release artifacts only: deflating a debug build's hundreds of MiB says
        // nothing and takes long.
        if full {
            let binary = std::fs::read(workspace_binary(&name)).expect("the function's binary");
            let mut deflated = DeflateEncoder::new(Vec::new(), Compression::best());
            deflated.write_all(&binary).expect("deflate");
            let zipped = deflated.finish().expect("deflate").len();
            let mib = |bytes: usize| bytes as f64 / 1_048_576.0;
            print!("; binary {:.2} MiB, zipped {:.2} MiB", mib(binary.len()), mib(zipped));
        }
        println!();
    }
}
