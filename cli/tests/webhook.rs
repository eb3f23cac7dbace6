//! `capguard webhook`, run as a user runs it: the built binary, a body on stdin, JSON lines out.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use capguard_tests::{webhook_fixture, webhook_fixture_names};
use serde_json::Value;
use shared::whatsapp::signature::{AppSecret, sign};

fn capguard(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capguard"));
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for name in
        ["WHATSAPP_APP_SECRET", "RETRY_DELAYS", "RETRY_MIN_STEP", "MARKETING_PAUSED_REGIONS", "OPT_OUT_KEYWORDS"]
    {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("capguard starts");
    // capguard may refuse its options before it reads stdin; a closed pipe is fine then.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn lines(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "exit {:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line on stderr: {stderr:?}");
    stderr
}

/// (fixture, the (kind, action) of each event in order).
const EXPECTED: &[(&str, &[(&str, &str)])] = &[
    (
        "composed__batch_two_wabas_mixed",
        &[("status", "retry_ladder"), ("status", "record"), ("message", "open_window"), ("status", "record")],
    ),
    ("composed__message_template_status_update_unpause", &[("template_status", "lift_template_hold")]),
    ("composed__phone_number_quality_update_flagged", &[("account", "pause_marketing")]),
    ("composed__phone_number_quality_update_unflagged", &[("account", "resume_marketing")]),
    ("composed__status_delivered_with_callback_data", &[("status", "record")]),
    ("composed__user_preferences_stop", &[("preference", "suppress_recipient")]),
    ("meta-docs__business_capability_update", &[("account", "set_messaging_limit")]),
    ("meta-docs__inbound_button_quick_reply", &[("message", "suppress_recipient")]),
    ("meta-docs__inbound_text", &[("message", "open_window")]),
    ("meta-docs__message_template_quality_update", &[("template_quality", "rate_template")]),
    ("meta-docs__message_template_status_update_paused", &[("template_status", "hold_template")]),
    ("meta-docs__phone_number_quality_update_throughput", &[("account", "record")]),
    ("meta-docs__phone_number_quality_update_upgrade", &[("account", "set_messaging_limit")]),
    ("meta-docs__status_failed_131049", &[("status", "final")]),
    ("meta-docs__status_sent_marketing_pmp", &[("status", "record")]),
    ("meta-docs__user_preferences_resume", &[("preference", "resume_recipient")]),
    ("meta-docs__value_errors_130429", &[("error", "record")]),
    ("pywa__callback_button__button", &[("message", "open_window")]),
    ("pywa__callback_button__quick_reply", &[("message", "open_window")]),
    ("pywa__callback_button__quick_reply_without_context", &[("message", "open_window")]),
    ("pywa__message__interactive_message_with_err", &[("message", "open_window"), ("error", "record")]),
    ("pywa__message__reply", &[("message", "open_window")]),
    ("pywa__message__text", &[("message", "open_window")]),
    ("pywa__message__unsupported", &[("message", "open_window")]),
    ("whatsapp-business-java-api__buttonMessage", &[("message", "open_window")]),
    ("whatsapp-business-java-api__messageDeleted", &[("message", "open_window")]),
    ("whatsapp-business-java-api__textMessage", &[("message", "open_window")]),
    ("whatsapp-business-java-api__textMessageStatusDelivered", &[("status", "record")]),
    ("whatsapp-business-java-api__textMessageStatusSent", &[("status", "record")]),
];

const REQUIRED_KEYS: &[&str] = &["kind", "phone_number_id", "wamid", "recipient", "status", "code", "class", "action"];

#[test]
fn every_fixture_prints_one_line_per_event_with_the_expected_action() {
    let names: Vec<&str> = EXPECTED.iter().map(|(name, _)| *name).collect();
    assert_eq!(webhook_fixture_names(), names, "every fixture has its expectation here");
    for (name, expected) in EXPECTED {
        let printed = lines(&capguard(&["webhook"], &webhook_fixture(name), &[]));
        let got: Vec<(&str, &str)> =
            printed.iter().map(|l| (l["kind"].as_str().unwrap(), l["action"].as_str().unwrap())).collect();
        assert_eq!(&got, expected, "{name}");
        for line in &printed {
            for key in REQUIRED_KEYS {
                assert!(line.get(key).is_some(), "{name}: {key} missing from {line}");
            }
        }
    }
}

#[test]
fn a_capped_us_send_is_final_with_its_reason() {
    let printed = lines(&capguard(&["webhook"], &webhook_fixture("meta-docs__status_failed_131049"), &[]));
    assert_eq!(printed[0]["class"], "per_user_cap");
    assert_eq!(printed[0]["code"], 131049);
    assert_eq!(printed[0]["reason"], "marketing_paused_region");
    assert_eq!(printed[0]["recipient"], "16505551234");
}

#[test]
fn the_paused_regions_are_configurable() {
    let body = webhook_fixture("meta-docs__status_failed_131049");
    let printed = lines(&capguard(&["webhook", "--paused-regions", ""], &body, &[]));
    assert_eq!(printed[0]["action"], "retry_ladder");
    let printed = lines(&capguard(&["webhook"], &body, &[("MARKETING_PAUSED_REGIONS", "")]));
    assert_eq!(printed[0]["action"], "retry_ladder");
}

#[test]
fn missing_values_are_null() {
    let printed = lines(&capguard(&["webhook"], &webhook_fixture("meta-docs__value_errors_130429"), &[]));
    let line = &printed[0];
    assert_eq!((&line["wamid"], &line["recipient"], &line["status"]), (&Value::Null, &Value::Null, &Value::Null));
    assert_eq!((&line["code"], &line["class"]), (&Value::from(130429), &Value::from("transient")));
}

fn failed_status_with_tag(recipient: &str, attempt: u32) -> Vec<u8> {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{
        "metadata":{{"phone_number_id":"106540352242922"}},"statuses":[{{"id":"wamid.T{attempt}","status":"failed",
        "timestamp":"1751142888","recipient_id":"{recipient}","biz_opaque_callback_data":"send=01JTEST;attempt={attempt}",
        "errors":[{{"code":131049,"title":"capped"}}]}}]}}}}]}}]}}"#
    )
    .into_bytes()
}

