//! The webhook intake's work before it writes anything (verify the signature, parse the body,
//! decide on each event), per event, on a signed batch of 100 failed statuses (131049, the
//! ladder's case, which needs the region rule), beside its floor on the same bytes in the same
//! run: an HMAC-SHA256 check, a typed parse into minimal borrowed structs that keep nothing
//! unknown, and the code's row in the table.
//!
//! `cargo bench -p shared --bench webhook` measures (rounds alternate the two paths, so that the
//! machine's noise falls on both, and the medians are compared); under `cargo test` it runs each
//! path a few times as a smoke test. The last lines are capguard's µs per event, the floor's, and
//! their ratio.

use std::hint::black_box;
use std::time::Instant;

use serde::Deserialize;
use shared::domain::classes::classify;
use shared::domain::reaction::react;
use shared::domain::verdict::Rules;
use shared::whatsapp::events::events;
use shared::whatsapp::signature::{AppSecret, sign, verify};
use shared::whatsapp::webhook::parse_webhook;

const BATCH: usize = 100;

fn failed_statuses_batch() -> Vec<u8> {
    let statuses: Vec<String> = (0..BATCH)
        .map(|i| {
            format!(
                r#"{{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkE{i:05}","status":"failed","timestamp":"1751142888","recipient_id":"9198{i:08}","biz_opaque_callback_data":"send=01JBENCH{i:05};attempt=1","errors":[{{"code":131049,"title":"This message was not delivered to maintain healthy ecosystem engagement.","message":"This message was not delivered to maintain healthy ecosystem engagement.","error_data":{{"details":"In order to maintain a healthy ecosystem engagement, the message failed to be delivered."}},"href":"\/documentation\/business-messaging\/whatsapp\/support\/error-codes"}}]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"statuses":[{}]}},"field":"messages"}}]}}]}}"#,
        statuses.join(",")
    )
    .into_bytes()
}

/// capguard's path: what `usecase::intake` does before its first write.
fn capguard(secret: &AppSecret, header: &str, body: &[u8], rules: &Rules) -> usize {
    verify(secret, Some(header), body).expect("signed above");
    let envelope = parse_webhook(body).expect("a webhook");
    let batch = events(&envelope);
    for event in &batch {
        black_box(react(event, rules, None));
    }
    batch.len()
}

#[derive(Deserialize)]
struct FloorEnvelope<'a> {
    #[serde(borrow)]
    entry: Vec<FloorEntry<'a>>,
}

#[derive(Deserialize)]
struct FloorEntry<'a> {
    #[serde(borrow)]
    changes: Vec<FloorChange<'a>>,
}

#[derive(Deserialize)]
struct FloorChange<'a> {
    #[serde(borrow)]
    value: FloorValue<'a>,
}

#[derive(Deserialize)]
struct FloorValue<'a> {
    #[serde(borrow, default)]
    statuses: Vec<FloorStatus<'a>>,
}

#[derive(Deserialize)]
struct FloorStatus<'a> {
    id: &'a str,
    status: &'a str,
    recipient_id: Option<&'a str>,
    #[serde(default)]
    errors: Vec<FloorError>,
}

#[derive(Deserialize)]
struct FloorError {
    code: i64,
}

/// The floor: the least any intake must do with these bytes.
fn floor(secret: &AppSecret, header: &str, body: &[u8]) -> usize {
    verify(secret, Some(header), body).expect("signed above");
    let envelope: FloorEnvelope = serde_json::from_slice(body).expect("a webhook");
    let mut seen = 0;
    for status in envelope.entry.iter().flat_map(|e| &e.changes).flat_map(|c| &c.value.statuses) {
        black_box((status.id, status.status, status.recipient_id));
        for error in &status.errors {
            black_box(classify(error.code).remedy);
        }
        seen += 1;
    }
    seen
}

/// Median µs per event of `rounds` timings of `iterations` runs each.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (rounds, iterations) = if full { (21, 2_000) } else { (1, 3) };
    let body = failed_statuses_batch();
    let secret = AppSecret::new("bench_app_secret");
    let header = sign(&secret, &body);
    let rules = Rules::default();

    let time = |path: &dyn Fn() -> usize| {
        let started = Instant::now();
        for _ in 0..iterations {
            assert_eq!(path(), BATCH, "every event of the batch handled");
        }
        started.elapsed().as_secs_f64() * 1e6 / (iterations * BATCH) as f64
    };
    let ours = || capguard(&secret, &header, black_box(&body), &rules);
    let least = || floor(&secret, &header, black_box(&body));
    // Warm both (the phone-number metadata loads on first use).
    time(&ours);
    time(&least);
    let (mut ours_us, mut floor_us) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            ours_us.push(time(&ours));
            floor_us.push(time(&least));
        } else {
            floor_us.push(time(&least));
            ours_us.push(time(&ours));
        }
    }
    let (ours_us, floor_us) = (median(ours_us), median(floor_us));
    println!("batch: {BATCH} failed statuses (131049), {rounds} rounds of {iterations} batches per path");
    println!("capguard verify + parse + decide: {ours_us:.2} µs/event");
    println!("floor HMAC + typed parse + code lookup: {floor_us:.2} µs/event");
    println!("ratio: {:.2}", ours_us / floor_us);
}
