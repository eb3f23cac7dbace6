//! A send's life, as a state machine whose states only move forward.
//!
//! A send goes out as attempt 1 and, while the per-user cap refuses it, again as attempts 2, 3, …
//! up to the ladder's length. Within an attempt, a transient failure or a hold sends the *same*
//! attempt again later as its next try. Each (attempt, try) is a [`Slot`], and a slot is sent at
//! most once: it must be claimed first, and only the current slot of a waiting send can be claimed.
//!
//! Webhooks arrive late, twice, or out of order: a status for another slot, or one that is not
//! ahead of what is known, changes nothing; `delivered` may be skipped straight to `read`; and a
//! final state is never left. The adapters' conditional writes implement these same rules, and the
//! contract tests hold them to it.
//!
//! Every unfinished phase carries its `due` time: when the next step must happen if nothing else
//! moves the send first. A waiting send's slot may go then; a claimed send whose call's outcome is
//! still unknown is settled as `outcome_unknown` then; a message Meta accepted is looked at then.
//! The stores keep sends in an index by that time, so that a sweep finds every send whose prompt
//! (a timer, a webhook) never came.
//!
//! A message Meta accepted keeps its claim's due time: most are delivered within it, and a due
//! time that does not move costs no index write. One still undelivered then may stay so until
//! [`DELIVERY_HORIZON`] after Meta first answered for it ([`Input::AwaitDelivery`]); one never
//! reported delivered or failed by that time is settled as `undelivered`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::verdict::{FinalReason, Verdict};

/// How long a message Meta accepted may stay undelivered before it is given up as `undelivered`:
/// Meta tries to deliver for 30 days (the message's default time-to-live) and redelivers a status
/// webhook for up to 7 days, so no status can arrive later than this (see "Liveness" in docs/architecture.md).
pub const DELIVERY_HORIZON: TimeDelta = TimeDelta::days(37);

/// How far a message Meta accepted has got. The order is the only order it may move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Accepted,
    Sent,
    Delivered,
    Read,
}

impl Delivery {
    /// Delivered or read: the send has done its job.
    pub fn is_success(self) -> bool {
        self >= Self::Delivered
    }
}

/// One HTTP send of a message: attempt `attempt` (1 = first send, then one per ladder step), try
/// `try_no` of that attempt (1, then one more per transient retry or hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub attempt: u32,
    pub try_no: u32,
}

impl Slot {
    pub const FIRST: Slot = Slot { attempt: 1, try_no: 1 };
}

/// Where a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// The current slot may be claimed; it is due at `due`.
    Waiting { due: DateTime<Utc> },
    /// The current slot was claimed: its HTTP call is in flight, or its outcome is not known yet.
    /// Unless Meta's answer or a webhook tells first, it is settled as unknown at `due`.
    Claimed { due: DateTime<Utc> },
    /// Meta accepted the current slot's message and has not yet delivered it. It is looked at
    /// again at `due`: first its claim's due time, then the time past which no status can come.
    InFlight { delivery: Delivery, due: DateTime<Utc> },
    /// Delivered (or read): nothing more is sent.
    Succeeded { delivery: Delivery },
    /// Nothing more is sent.
    Final { reason: FinalReason },
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded { .. } | Self::Final { .. })
    }

    /// When the next step is due: set for every phase that is not terminal.
    pub fn due(self) -> Option<DateTime<Utc>> {
        match self {
            Self::Waiting { due } | Self::Claimed { due } | Self::InFlight { due, .. } => Some(due),
            Self::Succeeded { .. } | Self::Final { .. } => None,
        }
    }
}

/// Something that happened to a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A dispatcher, a timer or a sweep wants to send this slot now; unless its outcome is known
    /// by the given time, it is settled as unknown then.
    Claim(Slot, DateTime<Utc>),
    /// The send call answered 200 with a wamid.
    Accepted(Slot),
    /// A status webhook for this slot's message.
    Status(Slot, Delivery),
    /// The slot's message was still undelivered when it was looked at: it may stay so until the
    /// given time (never earlier than it was allowed before).
    AwaitDelivery(Slot, DateTime<Utc>),
    /// The slot failed (the send call or a webhook), judged by [`super::verdict::Rules::judge`]
    /// (the verdict carries when the send looks again).
    Failed(Slot, Verdict),
    /// The recipient wrote: a waiting send is due now.
    Reply(DateTime<Utc>),
    /// The sender is halted or the template held: wait until `due` without using the slot.
    Replan(DateTime<Utc>),
    /// The recipient opted out of marketing.
    OptOut,
    /// The recipient opted back in before this send's outcome was known.
    Resume,
    /// The business cancelled the send.
    Cancel,
}

