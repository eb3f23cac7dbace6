//! Every webhook fixture parses, and yields exactly the events it should, in batch order.

use capguard_tests::{webhook_fixture, webhook_fixture_names};
use shared::domain::classes::{FailureClass, classify};
use shared::domain::limit::MessagingLimit;
use shared::domain::quality::QualityRating;
use shared::whatsapp::events::{
    AccountEvent, Event, MessageEvent, PreferenceEvent, StatusEvent, SystemErrorEvent, events,
};
use shared::whatsapp::webhook::{PreferenceValue, StatusKind, parse_webhook};

/// The fixture's events. They borrow from the body and the parsed webhook, which live for the
/// rest of the test process (a few kilobytes each).
fn events_of(name: &str) -> Vec<Event<'static>> {
    let body: &'static [u8] = Box::leak(webhook_fixture(name).into_boxed_slice());
    let envelope = parse_webhook(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    events(Box::leak(Box::new(envelope)))
}

fn one_status(name: &str) -> StatusEvent<'static> {
    match <[Event; 1]>::try_from(events_of(name)) {
        Ok([Event::Status(status)]) => status,
        other => panic!("{name}: expected one status, got {other:?}"),
    }
}

fn one_message(name: &str) -> MessageEvent<'static> {
    match <[Event; 1]>::try_from(events_of(name)) {
        Ok([Event::Message(message)]) => message,
        other => panic!("{name}: expected one message, got {other:?}"),
    }
}

fn one_preference(name: &str) -> PreferenceEvent<'static> {
    match <[Event; 1]>::try_from(events_of(name)) {
        Ok([Event::Preference(preference)]) => preference,
        other => panic!("{name}: expected one preference, got {other:?}"),
    }
}

/// The fixtures this file checks one by one; a new fixture without a test fails the suite.
const CHECKED: &[&str] = &[
    "composed__batch_two_wabas_mixed",
    "composed__message_template_status_update_unpause",
    "composed__phone_number_quality_update_flagged",
    "composed__phone_number_quality_update_unflagged",
    "composed__status_delivered_with_callback_data",
    "composed__user_preferences_stop",
    "meta-docs__business_capability_update",
    "meta-docs__inbound_button_quick_reply",
    "meta-docs__inbound_text",
    "meta-docs__message_template_quality_update",
    "meta-docs__message_template_status_update_paused",
    "meta-docs__phone_number_quality_update_throughput",
    "meta-docs__phone_number_quality_update_upgrade",
    "meta-docs__status_failed_131049",
    "meta-docs__status_sent_marketing_pmp",
    "meta-docs__user_preferences_resume",
    "meta-docs__value_errors_130429",
    "pywa__callback_button__button",
    "pywa__callback_button__quick_reply",
    "pywa__callback_button__quick_reply_without_context",
    "pywa__message__interactive_message_with_err",
    "pywa__message__reply",
    "pywa__message__text",
    "pywa__message__unsupported",
    "whatsapp-business-java-api__buttonMessage",
    "whatsapp-business-java-api__messageDeleted",
    "whatsapp-business-java-api__textMessage",
    "whatsapp-business-java-api__textMessageStatusDelivered",
    "whatsapp-business-java-api__textMessageStatusSent",
];

#[test]
fn every_fixture_on_disk_is_checked_here() {
    assert_eq!(webhook_fixture_names(), CHECKED);
}

#[test]
fn a_batch_of_two_wabas_yields_every_item_in_order() {
    let batch = events_of("composed__batch_two_wabas_mixed");
    assert_eq!(batch.len(), 4);
    let Event::Status(capped) = &batch[0] else { panic!("{:?}", batch[0]) };
    assert_eq!(capped.wamid, "wamid.BATCH0001");
    assert_eq!(capped.status, StatusKind::Failed);
    assert_eq!(capped.errors[0].code, 131049);
    assert_eq!(capped.phone_number_id, Some("106540352242922"));
    let Event::Status(read) = &batch[1] else { panic!("{:?}", batch[1]) };
    assert_eq!((read.wamid, &read.status), ("wamid.BATCH0002", &StatusKind::Read));
    let Event::Message(reply) = &batch[2] else { panic!("{:?}", batch[2]) };
    assert_eq!(reply.from, Some("919812345678"));
    assert_eq!(reply.text, Some("Tell me more about the offer"));
    let Event::Status(other_waba) = &batch[3] else { panic!("{:?}", batch[3]) };
    assert_eq!(other_waba.phone_number_id, Some("207651463352033"));
    assert_eq!(other_waba.status, StatusKind::Sent);
}

#[test]
fn a_delivered_status_carries_its_callback_data_and_pricing() {
    let status = one_status("composed__status_delivered_with_callback_data");
    assert_eq!(status.status, StatusKind::Delivered);
    assert_eq!(status.callback_data, Some("send=01HXAMPLE;attempt=2"));
    assert_eq!(status.pricing_category, Some("marketing"));
    assert_eq!(status.timestamp.seconds(), 1_750_030_080);
}

