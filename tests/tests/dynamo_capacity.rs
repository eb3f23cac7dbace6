//! What the DynamoDB adapter costs and the guarantees only a real DynamoDB can show, on DynamoDB
//! Local (`scripts/services` starts it).
//!
//! Every access pattern is measured with `ReturnConsumedCapacity=TOTAL` (index writes included)
//! and held to the bound `docs/data-model.md` states, so a change that makes a pattern dearer, or
//! an item big enough to cost a second write unit, fails here. The totals for a send's happy path
//! and for a capped attempt are checked the same way. Run with `--nocapture` to see the ledger.
//!
//! Also here: one winner among many concurrent claimers, expiry before TTL has deleted anything,
//! the failure paths the one-write conditions leave to compare-and-set, and the table as created.

use std::sync::Arc;

use capguard_tests::dynamo::{dynamodb_endpoint, fresh_dynamo_store, fresh_dynamo_store_keeping, unique_table_name};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use shared::domain::consent::sources;
use shared::domain::hold::keys_of;
use shared::domain::lifecycle::{DELIVERY_HORIZON, Delivery, Phase, Slot};
use shared::domain::rules::Category;
use shared::domain::verdict::{FinalReason, Verdict};
use shared::store::dynamo::{Consumed, DynamoStore, TABLE, create_table};
use shared::store::prelude::*;
use shared::store::{
    DEFAULT_RETENTION, Hold, HoldKey, NewSend, RecordedError, SendRecord, Start, StatusReport, StatusUpdate,
    TemplateRef, WamidLink,
};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_793_000_000, 0).expect("2026-10-26")
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(seconds)
}

const SLOT_2: Slot = Slot { attempt: 2, try_no: 1 };

/// How long after its claim a send is settled if nothing is heard.
const SETTLE: TimeDelta = TimeDelta::minutes(15);

/// Records `send` due at `when` and claims attempt 1 then, as dispatch does.
async fn record_and_claim(store: &DynamoStore, send: &NewSend, when: DateTime<Utc>) -> SendRecord {
    store.record_send(send, Start::Due(when), when).await.unwrap();
    store.claim(&send.id(), Slot::FIRST, when, when + SETTLE).await.unwrap().expect("claims attempt 1")
}

/// A marketing send as a campaign makes them: an image header, two body parameters and a URL
/// button, so that the measured item is as big as a real one.
fn marketing_send(key: &str, recipient: &str) -> NewSend {
    let components = json!([
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/spring/hero-1080.jpg"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "20%"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "spring-2026?c=abc123"}]}
    ]);
    NewSend {
        idempotency_key: key.to_owned(),
        recipient: recipient.to_owned(),
        phone_number_id: "106540352242922".to_owned(),
        template: TemplateRef {
            name: "spring_sale_2026".to_owned(),
            language: "en_US".to_owned(),
            components: serde_json::from_value(components).expect("template components"),
        },
        category: Category::Marketing,
        campaign: Some("spring-2026".to_owned()),
        retry_until: None,
        utc_offset_minutes: None,
        tier: None,
        opt_in_source: None,
        held_for_limit: false,
        max_attempts: 4,
    }
}

/// A wamid as long as Meta's.
fn wamid(n: u32) -> String {
    format!("wamid.HBgLOTE5ODEyMzQ1Njc4FQIAERgSQjdBRjYxQzM0RDk2{n:08}QTVFNUEA")
}

fn capped() -> RecordedError {
    RecordedError {
        code: 131049,
        title: Some("This message was not delivered to maintain healthy ecosystem engagement.".to_owned()),
    }
}

/// What each step cost, printed as the table `docs/data-model.md` quotes.
struct Ledger {
    title: &'static str,
    rows: Vec<(String, Consumed)>,
}

impl Ledger {
    fn new(title: &'static str) -> Self {
        Self { title, rows: Vec::new() }
    }

