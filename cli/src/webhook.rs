//! `capguard webhook`: what capguard makes of one webhook body, one JSON line per event.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use shared::config;
use shared::domain::ladder::DEFAULT_LADDER;
use shared::domain::reaction::{Reaction, SendContext, category_from_pricing, react};
use shared::domain::rules::{Category, DEFAULT_FREQUENCY_CAP, DEFAULT_OPT_OUT_KEYWORDS, DEFAULT_PAUSED_REGIONS};
use shared::domain::verdict::Rules;
use shared::whatsapp::callback::CallbackTag;
use shared::whatsapp::events::{Event, events};
use shared::whatsapp::signature::{self, AppSecret};
use shared::whatsapp::webhook::parse_webhook;

/// Reads one webhook body on stdin and prints, one JSON object per event and in batch order, what
/// capguard makes of it and what it would do.
///
/// Each line has at least: kind (status | message | preference | error), phone_number_id, wamid,
/// recipient, status, code, class (per_user_cap, opt_out, unreachable, transient, invalid_request,
/// template, sender, unknown; null without an error) and action (retry_ladder, final, retry_soon,
/// suppress_recipient, resume_recipient, open_window, hold_template, halt_sender, record), with
/// reason when the action is final. A status whose biz_opaque_callback_data is capguard's
/// (send=<id>;attempt=<n>) also gets send_id, attempt, and for a retry next_attempt and retry_at.
///
/// Exits 0 on success; 2 with a one-line message on stderr for a body that is not a webhook, a
/// missing or wrong signature when a secret is given, or bad options.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct WebhookArgs {
    /// The Meta app secret; when given, --signature is required and checked before parsing.
    #[arg(long, env = config::WHATSAPP_APP_SECRET, hide_env_values = true)]
    app_secret: Option<String>,
    /// The X-Hub-Signature-256 header value: sha256=<64 hex digits>.
    #[arg(long, requires = "app_secret")]
    signature: Option<String>,
    /// The body on stdin is base64-encoded, as API Gateway hands it over with isBase64Encoded.
    #[arg(long)]
    base64: bool,
    /// The retry ladder: steps may repeat but never shrink.
    #[arg(long, env = config::RETRY_DELAYS, default_value = DEFAULT_LADDER)]
    retry_delays: String,
    /// The shortest step the ladder may have (1h unless given).
    #[arg(long, env = config::RETRY_MIN_STEP)]
    retry_min_step: Option<String>,
    /// Regions where marketing is never delivered (a 131049 there is final).
    #[arg(long, env = config::MARKETING_PAUSED_REGIONS, default_value = DEFAULT_PAUSED_REGIONS)]
    paused_regions: String,
    /// Whole-message words and quick-reply payloads that mean opt-out.
    #[arg(long, env = config::OPT_OUT_KEYWORDS, default_value = DEFAULT_OPT_OUT_KEYWORDS)]
    opt_out_keywords: String,
}

pub fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let rules = Rules::from_lookup(|name| match name {
        config::RETRY_DELAYS => Some(args.retry_delays.clone()),
        config::MARKETING_PAUSED_REGIONS => Some(args.paused_regions.clone()),
        config::OPT_OUT_KEYWORDS => Some(args.opt_out_keywords.clone()),
        config::MARKETING_FREQUENCY_CAP => Some(DEFAULT_FREQUENCY_CAP.to_owned()),
        config::RETRY_MIN_STEP => args.retry_min_step.clone(),
        _ => None,
    })?;

    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading the body from stdin")?;
    let body = signature::raw_body(&input, args.base64)?;
    if let Some(secret) = &args.app_secret {
        let Some(header) = args.signature.as_deref() else {
            bail!("--signature is required when an app secret is given");
        };
        signature::verify(&AppSecret::new(secret.as_bytes()), Some(header), &body)?;
    }
    let envelope = parse_webhook(&body)?;

    let mut out = std::io::stdout().lock();
    for event in events(&envelope) {
        writeln!(out, "{}", describe(&event, &rules))?;
    }
    Ok(())
}

/// One output line: the event's identifying fields, then the reaction.
fn describe(event: &Event, rules: &Rules) -> Value {
    let mut line = match event {
        Event::Status(s) => json!({
            "kind": "status", "phone_number_id": s.phone_number_id, "wamid": s.wamid, "recipient": s.recipient,
            "status": s.status, "timestamp": s.timestamp.seconds(), "pricing_category": s.pricing_category,
            "callback_data": s.callback_data, "title": s.errors.first().and_then(|e| e.title),
        }),
        Event::Message(m) => json!({
            "kind": "message", "phone_number_id": m.phone_number_id, "wamid": m.wamid, "recipient": m.from,
            "status": null, "timestamp": m.timestamp.seconds(), "message_type": m.message_type, "text": m.text,
            "payload": m.payload, "replied_to": m.replied_to,
        }),
        Event::Preference(p) => json!({
            "kind": "preference", "phone_number_id": p.phone_number_id, "wamid": null, "recipient": p.wa_id,
            "status": p.preference, "timestamp": p.timestamp.seconds(),
        }),
        Event::Error(e) => json!({
            "kind": "error", "phone_number_id": e.phone_number_id, "wamid": null, "recipient": null, "status": null,
            "title": e.error.title, "details": e.error.details,
        }),
        Event::TemplateStatus(t) => json!({
            "kind": "template_status", "waba_id": t.waba_id, "phone_number_id": null, "wamid": null, "recipient": null, "status": t.event,
            "template": t.name, "language": t.language, "title": t.title,
        }),
        Event::TemplateQuality(q) => json!({
            "kind": "template_quality", "waba_id": q.waba_id, "phone_number_id": null, "wamid": null,
            "recipient": null, "status": q.score, "template": q.name, "language": q.language, "previous": q.previous,
        }),
        Event::Account(l) => json!({
            "kind": "account", "waba_id": l.waba_id, "phone_number_id": null, "wamid": null, "recipient": null, "status": l.event,
            "field": l.field, "limit": l.limit.map(|limit| limit.to_string()), "rating": l.rating,
            "display_phone_number": l.display_phone_number,
        }),
    };
    let tag = match event {
        Event::Status(s) => s.callback_data.and_then(CallbackTag::parse),
        _ => None,
    };
    let context = tag.as_ref().map(|tag| SendContext {
        category: match event {
            Event::Status(s) => s.pricing_category.and_then(category_from_pricing),
            _ => None,
        }
        .unwrap_or(Category::Marketing),
        attempt: tag.attempt,
        transient_retries: 0,
    });
    let reaction: Reaction = react(event, rules, context);
    let fields = line.as_object_mut().expect("built as an object");
    fields.insert("code".into(), json!(reaction.code));
    fields.insert("class".into(), json!(reaction.class));
    fields.insert("action".into(), json!(reaction.action));
    fields.insert("reason".into(), json!(reaction.reason));
    if let Some(tag) = tag {
        fields.insert("send_id".into(), json!(tag.send_id));
        fields.insert("attempt".into(), json!(tag.attempt));
        fields.insert("next_attempt".into(), json!(reaction.next_attempt));
        fields.insert("retry_at".into(), json!(reaction.retry_at.map(|t| t.to_rfc3339())));
    }
    line
}
