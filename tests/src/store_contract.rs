//! The state port's contract: every check here runs against every adapter of [`SendStore`]
//! (`tests/tests/store_contract_*.rs`), so the DynamoDB table and the embedded store behave the
//! same. The send state machine in `shared::domain::lifecycle` is the specification; these checks
//! pin the parts a store can get wrong: idempotence, one winner per claim, monotonic statuses,
//! stale events, recipients, listings and retention.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use shared::domain::consent::{ConsentChange, OptIn, sources};
use shared::domain::engagement::Tier;
use shared::domain::lifecycle::{DELIVERY_HORIZON, Delivery, Phase, Slot};
use shared::domain::limit::{BUCKET, MARGIN, MessagingLimit, ReportedLimit, WINDOW, bucket_of};
use shared::domain::quality::{QualityRating, QualityReport};
use shared::domain::rules::{Category, FrequencyCap};
use shared::domain::template::{TemplateField, TemplateReport};
use shared::domain::verdict::{FinalReason, Verdict};
use shared::store::{
    CountOf, DEFAULT_RETENTION, Hold, HoldKey, MessagingCount, NewSend, Place, RecordedError, SendId, SendRecord,
    SendStore, Start, StatusReport, StatusUpdate, StoreError, TemplateRef, WaitingSend, WamidEntry, WamidLink,
};

/// The instant the checks start at.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01")
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(seconds)
}

const PHONE_NUMBER_ID: &str = "106540352242922";

/// A marketing send of four attempts. Keys are made unique per call site by the caller.
pub fn new_send(key: &str, recipient: &str, campaign: Option<&str>) -> NewSend {
    NewSend {
        idempotency_key: key.to_owned(),
        recipient: recipient.to_owned(),
        phone_number_id: PHONE_NUMBER_ID.to_owned(),
        template: TemplateRef { name: "spring_sale".into(), language: "en_US".into(), components: vec![] },
        category: Category::Marketing,
        campaign: campaign.map(str::to_owned),
        max_attempts: 4,
        retry_until: None,
        utc_offset_minutes: None,
        tier: None,
        opt_in_source: None,
        held_for_limit: false,
    }
}

fn capped() -> RecordedError {
    RecordedError {
        code: 131049,
        title: Some("This message was not delivered to maintain healthy ecosystem engagement.".into()),
    }
}

/// A number no other call in this process returns.
fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// A name unique to this call: keys, campaigns.
fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), next_serial())
}

/// How long after its claim a send of these checks is settled if nothing is heard.
const SETTLE: TimeDelta = TimeDelta::minutes(15);

/// Records `send` due at `when` and claims attempt 1 then, as dispatch does.
async fn record_and_claim<S: SendStore>(store: &S, send: &NewSend, when: DateTime<Utc>) -> SendRecord {
    let recorded = store.record_send(send, Start::Due(when), when).await.unwrap();
    assert!(recorded.created);
    store.claim(&recorded.send.id, Slot::FIRST, when, when + SETTLE).await.unwrap().expect("the first claim wins")
}

/// Records a fresh send with attempt 1 claimed at t0.
async fn claimed_send<S: SendStore>(store: &S, recipient: &str) -> SendRecord {
    record_and_claim(store, &new_send(&unique("send"), recipient, None), t0()).await
}

/// A send whose attempt 1 was capped at `at(10)`: waiting for attempt 2 at `at(43_210)`.
async fn waiting_send<S: SendStore>(store: &S, recipient: &str) -> SendRecord {
    let send = claimed_send(store, recipient).await;
    let ladder = Verdict::Ladder { attempt: 2, due: at(43_210) };
    store.record_failure(&send.id, Slot::FIRST, &capped(), ladder, at(10)).await.unwrap().expect("the failure applies")
}

const SLOT_2: Slot = Slot { attempt: 2, try_no: 1 };

pub async fn recording_twice_returns_the_first_send<S: SendStore>(store: Arc<S>) {
    let send = new_send(&unique("idem"), "919812345678", Some("spring"));
    let first = store.record_send(&send, Start::Due(t0()), t0()).await.unwrap();
    assert!(first.created);
    assert_eq!(first.send.id, send.id());
    let mut changed = send.clone();
    changed.template.name = "another_template".into();
    let second = store.record_send(&changed, Start::Due(at(60)), at(60)).await.unwrap();
    assert!(!second.created, "the same key and recipient is the same send");
    assert_eq!(second.send, first.send, "the first send is returned unchanged");
    assert_eq!(store.get_send(&send.id()).await.unwrap(), Some(first.send));
}

pub async fn a_new_send_waits_until_its_first_slot_is_claimed<S: SendStore>(store: Arc<S>) {
    let new = new_send(&unique("new"), "919812345678", None);
    let recorded = store.record_send(&new, Start::Due(t0()), t0()).await.unwrap().send;
    assert_eq!(recorded.life.phase, Phase::Waiting { due: t0() }, "recorded as due now");
    assert!(recorded.attempts.is_empty(), "nothing is claimed by recording");
    let send = store.claim(&recorded.id, Slot::FIRST, t0(), t0() + SETTLE).await.unwrap().expect("claims");
    assert_eq!(send.life.phase, Phase::Claimed { due: t0() + SETTLE });
    assert_eq!(send.life.slot, Slot::FIRST);
    assert_eq!(send.attempts.len(), 1);
    assert_eq!(send.attempts[0].slot, Slot::FIRST);
    assert_eq!(send.attempts[0].claimed_at, t0());
    assert_eq!(send.created_at, t0());
    let again = store.claim(&send.id, Slot::FIRST, at(1), at(1) + SETTLE).await.unwrap();
    assert_eq!(again, None, "a claimed slot is never claimed again");
}