    /// Runs `step`, records its cost, and checks it against the bound (write units, read units).
    async fn step<T>(
        &mut self,
        store: &DynamoStore,
        name: &str,
        bound: (f64, f64),
        step: impl Future<Output = T>,
    ) -> T {
        let before = store.consumed();
        let out = step.await;
        let cost = store.consumed() - before;
        self.rows.push((name.to_owned(), cost));
        assert!(
            cost.write_units <= bound.0 && cost.read_units <= bound.1,
            "{}: {name} cost {} WCU / {} RCU, more than {} / {}",
            self.title,
            cost.write_units,
            cost.read_units,
            bound.0,
            bound.1
        );
        out
    }

    fn total(&self) -> Consumed {
        self.rows.iter().fold(Consumed::default(), |sum, (_, c)| Consumed {
            read_units: sum.read_units + c.read_units,
            write_units: sum.write_units + c.write_units,
            refused_writes: sum.refused_writes + c.refused_writes,
        })
    }

    fn print(&self) {
        println!("\n{}", self.title);
        println!("| step | WCU | RCU | refused writes |");
        for (name, c) in &self.rows {
            println!("| {name} | {} | {} | {} |", c.write_units, c.read_units, c.refused_writes);
        }
        let total = self.total();
        println!("| total | {} | {} | {} |", total.write_units, total.read_units, total.refused_writes);
    }
}

/// The happy path as the use cases take it: dispatch reads the recipient and the two holds
/// (recent reads), records the send claimed and records Meta's answer; each status webhook carries
/// the callback tag, so intake reads the send (a recent read) without looking up the wamid.
#[tokio::test]
async fn the_happy_path_of_a_send_costs_eleven_write_units_and_three_read_units() {
    let store = fresh_dynamo_store().await;
    let recipient = "919812345678";
    let send = marketing_send("happy", recipient);
    let id = send.id();
    let w = wamid(1);
    let mut ledger = Ledger::new("happy path: dispatch, accepted, sent, delivered, read");

    ledger
        .step(&store, "dispatch: recent_recipient", (0.0, 0.5), async {
            store.recent_recipient(recipient).await.unwrap()
        })
        .await;
    for key in keys_of(&send.phone_number_id, &send.template.name, &send.template.language) {
        ledger
            .step(&store, "dispatch: recent_hold", (0.0, 0.5), async {
                assert_eq!(store.recent_hold(&key).await.unwrap(), None);
            })
            .await;
    }
    let recorded = ledger
        .step(&store, "record_send claimed (item + campaign and due indexes)", (3.0, 0.0), async {
            store.record_send(&send, Start::Claim(at(0) + SETTLE), at(0)).await.unwrap()
        })
        .await;
    assert!(recorded.created);
    assert_eq!(recorded.send.life.phase, Phase::Claimed { due: at(0) + SETTLE });
    ledger
        .step(&store, "record_accepted (wamid link + send; the due time stays)", (2.0, 0.0), async {
            store.record_accepted(&id, Slot::FIRST, &w, at(1)).await.unwrap().send.expect("applies")
        })
        .await;
    for (delivery, seconds) in [(Delivery::Sent, 2), (Delivery::Delivered, 3), (Delivery::Read, 4)] {
        let read = ledger
            .step(&store, &format!("{delivery:?}: recent_send"), (0.0, 0.5), async {
                store.recent_send(&id).await.unwrap().expect("recorded")
            })
            .await;
        assert_eq!(read.life.slot, Slot::FIRST);
        if delivery == Delivery::Delivered {
            ledger
                .step(&store, "Delivered: record_marketing_delivery", (1.0, 0.0), async {
                    store.record_marketing_delivery(recipient, &id, at(seconds)).await.unwrap()
                })
                .await;
        }
        if delivery == Delivery::Read {
            ledger
                .step(&store, "Read: record_read", (1.0, 0.0), async {
                    store.record_read(recipient, at(seconds)).await.unwrap()
                })
                .await;
        }
        let bound = if delivery == Delivery::Delivered { 2.0 } else { 1.0 };
        ledger
            .step(&store, &format!("{delivery:?}: record_status"), (bound, 0.0), async {
                store.record_status(&id, Slot::FIRST, delivery, at(seconds)).await.unwrap().expect("applies")
            })
            .await;
    }
    ledger.print();
    let total = ledger.total();
    assert_eq!((total.write_units, total.read_units, total.refused_writes), (11.0, 3.0, 0));

    let done = store.get_send(&id).await.unwrap().expect("recorded");
    assert_eq!(done.life.phase, Phase::Succeeded { delivery: Delivery::Read });
    let known = store.get_recipient(recipient).await.unwrap();
    assert_eq!((known.marketing_deliveries, known.last_read_at), (vec![at(3)], Some(at(4))));
    assert!(store.overdue(at(100 * 86_400), 100).await.unwrap().is_empty(), "a delivered send leaves the due index");
}

