//! The simulated WhatsApp behind the send endpoint: every recipient's state, the limits, and what
//! becomes of each accepted message.
//!
//! A message's fate is decided when it is accepted, from the recipient's kind and state (or its
//! script, which overrides both) and its own random stream (seeded from the run's seed and the
//! number, drawn in the order of that recipient's messages), and written out at once as the
//! webhooks to post, each with its due time in simulated time. Deciding up front keeps a run repeatable: the order in which background
//! tasks happen to post changes nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use shared::cloud::Endpoint;
use shared::domain::rules::{Category, region_of};
use shared::whatsapp::send::SendRequest;

use crate::SandboxError;
use crate::budget::{Budget, Judgement};
use crate::config::{MESSAGING_LIMIT_CODE, SandboxConfig, ScriptedOutcome};
use crate::limits::RateLimit;
use crate::population::{Population, RecipientKind, derived_seed, wa_id};
use crate::stats::Posted;
use crate::webhooks::{Scheduled, change, status_error};

/// What a simulated user sends the business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A typed message.
    Text(String),
    /// A tap on a quick-reply button of the last template the user was sent.
    QuickReply { payload: String, text: String },
}

/// Why a send is refused at once: a Graph error code.
pub(crate) type Refusal = i64;

/// An accepted message: its wamid and the webhooks it will produce, or a request that hangs.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub wamid: String,
    pub webhooks: Vec<Scheduled>,
    /// The request is held unanswered (a scripted [`ScriptedOutcome::Hang`]).
    pub hangs: bool,
    /// Meta holds the message for pacing (`held_for_quality_assessment`) before it goes out.
    pub paced: bool,
}

/// The last template sent to a recipient: what a quick-reply tap answers.
#[derive(Debug, Clone)]
struct LastTemplate {
    wamid: String,
    phone_number_id: String,
}

#[derive(Debug)]
struct Recipient {
    /// Its number's region, read once (a parse against the numbering plan).
    region: Option<String>,
    kind: RecipientKind,
    opted_out: bool,
    budget: Budget,
    rng: ChaCha8Rng,
    last_template: Option<LastTemplate>,
    /// How many sends of its script (if it has one) it has taken.
    script_step: usize,
}

/// Every recipient's state and the limits' allowances.
#[derive(Debug)]
pub(crate) struct World {
    config: Arc<SandboxConfig>,
    population: Population,
    origin: DateTime<Utc>,
    recipients: HashMap<String, Recipient>,
    sequence: u64,
    throughput: RateLimit<String>,
    pair: RateLimit<(String, String)>,
    /// The messaging limit now (the configured one, until changed by command).
    messaging_limit: Option<u32>,
    /// The users counted toward the messaging limit, by `wa_id`, with when each was counted…
    contacted: HashMap<String, DateTime<Utc>>,
    /// …and those times in order, the oldest first: the moving 24 h count is its length once
    /// the times older than 24 h are gone.
    counted: VecDeque<DateTime<Utc>>,
    /// The most users counted at once.
    counted_peak: u64,
    /// Templates paused (132015) or disabled (132016) by command, by name.
    stopped_templates: HashMap<String, i64>,
    /// Templates Meta paces, by name, with how long it holds each message.
    paced_templates: HashMap<String, TimeDelta>,
    /// Template ids, for the template webhooks: stable for a run.
    template_ids: HashMap<String, u64>,
    /// Each template's quality score as last rescored, by name and language.
    template_scores: HashMap<(String, String), String>,
}

/// A limit as `phone_number_quality_update` names it: `TIER_250`, `TIER_2K`, …
fn tier_name(limit: u32) -> String {
    match limit {
        n if n >= 1_000 && n % 1_000 == 0 => format!("TIER_{}K", n / 1_000),
        n => format!("TIER_{n}"),
    }
}

/// Texts simulated users write back, some with the accents and emoji that Meta escapes.
const REPLY_TEXTS: &[&str] = &[
    "Olá! Quero saber mais.",
    "¿Tienen envío gratis? 🚚",
    "Interested, send details / prices please",
    "Is this still available?",
    "Kitna discount hai? 🙂",
];