pub async fn a_send_recorded_claimed_is_sent_once_and_settled_if_nothing_is_heard<S: SendStore>(store: Arc<S>) {
    let new = new_send(&unique("claimed"), "919812345678", Some("spring"));
    let recorded = store.record_send(&new, Start::Claim(t0() + SETTLE), t0()).await.unwrap();
    assert!(recorded.created);
    let send = recorded.send;
    assert_eq!(send.life.phase, Phase::Claimed { due: t0() + SETTLE }, "claimed as it is recorded");
    assert_eq!(send.life.slot, Slot::FIRST);
    assert_eq!((send.attempts.len(), send.attempts[0].slot, send.attempts[0].claimed_at), (1, Slot::FIRST, t0()));
    assert_eq!(store.get_send(&send.id).await.unwrap().as_ref(), Some(&send), "as read back");
    assert_eq!(store.claim(&send.id, Slot::FIRST, at(1), at(1) + SETTLE).await.unwrap(), None, "never claimed twice");
    let again = store.record_send(&new, Start::Claim(at(2) + SETTLE), at(2)).await.unwrap();
    assert_eq!((again.created, again.send), (false, send.clone()), "a repeated request finds it, unchanged");
    assert!(store.overdue(t0() + SETTLE - TimeDelta::seconds(1), 100).await.unwrap().is_empty());
    assert_eq!(store.overdue(t0() + SETTLE, 100).await.unwrap(), std::slice::from_ref(&send.id), "due to be settled");
    let accepted = store.record_accepted(&send.id, Slot::FIRST, "wamid.claimed-on-record", at(3)).await.unwrap();
    assert!(matches!(accepted.send.expect("applies").life.phase, Phase::InFlight { .. }));
}

pub async fn a_refused_send_is_final_and_never_claimed<S: SendStore>(store: Arc<S>) {
    let send = new_send(&unique("refused"), "919812345678", Some("spring"));
    let recorded = store.record_send(&send, Start::Refuse(FinalReason::FrequencyCap), t0()).await.unwrap();
    assert_eq!(recorded.send.life.phase, Phase::Final { reason: FinalReason::FrequencyCap });
    assert!(recorded.send.attempts.is_empty());
    assert_eq!(store.claim(&send.id(), Slot::FIRST, at(1), at(1) + SETTLE).await.unwrap(), None);
}

pub async fn a_requests_deadline_offset_and_tier_are_kept_with_its_send<S: SendStore>(store: Arc<S>) {
    let mut send = new_send(&unique("policy"), "5511987654321", None);
    send.retry_until = Some(at(86_400));
    send.utc_offset_minutes = Some(-180);
    send.tier = Some(Tier::Dormant);
    let recorded = store.record_send(&send, Start::Due(t0()), t0()).await.unwrap().send;
    let found = store.get_send(&recorded.id).await.unwrap().expect("recorded");
    assert_eq!(
        (found.retry_until, found.utc_offset_minutes, found.tier),
        (Some(at(86_400)), Some(-180), Some(Tier::Dormant))
    );
    let plain = store.record_send(&new_send(&unique("plain"), "5511987654321", None), Start::Due(t0()), t0()).await;
    let found = store.get_send(&plain.unwrap().send.id).await.unwrap().expect("recorded");
    assert_eq!((found.retry_until, found.utc_offset_minutes, found.tier), (None, None, None));
}

pub async fn an_unknown_send_is_absent<S: SendStore>(store: Arc<S>) {
    assert_eq!(store.get_send(&SendId::derive("nobody", "nothing", "0")).await.unwrap(), None);
    assert_eq!(store.find_by_wamid("wamid.never-sent").await.unwrap(), None);
}

pub async fn exactly_one_of_many_concurrent_claimers_wins<S: SendStore + 'static>(store: Arc<S>) {
    let send = waiting_send(&*store, "919812345678").await;
    let claimers: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            let id = send.id.clone();
            tokio::spawn(async move { store.claim(&id, SLOT_2, at(43_210 + i), at(43_210 + i) + SETTLE).await })
        })
        .collect();
    let mut winners = 0;
    for claimer in claimers {
        if claimer.await.expect("the task ran").expect("the store answered").is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of 32 concurrent claimers wins");
    let after = store.get_send(&send.id).await.unwrap().unwrap();
    assert!(matches!(after.life.phase, Phase::Claimed { .. }), "{after:?}");
    assert_eq!(after.attempts.iter().filter(|a| a.slot == SLOT_2).count(), 1);
}

pub async fn an_accepted_send_is_found_by_its_wamid<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    let wamid = format!("wamid.{}", send.id);
    let accepted = store.record_accepted(&send.id, Slot::FIRST, &wamid, at(1)).await.unwrap();
    assert!(accepted.parked.is_empty());
    let accepted = accepted.send.expect("applies");
    let due = t0() + SETTLE;
    assert_eq!(
        accepted.life.phase,
        Phase::InFlight { delivery: Delivery::Accepted, due },
        "the claim's due time stays"
    );
    assert_eq!(accepted.attempts[0].wamid.as_deref(), Some(wamid.as_str()));
    assert_eq!(accepted.attempts[0].accepted_at, Some(at(1)));
    let entry = store.find_by_wamid(&wamid).await.unwrap().expect("linked");
    assert_eq!(entry, WamidEntry { link: WamidLink { send_id: send.id.clone(), slot: Slot::FIRST }, parked: vec![] });
    let again = store.record_accepted(&send.id, Slot::FIRST, &wamid, at(2)).await.unwrap();
    assert_eq!(again.send, None, "a duplicate changes nothing");
    // Meta's answer said it holds the message for pacing: noted on the attempt.
    store.record_paced(&send.id, Slot::FIRST, at(2)).await.unwrap();
    let paced = store.get_send(&send.id).await.unwrap().unwrap();
    assert_eq!(paced.attempts[0].paced_at, Some(at(2)));
    assert!(paced.attempts[0].paced());
    store.record_paced(&send.id, SLOT_2, at(3)).await.unwrap();
    assert_eq!(store.get_send(&send.id).await.unwrap().unwrap().attempts.len(), 1, "no slot made up");
}

pub async fn statuses_only_move_forward<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    store.record_accepted(&send.id, Slot::FIRST, &format!("wamid.{}", send.id), at(1)).await.unwrap();
    let sent = store.record_status(&send.id, Slot::FIRST, Delivery::Sent, at(2)).await.unwrap().expect("applies");
    let due = t0() + SETTLE;
    assert_eq!(sent.life.phase, Phase::InFlight { delivery: Delivery::Sent, due }, "the due time stays");
    assert_eq!(sent.attempts[0].sent_at, Some(at(2)));
    assert_eq!(store.record_status(&send.id, Slot::FIRST, Delivery::Sent, at(3)).await.unwrap(), None, "duplicate");
    let read = store.record_status(&send.id, Slot::FIRST, Delivery::Read, at(4)).await.unwrap().expect("applies");
    assert_eq!(read.life.phase, Phase::Succeeded { delivery: Delivery::Read });
    assert_eq!((read.attempts[0].delivered_at, read.attempts[0].read_at), (None, Some(at(4))), "delivered was skipped");
    assert_eq!(store.record_status(&send.id, Slot::FIRST, Delivery::Delivered, at(5)).await.unwrap(), None, "late");
    assert_eq!(store.get_send(&send.id).await.unwrap().unwrap(), read);
}