#[tokio::test]
async fn a_capped_attempt_costs_nine_write_units() {
    let store = fresh_dynamo_store().await;
    let recipient = "919812345679";
    let send = marketing_send("capped", recipient);
    let id = send.id();
    let w = wamid(2);
    record_and_claim(&store, &send, at(0)).await;
    store.record_accepted(&id, Slot::FIRST, &w, at(1)).await.unwrap().send.expect("applies");
    let mut ledger = Ledger::new("capped attempt: the failed webhook, then the retry's claim");

    let entry = ledger
        .step(&store, "find_by_wamid", (0.0, 1.0), async { store.find_by_wamid(&w).await.unwrap().expect("linked") })
        .await;
    let caps = ledger
        .step(&store, "record_cap", (1.0, 0.0), async { store.record_cap(recipient, &id, 1, at(10)).await.unwrap() })
        .await;
    assert_eq!(caps, 1);
    let waiting = ledger
        .step(&store, "record_failure → waiting (send + waiting index + due index moved)", (4.0, 0.0), async {
            let ladder = Verdict::Ladder { attempt: 2, due: at(43_210) };
            let link = &entry.link;
            store.record_failure(&link.send_id, link.slot, &capped(), ladder, at(10)).await.unwrap().expect("applies")
        })
        .await;
    assert_eq!(waiting.life.phase, Phase::Waiting { due: at(43_210) });
    ledger
        .step(&store, "claim attempt 2 (send + waiting index + due index moved)", (4.0, 0.0), async {
            store.claim(&id, SLOT_2, at(43_210), at(43_210) + SETTLE).await.unwrap().expect("the retry claims")
        })
        .await;
    ledger.print();
    let total = ledger.total();
    assert_eq!((total.write_units, total.read_units, total.refused_writes), (9.0, 1.0, 0));
}

/// What liveness adds: a status parked under a wamid nobody linked yet, linking it, and the
/// sweep's listing of overdue sends (one query per shard of the due index).
#[tokio::test]
async fn parking_linking_and_sweeping_cost_what_the_data_model_says() {
    let store = fresh_dynamo_store().await;
    let send = marketing_send("liveness", "919812345677");
    let id = send.id();
    let w = wamid(3);
    record_and_claim(&store, &send, at(0)).await;
    let mut ledger = Ledger::new("liveness: parking, linking, sweeping");
    let failed = StatusUpdate { at: at(2), report: StatusReport::Failed(Some(capped())) };
    ledger
        .step(&store, "park_status (a failure before the send's answer)", (1.0, 0.0), async {
            assert_eq!(store.park_status(&w, &failed, at(2)).await.unwrap(), None);
        })
        .await;
    ledger
        .step(&store, "park_status again (a redelivery: refused write)", (0.0, 0.0), async {
            assert_eq!(store.park_status(&w, &failed, at(3)).await.unwrap(), None);
        })
        .await;
    let linked = ledger
        .step(&store, "record_accepted (link returns the parked status)", (2.0, 0.0), async {
            store.record_accepted(&id, Slot::FIRST, &w, at(4)).await.unwrap()
        })
        .await;
    assert_eq!(linked.parked, [failed]);
    let link = WamidLink { send_id: id.clone(), slot: Slot::FIRST };
    ledger
        .step(&store, "link_wamid (from a callback tag)", (1.0, 0.0), async {
            store.link_wamid(&wamid(4), &link, at(5)).await.unwrap()
        })
        .await;
    let overdue = ledger
        .step(&store, "overdue (16 queries of the due index)", (0.0, 8.0), async {
            store.overdue(at(5) + DELIVERY_HORIZON, 100).await.unwrap()
        })
        .await;
    assert_eq!(overdue, std::slice::from_ref(&id));
    let horizon = at(4) + DELIVERY_HORIZON;
    ledger
        .step(&store, "await_delivery (undelivered at the claim's due: send + due index moved)", (3.0, 0.0), async {
            store.await_delivery(&id, Slot::FIRST, horizon, at(5) + SETTLE).await.unwrap().expect("applies")
        })
        .await;
    ledger.print();
    assert_eq!(ledger.total().refused_writes, 1, "the redelivered status");
}