#[test]
fn a_stop_preference_yields_a_stop() {
    let preference = one_preference("composed__user_preferences_stop");
    assert_eq!(preference.preference, PreferenceValue::Stop);
    assert_eq!(preference.wa_id, Some("16505551234"));
    assert_eq!(preference.timestamp.seconds(), 1_731_705_721);
}

#[test]
fn a_resume_preference_yields_a_resume() {
    let preference = one_preference("meta-docs__user_preferences_resume");
    assert_eq!(preference.preference, PreferenceValue::Resume);
    assert_eq!(preference.wa_id, Some("16505551234"));
}

#[test]
fn a_quick_reply_tap_yields_its_payload_and_the_template_it_answers() {
    let message = one_message("meta-docs__inbound_button_quick_reply");
    assert_eq!(message.message_type, "button");
    assert_eq!(message.payload, Some("Unsubscribe"));
    assert_eq!(message.text, Some("Unsubscribe"));
    assert_eq!(message.replied_to, Some("wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="));
}

#[test]
fn an_inbound_text_yields_its_body() {
    let message = one_message("meta-docs__inbound_text");
    assert_eq!(message.message_type, "text");
    assert_eq!(message.text, Some("Does it come in another color?"));
    assert_eq!(message.from, Some("16505551234"));
    assert_eq!(message.timestamp.seconds(), 1_749_416_383);
    assert_eq!(message.replied_to, None);
}

#[test]
fn metas_failed_131049_example_is_a_per_user_cap() {
    let status = one_status("meta-docs__status_failed_131049");
    assert_eq!(status.status, StatusKind::Failed);
    assert_eq!(status.wamid, "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA");
    assert_eq!(status.recipient, Some("16505551234"));
    assert_eq!(status.errors.len(), 1);
    assert_eq!(classify(status.errors[0].code).class, FailureClass::PerUserCap);
    assert_eq!(
        status.errors[0].details,
        Some("In order to maintain a healthy ecosystem engagement, the message failed to be delivered.")
    );
}

#[test]
fn a_sent_marketing_status_keeps_its_pricing_category() {
    let status = one_status("meta-docs__status_sent_marketing_pmp");
    assert_eq!(status.status, StatusKind::Sent);
    assert_eq!(status.pricing_category, Some("marketing"));
    assert!(status.errors.is_empty());
}

#[test]
fn a_value_level_error_is_a_system_error_without_a_wamid() {
    match <[Event; 1]>::try_from(events_of("meta-docs__value_errors_130429")) {
        Ok([Event::Error(SystemErrorEvent { phone_number_id, error })]) => {
            assert_eq!(error.code, 130429);
            assert_eq!(phone_number_id, Some("106540352242922"));
            assert_eq!(classify(error.code).class, FailureClass::Transient);
        }
        other => panic!("expected one error, got {other:?}"),
    }
}

#[test]
fn an_interactive_button_reply_yields_its_id_and_title() {
    let message = one_message("pywa__callback_button__button");
    assert_eq!(message.message_type, "interactive");
    assert_eq!(message.payload, Some("callback_data"));
    assert_eq!(message.text, Some("title"));
    assert_eq!(message.replied_to, Some("wamid.xyzxyz"));
}

#[test]
fn a_pywa_quick_reply_yields_its_payload() {
    let message = one_message("pywa__callback_button__quick_reply");
    assert_eq!(message.message_type, "button");
    assert_eq!(message.payload, Some("callback_data"));
    assert_eq!(message.replied_to, Some("wamid.xyzxyz=="));
}

#[test]
fn a_quick_reply_without_context_has_no_replied_to() {
    let message = one_message("pywa__callback_button__quick_reply_without_context");
    assert_eq!(message.payload, Some("callback_data"));
    assert_eq!(message.replied_to, None);
    assert_eq!(message.from, Some("972987654321"));
}

#[test]
fn an_interactive_message_without_its_object_and_a_value_error_yield_both() {
    let batch = events_of("pywa__message__interactive_message_with_err");
    assert_eq!(batch.len(), 2);
    let Event::Message(message) = &batch[0] else { panic!("{:?}", batch[0]) };
    assert_eq!(message.message_type, "interactive");
    assert_eq!((message.text, message.payload), (None, None));
    let Event::Error(error) = &batch[1] else { panic!("{:?}", batch[1]) };
    assert_eq!(error.error.code, 131000);
    assert_eq!(error.error.details, Some("Unsupported webhook payload"));
}

#[test]
fn a_reply_text_names_the_message_it_answers() {
    let message = one_message("pywa__message__reply");
    assert_eq!(message.text, Some("replied text"));
    assert_eq!(message.replied_to, Some("wamid.xyzxyz=="));
}

#[test]
fn a_pywa_text_yields_its_body() {
    let message = one_message("pywa__message__text");
    assert_eq!(message.text, Some("Body Text"));
    assert_eq!(message.timestamp.seconds(), 1_697_043_223);
}

