//! `capguard demo` and `capguard lab`, run as a user runs them: the built binary, small.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

/// A small demo of 30 recipients (seed 5, no history) on a one-step ladder at two simulated hours
/// a second, with `extra` flags.
fn small_demo(extra: &[&str]) -> (bool, String, String) {
    let args = ["demo", "--recipients", "30", "--seed", "5", "--history", "none", "--retry-delays", "24h"];
    capguard(&[&args[..], &["--time-scale", "7200", "--timeout-secs", "300"], extra].concat())
}

fn capguard(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_capguard")).args(args).env("RUST_LOG", "error").output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

/// Issue 14: the demo with a messaging limit smaller than its campaign holds the rest for the
/// next day, and the sandbox (whose portfolio has the same limit) never refuses one.
#[test]
fn the_demo_with_a_messaging_limit_spreads_its_campaign_over_days() {
    let (ok, out, err) = small_demo(&["--messaging-limit", "20"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("messaging limit 20 unique users a day"), "{out}");
    // 30 recipients, 3 of them in the US (never sent marketing): 27 first attempts, 20 on the
    // first day, 7 held for the next.
    assert!(out.contains("suppressed: marketing_paused_region       3"), "{out}");
    let held = out.lines().find(|line| line.trim_start().starts_with("held for the messaging limit"));
    assert!(held.is_some_and(|line| line.ends_with(" 7")), "{out}");
    assert!(out.contains("in progress                              0"), "every send finished: {out}");
    assert!(!out.contains("131048"), "no send past the limit: {out}");
    assert!(out.contains("sandbox: at most 20 unique users in a moving 24 h"), "{out}");
}

/// Issue 14, item 6: `capguard demo --events health` plays the account's story through the
/// sandbox: the new template paced for its first hours, a RED rating that keeps the second day's
/// first attempts until GREEN, and a template pause that keeps the third day's until its unpause,
/// all under a messaging limit of a third of the campaign.
#[test]
fn the_demo_plays_the_account_health_story_and_capguard_keeps_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("health.redb");
    let data = data.to_str().unwrap();
    let (ok, out, err) = small_demo(&["--events", "health", "--data", data]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("messaging limit 10 unique users a day"), "{out}");
    let told = out.lines().filter(|line| line.trim_start().starts_with("account: +")).count();
    assert_eq!(told, 7, "each event told as it happens: {out}");
    // 27 first attempts (3 US recipients are never sent marketing): 10 a day, the first day's
    // paced.
    assert!(out.contains("sandbox: 7 account events played, 10 sends paced"), "{out}");
    assert!(out.contains("in progress                              0"), "every send finished: {out}");
    assert!(!out.contains("131048"), "no send past the limit: {out}");

    let (ok, csv, err) = capguard(&["report", "--campaign", "demo-5", "--data", data, "--csv"]);
    assert!(ok, "{csv}\n{err}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let times = reader.headers().unwrap().iter().position(|h| h == "attempt_times").expect("an attempt_times column");
    let firsts: Vec<chrono::DateTime<chrono::FixedOffset>> = reader
        .records()
        .map(|row| row.unwrap())
        .filter_map(|row| {
            row[times].split_whitespace().next().map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
        })
        .collect();
    assert_eq!(firsts.len(), 27, "{csv}");
    let start = *firsts.iter().min().unwrap();
    let mut hours: Vec<f64> = firsts.iter().map(|t| (*t - start).as_seconds_f64() / 3_600.0).collect();
    hours.sort_by(f64::total_cmp);
    let within = |from: f64, to: f64| hours.iter().filter(|h| (from..to).contains(*h)).count();
    // The hours count from the first send, a little after the sandbox's start that the events'
    // times count from (a busy machine's setup second is two simulated hours), so the windows
    // leave room. Retries count toward the limit too, so each later day has fewer places for
    // first attempts than the first; without the rating, the second day's would go at 25 h,
    // when the first day's places have run out.
    assert_eq!(within(0.0, 4.0), 10, "the first day's: {hours:?}");
    assert_eq!(within(4.0, 38.0), 0, "none while RED: {hours:?}");
    assert!(within(38.0, 50.0) > 0, "some as soon as GREEN: {hours:?}");
    // The template's pause holding its sends is tested through serve, where the hold's probe
    // interval can be set longer than the pause (tests/tests/e2e.rs).
}

/// Issue 14, item 1 in the demo: with an opt-in required, the recipients the campaign gives none
/// are refused up front as `no_opt_in`, the rest are sent, and the report names each source.
#[test]
fn the_demo_with_an_opt_in_required_refuses_those_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("consent.redb");
    let data = data.to_str().unwrap();
    let args = ["demo", "--recipients", "20", "--seed", "3", "--history", "none", "--require-opt-in", "50"];
    let (ok, out, err) =
        capguard(&[&args[..], &["--retry-delays", "24h", "--timeout-secs", "300", "--data", data]].concat());
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("opt-in required (50% gave one)"), "{out}");
    let (ok, csv, err) = capguard(&["report", "--campaign", "demo-3", "--data", data, "--csv"]);
    assert!(ok, "{csv}\n{err}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (source, reason) = (column("consent_source"), column("reason"));
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    let without = rows.iter().filter(|row| row[source].is_empty()).count();
    assert_eq!(without, 10, "half gave none (the demo spreads them by seed): {csv}");
    // Each recipient without one is refused for it, unless their region already refuses them;
    // none with one is.
    for row in &rows {
        let refused_for_it = &row[reason] == "no_opt_in";
        let region = &row[reason] == "marketing_paused_region";
        assert_eq!(refused_for_it, row[source].is_empty() && !region, "{row:?}");
    }
    let refused = rows.iter().filter(|row| &row[reason] == "no_opt_in").count();
    let line = format!("  {:<34}{refused:>8}", "suppressed: no_opt_in");
    assert!(out.contains(&line), "the funnel counts them: {line:?} in {out}");
}

#[test]
fn the_demo_plays_a_campaign_to_its_end_and_its_funnel_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.redb");
    let data = data.to_str().unwrap();
    let (ok, out, err) =
        capguard(&["demo", "--recipients", "40", "--seed", "11", "--cap-model", "strict", "--data", data]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.starts_with("capguard demo: 40 recipients, seed 11, cap model strict, ladder 48h,48h,48h,48h,48h,48h,48h"),
        "{out}"
    );
    assert!(out.contains("funnel of campaign demo-11"), "{out}");
    assert!(out.contains("in progress                              0"), "every send finished: {out}");
    assert!(out.contains("every recipient is counted once: 40 sends in 40 outcomes"), "{out}");
    // The week-old utility message of the demo's history was read by some: they are engaged now.
    assert!(out.contains("by tier") && out.contains("\n    engaged "), "{out}");

    // The campaign's report afterwards: each attempt's time in the CSV, and its recovery curve.
    let chart = dir.path().join("curve.svg");
    let (ok, csv, err) =
        capguard(&["report", "--campaign", "demo-11", "--data", data, "--csv", "--chart", chart.to_str().unwrap()]);
    assert!(ok, "{csv}\n{err}");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let times = reader.headers().unwrap().iter().position(|h| h == "attempt_times").expect("an attempt_times column");
    let tier = reader.headers().unwrap().iter().position(|h| h == "tier").expect("a tier column");
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), 40);
    assert!(rows.iter().any(|row| &row[tier] == "engaged") && rows.iter().any(|row| &row[tier] == "new"), "{csv}");
    let retried = rows.iter().filter(|row| row[times].split(' ').count() >= 2).count();
    assert!(retried > 0, "a strict model caps some, and their retries' times are listed: {csv}");
    for row in &rows {
        for time in row[times].split_whitespace() {
            assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time:?} in {row:?}");
        }
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("\ncapped\n") && svg.contains("\nrecovered\n"), "{svg}");

    // A reader that stops after the header: the report ends quietly, and succeeds.
    let mut report = Command::new(env!("CARGO_BIN_EXE_capguard"))
        .args(["report", "--campaign", "demo-11", "--data", data, "--csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut header = String::new();
    BufReader::new(report.stdout.take().unwrap()).read_line(&mut header).unwrap();
    assert!(header.starts_with("recipient,send_id,campaign,template"), "{header}");
    let output = report.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && err.is_empty(), "{:?}: {err}", output.status);

    // A recipient and their send, in words rather than JSON or Rust's debug text.
    let clock = shared::clock::ScaledClock::new(chrono::Utc::now(), 1.0);
    let config = sandbox::SandboxConfig::with_cap_model(11, clock, sandbox::CapModel::Strict);
    let first = &sandbox::Population::new(&config).campaign(40)[0].number;
    let (ok, text, err) = capguard(&["inspect", first, "--campaign", "demo-11", "--data", data]);
    assert!(ok, "{text}\n{err}");
    assert!(text.starts_with("recipient ") && text.contains("  last read ") && text.contains("\nsend "), "{text}");
    assert!(text.contains("  outcome: "), "{text}");
    assert!(!text.contains('{') && !text.contains("Succeeded"), "{text}");
    assert!(!text.contains(first.trim_start_matches('+')), "the number is masked: {text}");
}