#[tokio::test]
async fn every_other_access_pattern_costs_at_most_one_unit_per_item() {
    let store = fresh_dynamo_store().await;
    let recipient = "447400123456";
    let mut ledger = Ledger::new("other access patterns");
    let first = marketing_send("other-1", recipient);
    let id = first.id();

    ledger
        .step(&store, "record_send refused up front (item + campaign index)", (2.0, 0.0), async {
            store
                .record_send(&marketing_send("refused", recipient), Start::Refuse(FinalReason::FrequencyCap), at(0))
                .await
        })
        .await
        .unwrap();
    record_and_claim(&store, &first, at(0)).await;
    let again = ledger
        .step(&store, "record_send of a known send (refused write)", (0.0, 0.0), async {
            store.record_send(&first, Start::Due(at(1)), at(1)).await.unwrap()
        })
        .await;
    assert!(!again.created);
    ledger
        .step(&store, "claim of a claimed slot (refused write)", (0.0, 0.0), async {
            assert_eq!(store.claim(&id, Slot::FIRST, at(1), at(1) + SETTLE).await.unwrap(), None);
        })
        .await;
    ledger.step(&store, "get_send", (0.0, 1.0), async { store.get_send(&id).await.unwrap().expect("found") }).await;
    let ladder = Verdict::Ladder { attempt: 2, due: at(43_210) };
    store.record_failure(&id, Slot::FIRST, &capped(), ladder, at(10)).await.unwrap().expect("applies");
    let listed = ledger
        .step(&store, "waiting_for (query, waiting index)", (0.0, 0.5), async {
            store.waiting_for(recipient).await.unwrap()
        })
        .await;
    assert_eq!(listed.len(), 1);
    ledger
        .step(&store, "reschedule (a reply; due index moved)", (3.0, 0.0), async {
            store.reschedule(&id, at(600), at(600)).await.unwrap().expect("applies")
        })
        .await;
    ledger
        .step(&store, "finish_waiting (send + waiting index + due index)", (3.0, 0.0), async {
            store.finish_waiting(&id, FinalReason::OptedOut, at(700)).await.unwrap().expect("applies")
        })
        .await;
    ledger
        .step(&store, "set_opt_out", (1.0, 0.0), async {
            assert!(store.set_opt_out(recipient, true, sources::KEYWORD, at(700)).await.unwrap());
        })
        .await;
    ledger
        .step(&store, "record_inbound", (1.0, 0.0), async { store.record_inbound(recipient, at(650)).await.unwrap() })
        .await;
    ledger.step(&store, "get_recipient", (0.0, 1.0), async { store.get_recipient(recipient).await.unwrap() }).await;
    let page = ledger
        .step(&store, "campaign_sends, page of 2 (query + BatchGetItem)", (0.0, 1.5), async {
            store.campaign_sends("spring-2026", None, 2).await.unwrap()
        })
        .await;
    assert_eq!(page.items.len(), 2);
    let sender = HoldKey::Sender { phone_number_id: "106540352242922".to_owned() };
    ledger
        .step(&store, "set_hold", (1.0, 0.0), async {
            store.set_hold(&sender, Some(Hold::new(131042, at(800))), at(800)).await.unwrap()
        })
        .await;
    ledger.step(&store, "get_hold", (0.0, 1.0), async { store.get_hold(&sender).await.unwrap().expect("held") }).await;
    ledger
        .step(&store, "set_hold(None)", (1.0, 0.0), async { store.set_hold(&sender, None, at(900)).await.unwrap() })
        .await;
    ledger.print();
    assert_eq!(ledger.total().refused_writes, 2, "the known send and the claimed slot");
}