pub async fn a_status_that_arrives_before_the_send_answer_applies<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    let delivered =
        store.record_status(&send.id, Slot::FIRST, Delivery::Delivered, at(2)).await.unwrap().expect("applies");
    assert_eq!(delivered.life.phase, Phase::Succeeded { delivery: Delivery::Delivered });
    assert_eq!(store.record_accepted(&send.id, Slot::FIRST, "wamid.late-answer", at(3)).await.unwrap().send, None);
    let entry = store.find_by_wamid("wamid.late-answer").await.unwrap().expect("linked all the same");
    assert_eq!(entry.link, WamidLink { send_id: send.id, slot: Slot::FIRST });

    let other = claimed_send(&*store, "919812345678").await;
    let sent = store.record_status(&other.id, Slot::FIRST, Delivery::Sent, at(2)).await.unwrap().expect("applies");
    let due = t0() + SETTLE;
    assert_eq!(sent.life.phase, Phase::InFlight { delivery: Delivery::Sent, due }, "the claim's due time stays");
    assert_eq!(store.record_accepted(&other.id, Slot::FIRST, "wamid.later", at(3)).await.unwrap().send, None);
}

pub async fn a_cap_puts_the_send_on_the_ladder_once<S: SendStore>(store: Arc<S>) {
    let send = waiting_send(&*store, "919812345678").await;
    assert_eq!(send.life.phase, Phase::Waiting { due: at(43_210) });
    assert_eq!(send.life.slot, SLOT_2);
    assert_eq!(send.attempts[0].error, Some(capped()));
    assert_eq!(send.attempts[0].failed_at, Some(at(10)));
    let again = Verdict::Ladder { attempt: 2, due: at(43_299) };
    assert_eq!(
        store.record_failure(&send.id, Slot::FIRST, &capped(), again, at(99)).await.unwrap(),
        None,
        "duplicate webhook"
    );
    assert_eq!(store.record_status(&send.id, Slot::FIRST, Delivery::Sent, at(100)).await.unwrap(), None, "old slot");
    assert_eq!(store.claim(&send.id, Slot::FIRST, at(101), at(1_001)).await.unwrap(), None, "old slot");
    let claimed = store.claim(&send.id, SLOT_2, at(43_210), at(44_110)).await.unwrap().expect("the retry claims");
    assert_eq!(claimed.attempts.len(), 2);
    assert_eq!(claimed.attempts[1].claimed_at, at(43_210));
}

pub async fn the_last_attempt_is_exhausted<S: SendStore>(store: Arc<S>) {
    let mut send = new_send(&unique("short"), "919812345678", None);
    send.max_attempts = 2;
    let id = record_and_claim(&*store, &send, t0()).await.id;
    store
        .record_failure(&id, Slot::FIRST, &capped(), Verdict::Ladder { attempt: 2, due: at(100) }, at(1))
        .await
        .unwrap();
    store.claim(&id, SLOT_2, at(100), at(1_000)).await.unwrap().expect("claims attempt 2");
    let last = Verdict::Ladder { attempt: 3, due: at(9_000) };
    let done = store.record_failure(&id, SLOT_2, &capped(), last, at(101)).await.unwrap().expect("applies");
    assert_eq!(done.life.phase, Phase::Final { reason: FinalReason::Exhausted });
    assert_eq!(done.life.slot, SLOT_2, "attempts never exceed the ladder");
}

pub async fn a_transient_failure_retries_the_same_attempt<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    let throttled = RecordedError { code: 130429, title: Some("Rate limit hit".into()) };
    let backoff = Verdict::BackOff { retry: 1, due: at(5) };
    let after =
        store.record_failure(&send.id, Slot::FIRST, &throttled, backoff, at(1)).await.unwrap().expect("applies");
    assert_eq!(after.life.slot, Slot { attempt: 1, try_no: 2 });
    assert_eq!(after.life.transient_retries, 1);
    assert_eq!(after.life.phase, Phase::Waiting { due: at(5) });
}

pub async fn a_final_failure_ends_the_send<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    let gone = RecordedError { code: 131026, title: None };
    let after = store
        .record_failure(&send.id, Slot::FIRST, &gone, Verdict::Final(FinalReason::Unreachable), at(1))
        .await
        .unwrap()
        .expect("applies");
    assert_eq!(after.life.phase, Phase::Final { reason: FinalReason::Unreachable });
    assert_eq!(store.reschedule(&send.id, at(2), at(2)).await.unwrap(), None, "a final send stays final");
    assert_eq!(store.finish_waiting(&send.id, FinalReason::Cancelled, at(2)).await.unwrap(), None);
}

pub async fn a_reply_moves_a_waiting_send_earlier<S: SendStore>(store: Arc<S>) {
    let send = waiting_send(&*store, "919812345678").await;
    let moved = store.reschedule(&send.id, at(600), at(600)).await.unwrap().expect("applies");
    assert_eq!(moved.life.phase, Phase::Waiting { due: at(600) });
    assert_eq!(moved.life.slot, SLOT_2, "still the same attempt");
    let claimed = claimed_send(&*store, "919812345678").await;
    assert_eq!(store.reschedule(&claimed.id, at(700), at(700)).await.unwrap(), None, "only a waiting send moves");
}

pub async fn finishing_a_waiting_send_cancels_it<S: SendStore>(store: Arc<S>) {
    let recipient = "447400123456";
    let send = waiting_send(&*store, recipient).await;
    let done = store.finish_waiting(&send.id, FinalReason::OptedOut, at(700)).await.unwrap().expect("applies");
    assert_eq!(done.life.phase, Phase::Final { reason: FinalReason::OptedOut });
    let claimed = store.claim(&send.id, SLOT_2, at(43_210), at(44_110)).await.unwrap();
    assert_eq!(claimed, None, "a cancelled retry never goes");
    assert!(store.waiting_for(recipient).await.unwrap().iter().all(|w| w.send_id != send.id));
}

pub async fn opt_out_and_resume_keep_the_newest<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    assert!(!store.get_recipient(&recipient).await.unwrap().opted_out);
    assert!(store.set_opt_out(&recipient, true, sources::KEYWORD, at(100)).await.unwrap());
    let stopped = store.get_recipient(&recipient).await.unwrap();
    assert!(stopped.opted_out);
    assert_eq!(stopped.opt_changed_at, Some(at(100)));
    assert!(
        !store.set_opt_out(&recipient, false, sources::KEYWORD, at(50)).await.unwrap(),
        "an older resume changes nothing"
    );
    assert!(store.get_recipient(&recipient).await.unwrap().opted_out);
    assert!(store.set_opt_out(&recipient, false, sources::KEYWORD, at(200)).await.unwrap());
    assert!(!store.get_recipient(&recipient).await.unwrap().opted_out);
}