impl World {
    pub(crate) fn new(config: Arc<SandboxConfig>, population: Population, origin: DateTime<Utc>) -> Self {
        let throughput = RateLimit::per_second(config.limits.throughput_per_second);
        let pair = RateLimit::new(config.limits.pair_interval, config.limits.pair_burst);
        let messaging_limit = config.limits.messaging_limit;
        Self {
            config,
            population,
            origin,
            recipients: HashMap::new(),
            sequence: 0,
            throughput,
            pair,
            messaging_limit,
            contacted: HashMap::new(),
            counted: VecDeque::new(),
            counted_peak: 0,
            stopped_templates: HashMap::new(),
            paced_templates: HashMap::new(),
            template_ids: HashMap::new(),
            template_scores: HashMap::new(),
        }
    }

    /// The throughput (130429), the pair rate (131056), then the messaging limit
    /// ([`MESSAGING_LIMIT_CODE`]).
    pub(crate) fn admit(&mut self, now: DateTime<Utc>, phone_number_id: &str, to: &str) -> Result<(), Refusal> {
        if !self.throughput.admit(phone_number_id.to_owned(), now) {
            return Err(130429);
        }
        let user = wa_id(to);
        if !self.pair.admit((phone_number_id.to_owned(), user.clone()), now) {
            return Err(131056);
        }
        self.count_user(user, now)
    }

    /// Counts `user` toward the messaging limit: once per 24 h, and not while they are in a
    /// customer-service window; refused when the count is at the limit.
    fn count_user(&mut self, user: String, now: DateTime<Utc>) -> Result<(), Refusal> {
        let day = TimeDelta::hours(24);
        while self.counted.front().is_some_and(|at| *at + day <= now) {
            self.counted.pop_front();
        }
        let counted = self.contacted.get(&user).is_some_and(|at| *at <= now && now < *at + day);
        let writing =
            self.recipients.get(&user).is_some_and(|recipient| recipient.budget.window_open(now, &self.config.budget));
        if counted || writing {
            return Ok(());
        }
        if self.messaging_limit.is_some_and(|limit| self.counted.len() >= limit as usize) {
            return Err(MESSAGING_LIMIT_CODE);
        }
        self.counted.push_back(now);
        self.contacted.insert(user, now);
        self.counted_peak = self.counted_peak.max(self.counted.len() as u64);
        Ok(())
    }

    /// The most unique users counted toward the messaging limit in a moving 24 h so far.
    pub(crate) fn counted_peak(&self) -> u64 {
        self.counted_peak
    }

    /// The `phone_number_quality_update` Meta posts when the business number's quality rating
    /// drops to low (`flagged`) or recovers, as its older payloads report it: `FLAGGED` or
    /// `UNFLAGGED`, with the number's limit.
    pub(crate) fn quality_change(&self, flagged: bool) -> Value {
        let limit = self.messaging_limit.map_or_else(|| "TIER_UNLIMITED".to_owned(), tier_name);
        json!({
            "value": {
                "display_phone_number": self.config.business.display_phone_number,
                "event": if flagged { "FLAGGED" } else { "UNFLAGGED" },
                "current_limit": limit,
            },
            "field": "phone_number_quality_update",
        })
    }

    /// Meta paces template `name` (a new one, say), holding each message `hold` before it goes
    /// out; `None` stops pacing it.
    pub(crate) fn pace_template(&mut self, name: &str, hold: Option<TimeDelta>) {
        match hold {
            Some(hold) => self.paced_templates.insert(name.to_owned(), hold),
            None => self.paced_templates.remove(name),
        };
    }

    /// The code a send of template `name` is refused with while it is paused or disabled.
    pub(crate) fn template_stopped(&self, name: &str) -> Option<i64> {
        self.stopped_templates.get(name).copied()
    }