/// What an input did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The claim was granted: send this slot now, exactly once.
    Send(Slot),
    /// The state changed.
    Changed,
    /// Nothing changed: a duplicate, a stale or out-of-order event, or a refused claim.
    Unchanged,
}

/// The whole state of one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendLife {
    pub max_attempts: u32,
    pub slot: Slot,
    pub transient_retries: u32,
    pub suppressed: bool,
    pub phase: Phase,
}

impl SendLife {
    /// A new send, due at `due`, allowed `max_attempts` attempts (the ladder's length plus one).
    pub fn new(max_attempts: u32, due: DateTime<Utc>) -> Self {
        Self { max_attempts, slot: Slot::FIRST, transient_retries: 0, suppressed: false, phase: Phase::Waiting { due } }
    }

    /// A send refused up front: recorded for the report, never sent.
    pub fn refused(max_attempts: u32, reason: FinalReason) -> Self {
        Self { phase: Phase::Final { reason }, ..Self::new(max_attempts, DateTime::UNIX_EPOCH) }
    }

    pub fn apply(&mut self, input: Input) -> Effect {
        let before = *self;
        match input {
            Input::Claim(slot, settle_by) => {
                if slot == self.slot && matches!(self.phase, Phase::Waiting { .. }) {
                    self.phase = Phase::Claimed { due: settle_by };
                    return Effect::Send(slot);
                }
            }
            Input::Accepted(slot) => {
                if let Phase::Claimed { due } = self.phase
                    && slot == self.slot
                {
                    self.phase = Phase::InFlight { delivery: Delivery::Accepted, due };
                }
            }
            Input::Status(slot, delivery) if slot == self.slot => self.advance(delivery),
            Input::Status(..) => {}
            Input::AwaitDelivery(slot, until) => {
                if let Phase::InFlight { delivery, due } = self.phase
                    && slot == self.slot
                {
                    self.phase = Phase::InFlight { delivery, due: due.max(until) };
                }
            }
            Input::Failed(slot, verdict) => {
                let outstanding = matches!(self.phase, Phase::Claimed { .. } | Phase::InFlight { .. });
                if slot == self.slot && outstanding {
                    self.fail(verdict);
                }
            }
            Input::Reply(now) => {
                if let Phase::Waiting { due } = self.phase {
                    self.phase = Phase::Waiting { due: due.min(now) };
                }
            }
            Input::Replan(due) => {
                if let Phase::Waiting { .. } = self.phase {
                    self.phase = Phase::Waiting { due };
                }
            }
            Input::OptOut => {
                self.suppressed = true;
                if let Phase::Waiting { .. } = self.phase {
                    self.phase = Phase::Final { reason: FinalReason::OptedOut };
                }
            }
            Input::Resume => {
                if !self.phase.is_terminal() {
                    self.suppressed = false;
                }
            }
            Input::Cancel => {
                if let Phase::Waiting { .. } = self.phase {
                    self.phase = Phase::Final { reason: FinalReason::Cancelled };
                }
            }
        }
        if *self == before { Effect::Unchanged } else { Effect::Changed }
    }

    /// A status: the message moves forward, and its due time stays (a status ahead of the send
    /// call's answer keeps the claim's, as the answer would).
    fn advance(&mut self, delivery: Delivery) {
        let (known, due) = match self.phase {
            Phase::Claimed { due } => (None, due),
            Phase::InFlight { delivery, due } => (Some(delivery), due),
            // Only `read` can follow, and it is a success too: no due time is needed.
            Phase::Succeeded { delivery } => (Some(delivery), DateTime::UNIX_EPOCH),
            Phase::Waiting { .. } | Phase::Final { .. } => return,
        };
        if known.is_some_and(|known| delivery <= known) {
            return;
        }
        self.phase =
            if delivery.is_success() { Phase::Succeeded { delivery } } else { Phase::InFlight { delivery, due } };
    }