pub async fn the_consent_history_keeps_each_opt_in_opt_out_and_resume_once<S: SendStore>(store: Arc<S>) {
    // An opt-in given long ago lives as long as the record does, counted from when it was
    // recorded (first, while the store has seen no later time).
    let old = unique_number();
    let long_ago = OptIn { source: "paper_form".into(), at: Some(at(0) - TimeDelta::days(400)), note: None };
    assert!(store.record_opt_in(&old, &long_ago.event(at(60)), at(60)).await.unwrap());
    store.record_inbound(&old, at(120)).await.unwrap();
    assert_eq!(store.get_recipient(&old).await.unwrap().opt_in().map(|e| e.at), long_ago.at);

    let recipient = unique_number();
    // Times with a fraction of a second, as an undated opt-in's `now` has.
    let fraction = TimeDelta::milliseconds(250);
    let opt_in =
        OptIn { source: "website_form".into(), at: Some(at(10) + fraction), note: Some("form v2, \"yes\" box".into()) };
    assert!(store.record_opt_in(&recipient, &opt_in.event(at(20)), at(20)).await.unwrap());
    assert!(!store.record_opt_in(&recipient, &opt_in.event(at(20)), at(20)).await.unwrap(), "the same opt-in again");
    assert!(store.set_opt_out(&recipient, true, sources::ERROR_131050, at(30) + fraction).await.unwrap());
    let qr = OptIn { source: "qr_code".into(), at: Some(at(40)), note: None };
    assert!(store.record_opt_in(&recipient, &qr.event(at(40)), at(40)).await.unwrap());
    let stopped = store.get_recipient(&recipient).await.unwrap();
    assert!(stopped.opted_out, "an opt-in does not lift a stop");
    assert_eq!(stopped.opt_in().map(|e| e.source.as_str()), Some("qr_code"));
    assert!(store.set_opt_out(&recipient, false, sources::MARKETING_PREFERENCES, at(50)).await.unwrap());
    assert!(!store.set_opt_out(&recipient, true, sources::KEYWORD, at(45)).await.unwrap(), "older than the resume");
    let history = store.get_recipient(&recipient).await.unwrap().consent;
    let seen: Vec<_> = history.iter().map(|e| (e.change, e.source.as_str(), e.at)).collect();
    assert_eq!(
        seen,
        [
            (ConsentChange::OptIn, "website_form", at(10) + fraction),
            (ConsentChange::OptOut, sources::ERROR_131050, at(30) + fraction),
            (ConsentChange::OptIn, "qr_code", at(40)),
            (ConsentChange::Resume, sources::MARKETING_PREFERENCES, at(50)),
        ]
    );
    assert_eq!(history[0].note.as_deref(), Some("form v2, \"yes\" box"));
    assert!(!store.get_recipient(&recipient).await.unwrap().opted_out);
}

pub async fn the_window_keeps_the_latest_inbound_message<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    assert_eq!(store.get_recipient(&recipient).await.unwrap().last_inbound_at, None);
    store.record_inbound(&recipient, at(500)).await.unwrap();
    store.record_inbound(&recipient, at(400)).await.unwrap();
    assert_eq!(store.get_recipient(&recipient).await.unwrap().last_inbound_at, Some(at(500)));
    store.record_inbound(&recipient, at(600)).await.unwrap();
    assert_eq!(store.get_recipient(&recipient).await.unwrap().last_inbound_at, Some(at(600)));
}

pub async fn reads_keep_the_latest<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    store.record_read(&recipient, at(500)).await.unwrap();
    store.record_read(&recipient, at(400)).await.unwrap();
    let record = store.get_recipient(&recipient).await.unwrap();
    assert_eq!((record.last_read_at, record.last_inbound_at), (Some(at(500)), None));
    store.record_read(&recipient, at(600)).await.unwrap();
    assert_eq!(store.get_recipient(&recipient).await.unwrap().last_read_at, Some(at(600)));
}

pub async fn deliveries_count_over_a_rolling_week_and_reset_caps<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    let day = TimeDelta::days(1);
    let (a, b) = (SendId::derive("p", "a", &recipient), SendId::derive("p", "b", &recipient));
    assert_eq!(store.record_cap(&recipient, &a, 1, t0()).await.unwrap(), 1);
    assert_eq!(store.record_cap(&recipient, &a, 2, t0()).await.unwrap(), 2);
    store.record_marketing_delivery(&recipient, &a, t0()).await.unwrap();
    store.record_marketing_delivery(&recipient, &a, t0() + day).await.unwrap();
    store.record_marketing_delivery(&recipient, &b, t0() + day * 3).await.unwrap();
    let state = store.get_recipient(&recipient).await.unwrap();
    assert_eq!(state.marketing_deliveries.len(), 2, "once per send: {state:?}");
    assert_eq!(state.consecutive_caps, 0, "a delivery resets the caps");
    let cap = FrequencyCap::default();
    assert!(!cap.allows(&state.marketing_deliveries, t0() + day * 6), "two within a week");
    assert!(cap.allows(&state.marketing_deliveries, t0() + day * 8), "the first rolled out");
}

pub async fn a_marketing_status_counts_the_delivery_once_and_applies_the_status<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    let send = claimed_send(&*store, &recipient).await;
    store.record_accepted(&send.id, Slot::FIRST, &format!("wamid.{}", send.id), at(1)).await.unwrap();
    store.record_cap(&recipient, &send.id, 1, at(1)).await.unwrap();
    let delivered = store
        .record_marketing_status(&recipient, &send.id, Slot::FIRST, Delivery::Delivered, at(2))
        .await
        .unwrap()
        .expect("applies");
    assert_eq!(delivered.life.phase, Phase::Succeeded { delivery: Delivery::Delivered });
    assert_eq!(delivered.attempts[0].delivered_at, Some(at(2)));
    let state = store.get_recipient(&recipient).await.unwrap();
    assert_eq!((state.marketing_deliveries.clone(), state.consecutive_caps), (vec![at(2)], 0));
    // Again (a redelivered webhook): nothing changes, and the delivery is not counted twice.
    let again = store.record_marketing_status(&recipient, &send.id, Slot::FIRST, Delivery::Delivered, at(3)).await;
    assert_eq!(again.unwrap(), None);
    assert_eq!(store.get_recipient(&recipient).await.unwrap().marketing_deliveries, vec![at(2)]);

    // A send settled meanwhile takes no status, but its delivery counts all the same.
    let settled = claimed_send(&*store, &recipient).await;
    store
        .record_failure(&settled.id, Slot::FIRST, &capped(), Verdict::Final(FinalReason::Exhausted), at(4))
        .await
        .unwrap();
    let late = store.record_marketing_status(&recipient, &settled.id, Slot::FIRST, Delivery::Delivered, at(5)).await;
    assert_eq!(late.unwrap(), None);
    assert_eq!(store.get_recipient(&recipient).await.unwrap().marketing_deliveries, vec![at(2), at(5)]);
}

