//! capguard's shared library: everything the Lambda functions and the `capguard` command have in
//! common.
//!
//! - [`domain`]: the pure rules: error classes, the retry ladder, send policy, the send state machine.
//! - [`whatsapp`]: Meta's protocol: webhook payloads and events, signature, handshake, send API types.
//! - [`store`]: the state port (sends, recipients, holds) and its DynamoDB and embedded adapters.
//! - [`schedule`]: the schedule port (one timer per retry) and its EventBridge and local adapters.
//! - [`clock`]: the clock port, wall or scaled.
//! - [`config`]: the configuration variables and the rules they build.

pub mod clock;
pub mod config;
pub mod domain;
pub mod schedule;
pub mod store;
pub mod whatsapp;