    fn fail(&mut self, verdict: Verdict) {
        let next = match verdict {
            Verdict::Ladder { attempt, due } if attempt == self.slot.attempt + 1 && attempt <= self.max_attempts => {
                self.transient_retries = 0;
                self.slot = Slot { attempt, try_no: 1 };
                Phase::Waiting { due }
            }
            Verdict::Ladder { .. } => Phase::Final { reason: FinalReason::Exhausted },
            Verdict::BackOff { retry, due } => {
                self.transient_retries = retry;
                self.slot.try_no += 1;
                Phase::Waiting { due }
            }
            Verdict::HoldTemplate { due } | Verdict::HaltSender { due } => {
                self.slot.try_no += 1;
                Phase::Waiting { due }
            }
            Verdict::SuppressRecipient => Phase::Final { reason: FinalReason::OptedOut },
            Verdict::Final(reason) => Phase::Final { reason },
        };
        self.phase = match next {
            Phase::Waiting { .. } if self.suppressed => Phase::Final { reason: FinalReason::OptedOut },
            next => next,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn slot(attempt: u32, try_no: u32) -> Slot {
        Slot { attempt, try_no }
    }

    #[test]
    fn a_capped_send_is_recovered_on_its_second_attempt() {
        let mut life = SendLife::new(4, t(0));
        assert_eq!(life.apply(Input::Claim(Slot::FIRST, t(900))), Effect::Send(Slot::FIRST));
        assert_eq!(life.apply(Input::Accepted(Slot::FIRST)), Effect::Changed);
        let retry = Verdict::Ladder { attempt: 2, due: t(43_200) };
        assert_eq!(life.apply(Input::Failed(Slot::FIRST, retry)), Effect::Changed);
        assert_eq!(life.phase, Phase::Waiting { due: t(43_200) });
        assert_eq!(life.apply(Input::Claim(slot(2, 1), t(44_100))), Effect::Send(slot(2, 1)));
        assert_eq!(life.apply(Input::Status(slot(2, 1), Delivery::Read)), Effect::Changed);
        assert_eq!(life.phase, Phase::Succeeded { delivery: Delivery::Read });
    }

    #[test]
    fn a_claimed_slot_is_never_claimed_again() {
        let mut life = SendLife::new(4, t(0));
        assert_eq!(life.apply(Input::Claim(Slot::FIRST, t(900))), Effect::Send(Slot::FIRST));
        assert_eq!(life.apply(Input::Claim(Slot::FIRST, t(901))), Effect::Unchanged);
        assert_eq!(life.apply(Input::Claim(slot(2, 1), t(901))), Effect::Unchanged);
    }

    #[test]
    fn delivered_after_read_changes_nothing() {
        let mut life = SendLife::new(4, t(0));
        life.apply(Input::Claim(Slot::FIRST, t(900)));
        life.apply(Input::Status(Slot::FIRST, Delivery::Read));
        assert_eq!(life.apply(Input::Status(Slot::FIRST, Delivery::Delivered)), Effect::Unchanged);
        assert_eq!(life.apply(Input::Status(Slot::FIRST, Delivery::Read)), Effect::Unchanged);
    }

    #[test]
    fn a_status_that_arrives_before_the_send_answer_is_kept() {
        let mut life = SendLife::new(4, t(0));
        life.apply(Input::Claim(Slot::FIRST, t(900)));
        assert_eq!(life.apply(Input::Status(Slot::FIRST, Delivery::Sent)), Effect::Changed);
        assert_eq!(life.apply(Input::Accepted(Slot::FIRST)), Effect::Unchanged);
        assert_eq!(life.phase, Phase::InFlight { delivery: Delivery::Sent, due: t(900) }, "the claim's due time stays");
    }

    #[test]
    fn an_accepted_message_keeps_its_claims_due_time_until_it_is_awaited_longer() {
        let mut life = SendLife::new(4, t(0));
        life.apply(Input::Claim(Slot::FIRST, t(900)));
        life.apply(Input::Accepted(Slot::FIRST));
        assert_eq!(life.phase, Phase::InFlight { delivery: Delivery::Accepted, due: t(900) });
        life.apply(Input::Status(Slot::FIRST, Delivery::Sent));
        assert_eq!(life.phase, Phase::InFlight { delivery: Delivery::Sent, due: t(900) });
        let horizon = t(1) + DELIVERY_HORIZON;
        assert_eq!(life.apply(Input::AwaitDelivery(slot(2, 1), horizon)), Effect::Unchanged, "another slot's");
        assert_eq!(life.apply(Input::AwaitDelivery(Slot::FIRST, horizon)), Effect::Changed);
        assert_eq!(life.phase, Phase::InFlight { delivery: Delivery::Sent, due: horizon });
        assert_eq!(life.apply(Input::AwaitDelivery(Slot::FIRST, t(950))), Effect::Unchanged, "never shortened");
        life.apply(Input::Status(Slot::FIRST, Delivery::Delivered));
        assert_eq!(life.apply(Input::AwaitDelivery(Slot::FIRST, horizon + TimeDelta::days(1))), Effect::Unchanged);
    }

    #[test]
    fn a_reply_makes_a_waiting_retry_due_now() {
        let mut life = SendLife::new(4, t(0));
        life.apply(Input::Claim(Slot::FIRST, t(900)));
        life.apply(Input::Failed(Slot::FIRST, Verdict::Ladder { attempt: 2, due: t(43_200) }));
        assert_eq!(life.apply(Input::Reply(t(600))), Effect::Changed);
        assert_eq!(life.phase, Phase::Waiting { due: t(600) });
    }

    #[test]
    fn an_opt_out_while_in_flight_ends_the_send_at_its_next_wait() {
        let mut life = SendLife::new(4, t(0));
        life.apply(Input::Claim(Slot::FIRST, t(900)));
        assert_eq!(life.apply(Input::OptOut), Effect::Changed);
        life.apply(Input::Failed(Slot::FIRST, Verdict::Ladder { attempt: 2, due: t(43_200) }));
        assert_eq!(life.phase, Phase::Final { reason: FinalReason::OptedOut });
    }

    #[test]
    fn a_transient_failure_retries_the_same_attempt_as_its_next_try() {
        let mut life = SendLife::new(4, t(0));
        life.apply(Input::Claim(Slot::FIRST, t(900)));
        life.apply(Input::Failed(Slot::FIRST, Verdict::BackOff { retry: 1, due: t(4) }));
        assert_eq!(life.slot, slot(1, 2));
        assert_eq!(life.apply(Input::Claim(slot(1, 2), t(904))), Effect::Send(slot(1, 2)));
    }

    #[test]
    fn a_ladder_verdict_past_the_last_attempt_exhausts() {
        let mut life = SendLife::new(2, t(0));
        life.apply(Input::Claim(Slot::FIRST, t(900)));
        life.apply(Input::Failed(Slot::FIRST, Verdict::Ladder { attempt: 2, due: t(1) }));
        life.apply(Input::Claim(slot(2, 1), t(901)));
        life.apply(Input::Failed(slot(2, 1), Verdict::Ladder { attempt: 3, due: t(2) }));
        assert_eq!(life.phase, Phase::Final { reason: FinalReason::Exhausted });
    }

    fn arb_slot() -> impl Strategy<Value = Slot> {
        (1u32..=6, 1u32..=4).prop_map(|(attempt, try_no)| Slot { attempt, try_no })
    }

    fn arb_delivery() -> impl Strategy<Value = Delivery> {
        prop_oneof![Just(Delivery::Accepted), Just(Delivery::Sent), Just(Delivery::Delivered), Just(Delivery::Read)]
    }

    fn arb_reason() -> impl Strategy<Value = FinalReason> {
        prop_oneof![
            Just(FinalReason::Exhausted),
            Just(FinalReason::MarketingPausedRegion),
            Just(FinalReason::Unreachable),
            Just(FinalReason::UnknownCode),
        ]
    }

    fn arb_verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            (1u32..=7, 0i64..100_000).prop_map(|(attempt, s)| Verdict::Ladder { attempt, due: t(s) }),
            (1u32..=3, 0i64..100).prop_map(|(retry, s)| Verdict::BackOff { retry, due: t(s) }),
            Just(Verdict::SuppressRecipient),
            (0i64..100_000).prop_map(|s| Verdict::HoldTemplate { due: t(s) }),
            (0i64..100_000).prop_map(|s| Verdict::HaltSender { due: t(s) }),
            arb_reason().prop_map(Verdict::Final),
        ]
    }