#[test]
fn an_unsupported_message_keeps_its_type_and_error() {
    let message = one_message("pywa__message__unsupported");
    assert_eq!(message.message_type, "unsupported");
    assert_eq!(message.errors[0].code, 131051);
    assert_eq!(message.errors[0].title, Some("Message type unknown"));
}

#[test]
fn a_java_api_button_message_yields_its_payload() {
    let message = one_message("whatsapp-business-java-api__buttonMessage");
    assert_eq!(message.message_type, "button");
    assert_eq!(message.payload, Some("SIM"));
    assert_eq!(message.from, Some("1111111111111"));
}

#[test]
fn a_deleted_message_arrives_as_unsupported_with_131051() {
    let message = one_message("whatsapp-business-java-api__messageDeleted");
    assert_eq!(message.message_type, "unsupported");
    assert_eq!(message.errors.iter().map(|e| e.code).collect::<Vec<_>>(), [131051]);
}

#[test]
fn a_java_api_text_yields_its_body() {
    let message = one_message("whatsapp-business-java-api__textMessage");
    assert_eq!(message.text, Some("hi everyone!"));
}

#[test]
fn a_conversation_based_pricing_delivered_status_parses() {
    let status = one_status("whatsapp-business-java-api__textMessageStatusDelivered");
    assert_eq!(status.status, StatusKind::Delivered);
    assert_eq!(status.pricing_category, Some("business_initiated"));
}

#[test]
fn a_conversation_based_pricing_sent_status_parses() {
    let status = one_status("whatsapp-business-java-api__textMessageStatusSent");
    assert_eq!(status.status, StatusKind::Sent);
    assert_eq!(status.timestamp.seconds(), 1_673_020_317);
    assert_eq!(status.recipient, Some("1111111111111"));
}

fn one_account(name: &str) -> AccountEvent<'static> {
    match <[Event; 1]>::try_from(events_of(name)) {
        Ok([Event::Account(report)]) => report,
        other => panic!("{name}: expected one messaging limit report, got {other:?}"),
    }
}

#[test]
fn a_business_capability_update_reports_the_portfolios_limit() {
    let report = one_account("meta-docs__business_capability_update");
    assert_eq!(report.limit, Some(MessagingLimit::Unique(2_000)));
    assert_eq!((report.field, report.waba_id, report.event), ("business_capability_update", "102290129340398", None));
    assert_eq!(report.at, chrono::DateTime::from_timestamp(1_767_225_600, 0));
}

#[test]
fn a_phone_number_quality_update_reports_a_limit_upgrade() {
    let report = one_account("meta-docs__phone_number_quality_update_upgrade");
    assert_eq!((report.event, report.limit), (Some("UPGRADE"), Some(MessagingLimit::Unique(2_000))));
}

#[test]
fn a_throughput_upgrade_reports_no_limit() {
    let report = one_account("meta-docs__phone_number_quality_update_throughput");
    assert_eq!((report.event, report.limit), (Some("THROUGHPUT_UPGRADE"), None));
}

#[test]
fn a_flag_reports_a_red_rating_and_its_lifting_a_green_one_for_the_display_number() {
    let flagged = one_account("composed__phone_number_quality_update_flagged");
    assert_eq!((flagged.rating, flagged.display_phone_number), (Some(QualityRating::Red), Some("15550783881")));
    assert_eq!(flagged.limit, Some(MessagingLimit::Unique(2_000)));
    let unflagged = one_account("composed__phone_number_quality_update_unflagged");
    assert_eq!(unflagged.rating, Some(QualityRating::Green));
    assert_eq!(one_account("meta-docs__phone_number_quality_update_upgrade").rating, None);
}

#[test]
fn a_template_pause_names_the_template_its_title_and_time_and_an_unpause_lifts() {
    let paused = match <[Event; 1]>::try_from(events_of("meta-docs__message_template_status_update_paused")) {
        Ok([Event::TemplateStatus(status)]) => status,
        other => panic!("expected a template status, got {other:?}"),
    };
    assert_eq!(
        (paused.name, paused.language, paused.event, paused.title),
        ("spring_sale", "en-US", "PAUSED", Some("FIRST_PAUSE"))
    );
    assert_eq!(paused.at, chrono::DateTime::from_timestamp(1_767_243_600, 0));
    let unpause = match <[Event; 1]>::try_from(events_of("composed__message_template_status_update_unpause")) {
        Ok([Event::TemplateStatus(status)]) => status,
        other => panic!("expected a template status, got {other:?}"),
    };
    assert_eq!(unpause.title, Some("UNPAUSE"));
}

#[test]
fn a_template_quality_update_names_the_new_and_the_previous_score() {
    match <[Event; 1]>::try_from(events_of("meta-docs__message_template_quality_update")) {
        Ok([Event::TemplateQuality(quality)]) => {
            assert_eq!((quality.name, quality.language), ("spring_sale", "en-US"));
            assert_eq!((quality.score, quality.previous), ("YELLOW", Some("GREEN")));
        }
        other => panic!("expected a template quality update, got {other:?}"),
    }
}
