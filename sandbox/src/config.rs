//! Everything a sandbox run is made of: its credentials and business numbers, the template
//! catalogue, Meta's synchronous limits, the marketing budget rules, how each kind of recipient
//! behaves, the recipients that follow a script instead, and how long statuses take.
//! [`SandboxConfig::new`] holds the defaults; docs/sandbox.md explains each of them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeDelta;
use rand::RngExt;
use shared::clock::ScaledClock;
use shared::domain::rules::Category;
use shared::whatsapp::signature::AppSecret;

use crate::population::{RecipientKind, wa_id};
use crate::scenario::Scenario;

/// The access token the sandbox accepts when none is configured.
pub const DEFAULT_ACCESS_TOKEN: &str = "sandbox-access-token";
/// The app secret the sandbox signs with when none is configured.
pub const DEFAULT_APP_SECRET: &str = "sandbox-app-secret";

/// A whole sandbox run.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The port to listen on, on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Everything random in a run (the population, budgets, delays, wamids) derives from it.
    pub seed: u64,
    /// Simulated time: delays, windows and limits are in its time, waited for in wall time.
    pub clock: ScaledClock,
    /// The bearer token a send must carry.
    pub access_token: String,
    /// The Meta app secret webhooks are signed with.
    pub app_secret: AppSecret,
    /// Where webhooks are posted; none are posted while it is unset.
    pub callback_url: Option<String>,
    pub business: Business,
    /// The approved templates by name. A send naming another template fails with 132001.
    pub templates: BTreeMap<String, Category>,
    pub limits: Limits,
    pub budget: BudgetRules,
    /// How each kind of recipient behaves; a kind without a profile never occurs.
    pub kinds: BTreeMap<RecipientKind, KindProfile>,
    /// Recipients whose messages follow a script instead of their kind, budget, region and
    /// opt-out: by `wa_id` (digits only), the outcome of each accepted send in order, the last one
    /// repeating. Set with [`SandboxConfig::script`].
    pub scripts: BTreeMap<String, Vec<ScriptedOutcome>>,
    /// Numbers (digits) that Meta knows by another `wa_id`, as it knows a Brazilian number
    /// without its ninth digit: the send's answer and its statuses name that `wa_id`. Set with
    /// [`SandboxConfig::alias`].
    pub aliases: BTreeMap<String, String>,
    pub timing: Timing,
    /// The waits (simulated time) before each new try of a webhook the receiver did not take;
    /// the first try is immediate, and a webhook is given up after the last wait's try.
    pub webhook_retries: Vec<TimeDelta>,
    /// The most updates one webhook POST carries. Meta aggregates deliveries, up to 1,000 updates
    /// per POST, without promising to; with more than 1 here, the updates that fall due while
    /// earlier POSTs are out go together, each as a `changes[]` item of one envelope. 1 (the
    /// default) posts each update on its own.
    pub webhook_batch: usize,
    /// What Meta does to the account while the sandbox runs, each at its time after the start:
    /// limits, quality ratings, template statuses and pacing ([`crate::scenario`]).
    pub scenario: Scenario,
}

/// The business the sandbox plays WhatsApp for: its account and the number unsolicited webhooks
/// (a reply to nothing, a Stop) are addressed to.
#[derive(Debug, Clone)]
pub struct Business {
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
}

/// Meta's synchronous limits (docs/whatsapp.md#limits), in simulated time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Messages per second one business number may send; past it, 130429.
    pub throughput_per_second: u32,
    /// The pair rate: one message to the same user per this interval…
    pub pair_interval: TimeDelta,
    /// …with bursts of up to this many, borrowed from the following intervals; past it, 131056.
    pub pair_burst: u32,
    /// The portfolio's messaging limit: at most this many unique users outside a
    /// customer-service window in a moving 24 h; past it, [`MESSAGING_LIMIT_CODE`]. `None` is
    /// unlimited.
    pub messaging_limit: Option<u32>,
}

