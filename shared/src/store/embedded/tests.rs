use super::*;
use crate::domain::consent::sources;
use crate::domain::lifecycle::SendLife;
use crate::domain::rules::Category;
use crate::store::prelude::*;
use crate::store::{DEFAULT_RETENTION, TemplateRef};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

fn slot(attempt: u32, try_no: u32) -> Slot {
    Slot { attempt, try_no }
}

const RECIPIENT: &str = "919812345678";

fn new_send(key: &str, recipient: &str, campaign: Option<&str>) -> NewSend {
    NewSend {
        idempotency_key: key.to_owned(),
        recipient: recipient.to_owned(),
        phone_number_id: "106540352242922".to_owned(),
        template: TemplateRef { name: "spring_sale".to_owned(), language: "en".to_owned(), components: vec![] },
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

fn capped(attempt: u32, due: DateTime<Utc>) -> Verdict {
    Verdict::Ladder { attempt, due }
}

fn cap_error() -> RecordedError {
    RecordedError { code: 131049, title: Some("per-user cap".to_owned()) }
}

/// A database file of its own, removed when the test ends.
struct TempFile(tempfile::TempPath);

impl TempFile {
    fn new(test: &str) -> Self {
        let prefix = format!("capguard-embedded-{test}-");
        Self(tempfile::Builder::new().prefix(&prefix).suffix(".redb").tempfile().unwrap().into_temp_path())
    }

    fn open(&self, retention: TimeDelta) -> EmbeddedStore {
        EmbeddedStore::open(&self.0, retention).unwrap()
    }
}

/// How long after its claim a test's send is settled if nothing is heard.
const SETTLE: TimeDelta = TimeDelta::minutes(15);

/// Records `send` due at `at` and claims its first slot then, as dispatch does.
async fn claimed_send(store: &EmbeddedStore, send: &NewSend, at: DateTime<Utc>) -> SendRecord {
    let id = store.record_send(send, Start::Due(at), at).await.unwrap().send.id;
    store.claim(&id, Slot::FIRST, at, at + SETTLE).await.unwrap().unwrap()
}

/// A send claimed as attempt 1 and capped: waiting for attempt 2 at `t(43_200)`.
async fn waiting_send(store: &EmbeddedStore, key: &str, recipient: &str) -> SendRecord {
    let id = claimed_send(store, &new_send(key, recipient, None), t(0)).await.id;
    store.record_failure(&id, Slot::FIRST, &cap_error(), capped(2, t(43_200)), t(5)).await.unwrap().unwrap()
}

#[tokio::test]
async fn data_survives_closing_and_reopening_the_file() {
    let file = TempFile::new("reopen");
    let store = file.open(DEFAULT_RETENTION);
    let send = claimed_send(&store, &new_send("k1", RECIPIENT, Some("spring")), t(0)).await;
    store.record_accepted(&send.id, Slot::FIRST, "wamid.1", t(1)).await.unwrap().send.unwrap();
    store.set_opt_out(RECIPIENT, true, sources::KEYWORD, t(2)).await.unwrap();
    let hold = HoldKey::Sender { phone_number_id: "106540352242922".to_owned() };
    store.set_hold(&hold, Some(Hold::new(131042, t(3))), t(3)).await.unwrap();
    drop(store);

    let store = file.open(DEFAULT_RETENTION);
    let found = store.get_send(&send.id).await.unwrap().unwrap();
    let due = send.life.phase.due().expect("the claim's due time");
    assert_eq!(found.life.phase, Phase::InFlight { delivery: Delivery::Accepted, due });
    assert_eq!(found.attempt(Slot::FIRST).unwrap().wamid.as_deref(), Some("wamid.1"));
    let link = WamidLink { send_id: send.id.clone(), slot: Slot::FIRST };
    assert_eq!(store.find_by_wamid("wamid.1").await.unwrap(), Some(WamidEntry { link, parked: vec![] }));
    assert_eq!(store.overdue(due, 10).await.unwrap(), vec![send.id.clone()], "the in-flight send's due time");
    assert!(store.get_recipient(RECIPIENT).await.unwrap().opted_out);
    assert_eq!(store.get_hold(&hold).await.unwrap(), Some(Hold::new(131042, t(3))));
    assert_eq!(store.campaign_sends("spring", None, 10).await.unwrap().items, vec![found]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_of_32_concurrent_claimers_gets_the_slot() {
    let file = TempFile::new("claimers");
    let store = Arc::new(file.open(DEFAULT_RETENTION));
    let id = waiting_send(&store, "k1", RECIPIENT).await.id;
    let claimers: Vec<_> = (0..32)
        .map(|_| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move { store.claim(&id, slot(2, 1), t(43_200), t(44_100)).await.unwrap() })
        })
        .collect();
    let mut granted = Vec::new();
    for claimer in claimers {
        granted.extend(claimer.await.unwrap());
    }
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].life.phase, Phase::Claimed { due: t(44_100) });
    let stored = store.get_send(&id).await.unwrap().unwrap();
    assert_eq!(stored.attempts.iter().map(|a| a.slot).collect::<Vec<_>>(), vec![Slot::FIRST, slot(2, 1)]);
}

