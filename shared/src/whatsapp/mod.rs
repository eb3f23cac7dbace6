//! Meta's side of the wire: webhook payloads and their events, the signature and handshake that
//! guard the webhook, and the Graph send API's request and responses.

pub mod callback;
pub mod events;
pub mod handshake;
pub mod open;
pub mod send;
pub mod signature;
pub mod time;
pub mod webhook;