    /// Meta changes template `name`'s status to `event` (`PAUSED`, `DISABLED`, `APPROVED`,
    /// `REINSTATED`, or `PAUSED` with the title `UNPAUSE` to end a pause): sends of a paused or
    /// disabled template are refused from now on, and the `message_template_status_update` change
    /// that reports it is returned.
    pub(crate) fn template_status(&mut self, name: &str, language: &str, event: &str, title: Option<&str>) -> Value {
        let unpause = title.is_some_and(|t| t.eq_ignore_ascii_case("UNPAUSE"));
        match event {
            "PAUSED" if !unpause => self.stopped_templates.insert(name.to_owned(), 132015),
            "DISABLED" => self.stopped_templates.insert(name.to_owned(), 132016),
            _ => self.stopped_templates.remove(name),
        };
        let mut value = json!({
            "event": event,
            "message_template_id": self.template_id(name),
            "message_template_name": name,
            "message_template_language": language.replace('_', "-"),
            "reason": if event == "PAUSED" && !unpause { json!("NONE") } else { Value::Null },
            "message_template_category": self.config.templates.get(name).map(|c| c.as_str().to_ascii_uppercase()),
        });
        if let Some(title) = title {
            let description = if unpause {
                "Your WhatsApp message template has been unpaused."
            } else {
                "Your WhatsApp message template has been paused because of low quality."
            };
            value["other_info"] = json!({ "title": title, "description": description });
        }
        json!({ "value": value, "field": "message_template_status_update" })
    }

    /// Template `name`'s quality score in `language` as last rescored; `UNKNOWN` (Meta's word for
    /// a template not yet scored) before.
    pub(crate) fn template_score(&self, name: &str, language: &str) -> String {
        let key = (name.to_owned(), language.to_owned());
        self.template_scores.get(&key).cloned().unwrap_or_else(|| "UNKNOWN".to_owned())
    }

    /// Meta rescores template `name`'s quality: the `message_template_quality_update` change.
    pub(crate) fn template_quality(&mut self, name: &str, language: &str, previous: &str, score: &str) -> Value {
        self.template_scores.insert((name.to_owned(), language.to_owned()), score.to_owned());
        json!({
            "value": {
                "previous_quality_score": previous,
                "new_quality_score": score,
                "message_template_id": self.template_id(name),
                "message_template_name": name,
                "message_template_language": language.replace('_', "-"),
            },
            "field": "message_template_quality_update",
        })
    }

    fn template_id(&mut self, name: &str) -> u64 {
        let next = 806_312_974_732_579 + self.template_ids.len() as u64;
        *self.template_ids.entry(name.to_owned()).or_insert(next)
    }

    /// Sets the messaging limit (`None`: unlimited) and returns the `business_capability_update`
    /// change that reports it, as Meta's does (`-1` for unlimited).
    pub(crate) fn change_messaging_limit(&mut self, limit: Option<u32>) -> Value {
        self.messaging_limit = limit;
        let value = limit.map_or(-1, i64::from);
        json!({
            "value": {
                "max_daily_conversation_per_phone": value,
                "max_daily_conversations_per_business": value,
                "max_phone_numbers_per_business": 2,
                "max_phone_numbers_per_waba": 2,
            },
            "field": "business_capability_update",
        })
    }