/// What the sandbox answers a send past the messaging limit with. Meta documents no code of its
/// own for it; 131048 ("spam rate limit hit": the number is restricted in how many messages it
/// may send) is the documented code nearest to it, and one that capguard halts the number on, so
/// that overshooting the limit is loud.
pub const MESSAGING_LIMIT_CODE: i64 = 131048;

/// The per-user marketing limit (docs/whatsapp.md#limits).
#[derive(Debug, Clone)]
pub struct BudgetRules {
    /// The rolling window over which delivered marketing messages count.
    pub window: TimeDelta,
    /// How long a recipient's message keeps the customer-service window open.
    pub service_window: TimeDelta,
    /// A marketing send this soon after a cap is refused again, and restarts the block.
    pub retry_block: TimeDelta,
    /// Regions (ISO 3166 alpha-2) where the limit is not active: the EEA, the UK, Japan, Korea.
    pub uncapped_regions: BTreeSet<String>,
    /// Regions where no marketing template is delivered at all (131049 every time).
    pub paused_regions: BTreeSet<String>,
}

/// How one kind of recipient behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct KindProfile {
    /// Its share of a population, relative to the other kinds' weights.
    pub weight: u32,
    /// The marketing messages, from all businesses, it takes per window (drawn per recipient).
    pub budget: (u32, u32),
    /// Marketing deliveries per day from other businesses, which use up the same budget.
    pub background_per_day: f64,
    /// Whether other businesses have already spent its budget when the run starts.
    pub starts_spent: bool,
    /// The chance it reads a message delivered to it.
    pub read_probability: f64,
    /// The chance it writes back some time after a delivery.
    pub reply_probability: f64,
}

/// What becomes of one accepted send to a scripted recipient, whatever its template. Its
/// webhooks come after the usual delays (`timing`); a scripted recipient never writes back on
/// its own, and a read never skips `delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptedOutcome {
    /// `sent`, then `delivered`.
    Delivered,
    /// `sent`, `delivered`, then `read`.
    Read,
    /// `failed` with this error code.
    Failed(i64),
    /// The request is taken and never answered while the client waits ([`HANG`]), and no
    /// webhook ever follows: whether Meta sent the message is unknown, forever.
    Hang,
}

/// How long a [`ScriptedOutcome::Hang`] holds its request before answering 504 (wall time): far
/// longer than a client waits.
pub const HANG: std::time::Duration = std::time::Duration::from_secs(60);

/// A span of simulated time a delay is drawn from, uniformly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delay {
    pub min: TimeDelta,
    pub max: TimeDelta,
}

impl Delay {
    pub const fn new(min: TimeDelta, max: TimeDelta) -> Self {
        Self { min, max }
    }

    pub(crate) fn draw(self, rng: &mut impl RngExt) -> TimeDelta {
        let spread = (self.max - self.min).num_milliseconds().max(0);
        self.min + TimeDelta::milliseconds(if spread == 0 { 0 } else { rng.random_range(0..=spread) })
    }
}

/// How long each status takes, in simulated time.
#[derive(Debug, Clone)]
pub struct Timing {
    /// From acceptance to `sent`.
    pub sent: Delay,
    /// From `sent` to `delivered`.
    pub delivered: Delay,
    /// From `delivered` to `read`.
    pub read: Delay,
    /// From acceptance to `failed`.
    pub failed: Delay,
    /// From the last status to the recipient's reply.
    pub reply: Delay,
    /// The chance that a message read at once skips its `delivered` webhook.
    pub skip_delivered_probability: f64,
}

/// A named set of the marketing budget's parameters (docs/sandbox.md, "Cap models"), so that a
/// result can be checked against a stricter and a looser reading of Meta's rules, not only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapModel {
    /// The model docs/sandbox.md describes: the defaults.
    #[default]
    Default,
    /// Smaller allowances, twice the others' marketing, and a resend within 48 h of a cap
    /// refused: retries find room less often and a hasty one costs more.
    Strict,
    /// Larger allowances, half the others' marketing, and the block after a cap 12 h.
    Loose,
}