#[test]
fn capguards_callback_tag_gives_the_next_attempt_and_its_time() {
    let printed = lines(&capguard(&["webhook"], &failed_status_with_tag("919812345678", 2), &[]));
    assert_eq!(printed[0]["send_id"], "01JTEST");
    assert_eq!(printed[0]["attempt"], 2);
    assert_eq!(printed[0]["action"], "retry_ladder");
    assert_eq!(printed[0]["next_attempt"], 3);
    assert_eq!(printed[0]["retry_at"], "2025-06-30T20:34:48+00:00", "the default's 48 h after 1751142888");
}

#[test]
fn the_last_attempt_on_the_ladder_is_exhausted() {
    let printed = lines(&capguard(&["webhook"], &failed_status_with_tag("919812345678", 8), &[]));
    assert_eq!((&printed[0]["action"], &printed[0]["reason"]), (&Value::from("final"), &Value::from("exhausted")));
    let printed = lines(&capguard(&["webhook"], &failed_status_with_tag("919812345678", 7), &[]));
    assert_eq!(printed[0]["next_attempt"], 8, "the default's seventh retry is its last");
    let printed = lines(&capguard(
        &["webhook", "--retry-delays", "24h,48h,96h,192h"],
        &failed_status_with_tag("919812345678", 4),
        &[],
    ));
    assert_eq!(printed[0]["retry_at"], "2025-07-06T20:34:48+00:00", "the fourth step is 192 h");
}

#[test]
fn a_daily_ladder_retries_a_day_after_each_cap_and_a_step_under_the_minimum_is_refused() {
    let daily = ["webhook", "--retry-delays", "24h,24h,24h,24h,24h,24h"];
    let printed = lines(&capguard(&daily, &failed_status_with_tag("919812345678", 4), &[]));
    assert_eq!(printed[0]["next_attempt"], 5);
    assert_eq!(printed[0]["retry_at"], "2025-06-29T20:34:48+00:00", "24 h after 1751142888, at the fourth step too");
    let stderr = refused(&capguard(&["webhook", "--retry-delays", "30m,24h"], b"{}", &[]));
    assert!(stderr.contains("30m is shorter than the shortest step allowed, 1h"), "{stderr}");
    let quick = lines(&capguard(
        &["webhook", "--retry-delays", "30m,24h"],
        &failed_status_with_tag("919812345678", 1),
        &[("RETRY_MIN_STEP", "30m")],
    ));
    assert_eq!(quick[0]["retry_at"], "2025-06-28T21:04:48+00:00", "30 min after 1751142888");
}