    /// Accepts a valid template send and decides its fate.
    pub(crate) fn accept(
        &mut self,
        now: DateTime<Utc>,
        phone_number_id: &str,
        request: &SendRequest,
        category: Category,
        endpoint: Endpoint,
    ) -> Accepted {
        let to = wa_id(&request.to);
        let wamid = self.next_wamid("out", &to);
        let config = self.config.clone();
        // A paced template's message goes out (or fails) only once Meta has held it a while.
        let held = request.template.as_ref().and_then(|t| self.paced_templates.get(&t.name)).copied();
        let paced = held.is_some();
        let now = now + held.unwrap_or_default();
        let scripted = self.next_scripted(&to);
        let failure = match scripted {
            Some(ScriptedOutcome::Failed(code)) => Some(code),
            Some(ScriptedOutcome::Delivered | ScriptedOutcome::Read) => None,
            Some(ScriptedOutcome::Hang) => return Accepted { wamid, webhooks: Vec::new(), hangs: true, paced: false },
            None => self.failure(now, &to, category),
        };
        let known_as = config.known_as(&to);
        let statuses = Statuses { config: &config, phone_number_id, wamid: &wamid, recipient_id: &known_as };
        let recipient = self.recipient(&to);

        if let Some(code) = failure {
            let at = now + config.timing.failed.draw(&mut recipient.rng);
            let errors = Map::from_iter([("errors".to_owned(), json!([status_error(code)]))]);
            let webhooks = vec![statuses.webhook("failed", at, errors, Some(code))];
            return Accepted { wamid, webhooks, hangs: false, paced };
        }

        let timeline = match scripted {
            Some(outcome) => Timeline::scripted(now, &config, outcome == ScriptedOutcome::Read, &mut recipient.rng),
            None => Timeline::draw(now, &config, recipient.kind, &mut recipient.rng),
        };
        let pricing = json!({ "billable": true, "pricing_model": "PMP", "type": "regular", "category": pricing_category(category, endpoint) });
        let fields = |with_pricing: bool| {
            let mut fields = Map::new();
            if let Some(data) = &request.biz_opaque_callback_data {
                fields.insert("biz_opaque_callback_data".to_owned(), json!(data));
            }
            if with_pricing {
                fields.insert("pricing".to_owned(), pricing.clone());
            }
            fields
        };
        let mut webhooks = vec![statuses.webhook("sent", timeline.sent, fields(true), None)];
        if let Some(delivered) = timeline.delivered {
            webhooks.push(statuses.webhook("delivered", delivered, fields(true), None));
        }
        if let Some(read) = timeline.read {
            // Pricing comes with exactly one of delivered and read.
            webhooks.push(statuses.webhook("read", read, fields(timeline.delivered.is_none()), None));
        }

        if category == Category::Marketing {
            recipient.budget.record_delivery(now, timeline.read);
        }
        recipient.last_template =
            Some(LastTemplate { wamid: wamid.clone(), phone_number_id: phone_number_id.to_owned() });
        if let Some(reply_at) = timeline.reply {
            let reply = match quick_reply_payload(request) {
                Some(payload) if recipient.rng.random_bool(0.5) => Reply::QuickReply { text: payload.clone(), payload },
                _ => Reply::Text(REPLY_TEXTS[recipient.rng.random_range(0..REPLY_TEXTS.len())].to_owned()),
            };
            let (_, change) = self.inbound(reply_at, &to, &reply).expect("a template was just sent");
            webhooks.push(Scheduled { due: reply_at, change, posted: Posted::Inbound });
        }
        Accepted { wamid, webhooks, hangs: false, paced }
    }

    /// The outcome of the next send to `to` when it follows a script: the script's next step, the
    /// last one once the script has run out.
    fn next_scripted(&mut self, to: &str) -> Option<ScriptedOutcome> {
        let config = self.config.clone();
        let script = config.scripts.get(to)?;
        let recipient = self.recipient(to);
        let outcome = script.get(recipient.script_step).or(script.last()).copied();
        recipient.script_step += 1;
        outcome
    }

    /// The code a send to `to` fails with, if it fails: see docs/sandbox.md for the order.
    fn failure(&mut self, now: DateTime<Utc>, to: &str, category: Category) -> Option<i64> {
        let config = self.config.clone();
        let recipient = self.recipient(to);
        let in_region = |regions: &std::collections::BTreeSet<String>| {
            recipient.region.as_ref().is_some_and(|r| regions.contains(r))
        };
        let (paused, capped_region) =
            (in_region(&config.budget.paused_regions), !in_region(&config.budget.uncapped_regions));
        if recipient.kind == RecipientKind::NotOnWhatsApp {
            Some(131026)
        } else if category != Category::Marketing {
            None
        } else if paused {
            Some(131049)
        } else if recipient.opted_out {
            Some(131050)
        } else {
            match recipient.budget.judge(now, &config.budget, capped_region) {
                Judgement::Deliver { .. } => None,
                Judgement::Capped | Judgement::RetryBlocked => Some(131049),
            }
        }
    }

