//! Verify + parse + classify, per event, on a batch of 100 failed statuses: the work the webhook
//! intake does before it writes anything.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

fn bench_intake_decisions(c: &mut Criterion) {
    let body = failed_statuses_batch();
    let secret = AppSecret::new("bench_app_secret");
    let header = sign(&secret, &body);
    let rules = Rules::default();

    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("verify_parse_classify_100_failed_statuses", |b| {
        b.iter(|| {
            verify(&secret, Some(&header), black_box(&body)).expect("signed above");
            let envelope = parse_webhook(black_box(&body)).expect("a webhook");
            let batch = events(&envelope);
            assert_eq!(batch.len(), BATCH);
            for event in &batch {
                black_box(react(event, &rules, None));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_intake_decisions);
criterion_main!(benches);