pub async fn a_recipients_waiting_sends_are_listed<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    let first = waiting_send(&*store, &recipient).await;
    let second = waiting_send(&*store, &recipient).await;
    waiting_send(&*store, &unique_number()).await;
    claimed_send(&*store, &recipient).await;
    let fresh = new_send(&unique("fresh"), &recipient, None);
    store.record_send(&fresh, Start::Due(t0()), t0()).await.unwrap();
    let listed: HashSet<WaitingSend> = store.waiting_for(&recipient).await.unwrap().into_iter().collect();
    let expected: HashSet<WaitingSend> =
        [&first, &second].iter().map(|s| WaitingSend { send_id: s.id.clone(), slot: SLOT_2 }).collect();
    assert_eq!(listed, expected);
    store.claim(&first.id, SLOT_2, at(43_210), at(44_110)).await.unwrap().expect("claims");
    let listed = store.waiting_for(&recipient).await.unwrap();
    assert_eq!(listed, vec![WaitingSend { send_id: second.id.clone(), slot: SLOT_2 }]);
}

pub async fn a_campaign_is_listed_in_pages_in_recording_order<S: SendStore>(store: Arc<S>) {
    let campaign = unique("campaign");
    let mut expected = Vec::new();
    for i in 0..5 {
        let send = new_send(&format!("{campaign}-{i}"), "919812345678", Some(&campaign));
        expected.push(store.record_send(&send, Start::Due(at(i)), at(i)).await.unwrap().send.id);
        let other = new_send(&format!("{campaign}-other-{i}"), "919812345678", Some("another-campaign"));
        store.record_send(&other, Start::Due(at(i)), at(i)).await.unwrap();
    }
    let mut listed = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.campaign_sends(&campaign, token.as_deref(), 2).await.unwrap();
        sizes.push(page.items.len());
        listed.extend(page.items.into_iter().map(|s| s.id));
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(listed, expected);
    assert!(sizes.iter().all(|n| *n <= 2), "{sizes:?}");
    assert!(matches!(store.campaign_sends(&campaign, Some("not-a-token"), 2).await, Err(StoreError::BadPageToken(_))));
}

pub async fn every_write_sets_the_retention<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    assert_eq!(send.expires_at, t0() + DEFAULT_RETENTION);
    let later = store.record_status(&send.id, Slot::FIRST, Delivery::Sent, at(3_600)).await.unwrap().unwrap();
    assert_eq!(later.expires_at, at(3_600) + DEFAULT_RETENTION, "each write pushes the expiry");
    assert_eq!(later.updated_at, at(3_600));
}

pub async fn holds_are_set_and_lifted<S: SendStore>(store: Arc<S>) {
    let number = unique_number();
    let sender = HoldKey::Sender { phone_number_id: number.clone() };
    let template = HoldKey::Template { phone_number_id: number, name: "spring_sale".into(), language: "en_US".into() };
    assert_eq!(store.get_hold(&sender).await.unwrap(), None);
    let hold = Hold::new(131042, at(10));
    store.set_hold(&sender, Some(hold.clone()), at(10)).await.unwrap();
    assert_eq!(store.get_hold(&sender).await.unwrap(), Some(hold.clone()));
    assert_eq!(store.get_hold(&template).await.unwrap(), None, "a sender hold is not a template hold");
    let paused = Hold::new(132015, at(11));
    store.set_hold(&template, Some(paused.clone()), at(11)).await.unwrap();
    let listed: Vec<(HoldKey, Hold)> =
        store.list_holds().await.unwrap().into_iter().filter(|(key, _)| key == &sender || key == &template).collect();
    assert_eq!(listed.len(), 2, "both holds are listed, each with its key: {listed:?}");
    assert!(listed.contains(&(sender.clone(), hold.clone())) && listed.contains(&(template.clone(), paused)));

    // The probe goes to one taker, and moves the hold's probe time.
    let next = hold.probe_at + TimeDelta::minutes(30);
    assert!(store.take_probe(&sender, hold.probe_at, next, hold.probe_at).await.unwrap());
    assert!(!store.take_probe(&sender, hold.probe_at, next, hold.probe_at).await.unwrap(), "taken once");
    assert_eq!(store.get_hold(&sender).await.unwrap().map(|h| h.probe_at), Some(next));

    store.set_hold(&sender, None, at(20)).await.unwrap();
    assert_eq!(store.get_hold(&sender).await.unwrap(), None);
    assert!(!store.take_probe(&sender, next, next, next).await.unwrap(), "a lifted hold has no probe");
    assert!(!store.list_holds().await.unwrap().iter().any(|(key, _)| key == &sender));
}