    /// The user writes to the business at `at`, which opens a customer-service window; returns
    /// the inbound message's wamid and its webhook's change.
    pub(crate) fn inbound(
        &mut self,
        at: DateTime<Utc>,
        number: &str,
        reply: &Reply,
    ) -> Result<(String, Value), SandboxError> {
        let from = wa_id(number);
        let id = self.next_wamid("in", &from);
        let config = self.config.clone();
        let name = self.population.profile_name(&from);
        let recipient = self.recipient(&from);
        let last = recipient.last_template.clone();
        let timestamp = at.timestamp().to_string();
        let message = match reply {
            Reply::Text(body) => {
                json!({ "from": from, "id": id, "timestamp": timestamp, "type": "text", "text": { "body": body } })
            }
            Reply::QuickReply { payload, text } => {
                let Some(template) = &last else { return Err(SandboxError::NothingToAnswer(number.to_owned())) };
                json!({
                    "context": { "from": config.business.display_phone_number, "id": template.wamid },
                    "from": from, "id": id, "timestamp": timestamp,
                    "type": "button", "button": { "payload": payload, "text": text },
                })
            }
        };
        recipient.budget.record_inbound(at);
        let phone_number_id = last.map_or(config.business.phone_number_id.clone(), |t| t.phone_number_id);
        let value = json!({
            "contacts": [ { "profile": { "name": name }, "wa_id": from } ],
            "messages": [ message ],
        });
        Ok((id, change(&config.business, &phone_number_id, "messages", value)))
    }

    /// The user presses Stop (or Resume) on marketing from the business at `at`; returns the
    /// `user_preferences` webhook's change.
    pub(crate) fn preference(&mut self, at: DateTime<Utc>, number: &str, stop: bool) -> Value {
        let who = wa_id(number);
        let config = self.config.clone();
        let recipient = self.recipient(&who);
        recipient.opted_out = stop;
        let phone_number_id = recipient
            .last_template
            .as_ref()
            .map_or(config.business.phone_number_id.clone(), |t| t.phone_number_id.clone());
        let (value, detail) = if stop {
            ("stop", "User requested to stop marketing messages")
        } else {
            ("resume", "User requested to resume marketing messages")
        };
        let update = json!({
            "contacts": [ { "wa_id": who } ],
            "user_preferences": [ {
                "wa_id": who, "detail": detail, "category": "marketing_messages", "value": value,
                "timestamp": at.timestamp(),
            } ],
        });
        change(&config.business, &phone_number_id, "user_preferences", update)
    }

    /// A Graph error's `fbtrace_id`: unique and repeatable for the seed.
    pub(crate) fn next_trace_id(&mut self) -> String {
        self.sequence += 1;
        let hash = derived_seed(self.config.seed, "trace", &self.sequence.to_string());
        format!("A{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash[..15]))
    }

    /// A wamid shaped like Meta's: base64 of the recipient's number and a unique tag.
    fn next_wamid(&mut self, purpose: &str, wa_id: &str) -> String {
        self.sequence += 1;
        let hash = derived_seed(self.config.seed, purpose, &self.sequence.to_string());
        let mut raw = vec![0x1c, 0x18, wa_id.len() as u8];
        raw.extend(wa_id.bytes());
        raw.extend([0x15, 0x02, 0x00, 0x12, 0x18, 0x14]);
        raw.extend(hex::encode_upper(&hash[..10]).bytes());
        raw.push(0);
        format!("wamid.{}", base64::engine::general_purpose::STANDARD.encode(raw))
    }

    fn recipient(&mut self, wa_id: &str) -> &mut Recipient {
        let Self { config, population, origin, recipients, .. } = self;
        recipients.entry(wa_id.to_owned()).or_insert_with(|| {
            let region = region_of(wa_id);
            let kind = population.kind_in(region.as_deref(), wa_id);
            let profile = config.profile(kind);
            let budget_seed = derived_seed(config.seed, "budget", wa_id);
            Recipient {
                region,
                kind,
                opted_out: kind == RecipientKind::OptedOut,
                budget: Budget::new(&profile, &config.budget, *origin, budget_seed),
                rng: ChaCha8Rng::from_seed(derived_seed(config.seed, "messages", wa_id)),
                last_template: None,
                script_step: 0,
            }
        })
    }
}

/// When a delivered message's statuses and reply fall due.
struct Timeline {
    sent: DateTime<Utc>,
    /// `None` when the message is read at once, which skips `delivered`.
    delivered: Option<DateTime<Utc>>,
    read: Option<DateTime<Utc>>,
    reply: Option<DateTime<Utc>>,
}

impl Timeline {
    /// Draws the timeline of a message accepted at `accepted`, by the recipient's kind.
    fn draw(accepted: DateTime<Utc>, config: &SandboxConfig, kind: RecipientKind, rng: &mut ChaCha8Rng) -> Self {
        let profile = config.profile(kind);
        let chance = |rng: &mut ChaCha8Rng, p: f64| rng.random_bool(p.clamp(0.0, 1.0));
        let sent = accepted + config.timing.sent.draw(rng);
        let delivered = sent + config.timing.delivered.draw(rng);
        let reads = chance(rng, profile.read_probability);
        let at_once = reads && chance(rng, config.timing.skip_delivered_probability);
        let read = if at_once { delivered } else { delivered + config.timing.read.draw(rng) };
        let replies = chance(rng, profile.reply_probability);
        let last = if reads { read } else { delivered };
        let reply = last + config.timing.reply.draw(rng);
        Self {
            sent,
            delivered: (!at_once).then_some(delivered),
            read: reads.then_some(read),
            reply: replies.then_some(reply),
        }
    }

