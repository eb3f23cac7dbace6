//! The domain: pure rules, no I/O and no clock. What each error code means ([`classes`]), the
//! retry ladder ([`ladder`]), the rules a send must pass ([`rules`]), whether a slot may go now
//! ([`admission`]), the decision on a failure ([`verdict`]), a send's life as a state machine
//! ([`lifecycle`]), holds on templates and senders and what lifts them ([`hold`]), and what each
//! webhook event calls for ([`reaction`]), the portfolio's messaging limit and its count ([`limit`]), a number's quality rating ([`quality`]), a template's status and quality ([`template`]); and the nouns the rules are about: a send ([`send`])
//! and a recipient ([`recipient`]) with their engagement tier ([`engagement`]) and consent
//! ([`consent`]).

pub mod admission;
pub mod classes;
pub mod consent;
pub mod engagement;
pub mod hold;
pub mod ladder;
pub mod lifecycle;
pub mod limit;
pub mod policy;
pub mod quality;
pub mod reaction;
pub mod recipient;
pub mod rules;
pub mod send;
pub mod template;
pub mod verdict;
