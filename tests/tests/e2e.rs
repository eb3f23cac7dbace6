//! End to end over real HTTP on loopback: `capguard serve` as a child process, sending to a Cloud
//! API sandbox in this process that posts signed webhooks back to serve's `/webhook`. Scripted
//! recipients make every outcome exact; time runs a simulated day per wall second, so the whole
//! 12 h / 24 h / 48 h ladder plays out in seconds. The rig is in `capguard_tests::e2e`.

use capguard_tests::e2e::{Rig, Setup, request, status, timeless};
use sandbox::ScriptedOutcome::{Delivered, Failed, Hang, Read};
use sandbox::{Reply, Stats, TemplateStatus};
use serde_json::{Value, json};
use shared::config::{self, RETRY_DELAYS};
use shared::domain::rules::Category;
use shared::whatsapp::callback::CallbackTag;

const CAMPAIGN: &str = "spring";
const INDIA: &str = "+919876543210";

fn phase(send: &Value) -> &str {
    send["state"]["phase"]["phase"].as_str().unwrap_or_default()
}

fn attempts(send: &Value) -> &[Value] {
    send["attempts"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn error_codes(send: &Value) -> Vec<Option<i64>> {
    attempts(send).iter().map(|a| a["error"]["code"].as_i64()).collect()
}

fn is_delivered(send: &Value) -> bool {
    phase(send) == "succeeded"
}

fn is_waiting(send: &Value) -> bool {
    phase(send) == "waiting"
}

fn due(send: &Value) -> chrono::DateTime<chrono::Utc> {
    serde_json::from_value(send["timer"]["due"].clone()).unwrap_or_else(|e| panic!("no timer due: {e}: {send:#}"))
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("not a time: {e}: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_send_is_recovered_at_retry_2() {
    let rig = Setup::new().script(INDIA, [Failed(131049), Failed(131049), Delivered]).start().await;
    let (id, result) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    assert_eq!(result["outcome"], "accepted", "{result}");

    let send = rig.wait_for_send(&id, "delivery", is_delivered).await;
    assert_eq!(send["outcome"], json!({ "outcome": "delivered", "attempt": 3 }), "{send:#}");
    assert_eq!(error_codes(&send), [Some(131049), Some(131049), None], "{send:#}");
    assert_eq!(send["timer"], Value::Null);

    let report = rig.report(CAMPAIGN).await;
    assert_eq!(report["recovered_by_retry"], json!({ "2": 1 }), "{report:#}");
    assert_eq!((report["delivered"].as_u64(), report["capped"].as_u64()), (Some(1), Some(1)), "{report:#}");
    assert_eq!(rig.sandbox.stats().accepted, 3);

    // The operator's commands on the data file that serve holds open: serve answers them.
    let (ok, text, err) = rig.operator(&["inspect", &id]).await;
    assert!(ok && text.contains("outcome: recovered: delivered at retry 2"), "{text}{err}");
    let (ok, text, err) = rig.operator(&["inspect", INDIA, "--campaign", CAMPAIGN]).await;
    assert!(ok && text.starts_with("recipient 91******3210") && text.contains(&format!("send {id}")), "{text}{err}");
    let (ok, text, err) = rig.operator(&["report", "--campaign", CAMPAIGN]).await;
    assert!(ok && text.contains("recovered at retry 2"), "{text}{err}");
    let (ok, csv, err) = rig.operator(&["report", "--campaign", CAMPAIGN, "--csv"]).await;
    assert!(ok && csv.starts_with("recipient,send_id,") && csv.lines().count() == 2, "{csv}{err}");
    let (ok, _, err) = rig.operator(&["report", "--campaign", "no-such-campaign"]).await;
    assert!(!ok && err.contains("campaign \"no-such-campaign\" has no sends"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_capped_at_every_step_is_exhausted_after_retry_3() {
    let rig = Setup::new().script(INDIA, [Failed(131049)]).start().await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;

    let send = rig.wait_for_send(&id, "the send to end", |s| phase(s) == "final").await;
    assert_eq!(send["state"]["phase"]["reason"], "exhausted", "{send:#}");
    assert_eq!(send["outcome"]["outcome"], "exhausted");
    assert_eq!(error_codes(&send), [Some(131049); 4], "{send:#}");
    assert_eq!(send["timer"], Value::Null);

    let stats = rig.wait_for_stats("the last failure's webhook to be taken", |s| s.messages_in_flight == 0).await;
    assert_eq!((stats.accepted, stats.failures_posted.get(&131049).copied()), (4, Some(4)), "{stats:?}");
    let report = rig.report(CAMPAIGN).await;
    assert_eq!((report["exhausted"].as_u64(), report["capped"].as_u64()), (Some(1), Some(1)), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_send_to_a_us_number_is_refused_up_front() {
    let us = "+16505550123";
    let rig = Setup::new().start().await;
    let (id, result) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, us).await;
    assert_eq!(result["outcome"], "refused", "{result}");
    assert_eq!(result["reason"], "marketing_paused_region", "{result}");

    let send = rig.send(&id).await;
    assert_eq!(send["outcome"], json!({ "outcome": "suppressed", "reason": "marketing_paused_region" }));
    assert!(attempts(&send).is_empty(), "{send:#}");
    let stats = rig.sandbox.stats();
    assert_eq!((stats.accepted, stats.refused.len()), (0, 0), "the sandbox got no send: {stats:?}");
    let report = rig.report(CAMPAIGN).await;
    assert_eq!(report["suppressed"], json!({ "marketing_paused_region": 1 }), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_in_the_middle_of_the_ladder_cancels_the_pending_retry() {
    // A first step of three days (three wall seconds) leaves time to press Stop before it.
    let rig = Setup::new().script(INDIA, [Failed(131049), Delivered]).env(RETRY_DELAYS, "3d,6d,9d").start().await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    let waiting = rig.wait_for_send(&id, "the first cap", is_waiting).await;
    let retry_due = due(&waiting);

    rig.sandbox.press_stop(INDIA).await.expect("serve takes the Stop");
    // The webhook was answered 200, so its effects are durable now.
    let send = rig.send(&id).await;
    assert_eq!(send["outcome"]["outcome"], "opted_out", "{send:#}");
    assert_eq!(send["timer"], Value::Null, "{send:#}");
    let recipient = rig.recipient(INDIA).await;
    assert_eq!(recipient["opted_out"], true, "{recipient:#}");
    assert_eq!(recipient["waiting_sends"], json!([]), "{recipient:#}");

    rig.wait_for_time(retry_due + chrono::TimeDelta::hours(12)).await;
    let stats = rig.sandbox.stats();
    assert_eq!(stats.accepted, 1, "no send after the Stop: {stats:?}");
    let send = rig.send(&id).await;
    assert_eq!((phase(&send), attempts(&send).len()), ("final", 1), "{send:#}");
    assert_eq!(rig.report(CAMPAIGN).await["opted_out"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_fires_the_waiting_retry_at_once() {
    // A first step of 30 days (30 wall seconds): the retry cannot come by itself in this test.
    let rig = Setup::new().script(INDIA, [Failed(131049), Delivered]).env(RETRY_DELAYS, "30d,60d,90d").start().await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    let waiting = rig.wait_for_send(&id, "the first cap", is_waiting).await;
    let retry_due = due(&waiting);

    let replied_at = rig.now();
    rig.sandbox.reply(INDIA, Reply::Text("Is this still available?".into())).await.expect("serve takes the reply");
    let send = rig.wait_for_send(&id, "delivery after the reply", is_delivered).await;
    assert_eq!(send["outcome"], json!({ "outcome": "delivered", "attempt": 2 }), "{send:#}");
    let claimed_at = time(&attempts(&send)[1]["claimed_at"]);
    assert!(claimed_at >= replied_at - chrono::TimeDelta::minutes(1), "{claimed_at} vs reply {replied_at}");
    assert!(
        claimed_at < replied_at + chrono::TimeDelta::days(3),
        "the retry went {claimed_at}, after the reply {replied_at}"
    );
    assert!(claimed_at < retry_due - chrono::TimeDelta::days(20), "not the 30-day timer: {claimed_at} vs {retry_due}");

    let recipient = rig.recipient(INDIA).await;
    assert_eq!(recipient["window_open"], true, "{recipient:#}");
    assert_eq!(rig.sandbox.stats().accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_reordered_webhooks_change_nothing() {
    let rig = Setup::new().script(INDIA, [Read]).start().await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    let before = rig
        .wait_for_send(&id, "the read", |s| s["state"]["phase"] == json!({ "phase": "succeeded", "delivery": "read" }))
        .await;
    let recipient_before = rig.recipient(INDIA).await;
    let report_before = rig.report(CAMPAIGN).await;
    let attempt = &attempts(&before)[0];
    let wamid = attempt["wamid"].as_str().expect("a wamid");
    let wa_id = &INDIA[1..];

    // The sandbox's own `sent`, byte for byte in content: same time, same callback tag.
    let tag = CallbackTag { send_id: id.clone(), attempt: 1, try_no: 1 }.to_string();
    let mut sent = status(wamid, "sent", time(&attempt["sent_at"]), wa_id);
    sent["biz_opaque_callback_data"] = json!(tag);
    let now = rig.now();
    let failed = json!({
        "id": wamid, "status": "failed", "timestamp": now.timestamp().to_string(), "recipient_id": wa_id,
        "errors": [{ "code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement." }],
    });
    let replays = [
        vec![status(wamid, "read", now, wa_id)],
        vec![status(wamid, "delivered", now, wa_id)],
        vec![status(wamid, "read", now, wa_id)],
        vec![sent.clone()],
        vec![status(wamid, "read", now, wa_id), status(wamid, "delivered", now, wa_id), sent],
        vec![failed],
    ];
    for statuses in &replays {
        let answer = rig.post_webhook(&rig.status_webhook(statuses)).await;
        assert_eq!(answer, 200, "{statuses:?}");
    }

    let after = rig.send(&id).await;
    for field in ["state", "attempts", "outcome", "timer"] {
        assert_eq!(after[field], before[field], "{field} changed");
    }
    let recipient_after = rig.recipient(INDIA).await;
    for field in ["opted_out", "marketing_deliveries", "consecutive_caps", "waiting_sends"] {
        assert_eq!(recipient_after[field], recipient_before[field], "the recipient's {field} changed");
    }
    assert_eq!(rig.report(CAMPAIGN).await, report_before);
    assert_eq!(rig.sandbox.stats().accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_ladder_and_restarted_loses_nothing_and_fires_the_due_retry() {
    // A first step of three days (three wall seconds) leaves time to kill serve before it.
    let mut rig = Setup::new().script(INDIA, [Failed(131049), Delivered]).env(RETRY_DELAYS, "3d,6d,9d").start().await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    let waiting = rig.wait_for_send(&id, "the first cap", is_waiting).await;
    let retry_due = due(&waiting);
    // The retry waits once serve has answered the failure's webhook: its timer is durable then.
    // (Killed before that answer, serve would count on the webhook's redelivery instead.)
    rig.wait_for_stats("the failure's webhook to be taken", |s| s.failures_posted.get(&131049) == Some(&1)).await;

    rig.kill_serve();
    assert_eq!(rig.sandbox.stats().accepted, 1, "the retry went before the kill; the test needs a longer step");
    // The retry falls due while serve is down.
    rig.wait_for_time(retry_due + chrono::TimeDelta::hours(6)).await;
    assert_eq!(rig.sandbox.stats().accepted, 1);

    rig.restart_serve().await;
    let send = rig.wait_for_send(&id, "delivery after the restart", is_delivered).await;
    assert_eq!(send["outcome"], json!({ "outcome": "delivered", "attempt": 2 }), "{send:#}");
    assert_eq!(attempts(&send)[0], attempts(&waiting)[0], "attempt 1's history changed");
    assert_eq!(error_codes(&send), [Some(131049), None]);
    assert!(time(&attempts(&send)[1]["claimed_at"]) >= retry_due, "{send:#}");
    assert_eq!(rig.sandbox.stats().accepted, 2, "exactly one retry");
    assert_eq!(rig.report(CAMPAIGN).await["recovered_by_retry"], json!({ "1": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utility_send_that_is_capped_is_never_laddered() {
    let rig = Setup::new().script(INDIA, [Failed(131049), Delivered]).start().await;
    let (id, _) = rig.send_one(CAMPAIGN, "order_update", Category::Utility, INDIA).await;

    let send = rig.wait_for_send(&id, "the send to end", |s| phase(s) == "final").await;
    assert_eq!(send["state"]["phase"]["reason"], "not_marketing", "{send:#}");
    assert_eq!(error_codes(&send), [Some(131049)], "{send:#}");
    assert_eq!(send["timer"], Value::Null, "{send:#}");
    assert_eq!(rig.recipient(INDIA).await["waiting_sends"], json!([]));

    // Past where the ladder's first step would have been: still one send.
    rig.wait_for_time(time(&attempts(&send)[0]["failed_at"]) + chrono::TimeDelta::hours(13)).await;
    assert_eq!(rig.sandbox.stats().accepted, 1);
    assert_eq!(rig.send(&id).await["attempts"], send["attempts"]);
}

/// One campaign of scripted recipients and a US number, and the funnel it must end with.
fn scripted_campaign(setup: Setup) -> (Setup, Vec<&'static str>) {
    let setup = setup
        .script("+919800000001", [Read])
        .script("+919800000002", [Failed(131049), Delivered])
        .script("+919800000003", [Failed(131049), Failed(131049), Failed(131049), Delivered])
        .script("+919800000004", [Failed(131049)])
        .script("+919800000005", [Failed(131026)])
        .script("+919800000006", [Failed(131050)]);
    let numbers = vec![
        "+919800000001",
        "+919800000002",
        "+919800000003",
        "+919800000004",
        "+919800000005",
        "+919800000006",
        "+16505550123",
    ];
    (setup, numbers)
}

/// Runs the scripted campaign to its end; returns the funnel and, serve stopped, the CSV rows.
async fn run_scripted_campaign(setup: Setup) -> (Value, Vec<String>) {
    let (setup, numbers) = scripted_campaign(setup);
    let mut rig: Rig = setup.start().await;
    let request = request(rig.phone_number_id(), CAMPAIGN, "spring_sale", Category::Marketing, &numbers);
    let results = rig.dispatch(&request).await;
    assert_eq!(results.len(), numbers.len(), "{results:#?}");
    let expected = json!({
        "sends": 7, "accepted": 6, "delivered": 3, "read": 1, "capped": 3, "held_for_limit": 0,
        "recovered_by_retry": { "1": 1, "3": 1 },
        "exhausted": 1, "opted_out": 1,
        "suppressed": { "marketing_paused_region": 1 },
        "failed_by_code": { "131026": 1 },
        "paced": 0,
        "in_progress": 0,
        // Recipients the store had never seen; the US number's region refused it before its
        // record mattered, so it has no tier.
        "by_tier": { "new": { "sends": 6, "delivered": 3, "read": 1, "capped": 3, "recovered": 2, "exhausted": 1 } },
    });
    let funnel = rig.wait_for_report(CAMPAIGN, "the campaign's funnel", |funnel| *funnel == expected).await;
    rig.kill_serve();
    (funnel, rig.report_csv(CAMPAIGN).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_adapter_gives_the_same_report_as_the_embedded_store() {
    let endpoint = capguard_tests::dynamo::dynamodb_endpoint();
    let table = capguard_tests::dynamo::fresh_dynamo_store().await.table().to_owned();
    let (embedded, dynamo) = tokio::join!(
        run_scripted_campaign(Setup::new()),
        run_scripted_campaign(Setup::new().dynamodb(table, endpoint)),
    );
    assert_eq!(dynamo.0, embedded.0, "the funnels differ");
    assert_eq!(timeless(&dynamo.1), timeless(&embedded.1), "the CSV rows differ");
    assert_eq!(embedded.1.len(), 7, "{:#?}", embedded.1);
}

// Liveness over real HTTP: what issue 8 found stranding sends, each with serve and the sandbox as
// separate servers.

/// A request's send id, as serve derives it: from the business number, the request's
/// idempotency key (`request` uses `<campaign>-request-1`) and the recipient's digits.
fn send_id_of(rig: &Rig, campaign: &str, to: &str) -> String {
    shared::store::SendId::derive(rig.phone_number_id(), &format!("{campaign}-request-1"), &to[1..]).to_string()
}

fn minutes(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::minutes(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_dispatch_and_repeats_gets_every_recipient_sent_once() {
    const RECIPIENTS: usize = shared::budget::SYNC_RECIPIENTS;
    let numbers: Vec<String> = (0..RECIPIENTS).map(|i| format!("+919820{i:06}")).collect();
    let setup = numbers
        .iter()
        // serve paces its calls in its clock's seconds: one a simulated second, with a minute
        // passing each wall second, spreads the 100 calls over more than a wall second.
        .fold(Setup::new().time_scale(60.0).throughput(1), |setup, number| setup.script(number, [Delivered]));
    let rig = setup.start().await;
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let request = request(rig.phone_number_id(), CAMPAIGN, "spring_sale", Category::Marketing, &numbers);

    let gave_up = rig.dispatch_and_hang_up(&request, std::time::Duration::from_millis(300)).await;
    assert!(gave_up, "serve answered 100 recipients paced over 1.7 s within 0.3 s");
    let by_then = rig.sandbox.stats().accepted;
    assert!(by_then < RECIPIENTS as u64, "{by_then} sent before the hang-up");

    let results = rig.dispatch(&request).await;
    assert_eq!(results.len(), RECIPIENTS);
    for result in &results {
        assert!(matches!(result["outcome"].as_str(), Some("accepted" | "duplicate")), "{result}");
    }
    let funnel = rig.wait_for_report(CAMPAIGN, "every recipient delivered", |f| f["delivered"] == RECIPIENTS).await;
    assert_eq!(funnel["in_progress"], 0, "{funnel:#}");
    let stats = rig.wait_for_stats("the last webhooks", |s| s.messages_in_flight == 0).await;
    assert_eq!(stats.accepted, RECIPIENTS as u64, "every recipient sent exactly once: {stats:?}");
}

/// A campaign over the synchronous limit is accepted at once (202) and sent from the queue in
/// chunks, each recipient exactly once: 10,000 recipients, ten chunks, in real time. The debug
/// build's embedded store sends about 80 a second on this machine, so the sending gets minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_is_answered_at_once_and_every_recipient_sent_once() {
    const RECIPIENTS: usize = 10_000;
    const SENDING: std::time::Duration = std::time::Duration::from_secs(600);
    let numbers: Vec<String> = (0..RECIPIENTS).map(|i| format!("+919830{i:06}")).collect();
    let setup = numbers
        .iter()
        .fold(Setup::new().time_scale(1.0).throughput(1_000), |setup, number| setup.script(number, [Delivered]));
    let rig = setup.start().await;
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let request = request(rig.phone_number_id(), "big", "spring_sale", Category::Marketing, &numbers);

    let (answer, took) = rig.dispatch_queued(&request).await;
    assert!(took < std::time::Duration::from_secs(1), "answered in {took:?}");
    assert_eq!((&answer["recipients"], &answer["chunks"]), (&json!(RECIPIENTS), &json!(10)), "{answer}");
    let sent = |s: &Stats| s.accepted >= RECIPIENTS as u64;
    let stats = rig.wait_within(SENDING, "every recipient sent", async || rig.sandbox.stats(), sent).await;
    assert_eq!(stats.accepted, RECIPIENTS as u64, "{stats:?}");
    assert_eq!(stats.refused, Default::default(), "{stats:?}");
    let funnel = rig.wait_for_report("big", "every send recorded", |f| f["accepted"] == RECIPIENTS).await;
    assert_eq!(funnel["sends"], RECIPIENTS, "{funnel:#}");
    // The same request again queues again, and sends nothing twice.
    let drained = |queue: &serde_json::Value| queue["chunks"] == 0;
    rig.wait_until("the queue to drain", async || rig.get("/queue").await, drained).await;
    let (answer, _) = rig.dispatch_queued(&request).await;
    assert_eq!(answer["chunks"], 10, "{answer}");
    rig.wait_within(SENDING, "the repeat to be dispatched", async || rig.get("/queue").await, drained).await;
    assert_eq!(rig.sandbox.stats().accepted, RECIPIENTS as u64, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_during_a_call_that_never_answers_settles_it_as_outcome_unknown_after_restart() {
    // An hour a second: the 15-minute outcome wait is a quarter of a wall second.
    let mut rig = Setup::new().time_scale(3_600.0).script(INDIA, [Hang]).start().await;
    let request = request(rig.phone_number_id(), CAMPAIGN, "spring_sale", Category::Marketing, &[INDIA]);
    // The request waits for the call, which never ends: the client gives up first.
    rig.dispatch_and_hang_up(&request, std::time::Duration::from_millis(300)).await;
    rig.wait_for_stats("the call to reach the sandbox", |s| s.hung == 1).await;

    rig.kill_serve();
    rig.restart_serve().await;
    let back = rig.now();
    let id = send_id_of(&rig, CAMPAIGN, INDIA);
    let send = rig.wait_for_send(&id, "the send to be settled", |s| phase(s) == "final").await;
    assert_eq!(send["state"]["phase"]["reason"], "outcome_unknown", "{send:#}");
    let attempt = &attempts(&send)[0];
    let (claimed, settled) = (time(&attempt["claimed_at"]), time(&attempt["failed_at"]));
    // The claim's wait (15 min), the sweep's grace and interval (5 min each), and slack.
    let by = std::cmp::max(claimed + minutes(15), back) + minutes(15);
    assert!(settled <= by, "settled at {settled}, later than {by}");
    let stats = rig.sandbox.stats();
    assert_eq!((stats.hung, stats.accepted), (1, 0), "the slot is not sent again: {stats:?}");
    assert_eq!(rig.report(CAMPAIGN).await["failed_by_code"], json!({ "outcome_unknown": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_send_whose_retry_timer_was_never_created_is_retried_on_time_by_the_sweep() {
    // Every timer creation fails: the failure is stored (and the webhook answered 200, the due
    // time being the truth), its timer never is. At 600× the 15 minutes of slack below are 1.5 s
    // of wall time, which a loaded machine's scheduling does not eat up (at 3,600× it once did).
    let rig = Setup::new()
        .time_scale(600.0)
        .script(INDIA, [Failed(131049), Delivered])
        .env(RETRY_DELAYS, "1h,2h,4h")
        .fail_timers(1_000)
        .start()
        .await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    let waiting = rig.wait_for_send(&id, "the cap to be stored", is_waiting).await;
    let due = due(&waiting);
    let send = rig.wait_for_send(&id, "delivery of the retry", is_delivered).await;
    assert_eq!(send["outcome"], json!({ "outcome": "delivered", "attempt": 2 }), "{send:#}");
    let retried = time(&attempts(&send)[1]["claimed_at"]);
    // The sweep's grace and interval (5 min each), and slack.
    assert!(retried >= due && retried <= due + minutes(15), "retried at {retried}, due {due}");
    assert_eq!(rig.sandbox.stats().accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_failures_for_wamids_nobody_linked_are_answered_at_once() {
    let rig = Setup::new().start().await;
    let now = rig.now();
    let failures: Vec<Value> = (0..100)
        .map(|i| {
            let mut failed = status(&format!("wamid.another-app-{i}"), "failed", now, "919800000100");
            failed["errors"] = json!([{ "code": 131049, "title": "not delivered" }]);
            failed
        })
        .collect();
    let body = rig.status_webhook(&failures);
    let (answer, took) = rig.post_webhook_timed(&body).await;
    println!("100 failures for unknown wamids: answered {answer} in {} ms", took.as_millis());
    assert_eq!(answer, 200);
    assert!(took < std::time::Duration::from_secs(3), "answered in {took:?}: no waiting for links");
    assert_eq!(rig.post_webhook(&body).await, 200, "and again, when Meta delivers it twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_of_two_and_a_half_megabytes_is_taken() {
    let rig = Setup::new().script(INDIA, [Read]).start().await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    let read = rig.wait_for_send(&id, "the read", |s| s["state"]["phase"]["delivery"] == "read").await;
    let wamid = attempts(&read)[0]["wamid"].as_str().expect("a wamid").to_owned();
    // Meta adds fields without notice; a batch of its statuses can reach 3 MB.
    let padding = "x".repeat(25_000);
    let statuses: Vec<Value> = (0..100)
        .map(|_| {
            let mut item = status(&wamid, "read", rig.now(), &INDIA[1..]);
            item["conversation_note"] = json!(padding);
            item
        })
        .collect();
    let body = rig.status_webhook(&statuses);
    assert!(body.len() > 2_500_000, "{} bytes", body.len());
    assert_eq!(rig.post_webhook(&body).await, 200);
    assert_eq!(rig.send(&id).await["state"], read["state"], "duplicates change nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_under_a_wa_id_other_than_the_number_sent_to_ends_the_waiting_retry() {
    // Meta knows this Brazilian mobile without its ninth digit.
    const BRAZIL: &str = "+5511987654321";
    const WA_ID: &str = "551187654321";
    let rig = Setup::new()
        .script(BRAZIL, [Failed(131049), Delivered])
        .alias(BRAZIL, WA_ID)
        .env(RETRY_DELAYS, "3d,6d,9d")
        .start()
        .await;
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, BRAZIL).await;
    let waiting = rig.wait_for_send(&id, "the first cap", is_waiting).await;

    rig.sandbox.press_stop(WA_ID).await.expect("serve takes the Stop");
    let send = rig.send(&id).await;
    assert_eq!(send["outcome"]["outcome"], "opted_out", "{send:#}");
    assert_eq!(rig.recipient(BRAZIL).await["opted_out"], true);
    rig.wait_for_time(due(&waiting) + chrono::TimeDelta::hours(12)).await;
    assert_eq!(rig.sandbox.stats().accepted, 1, "no marketing after the stop");
    let again = request(rig.phone_number_id(), "later", "spring_sale", Category::Marketing, &[BRAZIL]);
    let result = rig.dispatch(&again).await.remove(0);
    assert_eq!((&result["outcome"], &result["reason"]), (&json!("refused"), &json!("opted_out")), "{result}");
}

/// Issue 13: a 500-row contacts file (numbers written three ways, a parameter per row, two rows
/// that cannot be sent) through `capguard send` to serve and the sandbox: the bad rows are
/// reported by line before anything is sent, the rest sent once; the same file again sends
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_file_is_sent_once_and_the_same_file_again_sends_nothing() {
    let rig = Setup::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contacts.csv");
    let mut rows = vec!["phone,body.1,notes".to_owned()];
    for i in 0..498 {
        let number = format!("9830{i:06}");
        let written = match i % 3 {
            0 => format!("+91 {} {}", &number[..5], &number[5..]),
            1 => format!("0{number}"),
            _ => format!("+91-{number}"),
        };
        rows.push(format!("{written},friend {i},"));
        if i == 99 {
            rows.push("12345,someone,too short".to_owned());
        }
        if i == 199 {
            rows.push("+919831000000,,no name".to_owned());
        }
    }
    std::fs::write(&file, rows.join("\n") + "\n").unwrap();
    let send = || {
        let mut command = std::process::Command::new(capguard_tests::e2e::capguard_binary());
        command.args(["send", "--csv", file.to_str().unwrap(), "--template", "spring_sale", "--language", "en_US"]);
        command.args(["--campaign", "contacts", "--default-country", "IN", "--phone-number-id", rig.phone_number_id()]);
        command.args(["--serve", rig.serve_url()]);
        async move {
            let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
            let stdout = String::from_utf8(output.stdout).unwrap();
            assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
            stdout
        }
    };

    let first = send().await;
    assert!(first.contains(": 500 rows, 498 to send"), "{first}");
    assert!(first.contains("  line 102: not sent: phone "), "{first}");
    assert!(first.contains("  line 203: not sent: empty: body.1"), "{first}");
    assert!(first.contains("columns not sent (not the number or a template parameter): notes"), "{first}");
    assert!(first.contains("sent 498 rows: "), "{first}");
    assert!(
        first.contains("campaign contacts:") && first.contains("sends recorded                         498"),
        "{first}"
    );
    assert_eq!(rig.report("contacts").await["sends"], 498);

    // Every row's send is named by the campaign and its number: none is recorded or sent again.
    // A row whose send has a retry falling due just then (days pass in seconds here) is driven on
    // by the rerun, as any path that touches a send does: that retry goes out once, answered
    // `accepted`; every other row is a duplicate.
    let again = send().await;
    let line = again.lines().find(|line| line.starts_with("sent 498 rows: ")).unwrap_or_else(|| panic!("{again}"));
    let answered: u64 = line["sent 498 rows: ".len()..]
        .split(", ")
        .map(|part| match part.split_once(' ') {
            Some((n, "duplicate" | "accepted")) => n.parse::<u64>().unwrap(),
            _ => panic!("only duplicates and due retries on a rerun: {line}"),
        })
        .sum();
    assert_eq!(answered, 498, "{line}");
    assert_eq!(rig.report("contacts").await["sends"], 498);
}

/// Issue 14, consent: with `REQUIRE_OPT_IN` on, a contacts file's rows without an opt-in are refused
/// up front and the rest sent; an opt-in recorded with `capguard consent` while serve runs lets
/// the next campaign reach its recipient; `inspect` shows the history and the report's CSV the
/// source each send went out under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_opt_in_required_only_recipients_with_consent_are_sent_to() {
    let numbers = (1..=6).map(|n| format!("+91983000000{n}"));
    let setup = numbers.fold(Setup::new(), |setup, number| setup.script(&number, [Delivered]));
    let rig = setup.env(config::REQUIRE_OPT_IN, "on").start().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: &[&str]| {
        let file = dir.path().join(name);
        std::fs::write(&file, rows.join("\n") + "\n").unwrap();
        file
    };
    let send = |file: std::path::PathBuf, campaign: &'static str| {
        let mut command = std::process::Command::new(capguard_tests::e2e::capguard_binary());
        command.args(["send", "--csv", file.to_str().unwrap(), "--template", "spring_sale", "--language", "en_US"]);
        command.args(["--campaign", campaign, "--phone-number-id", rig.phone_number_id(), "--serve", rig.serve_url()]);
        async move {
            let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
            let stdout = String::from_utf8(output.stdout).unwrap();
            assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
            stdout
        }
    };
    let contacts = write(
        "contacts.csv",
        &[
            "phone,opt_in_source,opt_in_at,opt_in_note",
            "+91 98300 00001,website_form,2026-03-01T09:30:00Z,newsletter box v2",
            "+91 98300 00002,,,",
            "+91 98300 00003,qr_code,,",
            "+91 98300 00004,,,",
            "+91 98300 00005,checkout,,",
            "+91 98300 00006,,,",
        ],
    );
    let first = send(contacts, "consent-1").await;
    assert!(first.contains("sent 6 rows: "), "{first}");
    let funnel = rig
        .wait_for_report("consent-1", "the three with an opt-in delivered", |f| f["delivered"].as_u64() >= Some(3))
        .await;
    assert_eq!((funnel["sends"].as_u64(), funnel["accepted"].as_u64()), (Some(6), Some(3)), "{funnel:#}");
    assert_eq!(funnel["suppressed"]["no_opt_in"], 3, "{funnel:#}");
    assert_eq!(rig.sandbox.stats().accepted, 3, "nothing reached the Cloud API for the three without one");
    let rows = rig.report_csv("consent-1").await;
    let column = shared::report::CSV_COLUMNS.iter().position(|c| *c == "consent_source").unwrap();
    let mut sources: Vec<String> = rows.iter().map(|row| row.split(',').nth(column).unwrap().to_owned()).collect();
    sources.sort();
    assert_eq!(sources, ["", "", "", "checkout", "qr_code", "website_form"]);

    // An opt-in recorded while serve holds the store, then the next campaign reaches them.
    let (ok, stdout, stderr) = rig
        .operator(&["consent", "add", "+91 98300 00002", "--source", "support_chat", "--note", "asked in chat"])
        .await;
    assert!(ok && stdout.contains("recorded: ") && !stdout.contains("9830000002"), "{stdout}{stderr}");
    let (ok, stdout, _) = rig.operator(&["consent", "add", "+91 98300 00002", "--source", "Support Chat"]).await;
    assert!(!ok, "a bad source is refused: {stdout}");
    let again = write("again.csv", &["phone", "+91 98300 00002", "+91 98300 00004"]);
    let second = send(again, "consent-2").await;
    assert!(second.contains("sent 2 rows: "), "{second}");
    let funnel = rig.wait_for_report("consent-2", "the one now opted in delivered", |f| f["delivered"] == 1).await;
    assert_eq!(funnel["suppressed"]["no_opt_in"], 1, "{funnel:#}");

    let (ok, text, stderr) = rig.operator(&["inspect", "+91 98300 00001"]).await;
    assert!(ok, "{stderr}");
    assert!(text.contains("consent: opted in 2026-03-01T09:30:00Z from website_form (newsletter box v2)"), "{text}");
    let (ok, text, stderr) = rig.operator(&["consent", "show", "+919830000002", "--json"]).await;
    assert!(ok, "{stderr}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["consent"][0]["source"], "support_chat", "{shown:#}");
    assert_eq!(shown["consent"][0]["note"], "asked in chat", "{shown:#}");
}

/// Each send's first attempt time, as the report's CSV gives them, in order.
async fn first_attempts(rig: &Rig, campaign: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    let column = shared::report::CSV_COLUMNS.iter().position(|c| *c == "attempt_times").unwrap();
    let mut times: Vec<_> = rig
        .report_csv(campaign)
        .await
        .iter()
        .filter_map(|row| row.split(',').nth(column)?.split(' ').next().filter(|t| !t.is_empty()).map(str::to_owned))
        .map(|t| chrono::DateTime::parse_from_rfc3339(&t).unwrap().to_utc())
        .collect();
    times.sort();
    times
}

/// Issue 14, item 2: a campaign four times the portfolio's messaging limit goes out a limit's worth
/// a day, as a moving 24 h allows, and the sandbox (which refuses users past the limit) never has
/// to refuse one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_of_1000_on_a_250_limit_goes_out_250_a_day_without_a_limit_error() {
    const RECIPIENTS: usize = 1_000;
    const LIMIT: usize = 250;
    let numbers: Vec<String> = (0..RECIPIENTS).map(|i| format!("+919840{i:06}")).collect();
    // A simulated day is 24 s of wall time: the first day's 250 have room to go out in it, and a
    // simulated hour (capguard's margin over Meta's 24 h) is a second, more than a send takes
    // from its count to the sandbox's on a busy machine.
    let setup = Setup::new().time_scale(3_600.0).throughput(1_000).messaging_limit(LIMIT as u32);
    let rig = numbers.iter().fold(setup, |setup, number| setup.script(number, [Delivered])).start().await;
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let request = request(rig.phone_number_id(), "tier", "spring_sale", Category::Marketing, &numbers);
    rig.dispatch_queued(&request).await;

    let all = |f: &Value| f["delivered"] == RECIPIENTS;
    let funnel = rig
        .wait_within(
            std::time::Duration::from_secs(400),
            "every send delivered",
            async || rig.report("tier").await,
            all,
        )
        .await;
    assert_eq!(funnel["held_for_limit"], RECIPIENTS - LIMIT, "{funnel:#}");
    let stats = rig.sandbox.stats();
    // A day's held sends wake together: a few meet the throughput limit, and go again at once.
    assert!(stats.refused.keys().all(|code| *code == 130429), "no limit error: {stats:?}");
    assert_eq!(stats.messaging_limit_peak, LIMIT as u64, "{stats:?}");

    let times = first_attempts(&rig, "tier").await;
    assert_eq!(times.len(), RECIPIENTS);
    let day = chrono::TimeDelta::hours(24);
    let first_day = times.iter().filter(|t| **t < times[0] + day).count();
    assert_eq!(first_day, LIMIT, "the first simulated day sends the limit's worth");
    for (earlier, later) in times.iter().zip(&times[LIMIT..]) {
        assert!(*later - *earlier >= day, "more than {LIMIT} in the 24 h from {earlier}: {later}");
    }
    assert!(
        times[RECIPIENTS - 1] - times[0] >= day * 3,
        "spread over four days: {} to {}",
        times[0],
        times[RECIPIENTS - 1]
    );
}

/// Issue 14, item 2: the limit Meta reports in a `business_capability_update` replaces the
/// configured one, and holds what the new limit has no room for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_limit_reported_by_meta_holds_what_it_has_no_room_for() {
    let numbers: Vec<String> = (1..=5).map(|n| format!("+91985000000{n}")).collect();
    // A simulated hour (capguard's margin over Meta's 24 h) is a second of wall time: more than a
    // send takes from its count to the sandbox's on a busy machine.
    let setup = Setup::new().time_scale(3_600.0).env(config::MESSAGING_LIMIT, "10k");
    let rig = numbers.iter().fold(setup, |setup, number| setup.script(number, [Delivered])).start().await;
    rig.sandbox.change_messaging_limit(Some(3)).await.unwrap();
    let (ok, shown, stderr) = rig.operator(&["limit"]).await;
    assert!(ok, "{stderr}");
    assert!(shown.contains("3 unique users a day, reported by Meta"), "{shown}");

    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let request = request(rig.phone_number_id(), "lowered", "spring_sale", Category::Marketing, &numbers);
    let results = rig.dispatch(&request).await;
    let outcomes: Vec<&str> = results.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "held").count(), 2, "{results:?}");
    let all = |f: &Value| f["delivered"] == 5;
    let what = "every send delivered, the two a day later";
    let funnel =
        rig.wait_within(std::time::Duration::from_secs(120), what, async || rig.report("lowered").await, all).await;
    assert_eq!(funnel["held_for_limit"], 2, "{funnel:#}");
    let times = first_attempts(&rig, "lowered").await;
    assert!(times[3] - times[0] >= chrono::TimeDelta::hours(24), "{times:?}");
    assert_eq!(rig.sandbox.stats().refused, Default::default());
}

/// Issue 14, item 4: a RED rating (Meta's `FLAGGED`) pauses the number's marketing first
/// attempts while utility goes on, and GREEN (`UNFLAGGED`) lets them go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_rating_pauses_marketing_first_attempts_and_green_resumes_them() {
    let numbers = ["+919860000001", "+919860000002", "+919860000003", "+919860000004"];
    let rig = numbers.iter().fold(Setup::new(), |setup, number| setup.script(number, [Delivered])).start().await;
    // A first send, whose statuses tell capguard which number the display number is.
    let (_, first) = rig.send_one("rated-0", "spring_sale", Category::Marketing, numbers[0]).await;
    assert_eq!(first["outcome"], "accepted", "{first}");
    rig.wait_for_stats("its statuses posted", |s| s.statuses_posted.get("delivered") == Some(&1)).await;

    rig.sandbox.flag_quality(true).await.unwrap();
    let request = request(rig.phone_number_id(), "rated", "spring_sale", Category::Marketing, &numbers[1..3]);
    let results = rig.dispatch(&request).await;
    assert!(results.iter().all(|r| r["outcome"] == "held"), "{results:?}");
    let (_, utility) = rig.send_one("rated-u", "order_update", Category::Utility, numbers[3]).await;
    assert_eq!(utility["outcome"], "accepted", "utility is never paused: {utility}");
    // A simulated day (a second of wall time) of looking again changes nothing while RED.
    rig.wait_for_time(rig.now() + chrono::TimeDelta::days(1)).await;
    assert_eq!(rig.sandbox.stats().accepted, 2, "only the first send and the utility one");
    let funnel = rig.report("rated").await;
    assert_eq!(funnel["in_progress"], 2, "{funnel:#}");
    let (ok, shown, stderr) = rig.operator(&["limit"]).await;
    assert!(ok, "{stderr}");
    assert!(shown.contains("rated RED"), "{shown}");

    rig.sandbox.flag_quality(false).await.unwrap();
    let funnel = rig.wait_for_report("rated", "both delivered once GREEN", |f| f["delivered"] == 2).await;
    assert_eq!(funnel["sends"], 2, "{funnel:#}");
    let (_, shown, _) = rig.operator(&["limit", "--json"]).await;
    let view: Value = serde_json::from_str(&shown).unwrap();
    let history: Vec<&str> =
        view["numbers"][0]["history"].as_array().unwrap().iter().map(|r| r["rating"].as_str().unwrap()).collect();
    assert_eq!(history, ["RED", "GREEN"], "{view:#}");
}

/// Issue 14, item 5: a template Meta pauses holds its sends from the moment its webhook comes (none
/// is sent into the pause), and its unpause lets them go; the template's history is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_template_holds_its_sends_and_its_unpause_lets_them_go() {
    let numbers = ["+919870000001", "+919870000002", "+919870000003"];
    // The hold's probe comes every six simulated hours, six seconds of wall time: no held send
    // goes out as a probe before the test has looked, however busy the machine.
    let setup = Setup::new().time_scale(3_600.0).env(config::HOLD_PROBE_EVERY, "6h");
    let rig = numbers.iter().fold(setup, |setup, number| setup.script(number, [Delivered])).start().await;
    let (_, first) = rig.send_one("paused-0", "spring_sale", Category::Marketing, numbers[0]).await;
    assert_eq!(first["outcome"], "accepted", "{first}");
    rig.wait_for_stats("its statuses posted", |s| s.statuses_posted.get("delivered") == Some(&1)).await;

    rig.sandbox.change_template_status("spring_sale", "en_US", TemplateStatus::Paused).await.unwrap();
    let request = request(rig.phone_number_id(), "paused", "spring_sale", Category::Marketing, &numbers[1..]);
    let results = rig.dispatch(&request).await;
    assert!(results.iter().all(|r| r["outcome"] == "held"), "{results:?}");
    let holds = rig.get("/holds").await;
    assert_eq!(holds[0]["template"], "spring_sale", "{holds:#}");
    assert_eq!(holds[0]["code"], 132015, "{holds:#}");
    rig.sandbox.change_template_quality("spring_sale", "en_US", "RED").await.unwrap();

    rig.sandbox.change_template_status("spring_sale", "en_US", TemplateStatus::Unpaused).await.unwrap();
    // They go at their next look, within the probe interval.
    let both = |f: &Value| f["delivered"] == 2;
    let what = "both delivered after the unpause";
    let funnel =
        rig.wait_within(std::time::Duration::from_secs(60), what, async || rig.report("paused").await, both).await;
    assert_eq!(funnel["sends"], 2, "{funnel:#}");
    let stats = rig.sandbox.stats();
    assert_eq!(stats.refused, Default::default(), "no send met the pause: {stats:?}");
    let (ok, shown, stderr) = rig.operator(&["limit", "--json"]).await;
    assert!(ok, "{stderr}");
    let view: Value = serde_json::from_str(&shown).unwrap();
    let template = &view["templates"][0];
    assert_eq!((&template["name"], &template["quality"]["value"]), (&json!("spring_sale"), &json!("RED")), "{view:#}");
    let statuses: Vec<&str> = template["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["field"] == "status")
        .map(|r| r["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["FIRST_PAUSE", "UNPAUSE"], "{view:#}");
}

/// Issue 14, item 5: the sends of a template Meta paces (answered `held_for_quality_assessment`)
/// are reported as paced, not in progress, until Meta lets them out; then as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_templates_sends_are_reported_paced_until_meta_lets_them_out() {
    let numbers = ["+919880000001", "+919880000002"];
    let rig = numbers.iter().fold(Setup::new(), |setup, number| setup.script(number, [Delivered])).start().await;
    // Two simulated days of holding are two seconds of wall time.
    rig.sandbox.pace_template("spring_sale", Some(chrono::TimeDelta::days(2))).await.unwrap();
    let request = request(rig.phone_number_id(), "paced", "spring_sale", Category::Marketing, &numbers);
    let results = rig.dispatch(&request).await;
    assert!(results.iter().all(|r| r["outcome"] == "accepted"), "{results:?}");
    let funnel = rig.report("paced").await;
    assert_eq!((funnel["paced"].as_u64(), funnel["in_progress"].as_u64()), (Some(2), Some(0)), "{funnel:#}");
    let rows = rig.report_csv("paced").await;
    let state = shared::report::CSV_COLUMNS.iter().position(|c| *c == "state").unwrap();
    assert!(rows.iter().all(|row| row.split(',').nth(state) == Some("paced")), "{rows:?}");

    let funnel = rig.wait_for_report("paced", "both delivered once let out", |f| f["delivered"] == 2).await;
    assert_eq!(funnel["paced"], 0, "{funnel:#}");
}

/// Issue 13: `capguard send --queue` puts a contacts file on a deployed stack's send queue (moto's
/// SQS here) in the chunks send-dispatch takes, every row normalised and with its parameter, under
/// the campaign's idempotency key.
#[tokio::test]
async fn a_contacts_file_goes_onto_the_send_queue_in_chunks() {
    let (_, sqs, url) = capguard_tests::moto::fresh_queue("contacts").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contacts.csv");
    let rows: Vec<String> = (0..1_500).map(|i| format!("0983{i:07},friend {i}")).collect();
    std::fs::write(&file, format!("phone,body.1\n{}\n", rows.join("\n"))).unwrap();
    let output = std::process::Command::new(capguard_tests::e2e::capguard_binary())
        .args(["send", "--csv", file.to_str().unwrap(), "--template", "spring_sale", "--language", "en_US"])
        .args(["--campaign", "queued", "--default-country", "IN", "--phone-number-id", "106540352242922"])
        .args(["--queue", &url, "--sqs-endpoint", &capguard_tests::moto::moto_endpoint()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("queued 1500 recipients in 2 chunks"), "{stdout}");
    let mut chunks: Vec<shared::usecase::dispatch::DispatchRequest> = capguard_tests::moto::drain(&sqs, &url)
        .await
        .iter()
        .map(|body| serde_json::from_str(body).expect("a send request"))
        .collect();
    chunks.sort_by_key(|chunk| chunk.recipients.len());
    assert_eq!(chunks.iter().map(|c| c.recipients.len()).collect::<Vec<_>>(), [500, 1_000]);
    assert!(chunks.iter().all(|c| c.idempotency_key == "csv:queued" && c.campaign.as_deref() == Some("queued")));
    let first = chunks.iter().flat_map(|c| &c.recipients).find(|r| r.to == "+919830000000").expect("row 1");
    assert_eq!(first.components[0].parameters[0].text.as_deref(), Some("friend 0"));
}

/// The secret the SigV4 test's credentials and its stand-in share.
const SIGV4_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Whether `headers` carry a SigV4 signature of `body`, POSTed to `path` on `host`, by
/// `AKIDEXAMPLE` with [`SIGV4_SECRET`]: the request is signed again with the AWS signing library
/// at the time and over the headers it names, and the two signatures compared.
fn signed_by_the_test_key(headers: &axum::http::HeaderMap, path: &str, body: &[u8]) -> bool {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let authorization = header("authorization");
    let field = |name: &str| {
        authorization.split([' ', ',']).find_map(|part| part.strip_prefix(name)).unwrap_or_default().to_owned()
    };
    let scope: Vec<String> = field("Credential=").split('/').map(str::to_owned).collect();
    let Ok(at) = chrono::NaiveDateTime::parse_from_str(&header("x-amz-date"), "%Y%m%dT%H%M%SZ") else {
        return false;
    };
    if scope.len() != 5 || scope[0] != "AKIDEXAMPLE" || scope[2] != "eu-west-1" || scope[3] != "execute-api" {
        return false;
    }
    let signed_headers = field("SignedHeaders=");
    let resent: Vec<(String, String)> = signed_headers
        .split(';')
        .filter(|name| !matches!(*name, "x-amz-date" | "x-amz-security-token"))
        .map(|name| (name.to_owned(), header(name)))
        .collect();
    let identity =
        aws_credential_types::Credentials::new("AKIDEXAMPLE", SIGV4_SECRET, None, None, "the stand-in").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&scope[2])
        .name("execute-api")
        .time(at.and_utc().into())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{}{path}", header("host"));
    let signable = SignableRequest::new(
        "POST",
        &url,
        resent.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.headers().any(|(name, value)| name == "authorization" && value == authorization)
}

/// Issue 13: `capguard send --api` signs each request to a deployed stack's HTTP API with SigV4
/// from the standard credential chain; a stand-in checks each signature with the AWS signing
/// library, and refuses a request signed with another secret, which `capguard send` reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_file_goes_to_the_http_api_signed_with_sigv4() {
    use std::sync::{Arc, Mutex};
    let verified: Arc<Mutex<Vec<(bool, usize)>>> = Arc::default();
    let seen = Arc::clone(&verified);
    let app = axum::Router::new().route(
        "/prod/sends",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let request: shared::usecase::dispatch::DispatchRequest = serde_json::from_slice(&body).unwrap();
                let good = signed_by_the_test_key(&headers, "/prod/sends", &body);
                seen.lock().unwrap().push((good, request.recipients.len()));
                if !good {
                    return (axum::http::StatusCode::FORBIDDEN, axum::Json(json!({ "message": "Forbidden" })));
                }
                let results: Vec<Value> = request.recipients.iter().map(|_| json!({ "outcome": "accepted" })).collect();
                (axum::http::StatusCode::OK, axum::Json(json!({ "results": results })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/prod/sends", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contacts.csv");
    let rows: Vec<String> = (0..250).map(|i| format!("+91 9830{i:06},friend {i}")).collect();
    std::fs::write(&file, format!("phone,body.1\n{}\n", rows.join("\n"))).unwrap();
    let send = |secret: &str| {
        let mut command = std::process::Command::new(capguard_tests::e2e::capguard_binary());
        command.args(["send", "--csv", file.to_str().unwrap(), "--template", "spring_sale", "--language", "en_US"]);
        command.args(["--campaign", "signed", "--phone-number-id", "106540352242922", "--api", &api]);
        command.args(["--region", "eu-west-1"]);
        command.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE").env("AWS_SECRET_ACCESS_KEY", secret);
        command.env("AWS_EC2_METADATA_DISABLED", "true").env_remove("AWS_PROFILE").env_remove("AWS_SESSION_TOKEN");
        command.output().unwrap()
    };

    let output = send(SIGV4_SECRET);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("sent 250 rows: 250 accepted"), "{stdout}");
    assert_eq!(*verified.lock().unwrap(), [(true, 100), (true, 100), (true, 50)]);

    let output = send("not-the-secret");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("answered 403 Forbidden"), "{stderr}");
    assert_eq!(verified.lock().unwrap().last(), Some(&(false, 100)));
}

/// Your own receiver, as a business runs one: it checks each post's signature with the
/// forwarding secret and keeps the bodies it took.
#[derive(Default)]
struct Receiver {
    taken: std::sync::Mutex<Vec<Vec<u8>>>,
    badly_signed: std::sync::atomic::AtomicUsize,
}

const FORWARD_SECRET: &str = "the-business-forwarding-secret";

async fn receive(
    axum::extract::State(receiver): axum::extract::State<std::sync::Arc<Receiver>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use shared::whatsapp::signature::{AppSecret, SIGNATURE_HEADER, verify};
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let delivery = headers.get(shared::forward::DELIVERY_HEADER).and_then(|v| v.to_str().ok());
    if verify(&AppSecret::new(FORWARD_SECRET), signature, &body).is_err()
        || delivery != Some(shared::forward::delivery_id(&body).as_str())
    {
        receiver.badly_signed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    receiver.taken.lock().unwrap().push(body.to_vec());
    axum::http::StatusCode::OK
}

/// Starts the receiver on `listener`.
fn start_receiver(listener: tokio::net::TcpListener) -> std::sync::Arc<Receiver> {
    let receiver = std::sync::Arc::new(Receiver::default());
    let app = axum::Router::new().route("/inbox", axum::routing::post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    receiver
}

/// Webhook bodies as Meta writes them, escapes and all: the bytes must arrive as they are.
fn meta_bodies(rig: &Rig) -> Vec<Vec<u8>> {
    let phone = rig.phone_number_id();
    (0..5)
        .map(|n| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"{phone}"}},"contacts":[{{"profile":{{"name":"Caf\u00e9 {n}"}},"wa_id":"9198765432{n:02}"}}],"messages":[{{"from":"9198765432{n:02}","id":"wamid.inbox{n}","timestamp":"1767225600","type":"text","text":{{"body":"Is it still on? https:\/\/example.com\/{n}"}}}}]}},"field":"messages"}}]}}]}}"#
            )
            .into_bytes()
        })
        .collect()
}

/// Coexistence: serve posts every verified webhook body, byte for byte, to the business's own
/// receiver, signed with the forwarding secret; while the receiver is down the bodies wait in the
/// data file, and once it is back every one arrives. A body with a wrong signature goes nowhere.
/// The campaign's outcomes are written as JSON lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_bodies_reach_the_businesss_receiver_byte_for_byte_after_it_was_down_and_outcomes_are_written() {
    // The receiver's address, with nothing listening on it yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let events = tempfile::NamedTempFile::new().unwrap();
    let rig = Setup::new()
        .script(INDIA, [Failed(131049), Delivered])
        .arg("--forward-url", format!("http://{address}/inbox"))
        .arg("--forward-secret", FORWARD_SECRET)
        .arg("--events", events.path().to_str().unwrap())
        .start()
        .await;

    let bodies = meta_bodies(&rig);
    for body in &bodies {
        assert_eq!(rig.post_webhook(body).await, 200, "taken while the receiver is down");
    }
    let forged = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let url = format!("{}/webhook", rig.serve_url());
    let refused = reqwest::Client::new()
        .post(&url)
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body(forged.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let (id, _) = rig.send_one(CAMPAIGN, "spring_sale", Category::Marketing, INDIA).await;
    rig.wait_for_send(&id, "the recovery", is_delivered).await;
    let stats = rig.wait_for_stats("every status to be posted", |s| s.messages_in_flight == 0).await;

    let listener = tokio::net::TcpListener::bind(address).await.expect("the receiver's port is free again");
    let receiver = start_receiver(listener);
    // The sandbox posted the cap, the retry's sent and delivered statuses, and the first send's
    // sent; each of its bodies is one post.
    let expected = bodies.len() + stats.webhook_posts as usize;
    let taken = rig
        .wait_within(
            std::time::Duration::from_secs(60),
            "every body to reach the receiver",
            async || receiver.taken.lock().unwrap().clone(),
            |taken| taken.len() >= expected,
        )
        .await;
    assert_eq!(receiver.badly_signed.load(std::sync::atomic::Ordering::SeqCst), 0, "every post is signed");
    for body in &bodies {
        assert_eq!(taken.iter().filter(|t| *t == body).count(), 1, "{}", String::from_utf8_lossy(body));
    }
    assert!(!taken.iter().any(|t| t == forged), "a body whose signature failed is not forwarded");
    assert_eq!(taken.len(), expected, "each verified body once");

    let written = rig
        .wait_until(
            "the outcome events",
            async || std::fs::read_to_string(events.path()).unwrap(),
            |text| text.contains("send_recovered"),
        )
        .await;
    let kinds: Vec<(String, String)> = written
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("one JSON event per line");
            assert_eq!(event["source"], "capguard");
            (event["detail-type"].as_str().unwrap().to_owned(), event["detail"]["send_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let of_send = |kind: &str| (kind.to_owned(), id.clone());
    assert_eq!(kinds, [of_send("Send Capped"), of_send("Retry Planned"), of_send("Send Recovered")]);
}

/// Coexistence through a queue: every verified body, byte for byte, on the business's SQS queue
/// (moto's), one message each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_bodies_go_onto_the_businesss_queue_byte_for_byte() {
    let (_, sqs, queue_url) = capguard_tests::moto::fresh_queue("forward").await;
    let endpoint = capguard_tests::moto::moto_endpoint();
    let rig = Setup::new()
        .arg("--forward-queue", queue_url.clone())
        .env("AWS_ENDPOINT_URL_SQS", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .start()
        .await;
    let bodies = meta_bodies(&rig);
    for body in &bodies {
        assert_eq!(rig.post_webhook(body).await, 200);
    }
    let queued = rig
        .wait_within(
            std::time::Duration::from_secs(30),
            "every body on the queue",
            async || capguard_tests::moto::drain(&sqs, &queue_url).await,
            |queued| !queued.is_empty(),
        )
        .await;
    let mut queued: Vec<Vec<u8>> = queued.into_iter().map(String::into_bytes).collect();
    queued.extend(capguard_tests::moto::drain(&sqs, &queue_url).await.into_iter().map(String::into_bytes));
    let (mut queued, mut sent) = (queued, bodies.clone());
    queued.sort();
    sent.sort();
    assert_eq!(queued, sent, "each body once, byte for byte");
}