    /// A scripted delivery's timeline: the usual delays, `delivered` always, `read` when `reads`,
    /// and no reply of its own.
    fn scripted(accepted: DateTime<Utc>, config: &SandboxConfig, reads: bool, rng: &mut ChaCha8Rng) -> Self {
        let sent = accepted + config.timing.sent.draw(rng);
        let delivered = sent + config.timing.delivered.draw(rng);
        let read = reads.then(|| delivered + config.timing.read.draw(rng));
        Self { sent, delivered: Some(delivered), read, reply: None }
    }
}

/// Writes one message's status webhooks.
struct Statuses<'a> {
    config: &'a SandboxConfig,
    phone_number_id: &'a str,
    wamid: &'a str,
    recipient_id: &'a str,
}

impl Statuses<'_> {
    fn webhook(
        &self,
        status: &'static str,
        at: DateTime<Utc>,
        mut fields: Map<String, Value>,
        code: Option<i64>,
    ) -> Scheduled {
        let mut item = Map::new();
        item.insert("id".to_owned(), json!(self.wamid));
        item.insert("status".to_owned(), json!(status));
        item.insert("timestamp".to_owned(), json!(at.timestamp().to_string()));
        item.insert("recipient_id".to_owned(), json!(self.recipient_id));
        item.append(&mut fields);
        let value = json!({ "statuses": [item] });
        let change = change(&self.config.business, self.phone_number_id, "messages", value);
        Scheduled { due: at, change, posted: Posted::Status { status, code } }
    }
}

/// `pricing.category`: the Marketing Messages API bills marketing as `marketing_lite`.
fn pricing_category(category: Category, endpoint: Endpoint) -> &'static str {
    match (category, endpoint) {
        (Category::Marketing, Endpoint::MarketingMessages) => "marketing_lite",
        (category, _) => category.as_str(),
    }
}

/// The payload of the template's first quick-reply button, which a tap sends back.
fn quick_reply_payload(request: &SendRequest) -> Option<String> {
    request
        .template
        .as_ref()?
        .components
        .iter()
        .filter(|c| c.kind == "button" && c.sub_type.as_deref() == Some("quick_reply"))
        .flat_map(|c| c.parameters.iter())
        .find_map(|p| p.payload.clone())
}

#[cfg(test)]
mod tests {
    use shared::clock::ScaledClock;
    use shared::whatsapp::send::{Language, Template};

    use super::*;
    use crate::config::ScriptedOutcome::{Delivered, Failed, Read};

    const BUSINESS_NUMBER: &str = "106540352242922";

    fn world(config: SandboxConfig) -> (World, DateTime<Utc>) {
        let population = Population::new(&config);
        let origin = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        (World::new(Arc::new(config), population, origin), origin)
    }

