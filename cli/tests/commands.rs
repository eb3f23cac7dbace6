//! `capguard demo` and `capguard lab`, run as a user runs them: the built binary, small.

use std::process::Command;

fn capguard(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_capguard")).args(args).env("RUST_LOG", "error").output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
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
