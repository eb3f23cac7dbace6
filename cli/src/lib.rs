//! The `capguard` command's library: the local stack and the commands around it, shared by the
//! binary and the pipeline benchmark.

pub mod chart;
pub mod consent;
pub mod demo;
pub mod holds;
pub mod lab;
pub mod limit;
pub mod local;
pub mod operator;
pub mod routes;
pub mod sandbox_server;
pub mod send;
pub mod serve;
pub mod simulation;
pub mod stores;
pub mod views;
pub mod webhook;

use anyhow::Context;
use chrono::{DateTime, Utc};
use shared::clock::ScaledClock;

/// A server's clock: `time_scale` times faster than the wall since the anchor (unix seconds;
/// now when not given), so that separate servers given the same anchor read the same time.
pub fn clock_from(time_scale: f64, anchor: Option<i64>) -> anyhow::Result<ScaledClock> {
    anyhow::ensure!(time_scale.is_finite() && time_scale >= 1.0, "--time-scale must be 1 or more");
    let anchor = match anchor {
        Some(seconds) => DateTime::from_timestamp(seconds, 0).context("--clock-anchor is out of range")?,
        None => Utc::now(),
    };
    Ok(ScaledClock::anchored(anchor, time_scale))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn until_stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