const NON_ASCII_BODY: &[u8] = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"9"},"contacts":[{"profile":{"name":"Jos\u00e9 M\u00fcller"},"wa_id":"447400123456"}],"messages":[{"from":"447400123456","id":"wamid.U1","timestamp":"1749416383","type":"text","text":{"body":"caf\u00e9 \/ r\u00e9sum\u00e9 \ud83d\ude00 — déjà"}}]}}]}]}"#.as_bytes();

#[test]
fn a_signed_body_with_escapes_and_non_ascii_text_verifies() {
    let signature = sign(&AppSecret::new("s3cret"), NON_ASCII_BODY);
    let printed =
        lines(&capguard(&["webhook", "--app-secret", "s3cret", "--signature", &signature], NON_ASCII_BODY, &[]));
    assert_eq!(printed[0]["text"], "café / résumé 😀 — déjà");
}

#[test]
fn the_secret_can_come_from_the_environment() {
    let signature = sign(&AppSecret::new("s3cret"), NON_ASCII_BODY);
    let env = [("WHATSAPP_APP_SECRET", "s3cret")];
    assert_eq!(lines(&capguard(&["webhook", "--signature", &signature], NON_ASCII_BODY, &env)).len(), 1);
    let stderr = refused(&capguard(&["webhook"], NON_ASCII_BODY, &env));
    assert!(stderr.contains("--signature is required"), "{stderr}");
}

#[test]
fn a_wrong_signature_is_refused_and_nothing_is_printed() {
    let signature = sign(&AppSecret::new("another"), NON_ASCII_BODY);
    let stderr =
        refused(&capguard(&["webhook", "--app-secret", "s3cret", "--signature", &signature], NON_ASCII_BODY, &[]));
    assert!(stderr.contains("does not match"), "{stderr}");
    let stderr =
        refused(&capguard(&["webhook", "--app-secret", "s3cret", "--signature", "sha1=abc"], NON_ASCII_BODY, &[]));
    assert!(stderr.contains("sha256="), "{stderr}");
}

#[test]
fn a_base64_body_is_decoded_before_it_is_verified() {
    let body = webhook_fixture("meta-docs__inbound_text");
    let signature = sign(&AppSecret::new("s3cret"), &body);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
    let args = ["webhook", "--base64", "--app-secret", "s3cret", "--signature", &signature];
    assert_eq!(lines(&capguard(&args, encoded.as_bytes(), &[]))[0]["action"], "open_window");
    refused(&capguard(&args[..1].iter().chain(&args[2..]).copied().collect::<Vec<_>>(), encoded.as_bytes(), &[]));
}

#[test]
fn a_body_that_is_not_a_webhook_is_refused_in_one_line() {
    let stderr = refused(&capguard(&["webhook"], b"hello", &[]));
    assert!(stderr.contains("not JSON"), "{stderr}");
    let stderr = refused(&capguard(&["webhook"], br#"{"object":"page","entry":[]}"#, &[]));
    assert!(stderr.contains("\"page\""), "{stderr}");
}

#[test]
fn bad_options_are_refused_with_what_is_wrong() {
    // clap's whole message: the option, then the usage.
    let output = capguard(&["webhook", "--no-such-option"], b"{}", &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("error: unexpected argument '--no-such-option'"), "{stderr}");
    assert!(stderr.contains("Usage: capguard webhook"), "{stderr}");
    // capguard's own refusals: one line.
    let stderr = refused(&capguard(&["webhook", "--retry-delays", "48h,12h"], b"{}", &[]));
    assert!(stderr.contains("RETRY_DELAYS") && stderr.contains("never shrink"), "{stderr}");
}

#[test]
fn help_explains_the_output() {
    let output = capguard(&["webhook", "--help"], b"", &[]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in ["retry_ladder", "marketing_paused_region", "--app-secret", "--signature", "exit", "per_user_cap"] {
        assert!(help.to_lowercase().contains(&word.to_lowercase()), "--help lacks {word}:\n{help}");
    }
}