#[tokio::test]
async fn recording_the_same_send_twice_finds_the_first_unchanged() {
    let file = TempFile::new("idempotent");
    let store = file.open(DEFAULT_RETENTION);
    let send = new_send("k1", RECIPIENT, Some("spring"));
    let first = store.record_send(&send, Start::Due(t(0)), t(0)).await.unwrap();
    assert!(first.created);
    assert_eq!(first.send.id, send.id());
    assert_eq!(first.send.life, SendLife::new(4, t(0)));
    assert!(first.send.attempts.is_empty());
    assert_eq!(first.send.expires_at, t(0) + DEFAULT_RETENTION);

    let again = store.record_send(&send, Start::Refuse(FinalReason::FrequencyCap), t(60)).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.send, first.send);
    assert_eq!(store.campaign_sends("spring", None, 10).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn a_refused_send_is_recorded_final_without_attempts() {
    let file = TempFile::new("refused");
    let store = file.open(DEFAULT_RETENTION);
    let refused = store
        .record_send(&new_send("k1", RECIPIENT, None), Start::Refuse(FinalReason::SenderHalted), t(0))
        .await
        .unwrap();
    assert_eq!(refused.send.life.phase, Phase::Final { reason: FinalReason::SenderHalted });
    assert!(refused.send.attempts.is_empty());
    assert_eq!(store.claim(&refused.send.id, Slot::FIRST, t(1), t(901)).await.unwrap(), None);
    assert!(store.overdue(t(10_000), 10).await.unwrap().is_empty(), "a final send is never overdue");
}

#[tokio::test]
async fn statuses_fill_the_attempt_in_order_and_a_skipped_delivered_stays_empty() {
    let file = TempFile::new("statuses");
    let store = file.open(DEFAULT_RETENTION);
    let id = claimed_send(&store, &new_send("k1", RECIPIENT, None), t(0)).await.id;
    store.record_accepted(&id, Slot::FIRST, "wamid.1", t(1)).await.unwrap().send.unwrap();
    store.record_status(&id, Slot::FIRST, Delivery::Sent, t(2)).await.unwrap().unwrap();
    let read = store.record_status(&id, Slot::FIRST, Delivery::Read, t(4)).await.unwrap().unwrap();
    assert_eq!(read.life.phase, Phase::Succeeded { delivery: Delivery::Read });
    assert_eq!(read.updated_at, t(4));
    let attempt = read.attempt(Slot::FIRST).unwrap();
    assert_eq!(
        (attempt.accepted_at, attempt.sent_at, attempt.delivered_at, attempt.read_at),
        (Some(t(1)), Some(t(2)), None, Some(t(4)))
    );
    assert_eq!(store.record_status(&id, Slot::FIRST, Delivery::Delivered, t(3)).await.unwrap(), None);
    assert_eq!(store.record_status(&id, Slot::FIRST, Delivery::Read, t(4)).await.unwrap(), None);
    assert_eq!(store.get_send(&id).await.unwrap().unwrap(), read);
}

#[tokio::test]
async fn an_accept_after_a_status_changes_nothing_but_still_links_the_wamid() {
    let file = TempFile::new("late-accept");
    let store = file.open(DEFAULT_RETENTION);
    let id = claimed_send(&store, &new_send("k1", RECIPIENT, None), t(0)).await.id;
    let sent = store.record_status(&id, Slot::FIRST, Delivery::Sent, t(1)).await.unwrap().unwrap();
    assert_eq!(store.record_accepted(&id, Slot::FIRST, "wamid.1", t(2)).await.unwrap().send, None);
    assert_eq!(store.get_send(&id).await.unwrap(), Some(sent));
    let link = WamidLink { send_id: id, slot: Slot::FIRST };
    assert_eq!(store.find_by_wamid("wamid.1").await.unwrap(), Some(WamidEntry { link, parked: vec![] }));
}

#[tokio::test]
async fn a_failure_records_its_error_and_moves_the_send_to_its_next_slot() {
    let file = TempFile::new("failure");
    let store = file.open(DEFAULT_RETENTION);
    let send = waiting_send(&store, "k1", RECIPIENT).await;
    assert_eq!(send.life.slot, slot(2, 1));
    assert_eq!(send.life.phase, Phase::Waiting { due: t(43_200) });
    let attempt = send.attempt(Slot::FIRST).unwrap();
    assert_eq!((attempt.failed_at, attempt.error.clone()), (Some(t(5)), Some(cap_error())));
    let again = store.record_failure(&send.id, Slot::FIRST, &cap_error(), capped(2, t(50_000)), t(6)).await;
    assert_eq!(again.unwrap(), None);
    assert_eq!(store.claim(&send.id, Slot::FIRST, t(7), t(907)).await.unwrap(), None);
}

#[tokio::test]
async fn a_hold_replans_a_waiting_send_later_and_a_reply_brings_it_earlier() {
    let file = TempFile::new("reschedule");
    let store = file.open(DEFAULT_RETENTION);
    let id = waiting_send(&store, "k1", RECIPIENT).await.id;
    let later = store.reschedule(&id, t(50_000), t(10)).await.unwrap().unwrap();
    assert_eq!(later.life.phase, Phase::Waiting { due: t(50_000) });
    let earlier = store.reschedule(&id, t(600), t(600)).await.unwrap().unwrap();
    assert_eq!(earlier.life.phase, Phase::Waiting { due: t(600) });
    assert_eq!(store.reschedule(&id, t(600), t(601)).await.unwrap(), None);

    store.claim(&id, slot(2, 1), t(700), t(1_600)).await.unwrap().unwrap();
    assert_eq!(store.reschedule(&id, t(90_000), t(701)).await.unwrap(), None);
    assert_eq!(store.reschedule(&id, t(0), t(701)).await.unwrap(), None);
}

#[tokio::test]
async fn finishing_a_waiting_send_ends_it_with_the_reason_given() {
    let file = TempFile::new("finish");
    let store = file.open(DEFAULT_RETENTION);
    let opted_out = waiting_send(&store, "k1", RECIPIENT).await.id;
    let cancelled = waiting_send(&store, "k2", RECIPIENT).await.id;
    let unknown = waiting_send(&store, "k3", RECIPIENT).await.id;

    let ended = store.finish_waiting(&opted_out, FinalReason::OptedOut, t(10)).await.unwrap().unwrap();
    assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::OptedOut });
    let ended = store.finish_waiting(&cancelled, FinalReason::Cancelled, t(10)).await.unwrap().unwrap();
    assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::Cancelled });
    let ended = store.finish_waiting(&unknown, FinalReason::OutcomeUnknown, t(10)).await.unwrap().unwrap();
    assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::OutcomeUnknown });

    assert_eq!(store.finish_waiting(&cancelled, FinalReason::Cancelled, t(11)).await.unwrap(), None);
    assert!(store.waiting_for(RECIPIENT).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_opt_out_while_in_flight_marks_the_send_suppressed() {
    let file = TempFile::new("opt-out-in-flight");
    let store = file.open(DEFAULT_RETENTION);
    let id = claimed_send(&store, &new_send("k1", RECIPIENT, None), t(0)).await.id;
    let marked = store.finish_waiting(&id, FinalReason::OptedOut, t(1)).await.unwrap().unwrap();
    assert!(marked.life.suppressed);
    assert_eq!(marked.life.phase, Phase::Claimed { due: t(0) + SETTLE });
    let failed = store.record_failure(&id, Slot::FIRST, &cap_error(), capped(2, t(43_200)), t(2)).await.unwrap();
    assert_eq!(failed.unwrap().life.phase, Phase::Final { reason: FinalReason::OptedOut });
}

#[tokio::test]
async fn an_unknown_recipient_reads_as_the_default() {
    let file = TempFile::new("unknown-recipient");
    let store = file.open(DEFAULT_RETENTION);
    let record = store.get_recipient(RECIPIENT).await.unwrap();
    assert_eq!(record, RecipientRecord { recipient: RECIPIENT.to_owned(), ..RecipientRecord::default() });
}

#[tokio::test]
async fn an_opt_change_older_than_the_recorded_one_does_not_apply() {
    let file = TempFile::new("opt-out");
    let store = file.open(DEFAULT_RETENTION);
    assert!(store.set_opt_out(RECIPIENT, true, sources::KEYWORD, t(10)).await.unwrap());
    assert!(!store.set_opt_out(RECIPIENT, false, sources::KEYWORD, t(5)).await.unwrap());
    let record = store.get_recipient(RECIPIENT).await.unwrap();
    assert!(record.opted_out);
    assert_eq!(record.opt_changed_at, Some(t(10)));
    assert!(store.set_opt_out(RECIPIENT, false, sources::KEYWORD, t(20)).await.unwrap());
    assert!(!store.get_recipient(RECIPIENT).await.unwrap().opted_out);
}

#[tokio::test]
async fn an_inbound_message_keeps_the_latest_time() {
    let file = TempFile::new("inbound");
    let store = file.open(DEFAULT_RETENTION);
    store.record_inbound(RECIPIENT, t(20)).await.unwrap();
    store.record_inbound(RECIPIENT, t(10)).await.unwrap();
    assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().last_inbound_at, Some(t(20)));
    store.record_inbound(RECIPIENT, t(30)).await.unwrap();
    assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().last_inbound_at, Some(t(30)));
}