pub async fn every_unfinished_send_is_listed_by_its_due_time<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    let waiting = waiting_send(&*store, &recipient).await;
    let claimed = claimed_send(&*store, &recipient).await;
    let in_flight = claimed_send(&*store, &recipient).await;
    store.record_accepted(&in_flight.id, Slot::FIRST, &format!("wamid.{}", in_flight.id), at(1)).await.unwrap();
    let delivered = claimed_send(&*store, &recipient).await;
    store.record_status(&delivered.id, Slot::FIRST, Delivery::Delivered, at(2)).await.unwrap().expect("applies");
    let ended = claimed_send(&*store, &recipient).await;
    let gone = RecordedError { code: 131026, title: None };
    let verdict = Verdict::Final(FinalReason::Unreachable);
    store.record_failure(&ended.id, Slot::FIRST, &gone, verdict, at(3)).await.unwrap().expect("applies");
    let refused = new_send(&unique("refused"), &recipient, None);
    store.record_send(&refused, Start::Refuse(FinalReason::OptedOut), t0()).await.unwrap();

    assert_eq!(store.overdue(at(1), 10).await.unwrap(), Vec::<SendId>::new(), "nothing is due yet");
    let settle = t0() + SETTLE;
    let mut listed = store.overdue(settle, 10).await.unwrap();
    listed.sort();
    let mut expected = vec![claimed.id.clone(), in_flight.id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "the claims' wait is over, the accepted message's too");
    let horizon = at(1) + DELIVERY_HORIZON;
    store.await_delivery(&in_flight.id, Slot::FIRST, horizon, settle).await.unwrap().expect("awaited");
    let both = store.overdue(at(43_210), 10).await.unwrap();
    assert_eq!(both, [claimed.id.clone(), waiting.id.clone()], "the most overdue first");
    let all = store.overdue(horizon, 10).await.unwrap();
    assert_eq!(all, [claimed.id.clone(), waiting.id.clone(), in_flight.id.clone()], "finished sends are not listed");
    let first = store.overdue(horizon, 1).await.unwrap();
    assert_eq!(first, std::slice::from_ref(&claimed.id), "at most the limit");

    store.claim(&waiting.id, SLOT_2, at(43_210), at(44_110)).await.unwrap().expect("claims");
    let after = store.overdue(at(43_210), 10).await.unwrap();
    assert_eq!(after, [claimed.id], "a claim moves the due time to the end of its wait");
}

pub async fn an_undelivered_message_is_awaited_longer_never_shorter<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    let horizon = at(1) + DELIVERY_HORIZON;
    let settle = t0() + SETTLE;
    assert_eq!(store.await_delivery(&send.id, Slot::FIRST, horizon, settle).await.unwrap(), None, "not accepted yet");
    store.record_accepted(&send.id, Slot::FIRST, &format!("wamid.{}", send.id), at(1)).await.unwrap();
    assert_eq!(store.await_delivery(&send.id, SLOT_2, horizon, settle).await.unwrap(), None, "another slot's");
    let awaited = store.await_delivery(&send.id, Slot::FIRST, horizon, settle).await.unwrap().expect("applies");
    assert_eq!(awaited.life.phase, Phase::InFlight { delivery: Delivery::Accepted, due: horizon });
    assert_eq!(store.overdue(settle, 10).await.unwrap(), Vec::<SendId>::new(), "no longer overdue");
    let sooner = store.await_delivery(&send.id, Slot::FIRST, settle + SETTLE, settle).await.unwrap();
    assert_eq!(sooner, None, "never shortened");
    assert_eq!(store.await_delivery(&send.id, Slot::FIRST, horizon, settle).await.unwrap(), None, "nothing changes");
    store.record_status(&send.id, Slot::FIRST, Delivery::Delivered, at(1_000)).await.unwrap().expect("applies");
    let later = horizon + TimeDelta::days(1);
    assert_eq!(store.await_delivery(&send.id, Slot::FIRST, later, at(1_001)).await.unwrap(), None, "delivered");
    assert_eq!(store.overdue(later, 10).await.unwrap(), Vec::<SendId>::new(), "a delivered send is not listed");
}

fn parked(seconds: i64, report: StatusReport) -> StatusUpdate {
    StatusUpdate { at: at(seconds), report }
}

pub async fn statuses_wait_under_their_wamid_until_it_is_linked<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    let wamid = format!("wamid.parked-{}", send.id);
    let failed = parked(5, StatusReport::Failed(Some(capped())));
    let sent = parked(4, StatusReport::Reached(Delivery::Sent));
    assert_eq!(store.park_status(&wamid, &failed, at(6)).await.unwrap(), None, "parked");
    assert_eq!(store.park_status(&wamid, &failed, at(7)).await.unwrap(), None, "a redelivery is parked once");
    assert_eq!(store.park_status(&wamid, &sent, at(8)).await.unwrap(), None);
    assert_eq!(store.find_by_wamid(&wamid).await.unwrap(), None, "parked statuses alone are no link");

    let linked = store.record_accepted(&send.id, Slot::FIRST, &wamid, at(9)).await.unwrap();
    assert_eq!(linked.parked, [failed.clone(), sent.clone()], "what waited comes back, in arrival order");
    assert!(linked.send.is_some(), "the send is accepted all the same");
    let link = WamidLink { send_id: send.id.clone(), slot: Slot::FIRST };
    let entry = WamidEntry { link: link.clone(), parked: vec![failed, sent] };
    let delivered = parked(10, StatusReport::Reached(Delivery::Delivered));
    let found = store.park_status(&wamid, &delivered, at(10)).await.unwrap();
    assert_eq!(found, Some(entry.clone()), "once linked, a status is not parked but given the link");
    assert_eq!(store.find_by_wamid(&wamid).await.unwrap(), Some(entry), "what waited stays beside the link");
}

pub async fn a_wamid_linked_by_its_callback_tag_is_found<S: SendStore>(store: Arc<S>) {
    let send = claimed_send(&*store, "919812345678").await;
    let wamid = format!("wamid.tagged-{}", send.id);
    let failed = parked(5, StatusReport::Failed(Some(capped())));
    store.park_status(&wamid, &failed, at(5)).await.unwrap();
    let link = WamidLink { send_id: send.id.clone(), slot: Slot::FIRST };
    assert_eq!(store.link_wamid(&wamid, &link, at(6)).await.unwrap(), std::slice::from_ref(&failed));
    let again = store.link_wamid(&wamid, &link, at(7)).await.unwrap();
    assert_eq!(again, std::slice::from_ref(&failed), "linking again is harmless");
    assert_eq!(store.find_by_wamid(&wamid).await.unwrap(), Some(WamidEntry { link, parked: vec![failed] }));
    assert_eq!(store.get_send(&send.id).await.unwrap(), Some(send), "linking leaves the send to its caller");
}

pub async fn a_capped_attempt_counts_once_however_often_it_is_reported<S: SendStore>(store: Arc<S>) {
    let recipient = unique_number();
    let (a, b) = (SendId::derive("p", "a", &recipient), SendId::derive("p", "b", &recipient));
    assert_eq!(store.record_cap(&recipient, &a, 1, at(1)).await.unwrap(), 1);
    assert_eq!(store.record_cap(&recipient, &a, 1, at(2)).await.unwrap(), 1, "a redelivered failure");
    assert_eq!(store.record_cap(&recipient, &b, 1, at(3)).await.unwrap(), 2, "another send's cap");
    assert_eq!(store.record_cap(&recipient, &a, 2, at(4)).await.unwrap(), 3, "the next attempt's cap");
    assert_eq!(store.get_recipient(&recipient).await.unwrap().consecutive_caps, 3);
}