impl CapModel {
    pub const ALL: [CapModel; 3] = [Self::Default, Self::Strict, Self::Loose];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Strict => "strict",
            Self::Loose => "loose",
        }
    }

    /// Applies the model to `config`'s budget rules and its recipients' budgets and traffic.
    fn apply(self, config: &mut SandboxConfig) {
        let (allowance, background, block) = match self {
            Self::Default => return,
            Self::Strict => (0.6, 2.0, TimeDelta::hours(48)),
            Self::Loose => (1.5, 0.5, TimeDelta::hours(12)),
        };
        config.budget.retry_block = block;
        for profile in config.kinds.values_mut() {
            let scale = |n: u32| if n == 0 { 0 } else { ((f64::from(n) * allowance).round() as u32).max(1) };
            profile.budget = (scale(profile.budget.0), scale(profile.budget.1));
            profile.background_per_day *= background;
        }
    }
}

impl std::fmt::Display for CapModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CapModel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|model| model.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown cap model {text:?}: one of {}", names.join(", "))
        })
    }
}

impl SandboxConfig {
    /// The defaults with the marketing budget of `model`.
    pub fn with_cap_model(seed: u64, clock: ScaledClock, model: CapModel) -> Self {
        let mut config = Self::new(seed, clock);
        model.apply(&mut config);
        config
    }

    /// The defaults of docs/sandbox.md, on an ephemeral port.
    pub fn new(seed: u64, clock: ScaledClock) -> Self {
        Self {
            port: 0,
            seed,
            clock,
            access_token: DEFAULT_ACCESS_TOKEN.to_owned(),
            app_secret: AppSecret::new(DEFAULT_APP_SECRET),
            callback_url: None,
            business: Business {
                waba_id: "102290129340398".to_owned(),
                phone_number_id: "106540352242922".to_owned(),
                display_phone_number: "15550783881".to_owned(),
            },
            templates: default_templates(),
            limits: Limits {
                throughput_per_second: 80,
                pair_interval: TimeDelta::seconds(6),
                pair_burst: 45,
                messaging_limit: None,
            },
            budget: BudgetRules {
                window: TimeDelta::days(7),
                service_window: TimeDelta::hours(24),
                retry_block: TimeDelta::hours(24),
                uncapped_regions: regions(UNCAPPED_REGIONS),
                paused_regions: regions(&["US"]),
            },
            kinds: default_kinds(),
            scripts: BTreeMap::new(),
            aliases: BTreeMap::new(),
            timing: Timing {
                sent: Delay::new(TimeDelta::seconds(1), TimeDelta::seconds(3)),
                delivered: Delay::new(TimeDelta::seconds(2), TimeDelta::minutes(2)),
                read: Delay::new(TimeDelta::minutes(1), TimeDelta::hours(6)),
                failed: Delay::new(TimeDelta::seconds(2), TimeDelta::seconds(20)),
                reply: Delay::new(TimeDelta::minutes(5), TimeDelta::hours(4)),
                skip_delivered_probability: 0.15,
            },
            webhook_retries: vec![
                TimeDelta::zero(),
                TimeDelta::minutes(1),
                TimeDelta::minutes(10),
                TimeDelta::hours(1),
                TimeDelta::hours(6),
            ],
            webhook_batch: 1,
            scenario: Scenario::default(),
        }
    }

    /// Scripts the outcomes of the sends to `number` (any spelling: only its digits count), in
    /// order; the last one repeats. An empty script leaves the number to its kind.
    pub fn script(&mut self, number: &str, outcomes: impl IntoIterator<Item = ScriptedOutcome>) -> &mut Self {
        let outcomes: Vec<ScriptedOutcome> = outcomes.into_iter().collect();
        if outcomes.is_empty() {
            self.scripts.remove(&wa_id(number));
        } else {
            self.scripts.insert(wa_id(number), outcomes);
        }
        self
    }

    /// Makes Meta know `number` as `wa_id` (any spelling of either: only the digits count).
    pub fn alias(&mut self, number: &str, known_as: &str) -> &mut Self {
        self.aliases.insert(wa_id(number), wa_id(known_as));
        self
    }

