//! The EventBridge publisher against moto's server: outcome events put on a bus reach a rule's
//! SQS target as EventBridge delivers them (source, detail-type, time, detail), more than one
//! `PutEvents` call's worth in order; and a bus that cannot be reached keeps them for the next
//! flush.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta};
use serde_json::Value;
use shared::domain::hold::HoldKey;
use shared::outcome::eventbridge::EventBridgePublisher;
use shared::outcome::{Outcome, OutcomeKind, Outcomes};
use shared::usecase::Tally;

use capguard_tests::moto::{drain, fresh_name, fresh_queue, moto_endpoint};

/// One event of each kind that needs no send, and enough opt-outs to take two calls.
fn events() -> Vec<Outcome> {
    let at = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
    let template = HoldKey::template("106540352242922", "spring_sale", "en_US");
    let mut events = vec![
        Outcome::of_hold(OutcomeKind::SendsHeld, &template, at).with_code(132015),
        Outcome::of_hold(OutcomeKind::HoldLifted, &template, at + TimeDelta::hours(1)).with_reason("by_webhook"),
    ];
    events.extend((0..10).map(|n| Outcome::opted_out(&format!("9198{n:08}"), at + TimeDelta::minutes(n))));
    events
}

#[tokio::test]
async fn outcome_events_reach_a_rule_on_the_bus_as_eventbridge_delivers_them() {
    let endpoint = moto_endpoint();
    let (_, sqs, queue_url) = fresh_queue("outcomes").await;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("moto answers the queue's ARN");
    let queue_arn =
        attributes.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)).cloned();
    let queue_arn = queue_arn.expect("the queue has an ARN");

    let client = aws_sdk_eventbridge::Client::new(&shared::aws::sdk_config(Some(&endpoint)).await);
    let bus = fresh_name("capguard-bus");
    client.create_event_bus().name(&bus).send().await.expect("moto creates the bus");
    let rule = fresh_name("capguard-outcomes");
    client
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["capguard"]}"#)
        .send()
        .await
        .expect("moto takes the rule");
    let target = aws_sdk_eventbridge::types::Target::builder().id("inbox").arn(&queue_arn).build().unwrap();
    client.put_targets().rule(&rule).event_bus_name(&bus).targets(target).send().await.expect("moto takes the target");

    let outcomes = Outcomes::publishing(Arc::new(EventBridgePublisher::new(client, bus)));
    let sent = events();
    sent.iter().cloned().for_each(|event| outcomes.emit(event));
    let mut tally = Tally::default();
    outcomes.flush(&mut tally).await;
    assert_eq!((tally.get("outcome_events"), tally.get("outcome_events_failed")), (12, 0), "{tally:?}");

    let delivered: Vec<Value> =
        drain(&sqs, &queue_url).await.iter().map(|body| serde_json::from_str(body).expect("an event")).collect();
    assert_eq!(delivered.len(), 12, "{delivered:#?}");
    let mut details: Vec<Value> = delivered
        .iter()
        .map(|event| {
            assert_eq!(event["source"], "capguard");
            let detail = event["detail"].clone();
            let kind: OutcomeKind = OutcomeKind::ALL
                .into_iter()
                .find(|kind| serde_json::to_value(kind).unwrap() == detail["kind"])
                .expect("a known kind");
            assert_eq!(event["detail-type"], kind.detail_type());
            assert_eq!(event["time"], detail["at"], "the event's time is when it happened");
            detail
        })
        .collect();
    let mut expected: Vec<Value> = sent.iter().map(|event| serde_json::to_value(event).unwrap()).collect();
    let key = |v: &Value| v.to_string();
    details.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(details, expected, "each event once, its detail whole");
}

#[tokio::test]
async fn events_for_a_bus_that_cannot_be_reached_are_kept_and_counted() {
    let client = aws_sdk_eventbridge::Client::new(&shared::aws::sdk_config(Some("http://127.0.0.1:9")).await);
    let outcomes = Outcomes::publishing(Arc::new(EventBridgePublisher::new(client, "default".into())));
    events().into_iter().for_each(|event| outcomes.emit(event));
    let mut tally = Tally::default();
    outcomes.flush(&mut tally).await;
    assert_eq!((tally.get("outcome_events"), tally.get("outcome_events_failed")), (0, 12), "{tally:?}");
    let mut again = Tally::default();
    outcomes.flush(&mut again).await;
    assert_eq!(again.get("outcome_events_failed"), 12, "kept and tried again: {again:?}");
}