/// A table out of reach is said in one line: what failed and why, not the SDK's debug dump.
#[test]
fn a_dynamodb_failure_is_one_readable_line() {
    let args = ["report", "--campaign", "c", "--dynamodb", "sends", "--region", "eu-west-1"];
    let (ok, out, err) = capguard(&[&args[..], &["--dynamodb-endpoint", "http://127.0.0.1:1"]].concat());
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("the store is unavailable: Query: ") && err.contains("Connection refused"), "{err}");
    assert!(!err.contains("DispatchFailure(") && !err.contains("IMDS"), "{err}");
}

/// A dry run checks the file and counts and prices the campaign, sending nothing (no serve runs).
#[test]
fn a_dry_run_counts_and_prices_the_campaign_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contacts.csv");
    std::fs::write(&file, "phone,body.1\n+44 7400 100127,Ann\n07400 100128,Bo\n+91 98123 45678,Asha\nnobody,Nil\n")
        .unwrap();
    let args = ["send", "--csv", file.to_str().unwrap(), "--template", "spring_sale", "--language", "en_US"];
    let more = ["--campaign", "dry", "--phone-number-id", "1", "--default-country", "GB", "--dry-run"];
    let (ok, out, err) = capguard(&[&args[..], &more[..]].concat());
    assert!(ok, "{out}{err}");
    assert!(out.contains("4 rows, 3 to send") && out.contains("  line 5: not sent: phone "), "{out}");
    assert!(out.contains("dry run: 3 marketing messages") && out.contains("by country: GB 2, IN 1"), "{out}");
    assert!(out.contains("AWS: about $0.0000"), "{out}");
}

