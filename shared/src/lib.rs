//! capguard's shared library: everything the Lambda functions and the `capguard` command have in
//! common.
//!
//! - [`domain`]: the pure rules: error classes, the retry ladder, send policy, the send state machine.
//! - [`whatsapp`]: Meta's protocol: webhook payloads and events, signature, handshake, send API types.
//! - [`config`]: the configuration variables and the rules they build.

pub mod config;
pub mod domain;
pub mod whatsapp;