#[tokio::test]
async fn a_marketing_delivery_counts_once_per_send_and_resets_the_caps() {
    let file = TempFile::new("deliveries");
    let store = file.open(DEFAULT_RETENTION);
    let (first, second) = (SendId::derive("1", "a", RECIPIENT), SendId::derive("1", "b", RECIPIENT));
    store.record_cap(RECIPIENT, &first, 1, t(0)).await.unwrap();
    store.record_marketing_delivery(RECIPIENT, &first, t(10)).await.unwrap();
    store.record_cap(RECIPIENT, &second, 1, t(11)).await.unwrap();
    store.record_marketing_delivery(RECIPIENT, &first, t(12)).await.unwrap();
    store.record_marketing_delivery(RECIPIENT, &second, t(5)).await.unwrap();
    let record = store.get_recipient(RECIPIENT).await.unwrap();
    assert_eq!(record.marketing_deliveries, vec![t(5), t(10)]);
    assert_eq!(record.consecutive_caps, 0);
}

#[tokio::test]
async fn each_capped_attempt_counts_once() {
    let file = TempFile::new("caps");
    let store = file.open(DEFAULT_RETENTION);
    let send = SendId::derive("1", "a", RECIPIENT);
    assert_eq!(store.record_cap(RECIPIENT, &send, 1, t(0)).await.unwrap(), 1);
    assert_eq!(store.record_cap(RECIPIENT, &send, 2, t(1)).await.unwrap(), 2);
    assert_eq!(store.record_cap(RECIPIENT, &send, 2, t(2)).await.unwrap(), 2, "a redelivered failure");
    assert_eq!(store.record_cap("447700900123", &send, 1, t(2)).await.unwrap(), 1);
    assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().consecutive_caps, 2);
}

