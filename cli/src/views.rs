//! What an operator sees of a campaign, a send or a recipient: JSON for the local stack's views
//! and `--json`, text and CSV for `capguard report` and `capguard inspect`, rendered the same on
//! a store and by a running `capguard serve`. Numbers are masked.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::domain::classes::classify;
use shared::domain::consent::{ConsentChange, ConsentEvent};
use shared::domain::engagement::Tier;
use shared::domain::lifecycle::{Delivery, Phase};
use shared::domain::rules::window_open;
use shared::privacy::mask_number;
use shared::report::{Funnel, Outcome, outcome, rfc3339 as time, write_csv};
use shared::schedule::RetryJob;
use shared::store::{Listings, RecipientRecord, Recipients, SendRecord, StoreError, WaitingSend};

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

/// How a view is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Csv,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Text, Self::Json, Self::Csv].into_iter().find(|format| format.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
            Self::Csv => "csv",
        }
    }
}

/// A campaign's report: its funnel (text or JSON), or one CSV row per send.
pub fn campaign_report(campaign: &str, sends: &[SendRecord], format: Format) -> anyhow::Result<String> {
    if sends.is_empty() {
        anyhow::bail!("campaign {campaign:?} has no sends in this store");
    }
    Ok(match format {
        Format::Csv => {
            let mut bytes = Vec::new();
            write_csv(sends, &mut bytes)?;
            String::from_utf8(bytes)?
        }
        Format::Json => serde_json::to_string_pretty(&Funnel::of(sends))? + "\n",
        Format::Text => format!("campaign {campaign}:\n{}", Funnel::of(sends).render()),
    })
}

/// A recipient's state and, given a campaign, their sends in it.
pub async fn recipient_report<S: Recipients + Listings>(
    store: &S,
    number: &str,
    campaign: Option<&str>,
    now: DateTime<Utc>,
    format: Format,
) -> anyhow::Result<String> {
    let record = store.get_recipient(number).await?;
    let waiting = store.waiting_for(number).await?;
    let sends: Vec<SendRecord> = match campaign {
        Some(campaign) => {
            campaign_sends(store, campaign).await?.into_iter().filter(|s| s.recipient == number).collect()
        }
        None => Vec::new(),
    };
    Ok(match format {
        Format::Json => {
            let mut view = recipient(&record, &waiting, now);
            view["sends"] = sends.iter().map(send).collect();
            serde_json::to_string_pretty(&view)? + "\n"
        }
        Format::Text | Format::Csv => {
            let mut out = recipient_text(&record, &waiting, now);
            for sent in &sends {
                out.push_str(&send_text(sent));
            }
            out
        }
    })
}