    fn config() -> SandboxConfig {
        SandboxConfig::new(11, ScaledClock::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap(), 1.0))
    }

    /// The statuses (and failure codes) of one accepted send of `template` to `to`.
    fn send(world: &mut World, now: DateTime<Utc>, to: &str, template: &str, category: Category) -> Vec<Posted> {
        let template = Template {
            name: template.into(),
            language: Language { code: "en".into(), policy: None },
            components: vec![],
            extra: Map::new(),
        };
        let request = SendRequest::template(to, template, None);
        let accepted = world.accept(now, BUSINESS_NUMBER, &request, category, Endpoint::Messages);
        accepted
            .webhooks
            .into_iter()
            .map(|webhook| webhook.posted)
            .filter(|p| matches!(p, Posted::Status { .. }))
            .collect()
    }

    fn failed(code: i64) -> Vec<Posted> {
        vec![Posted::Status { status: "failed", code: Some(code) }]
    }

    fn delivered() -> Vec<Posted> {
        vec![Posted::Status { status: "sent", code: None }, Posted::Status { status: "delivered", code: None }]
    }

    #[test]
    fn the_messaging_limit_counts_unique_users_over_a_moving_day_and_refuses_past_it() {
        let mut config = config();
        config.limits.messaging_limit = Some(2);
        let (mut world, now) = world(config);
        let at = |minutes: i64| now + TimeDelta::minutes(minutes);
        assert_eq!(world.admit(at(0), BUSINESS_NUMBER, "+919800000001"), Ok(()));
        assert_eq!(world.admit(at(1), BUSINESS_NUMBER, "+919800000002"), Ok(()));
        assert_eq!(world.admit(at(2), BUSINESS_NUMBER, "+919800000003"), Err(MESSAGING_LIMIT_CODE));
        assert_eq!(world.admit(at(3), BUSINESS_NUMBER, "+919800000001"), Ok(()), "counted already");
        assert_eq!(world.admit(at(24 * 60), BUSINESS_NUMBER, "+919800000003"), Ok(()), "the first stopped counting");
        assert_eq!(world.counted_peak(), 2);
        let _ = world.change_messaging_limit(None);
        assert_eq!(world.admit(at(24 * 60), BUSINESS_NUMBER, "+919800000004"), Ok(()), "unlimited now");
        assert_eq!(world.counted_peak(), 3);
    }

    #[test]
    fn a_scripted_recipient_takes_each_outcome_in_order_then_repeats_the_last() {
        let mut config = config();
        config.script("+91 98765 43210", [Failed(131049), Failed(131049), Read, Delivered]);
        let (mut world, now) = world(config);
        let to = "+919876543210";
        let outcomes: Vec<_> = (0..5).map(|_| send(&mut world, now, to, "spring_sale", Category::Marketing)).collect();
        let read = [delivered(), vec![Posted::Status { status: "read", code: None }]].concat();
        assert_eq!(outcomes, [failed(131049), failed(131049), read, delivered(), delivered()]);
    }

    #[test]
    fn a_script_overrides_the_kind_region_opt_out_and_category() {
        let us = "+16505550123";
        let mut config = config();
        config.script(us, [Delivered]).script("+919876543210", [Failed(131049)]);
        let (mut world, now) = world(config);
        assert_eq!(send(&mut world, now, us, "spring_sale", Category::Marketing), delivered(), "a US number");
        let _ = world.preference(now, "+919876543210", true);
        assert_eq!(send(&mut world, now, "+919876543210", "spring_sale", Category::Marketing), failed(131049));
        assert_eq!(send(&mut world, now, "+919876543210", "order_update", Category::Utility), failed(131049));
    }

    #[test]
    fn numbers_without_a_script_keep_their_kind() {
        let mut config = config();
        config.script("+919876543210", [Failed(131026)]).script("+919876543211", []);
        let (mut world, now) = world(config);
        assert_eq!(send(&mut world, now, "+16505550123", "spring_sale", Category::Marketing), failed(131049));
        assert_ne!(send(&mut world, now, "+16505550123", "order_update", Category::Utility), failed(131049));
        assert!(!world.config.scripts.contains_key("919876543211"), "an empty script is no script");
    }
}