/// The item grows with each attempt's history (about 200 bytes for a capped one): from its second
/// capped failure on, this send's item passes 1 KB and each write of it costs two units (plus its
/// index writes: at most five in all). At the end of the ladder it must still be under 2 KB.
#[tokio::test]
async fn a_send_at_the_end_of_the_ladder_still_writes_in_two_units() {
    let store = fresh_dynamo_store().await;
    let send = marketing_send("ladder", "919812345670");
    let id = send.id();
    record_and_claim(&store, &send, at(0)).await;
    let mut ledger = Ledger::new("a send climbing the whole ladder");
    for attempt in 1..=4 {
        let slot = Slot { attempt, try_no: 1 };
        let base = i64::from(attempt) * 100_000;
        if attempt > 1 {
            ledger
                .step(&store, &format!("claim attempt {attempt}"), (5.0, 0.0), async {
                    store.claim(&id, slot, at(base), at(base) + SETTLE).await.unwrap().expect("claims")
                })
                .await;
        }
        ledger
            .step(&store, &format!("record_accepted attempt {attempt}"), (5.0, 0.0), async {
                store.record_accepted(&id, slot, &wamid(attempt), at(base + 1)).await.unwrap().send.expect("applies")
            })
            .await;
        // What the rules decide: the next rung, and after the last one, exhausted.
        let verdict = match attempt {
            4 => Verdict::Final(FinalReason::Exhausted),
            _ => Verdict::Ladder { attempt: attempt + 1, due: at(base + 90_000) },
        };
        ledger
            .step(&store, &format!("record_failure attempt {attempt}"), (5.0, 0.0), async {
                store.record_failure(&id, slot, &capped(), verdict, at(base + 10)).await.unwrap().expect("applies")
            })
            .await;
    }
    ledger.print();
    assert_eq!(ledger.total().refused_writes, 0);
    let exhausted = store.get_send(&id).await.unwrap().expect("recorded");
    assert_eq!(exhausted.life.phase, Phase::Final { reason: FinalReason::Exhausted });
    assert_eq!(exhausted.attempts.len(), 4);
    assert!(exhausted.attempts.iter().all(|a| a.wamid.is_some() && a.error == Some(capped())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn sixty_four_concurrent_claimers_of_one_slot_get_one_grant() {
    let store = Arc::new(fresh_dynamo_store().await);
    let send = marketing_send("race", "919812345671");
    let id = send.id();
    record_and_claim(&store, &send, at(0)).await;
    let ladder = Verdict::Ladder { attempt: 2, due: at(43_210) };
    store.record_failure(&id, Slot::FIRST, &capped(), ladder, at(10)).await.unwrap().expect("applies");
    let claimers: Vec<_> = (0..64)
        .map(|i| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move { store.claim(&id, SLOT_2, at(43_210 + i), at(44_110)).await })
        })
        .collect();
    let mut granted = 0;
    for claimer in claimers {
        if claimer.await.expect("the task ran").expect("the store answered").is_some() {
            granted += 1;
        }
    }
    assert_eq!(granted, 1);
    let after = store.get_send(&id).await.unwrap().expect("recorded");
    assert_eq!(after.life.phase, Phase::Claimed { due: at(44_110) });
    assert_eq!(after.attempts.iter().filter(|a| a.slot == SLOT_2).count(), 1);
    assert!(store.waiting_for("919812345671").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_opt_out_while_in_flight_ends_the_send_at_its_next_failure() {
    let store = fresh_dynamo_store().await;
    let send = marketing_send("suppressed", "919812345672");
    let id = send.id();
    record_and_claim(&store, &send, at(0)).await;
    let marked = store.finish_waiting(&id, FinalReason::OptedOut, at(1)).await.unwrap().expect("marks it");
    assert_eq!((marked.life.phase, marked.life.suppressed), (Phase::Claimed { due: at(0) + SETTLE }, true));
    assert_eq!(store.finish_waiting(&id, FinalReason::OptedOut, at(2)).await.unwrap(), None, "already marked");
    let mut ledger = Ledger::new("failure of a suppressed send: refused, then compare-and-set");
    let ended = ledger
        .step(&store, "record_failure (item + due index)", (2.0, 0.0), async {
            let ladder = Verdict::Ladder { attempt: 2, due: at(43_210) };
            store.record_failure(&id, Slot::FIRST, &capped(), ladder, at(10)).await.unwrap().expect("applies")
        })
        .await;
    ledger.print();
    assert_eq!(ledger.total().refused_writes, 1);
    assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::OptedOut });
    assert_eq!(ended.attempts[0].error, Some(capped()), "the failure is on record");
    assert!(store.waiting_for("919812345672").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_ladder_verdict_past_the_last_attempt_exhausts_after_one_refusal() {
    let store = fresh_dynamo_store().await;
    let mut send = marketing_send("short", "919812345673");
    send.max_attempts = 1;
    let id = send.id();
    record_and_claim(&store, &send, at(0)).await;
    let ladder = Verdict::Ladder { attempt: 2, due: at(43_210) };
    let ended = store.record_failure(&id, Slot::FIRST, &capped(), ladder, at(10)).await.unwrap().expect("applies");
    assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::Exhausted });
    assert_eq!(store.record_failure(&id, Slot::FIRST, &capped(), ladder, at(11)).await.unwrap(), None, "duplicate");
}

#[tokio::test]
async fn an_expired_item_is_absent_before_ttl_deletes_it() {
    let store = fresh_dynamo_store_keeping(TimeDelta::hours(1)).await;
    let recipient = "919812345674";
    let send = marketing_send("expiring", recipient);
    let id = send.id();
    record_and_claim(&store, &send, at(0)).await;
    store.record_accepted(&id, Slot::FIRST, &wamid(7), at(1)).await.unwrap().send.expect("applies");
    assert_eq!(store.record_cap(recipient, &id, 1, at(1)).await.unwrap(), 1);
    let hold = HoldKey::Template {
        phone_number_id: "106540352242922".to_owned(),
        name: "spring_sale_2026".to_owned(),
        language: "en_US".to_owned(),
    };
    store.set_hold(&hold, Some(Hold::new(132015, at(1))), at(1)).await.unwrap();

    // Two hours later, by the callers' clock: every item above is past its retention.
    assert_eq!(store.record_cap(recipient, &id, 2, at(7_200)).await.unwrap(), 1, "an expired count starts over");
    assert_eq!(store.get_send(&id).await.unwrap(), None);
    assert_eq!(store.find_by_wamid(&wamid(7)).await.unwrap(), None);
    assert_eq!(store.get_hold(&hold).await.unwrap(), None);
    assert_eq!(store.record_status(&id, Slot::FIRST, Delivery::Read, at(7_201)).await.unwrap(), None);
    let again = store.record_send(&send, Start::Due(at(7_202)), at(7_202)).await.unwrap();
    assert!(again.created, "an expired send's id may be recorded afresh");
    assert!(again.send.attempts.is_empty(), "nothing of the old item survives");
}

/// A recipient item must not grow with every delivery it ever had: that size is paid on every
/// write of it. Deliveries past the retention are removed once eight have piled up, in one write.
#[tokio::test]
async fn old_delivery_records_are_removed_in_one_extra_write() {
    let store = fresh_dynamo_store_keeping(TimeDelta::hours(1)).await;
    let recipient = "919812345675";
    let delivery = |n: u32| shared::store::SendId::derive("106540352242922", &format!("old-{n}"), recipient);
    for n in 0..8 {
        store.record_marketing_delivery(recipient, &delivery(n), at(i64::from(n))).await.unwrap();
    }
    // Keeps the item itself alive while its first eight deliveries age past the retention.
    store.record_inbound(recipient, at(3_000)).await.unwrap();
    let mut ledger = Ledger::new("deliveries past the retention");
    ledger
        .step(&store, "record_marketing_delivery (+ removes 8 old ones)", (2.0, 0.0), async {
            store.record_marketing_delivery(recipient, &delivery(8), at(6_000)).await.unwrap()
        })
        .await;
    ledger
        .step(&store, "record_marketing_delivery (nothing to remove)", (1.0, 0.0), async {
            store.record_marketing_delivery(recipient, &delivery(9), at(6_001)).await.unwrap()
        })
        .await;
    ledger.print();
    assert_eq!(ledger.total().write_units, 3.0, "one extra write, once");
    let state = store.get_recipient(recipient).await.unwrap();
    assert_eq!(state.marketing_deliveries, vec![at(6_000), at(6_001)]);
}

#[tokio::test]
async fn the_table_is_created_as_its_definition_says() {
    let store = DynamoStore::connect(Some(&dynamodb_endpoint()), unique_table_name(), DEFAULT_RETENTION).await;
    create_table(store.client(), store.table()).await.expect("DynamoDB Local creates the table");
    let described = store.client().describe_table().table_name(store.table()).send().await.unwrap();
    let table = described.table.expect("described");
    let mut defined: Vec<(String, String)> = table
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
        .collect();
    defined.sort();
    let mut expected: Vec<(String, String)> =
        TABLE.attribute_definitions().iter().map(|a| (a.name.to_owned(), a.attribute_type.to_owned())).collect();
    expected.sort();
    assert_eq!(defined, expected);
    let key_schema: Vec<(String, String)> =
        table.key_schema().iter().map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned())).collect();
    assert_eq!(
        key_schema,
        [
            (TABLE.partition_key.name.to_owned(), "HASH".to_owned()),
            (TABLE.sort_key.name.to_owned(), "RANGE".to_owned())
        ]
    );
    assert_eq!(
        table.billing_mode_summary().and_then(|b| b.billing_mode()).map(|m| m.as_str()),
        Some(TABLE.billing_mode)
    );
    let indexes = table.global_secondary_indexes();
    assert_eq!(indexes.len(), TABLE.indexes.len());
    for index in TABLE.indexes {
        let found = indexes.iter().find(|i| i.index_name() == Some(index.name)).expect("the index exists");
        let schema: Vec<(String, String)> = found
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned()))
            .collect();
        assert_eq!(
            schema,
            [
                (index.partition_key.name.to_owned(), "HASH".to_owned()),
                (index.sort_key.name.to_owned(), "RANGE".to_owned())
            ]
        );
        let projection = found.projection().and_then(|p| p.projection_type()).map(|p| p.as_str());
        assert_eq!(projection, Some(index.projection_type));
    }
    let ttl = store.client().describe_time_to_live().table_name(store.table()).send().await.unwrap();
    let ttl = ttl.time_to_live_description.expect("described");
    assert_eq!(ttl.attribute_name(), Some(TABLE.ttl_attribute));
    assert_eq!(ttl.time_to_live_status().map(|s| s.as_str()), Some("ENABLED"));
}