#[tokio::test]
async fn waiting_for_lists_only_the_recipients_waiting_sends_with_their_slot() {
    let file = TempFile::new("waiting");
    let store = file.open(DEFAULT_RETENTION);
    let waiting = waiting_send(&store, "k1", RECIPIENT).await.id;
    let claimed = waiting_send(&store, "k2", RECIPIENT).await.id;
    store.claim(&claimed, slot(2, 1), t(43_200), t(44_100)).await.unwrap().unwrap();
    claimed_send(&store, &new_send("k3", RECIPIENT, None), t(0)).await;
    waiting_send(&store, "k4", "447700900123").await;
    // A neighbour whose number extends this one's must not be listed with it.
    waiting_send(&store, "k5", &format!("{RECIPIENT}0")).await;

    assert_eq!(store.waiting_for(RECIPIENT).await.unwrap(), vec![WaitingSend { send_id: waiting, slot: slot(2, 1) }]);
    assert!(store.waiting_for("15550000000").await.unwrap().is_empty());
}

#[tokio::test]
async fn campaign_pages_follow_recording_order_and_continue_exactly_after_the_last_item() {
    let file = TempFile::new("campaign");
    let store = file.open(DEFAULT_RETENTION);
    let mut recorded = Vec::new();
    for n in 0..5 {
        let send = new_send(&format!("k{n}"), RECIPIENT, Some("spring"));
        recorded.push(claimed_send(&store, &send, t(n)).await.id);
    }
    // Two sends recorded at the same instant are listed by id.
    let mut same_time: Vec<SendId> = Vec::new();
    for key in ["x", "y", "z"] {
        let send = new_send(key, RECIPIENT, Some("spring"));
        same_time.push(claimed_send(&store, &send, t(100)).await.id);
    }
    same_time.sort();
    recorded.extend(same_time);
    claimed_send(&store, &new_send("other", RECIPIENT, Some("summer")), t(2)).await;
    claimed_send(&store, &new_send("none", RECIPIENT, None), t(2)).await;

    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = store.campaign_sends("spring", token.as_deref(), 3).await.unwrap();
        assert!(page.items.len() <= 3);
        listed.extend(page.items.into_iter().map(|send| send.id));
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, recorded);
    assert!(store.campaign_sends("autumn", None, 3).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn a_page_token_the_store_did_not_hand_out_is_refused() {
    let file = TempFile::new("bad-token");
    let store = file.open(DEFAULT_RETENTION);
    for token in ["", "garbage", "12.not-an-id", "x.00000000000000000000000000000000"] {
        let refused = store.campaign_sends("spring", Some(token), 3).await;
        assert!(matches!(refused, Err(StoreError::BadPageToken(_))), "{token:?}: {refused:?}");
    }
}

#[tokio::test]
async fn a_hold_is_set_read_and_lifted() {
    let file = TempFile::new("holds");
    let store = file.open(DEFAULT_RETENTION);
    let template = HoldKey::Template {
        phone_number_id: "106540352242922".to_owned(),
        name: "spring_sale".to_owned(),
        language: "en".to_owned(),
    };
    let sender = HoldKey::Sender { phone_number_id: "106540352242922".to_owned() };
    let hold = Hold::new(132015, t(0));
    store.set_hold(&template, Some(hold.clone()), t(0)).await.unwrap();
    assert_eq!(store.get_hold(&template).await.unwrap(), Some(hold));
    assert_eq!(store.get_hold(&sender).await.unwrap(), None);
    store.set_hold(&template, None, t(1)).await.unwrap();
    assert_eq!(store.get_hold(&template).await.unwrap(), None);
}

#[tokio::test]
async fn an_item_past_its_retention_reads_as_absent_and_its_id_can_be_recorded_afresh() {
    let file = TempFile::new("retention");
    let store = file.open(TimeDelta::days(1));
    let old = claimed_send(&store, &new_send("k1", RECIPIENT, Some("spring")), t(0)).await;
    store.record_accepted(&old.id, Slot::FIRST, "wamid.old", t(1)).await.unwrap().send.unwrap();
    store.record_cap(RECIPIENT, &old.id, 1, t(0)).await.unwrap();
    store.record_marketing_delivery(RECIPIENT, &SendId::derive("1", "2", RECIPIENT), t(0)).await.unwrap();
    assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().marketing_deliveries, vec![t(0)]);

    // Any later write moves the store's time on.
    store.record_inbound("447700900123", t(2 * 86_400)).await.unwrap();
    assert_eq!(store.get_send(&old.id).await.unwrap(), None);
    assert_eq!(store.find_by_wamid("wamid.old").await.unwrap(), None);
    assert_eq!(store.claim(&old.id, slot(2, 1), t(2 * 86_400), t(2 * 86_400)).await.unwrap(), None);
    assert!(store.overdue(t(100 * 86_400), 10).await.unwrap().is_empty(), "an expired send is not overdue");
    let recipient = store.get_recipient(RECIPIENT).await.unwrap();
    assert_eq!((recipient.consecutive_caps, recipient.marketing_deliveries.len()), (0, 0));

    let later = t(2 * 86_400);
    let again = store.record_send(&new_send("k1", RECIPIENT, Some("spring")), Start::Due(later), later).await;
    let again = again.unwrap();
    assert!(again.created);
    let listed = store.campaign_sends("spring", None, 10).await.unwrap().items;
    assert_eq!(listed, vec![again.send]);
}

#[tokio::test]
async fn a_record_that_does_not_deserialize_is_corrupt() {
    let file = TempFile::new("corrupt");
    let store = file.open(DEFAULT_RETENTION);
    let id = SendId::derive("1", "2", RECIPIENT);
    let store_file = store.file();
    let tx = store_file.database().begin_write().unwrap();
    tx.open_table(SENDS).unwrap().insert(id.as_str(), b"{not json".as_slice()).unwrap();
    tx.commit().unwrap();
    assert!(matches!(store.get_send(&id).await, Err(StoreError::Corrupt(_))));
}
