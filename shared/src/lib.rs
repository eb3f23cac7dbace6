//! capguard's shared library: everything the Lambda functions and the `capguard` command have in
//! common.
//!
//! - [`domain`]: the pure rules: error classes, the retry ladder, send policy, the send state machine.
//! - [`whatsapp`]: Meta's protocol: webhook payloads and events, signature, handshake, send API types.
//! - [`cloud`]: the Cloud API port (sending a template) and its reqwest adapter.
//! - [`store`]: the state port (sends, recipients, holds) and its DynamoDB and embedded adapters.
//! - [`schedule`]: the schedule port (one timer per retry) and its EventBridge and local adapters.
//! - [`clock`]: the clock port, wall or scaled.
//! - [`usecase`]: intake, dispatch and retry, written against the ports.
//! - [`outcome`]: capguard's outcomes as events (EventBridge, JSON lines); [`forward`]: verified
//!   webhook bodies handed on to the business's own stack.
//! - [`config`]: the configuration variables and the rules they build; [`environment`]: a
//!   deployed function's settings, secrets and ports.
//! - [`report`]: a campaign's funnel and per-recipient rows.
//! - [`metrics`], [`privacy`]: CloudWatch metrics lines, and masking numbers for logs and reports.

pub mod aws;
pub mod budget;
pub mod clock;
pub mod cloud;
pub mod config;
pub mod domain;
pub mod forward;
pub mod metrics;
pub mod outcome;
pub mod pace;
pub mod privacy;
pub mod queue;
pub mod report;
pub mod schedule;
pub mod store;
pub mod usecase;
pub mod whatsapp;