/// A send's whole history.
pub fn send(send: &SendRecord) -> Value {
    let timer = match send.life.phase {
        Phase::Waiting { due } => {
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
        "tier": send.tier,
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

/// A recipient's state: consent and opt-out, window, recent marketing, waiting retries.
pub fn recipient(recipient: &RecipientRecord, waiting: &[WaitingSend], now: DateTime<Utc>) -> Value {
    json!({
        "recipient": mask_number(&recipient.recipient),
        "opted_out": recipient.opted_out,
        "opt_changed_at": recipient.opt_changed_at,
        "opt_in": recipient.opt_in(),
        "consent": recipient.consent,
        "last_inbound_at": recipient.last_inbound_at,
        "last_read_at": recipient.last_read_at,
        "tier": Tier::of(recipient, now),
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
        "  campaign {}  tier {}  recorded {}",
        send.campaign.as_deref().unwrap_or("-"),
        send.tier.map_or("-", Tier::as_str),
        time(send.created_at)
    );
    let _ = writeln!(out, "  now: {}", phase_text(send));
    let _ = writeln!(out, "  outcome: {}", outcome_text(outcome(send)));
    if let Phase::Waiting { due } = send.life.phase {
        let _ = writeln!(
            out,
            "  timer {} due {}",
            RetryJob::new(send.id.clone(), send.life.slot).schedule_name(),
            time(due)
        );
    }
    for a in &send.attempts {
        let _ = write!(out, "  attempt {} try {}: claimed {}", a.slot.attempt, a.slot.try_no, time(a.claimed_at));
        if let Some(wamid) = &a.wamid {
            let _ = write!(out, ", wamid {wamid}");
        }
        for (label, at) in
            [("sent", a.sent_at), ("delivered", a.delivered_at), ("read", a.read_at), ("failed", a.failed_at)]
        {
            if let Some(at) = at {
                let _ = write!(out, ", {label} {}", time(at));
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

/// A recipient's state as lines of text.
pub fn recipient_text(recipient: &RecipientRecord, waiting: &[WaitingSend], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let when = |at: Option<DateTime<Utc>>| at.map_or_else(|| "never".to_owned(), time);
    let _ = writeln!(out, "recipient {}  tier {}", mask_number(&recipient.recipient), Tier::of(recipient, now));
    let opted = if recipient.opted_out { "opted out of marketing" } else { "receives marketing" };
    let _ = writeln!(out, "  {opted} (changed {})", when(recipient.opt_changed_at));
    if recipient.consent.is_empty() {
        let _ = writeln!(out, "  consent: nothing recorded (no opt-in)");
    }
    for event in &recipient.consent {
        let _ = writeln!(out, "  consent: {}", consent_text(event));
    }
    let window = if window_open(recipient.last_inbound_at, now) { "open" } else { "closed" };
    let _ = writeln!(out, "  last wrote {}  (window {window})", when(recipient.last_inbound_at));
    let _ = writeln!(out, "  last read {}", when(recipient.last_read_at));
    let deliveries: Vec<String> = recipient.marketing_deliveries.iter().map(|at| time(*at)).collect();
    let _ = writeln!(
        out,
        "  marketing delivered: {}  caps in a row: {}",
        if deliveries.is_empty() { "none".to_owned() } else { deliveries.join(", ") },
        recipient.consecutive_caps
    );
    if waiting.is_empty() {
        let _ = writeln!(out, "  no send waiting for a retry");
    }
    for w in waiting {
        let _ = writeln!(out, "  waiting: send {} for attempt {} try {}", w.send_id, w.slot.attempt, w.slot.try_no);
    }
    out
}

/// A consent history entry in words: `opted in 2026-03-01T09:30:00Z from website_form (note)`.
pub fn consent_text(event: &ConsentEvent) -> String {
    let change = match event.change {
        ConsentChange::OptIn => "opted in",
        ConsentChange::OptOut => "opted out",
        ConsentChange::Resume => "resumed",
    };
    let note = event.note.as_deref().map(|note| format!(" ({note})")).unwrap_or_default();
    format!("{change} {} from {}{note}", time(event.at), event.source)
}

/// Where a send is now, in words.
fn phase_text(send: &SendRecord) -> String {
    let attempt = send.life.slot.attempt;
    match send.life.phase {
        Phase::Waiting { due } => format!("waiting for attempt {attempt}, due {}", time(due)),
        Phase::Claimed { due } => {
            format!("attempt {attempt} sent, answer not known yet (settled {} if none comes)", time(due))
        }
        Phase::InFlight { delivery, due } => {
            format!("attempt {attempt} {}, not delivered yet (looked at again {})", delivery_text(delivery), time(due))
        }
        Phase::Succeeded { delivery } => format!("{} at attempt {attempt}", delivery_text(delivery)),
        Phase::Final { reason } => format!("ended: {}", reason.as_str()),
    }
}

fn delivery_text(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::Accepted => "accepted by Meta",
        Delivery::Sent => "sent",
        Delivery::Delivered => "delivered",
        Delivery::Read => "read",
    }
}

/// A send's outcome, in words.
fn outcome_text(outcome: Outcome) -> String {
    match outcome {
        Outcome::Delivered { attempt: 1 } => "delivered at the first attempt".to_owned(),
        Outcome::Delivered { attempt } => format!("recovered: delivered at retry {}", attempt - 1),
        Outcome::Exhausted => "exhausted: capped at every step of the ladder".to_owned(),
        Outcome::OptedOut => "opted out".to_owned(),
        Outcome::Suppressed { reason } => format!("not sent: {}", reason.as_str()),
        Outcome::Failed { code: Some(code), reason } => format!("failed with {code}: {}", reason.as_str()),
        Outcome::Failed { code: None, reason } => format!("failed: {}", reason.as_str()),
        Outcome::Paced => "paced: Meta holds it until it has assessed the template".to_owned(),
        Outcome::InProgress => "in progress".to_owned(),
    }
}
