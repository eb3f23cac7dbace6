//! What an operator sees of a send or a recipient: JSON for the local stack's views and
//! `capguard inspect --json`, text for `capguard inspect`. Numbers are masked.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::domain::classes::classify;
use shared::domain::rules::window_open;
use shared::privacy::mask_number;
use shared::report::outcome;
use shared::schedule::RetryJob;
use shared::store::{Listings, RecipientRecord, SendRecord, StoreError, WaitingSend};

/// Every send of a campaign, page by page.
pub async fn campaign_sends<S: Listings>(store: &S, campaign: &str) -> Result<Vec<SendRecord>, StoreError> {
    let mut sends = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.campaign_sends(campaign, token.as_deref(), 100).await?;
        sends.extend(page.items);
        match page.next {
            Some(next) => token = Some(next),
            None => return Ok(sends),
        }
    }
}

/// A send's whole history.
pub fn send(send: &SendRecord) -> Value {
    let timer = match send.life.phase {
        shared::domain::lifecycle::Phase::Waiting { due } => {
            Some(json!({ "schedule": RetryJob::new(send.id.clone(), send.life.slot).schedule_name(), "due": due }))
        }
        _ => None,
    };
    json!({
        "send_id": send.id,
        "recipient": mask_number(&send.recipient),
        "phone_number_id": send.phone_number_id,
        "template": { "name": send.template.name, "language": send.template.language },
        "category": send.category,
        "campaign": send.campaign,
        "created_at": send.created_at,
        "updated_at": send.updated_at,
        "expires_at": send.expires_at,
        "state": send.life,
        "outcome": outcome(send),
        "timer": timer,
        "attempts": send.attempts.iter().map(|a| json!({
            "attempt": a.slot.attempt,
            "try": a.slot.try_no,
            "claimed_at": a.claimed_at,
            "wamid": a.wamid,
            "accepted_at": a.accepted_at,
            "sent_at": a.sent_at,
            "delivered_at": a.delivered_at,
            "read_at": a.read_at,
            "failed_at": a.failed_at,
            "error": a.error.as_ref().map(|e| json!({ "code": e.code, "title": e.title, "class": classify(e.code).class })),
        })).collect::<Vec<_>>(),
    })
}

/// A recipient's state: opt-out, window, recent marketing, waiting retries.
pub fn recipient(recipient: &RecipientRecord, waiting: &[WaitingSend], now: DateTime<Utc>) -> Value {
    json!({
        "recipient": mask_number(&recipient.recipient),
        "opted_out": recipient.opted_out,
        "opt_changed_at": recipient.opt_changed_at,
        "last_inbound_at": recipient.last_inbound_at,
        "window_open": window_open(recipient.last_inbound_at, now),
        "marketing_deliveries": recipient.marketing_deliveries,
        "consecutive_caps": recipient.consecutive_caps,
        "waiting_sends": waiting.iter().map(|w| json!({
            "send_id": w.send_id, "attempt": w.slot.attempt, "try": w.slot.try_no,
            "schedule": RetryJob::new(w.send_id.clone(), w.slot).schedule_name(),
        })).collect::<Vec<_>>(),
    })
}

/// A send's history as lines of text.
pub fn send_text(send: &SendRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "send {}  to {}  template {} ({}, {})",
        send.id,
        mask_number(&send.recipient),
        send.template.name,
        send.template.language,
        send.category.as_str()
    );
    let _ = writeln!(
        out,
        "  campaign {}  recorded {}",
        send.campaign.as_deref().unwrap_or("-"),
        send.created_at.to_rfc3339()
    );
    let _ = writeln!(out, "  state {:?}  outcome {:?}", send.life.phase, outcome(send));
    if let shared::domain::lifecycle::Phase::Waiting { due } = send.life.phase {
        let _ = writeln!(
            out,
            "  timer {} due {}",
            RetryJob::new(send.id.clone(), send.life.slot).schedule_name(),
            due.to_rfc3339()
        );
    }
    for a in &send.attempts {
        let _ =
            write!(out, "  attempt {} try {}: claimed {}", a.slot.attempt, a.slot.try_no, a.claimed_at.to_rfc3339());
        if let Some(wamid) = &a.wamid {
            let _ = write!(out, ", wamid {wamid}");
        }
        for (label, at) in
            [("sent", a.sent_at), ("delivered", a.delivered_at), ("read", a.read_at), ("failed", a.failed_at)]
        {
            if let Some(at) = at {
                let _ = write!(out, ", {label} {}", at.to_rfc3339());
            }
        }
        if let Some(error) = &a.error {
            let _ = write!(
                out,
                ", error {} ({}) {}",
                error.code,
                classify(error.code).class.as_str(),
                error.title.as_deref().unwrap_or("")
            );
        }
        out.push('\n');
    }
    out
}