    /// The `wa_id` Meta reports for a send to `number`.
    pub(crate) fn known_as(&self, number: &str) -> String {
        let digits = wa_id(number);
        self.aliases.get(&digits).cloned().unwrap_or(digits)
    }

    /// The profile of `kind`, or an inert one (never drawn, no budget) for a kind left out.
    pub(crate) fn profile(&self, kind: RecipientKind) -> KindProfile {
        self.kinds.get(&kind).cloned().unwrap_or(KindProfile {
            weight: 0,
            budget: (0, 0),
            background_per_day: 0.0,
            starts_spent: false,
            read_probability: 0.0,
            reply_probability: 0.0,
        })
    }
}

/// The EEA, the UK, Japan and South Korea (Meta's per-user-limits page).
const UNCAPPED_REGIONS: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT",
    "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO", "GB", "JP", "KR",
];

fn regions(codes: &[&str]) -> BTreeSet<String> {
    codes.iter().map(|code| (*code).to_owned()).collect()
}

fn default_templates() -> BTreeMap<String, Category> {
    [
        ("spring_sale", Category::Marketing),
        ("weekly_offers", Category::Marketing),
        ("back_in_stock", Category::Marketing),
        ("order_update", Category::Utility),
        ("delivery_update", Category::Utility),
        ("login_code", Category::Authentication),
    ]
    .into_iter()
    .map(|(name, category)| (name.to_owned(), category))
    .collect()
}

fn default_kinds() -> BTreeMap<RecipientKind, KindProfile> {
    let profile = |weight, budget, background_per_day, starts_spent, read_probability, reply_probability| KindProfile {
        weight,
        budget,
        background_per_day,
        starts_spent,
        read_probability,
        reply_probability,
    };
    BTreeMap::from([
        (RecipientKind::Engaged, profile(30, (6, 10), 0.5, false, 0.85, 0.05)),
        (RecipientKind::Fatigued, profile(20, (1, 2), 0.3, false, 0.10, 0.0)),
        (RecipientKind::Capped, profile(15, (2, 3), 0.4, true, 0.10, 0.0)),
        (RecipientKind::Us, profile(8, (0, 0), 0.0, false, 0.5, 0.0)),
        (RecipientKind::OptedOut, profile(7, (3, 5), 0.3, false, 0.2, 0.0)),
        (RecipientKind::NotOnWhatsApp, profile(5, (0, 0), 0.0, false, 0.0, 0.0)),
        (RecipientKind::Replier, profile(15, (3, 5), 0.4, false, 0.7, 0.6)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model: CapModel) -> SandboxConfig {
        let clock = ScaledClock::new(chrono::DateTime::UNIX_EPOCH, 1.0);
        SandboxConfig::with_cap_model(1, clock, model)
    }

    #[test]
    fn the_strict_model_gives_less_room_and_the_loose_one_more() {
        let (default, strict, loose) = (config(CapModel::Default), config(CapModel::Strict), config(CapModel::Loose));
        assert_eq!(default.budget.retry_block, SandboxConfig::new(1, default.clock).budget.retry_block);
        assert!(strict.budget.retry_block > default.budget.retry_block);
        assert!(loose.budget.retry_block < default.budget.retry_block);
        for (kind, profile) in &default.kinds {
            let (tight, easy) = (&strict.kinds[kind], &loose.kinds[kind]);
            assert!(tight.budget.1 <= profile.budget.1 && profile.budget.1 <= easy.budget.1, "{kind:?}");
            assert!(tight.background_per_day >= profile.background_per_day, "{kind:?}");
            assert!(easy.background_per_day <= profile.background_per_day, "{kind:?}");
            assert_eq!(tight.budget.0 == 0, profile.budget.0 == 0, "a kind without a budget keeps none");
        }
        assert!(strict.kinds[&RecipientKind::Engaged].budget.1 < default.kinds[&RecipientKind::Engaged].budget.1);
    }

    #[test]
    fn cap_models_are_named() {
        for model in CapModel::ALL {
            assert_eq!(model.as_str().parse::<CapModel>(), Ok(model));
        }
        assert!("lenient".parse::<CapModel>().unwrap_err().contains("default, strict, loose"));
    }
}