pub async fn a_wa_id_knows_the_numbers_it_stands_for<S: SendStore>(store: Arc<S>) {
    let wa_id = unique_number();
    let (first, second) = (format!("{wa_id}1"), format!("{wa_id}2"));
    assert!(store.get_recipient(&wa_id).await.unwrap().numbers.is_empty());
    store.record_alias(&wa_id, &first, at(1)).await.unwrap();
    store.record_alias(&wa_id, &first, at(2)).await.unwrap();
    let known = store.record_alias(&wa_id, &second, at(3)).await.unwrap();
    let numbers: HashSet<String> = known.numbers.iter().cloned().collect();
    assert_eq!(numbers, HashSet::from([first.clone(), second.clone()]));
    store.set_opt_out(&wa_id, true, sources::KEYWORD, at(4)).await.unwrap();
    let known = store.get_recipient(&wa_id).await.unwrap();
    assert!(known.opted_out);
    assert_eq!(known.numbers.len(), 2, "{known:?}");
    assert!(store.get_recipient(&first).await.unwrap().numbers.is_empty(), "the number itself is not an alias");
}

/// A place in count `of`, as a test writes it.
fn place<'a>(of: CountOf<'a>, bucket: i64, capacity: u32, neighbours: &[(i64, u32)], stale: &[i64]) -> Place<'a> {
    Place { of, bucket, capacity, neighbours: neighbours.to_vec(), stale: stale.to_vec() }
}

/// The messaging limit's counts: racing contacts never overfill a bucket, old buckets drop, a
/// warming number's count is its own, and places in two counts are taken together or not at all.
pub async fn the_messaging_limit_counts_contacts_up_to_a_buckets_capacity_and_keeps_the_newest_report<
    S: SendStore + 'static,
>(
    store: Arc<S>,
) {
    let now = at(60);
    let bucket = bucket_of(now);
    assert_eq!(store.messaging_count(CountOf::Portfolio).await.unwrap(), MessagingCount::default());
    // Racing contacts never overfill a bucket: 12 try for a capacity of 5.
    let tries: Vec<_> = (0..12)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(
                async move { store.count_contact(&[place(CountOf::Portfolio, bucket, 5, &[], &[])], now).await },
            )
        })
        .collect();
    let mut counted = 0;
    for attempt in tries {
        counted += u32::from(attempt.await.expect("the task ran").expect("the store answered"));
    }
    assert_eq!(counted, 5);
    let count = store.messaging_count(CountOf::Portfolio).await.unwrap();
    assert_eq!(count.ledger.buckets, BTreeMap::from([(bucket, 5)]));
    // A day and the margin later the old bucket no longer counts, and the next contact drops it.
    let later = now + WINDOW + MARGIN + BUCKET;
    assert_eq!(count.ledger.stale(later), vec![bucket]);
    assert!(
        store
            .count_contact(&[place(CountOf::Portfolio, bucket_of(later), 1, &[], &count.ledger.stale(later))], later)
            .await
            .unwrap()
    );
    assert!(
        !store.count_contact(&[place(CountOf::Portfolio, bucket_of(later), 1, &[], &[])], later).await.unwrap(),
        "at capacity"
    );
    // A caller whose clock is still in the bucket before, working from a count read before the
    // contact just made, is refused: the bucket after has moved on.
    let before = bucket_of(later) - 1;
    assert!(
        !store.count_contact(&[place(CountOf::Portfolio, before, 5, &[(before + 1, 0)], &[])], later).await.unwrap(),
        "a neighbour moved"
    );
    assert!(
        store.count_contact(&[place(CountOf::Portfolio, before, 5, &[(before + 1, 1)], &[])], later).await.unwrap(),
        "as read"
    );
    let count = store.messaging_count(CountOf::Portfolio).await.unwrap();
    assert_eq!(count.ledger.buckets, BTreeMap::from([(bucket_of(later) - 1, 1), (bucket_of(later), 1)]));

    let report = |limit, seconds| ReportedLimit { limit, at: at(seconds) };
    assert!(store.report_limit(report(MessagingLimit::Unique(2_000), 100), later).await.unwrap());
    assert!(!store.report_limit(report(MessagingLimit::Unique(250), 50), later).await.unwrap(), "an older report");
    assert!(store.report_limit(report(MessagingLimit::Unlimited, 200), later).await.unwrap());
    let count = store.messaging_count(CountOf::Portfolio).await.unwrap();
    assert_eq!(count.reported, Some(report(MessagingLimit::Unlimited, 200)));
    assert_eq!(count.ledger.buckets.len(), 2, "a report leaves the count as it was");

    // A warming number's count is its own: the portfolio's full bucket leaves it empty, and its
    // contacts leave the portfolio's count and Meta's report as they were. A contact that takes
    // places in both counts takes both or neither.
    let warming = CountOf::WarmUp("106540352242922");
    assert_eq!(store.messaging_count(warming).await.unwrap(), MessagingCount::default());
    assert!(store.count_contact(&[place(warming, bucket_of(later), 1, &[], &[])], later).await.unwrap());
    assert!(
        !store.count_contact(&[place(warming, bucket_of(later), 1, &[], &[])], later).await.unwrap(),
        "at capacity"
    );
    let own = store.messaging_count(warming).await.unwrap();
    assert_eq!((own.ledger.buckets, own.reported), (BTreeMap::from([(bucket_of(later), 1)]), None));
    assert_eq!(store.messaging_count(CountOf::WarmUp("2")).await.unwrap(), MessagingCount::default(), "per number");
    let both = |capacity| {
        [place(CountOf::Portfolio, bucket_of(later), 5, &[], &[]), place(warming, bucket_of(later), capacity, &[], &[])]
    };
    assert!(!store.count_contact(&both(1), later).await.unwrap(), "the warming number's is full: neither");
    let count = store.messaging_count(CountOf::Portfolio).await.unwrap();
    assert_eq!(count.ledger.buckets, BTreeMap::from([(bucket_of(later) - 1, 1), (bucket_of(later), 1)]));
    assert_eq!(count.reported, Some(report(MessagingLimit::Unlimited, 200)));
    assert!(store.count_contact(&both(2), later).await.unwrap(), "both have room: both");
    let count = store.messaging_count(CountOf::Portfolio).await.unwrap();
    assert_eq!(count.ledger.buckets[&bucket_of(later)], 2);
    assert_eq!(store.messaging_count(warming).await.unwrap().ledger.buckets[&bucket_of(later)], 2);

    let number = unique_number();
    store.record_contact(&number, at(300)).await.unwrap();
    store.record_contact(&number, at(200)).await.unwrap();
    assert_eq!(store.get_recipient(&number).await.unwrap().contacted_at, Some(at(300)), "the latest is kept");
}