    fn arb_input() -> impl Strategy<Value = Input> {
        prop_oneof![
            4 => (arb_slot(), 0i64..100_000).prop_map(|(s, at)| Input::Claim(s, t(at))),
            2 => arb_slot().prop_map(Input::Accepted),
            4 => (arb_slot(), arb_delivery()).prop_map(|(s, d)| Input::Status(s, d)),
            1 => (arb_slot(), 0i64..100_000).prop_map(|(s, at)| Input::AwaitDelivery(s, t(at))),
            4 => (arb_slot(), arb_verdict()).prop_map(|(s, v)| Input::Failed(s, v)),
            1 => (0i64..100_000).prop_map(|s| Input::Reply(t(s))),
            1 => (0i64..100_000).prop_map(|s| Input::Replan(t(s))),
            1 => Just(Input::OptOut),
            1 => Just(Input::Resume),
            1 => Just(Input::Cancel),
        ]
    }

    /// Inputs biased towards the send's own current slot, so that sequences get deep into the ladder.
    fn follow(life: &SendLife, input: Input, aim: bool) -> Input {
        match (aim, input) {
            (true, Input::Claim(_, by)) => Input::Claim(life.slot, by),
            (true, Input::Accepted(_)) => Input::Accepted(life.slot),
            (true, Input::Status(_, d)) => Input::Status(life.slot, d),
            (true, Input::AwaitDelivery(_, until)) => Input::AwaitDelivery(life.slot, until),
            (true, Input::Failed(_, Verdict::Ladder { due, .. })) => {
                Input::Failed(life.slot, Verdict::Ladder { attempt: life.slot.attempt + 1, due })
            }
            (true, Input::Failed(_, v)) => Input::Failed(life.slot, v),
            (_, other) => other,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn invariants_hold_for_any_event_sequence(
            max_attempts in 1u32..=5,
            steps in prop::collection::vec((arb_input(), any::<bool>()), 0..60),
        ) {
            let mut life = SendLife::new(max_attempts, t(0));
            let mut sent: HashSet<Slot> = HashSet::new();
            let mut last_sent: Option<Slot> = None;
            for (input, aim) in steps {
                let input = follow(&life, input, aim);
                let before = life;
                let effect = life.apply(input);

                prop_assert!(life.slot.attempt >= 1 && life.slot.attempt <= max_attempts, "attempts exceed the ladder: {life:?}");
                prop_assert!(life.slot >= before.slot, "the slot moved backwards");
                if let Phase::Final { .. } = before.phase {
                    prop_assert_eq!(life.phase, before.phase, "a final state was left");
                }
                if let Phase::Succeeded { delivery } = before.phase {
                    let Phase::Succeeded { delivery: now } = life.phase else {
                        return Err(TestCaseError::fail(format!("success was left: {life:?}")));
                    };
                    prop_assert!(now >= delivery, "delivery moved backwards");
                }
                if let (Phase::InFlight { delivery: was, due: was_due }, Phase::InFlight { delivery: now, due }) = (before.phase, life.phase) {
                    prop_assert!(now >= was, "delivery moved backwards");
                    if matches!(input, Input::AwaitDelivery(..)) {
                        prop_assert!(due >= was_due, "a message was given up sooner than it was allowed");
                    } else {
                        prop_assert_eq!(due, was_due, "only awaiting a delivery moves the message's due time");
                    }
                }
                prop_assert_eq!(life.phase.due().is_some(), !life.phase.is_terminal(), "an unfinished send without a due time: {:?}", life);
                if let Effect::Send(slot) = effect {
                    prop_assert!(sent.insert(slot), "slot {slot:?} was sent twice");
                    prop_assert!(last_sent.is_none_or(|last| slot > last), "sends went backwards");
                    prop_assert!(matches!(before.phase, Phase::Waiting { .. }), "sent while a message was outstanding");
                    last_sent = Some(slot);
                }
                if before.phase.is_terminal() {
                    prop_assert!(!matches!(effect, Effect::Send(_)), "a finished send was sent again");
                }
            }
        }
    }
}