/// serve takes the functions' settings as flags too, checked as the functions check them.
#[test]
fn serve_takes_the_functions_settings_as_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("serve.redb");
    let (ok, out, err) = capguard(&["serve", "--data", data.to_str().unwrap(), "--retry-delays", "48h,12h"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("RETRY_DELAYS") && err.contains("never shrink"), "{err}");
    let (ok, help, _) = capguard(&["serve", "--help"]);
    assert!(ok, "{help}");
    for flag in
        ["--retry-delays", "--quiet-hours", "--engaged-first", "--throughput-per-second", "--region", "--profile"]
    {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn a_missing_flag_is_named_and_the_usage_shown() {
    let (ok, out, err) = capguard(&["report", "--data", "nowhere.redb"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("--campaign <CAMPAIGN>") && err.contains("Usage: capguard report"), "{err}");
}

#[test]
fn the_lab_writes_its_rows_as_json_and_refuses_what_it_does_not_know() {
    let (ok, out, err) =
        capguard(&["lab", "--recipients", "20", "--strategies", "meta", "--cap-models", "loose", "--json", "-"]);
    assert!(ok, "{out}\n{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).expect("only the JSON on standard output");
    assert_eq!(rows[0]["strategy"], "meta");
    assert_eq!(rows[0]["cap_model"], "loose");
    assert_eq!(rows[0]["recipients"], 20);

    let (ok, _, err) = capguard(&["lab", "--strategies", "hourly"]);
    assert!(!ok && err.contains("unknown strategy \"hourly\""), "{err}");
    let (ok, _, err) = capguard(&["lab", "--cap-models", "lenient"]);
    assert!(!ok && err.contains("unknown cap model"), "{err}");
    let (ok, _, err) = capguard(&["lab", "--ladder", "fast=10m"]);
    assert!(!ok && err.contains("fast=10m"), "{err}");
}