pub async fn a_numbers_ratings_are_kept_with_their_history_and_the_newest_is_current<S: SendStore>(store: Arc<S>) {
    assert_eq!(store.business_numbers().await.unwrap(), []);
    let rated = |rating, seconds, event: Option<&str>| QualityReport {
        rating,
        at: at(seconds),
        event: event.map(str::to_owned),
    };
    let red = rated(QualityRating::Red, 100, Some("FLAGGED"));
    // A rating for a number whose id is not known yet is kept under its display number.
    assert!(store.report_quality("15550783881", &red, at(100)).await.unwrap());
    store.learn_number("15550783881", PHONE_NUMBER_ID, "102290129340398", at(110)).await.unwrap();
    assert!(!store.report_quality("15550783881", &red, at(120)).await.unwrap(), "the same report again");
    assert!(
        !store.report_quality("15550783881", &rated(QualityRating::Yellow, 50, None), at(130)).await.unwrap(),
        "older"
    );
    let green = rated(QualityRating::Green, 200, Some("UNFLAGGED"));
    assert!(store.report_quality("15550783881", &green, at(200)).await.unwrap());
    store.learn_number("15550780000", "106540352240000", "102290129340399", at(210)).await.unwrap();

    let mut numbers = store.business_numbers().await.unwrap();
    numbers.sort_by(|a, b| a.display.cmp(&b.display));
    assert_eq!(numbers.len(), 2, "{numbers:?}");
    assert_eq!(
        (numbers[0].display.as_str(), numbers[0].phone_number_id.as_deref(), &numbers[0].quality),
        ("15550780000", Some("106540352240000"), &None)
    );
    let rated_number = &numbers[1];
    assert_eq!(rated_number.phone_number_id.as_deref(), Some(PHONE_NUMBER_ID));
    assert_eq!(rated_number.waba_id.as_deref(), Some("102290129340398"));
    assert_eq!(rated_number.quality, Some(green.clone()));
    let history: Vec<_> = rated_number.history.iter().map(|r| (r.rating, r.at)).collect();
    assert_eq!(
        history,
        [(QualityRating::Yellow, at(50)), (QualityRating::Red, at(100)), (QualityRating::Green, at(200))]
    );
}

pub async fn a_templates_status_and_quality_are_kept_with_their_history<S: SendStore>(store: Arc<S>) {
    assert_eq!(store.templates().await.unwrap(), []);
    let report =
        |field, value: &str, seconds| TemplateReport { field, value: value.into(), title: None, at: at(seconds) };
    let paused = TemplateReport { title: Some("FIRST_PAUSE".into()), ..report(TemplateField::Status, "PAUSED", 100) };
    assert!(store.report_template("spring_sale", "en-US", &paused, at(100)).await.unwrap());
    assert!(
        store.report_template("spring_sale", "en-US", &paused, at(110)).await.unwrap(),
        "the same again is current"
    );
    let approved = report(TemplateField::Status, "APPROVED", 50);
    assert!(!store.report_template("spring_sale", "en-US", &approved, at(120)).await.unwrap(), "older");
    let yellow = report(TemplateField::Quality, "YELLOW", 90);
    assert!(store.report_template("spring_sale", "en-US", &yellow, at(130)).await.unwrap(), "a quality of its own");
    store
        .report_template("order_update", "pt_BR", &report(TemplateField::Status, "APPROVED", 10), at(140))
        .await
        .unwrap();

    let mut templates = store.templates().await.unwrap();
    templates.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(templates.len(), 2, "{templates:?}");
    let spring = &templates[1];
    assert_eq!((spring.name.as_str(), spring.language.as_str()), ("spring_sale", "en-US"));
    assert_eq!((spring.status.as_ref(), spring.quality.as_ref()), (Some(&paused), Some(&yellow)));
    let history: Vec<_> = spring.history.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(history, ["APPROVED", "YELLOW", "PAUSED"]);
}

fn unique_number() -> String {
    format!("9198{:08}", next_serial())
}

/// Declares one `#[tokio::test]` per contract check, each on a fresh store from `$make`.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            recording_twice_returns_the_first_send,
            a_new_send_waits_until_its_first_slot_is_claimed,
            a_send_recorded_claimed_is_sent_once_and_settled_if_nothing_is_heard,
            a_refused_send_is_final_and_never_claimed,
            an_unknown_send_is_absent,
            a_requests_deadline_offset_and_tier_are_kept_with_its_send,
            exactly_one_of_many_concurrent_claimers_wins,
            an_accepted_send_is_found_by_its_wamid,
            statuses_only_move_forward,
            a_status_that_arrives_before_the_send_answer_applies,
            a_cap_puts_the_send_on_the_ladder_once,
            the_last_attempt_is_exhausted,
            a_transient_failure_retries_the_same_attempt,
            a_final_failure_ends_the_send,
            a_reply_moves_a_waiting_send_earlier,
            finishing_a_waiting_send_cancels_it,
            opt_out_and_resume_keep_the_newest,
            the_consent_history_keeps_each_opt_in_opt_out_and_resume_once,
            the_window_keeps_the_latest_inbound_message,
            reads_keep_the_latest,
            deliveries_count_over_a_rolling_week_and_reset_caps,
            a_marketing_status_counts_the_delivery_once_and_applies_the_status,
            a_recipients_waiting_sends_are_listed,
            a_campaign_is_listed_in_pages_in_recording_order,
            every_write_sets_the_retention,
            holds_are_set_and_lifted,
            every_unfinished_send_is_listed_by_its_due_time,
            an_undelivered_message_is_awaited_longer_never_shorter,
            statuses_wait_under_their_wamid_until_it_is_linked,
            a_wamid_linked_by_its_callback_tag_is_found,
            a_capped_attempt_counts_once_however_often_it_is_reported,
            a_wa_id_knows_the_numbers_it_stands_for,
            the_messaging_limit_counts_contacts_up_to_a_buckets_capacity_and_keeps_the_newest_report,
            a_numbers_ratings_are_kept_with_their_history_and_the_newest_is_current,
            a_templates_status_and_quality_are_kept_with_their_history,
        );
    };
    (@each $make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let store = std::sync::Arc::new($make.await);
                $crate::store_contract::$check(store).await;
            }
        )+
    };
}
