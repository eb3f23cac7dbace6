//! Configuration: the environment variables capguard reads, named once here, and what they build:
//! the [`Settings`] the Lambda functions and `capguard serve` read alike (the rules, the retention,
//! how sends go out). What only a deployed function reads (its table, schedule group, secrets in
//! SSM) and the ports built on it are in [`lambda`].

pub mod lambda;

use std::str::FromStr;

use chrono::TimeDelta;

use crate::cloud::Endpoint;
use crate::domain::hold::{HoldLimits, HoldLimitsError};
use crate::domain::ladder::{DEFAULT_LADDER, DEFAULT_MIN_STEP, Ladder, LadderError, parse_delay};
use crate::domain::lifecycle::DELIVERY_HORIZON;
use crate::domain::limit::{MessagingLimit, WarmUps};
use crate::domain::policy::Policy;
use crate::domain::quality::YellowShare;
use crate::domain::rules::{Backoff, FrequencyCap, OptOutKeywords, PausedRegions};
use crate::domain::verdict::Rules;
use crate::store::DEFAULT_RETENTION;
use crate::usecase::SendSettings;

/// The retry ladder, e.g. `24h,48h,96h`.
pub const RETRY_DELAYS: &str = "RETRY_DELAYS";
/// The shortest step the retry ladder may have, e.g. `1h`.
pub const RETRY_MIN_STEP: &str = "RETRY_MIN_STEP";
/// Regions whose marketing is never delivered, e.g. `US`.
pub const MARKETING_PAUSED_REGIONS: &str = "MARKETING_PAUSED_REGIONS";
/// Whole-message words and quick-reply payloads that mean opt-out, comma-separated.
pub const OPT_OUT_KEYWORDS: &str = "OPT_OUT_KEYWORDS";
/// Our own cap on delivered marketing per recipient: `2/7d`, or `off`.
pub const MARKETING_FREQUENCY_CAP: &str = "MARKETING_FREQUENCY_CAP";
/// The recipients' night, when no retry lands: `21:00-09:00` (local time), or `off`.
pub const QUIET_HOURS: &str = "QUIET_HOURS";
/// The least time between a cap and its retry, whatever the ladder's step: `24h`, or `off` (the default).
pub const REST_AFTER_CAP: &str = "REST_AFTER_CAP";
/// From which consecutive cap of a contact its steps are doubled: `3`, or `off`.
pub const STRETCH_FROM_CAPS: &str = "STRETCH_FROM_CAPS";
/// Whether a cap that arrives while the recipient's window is open is retried at once: `on` or `off`.
pub const RETRY_IN_WINDOW: &str = "RETRY_IN_WINDOW";
/// Whether a marketing request's first attempts go to its engaged recipients first: `on` or `off`.
pub const ENGAGED_FIRST: &str = "ENGAGED_FIRST";
/// Whether marketing goes only to recipients with an opt-in recorded: `on` or `off` (the default).
pub const REQUIRE_OPT_IN: &str = "REQUIRE_OPT_IN";
/// The portfolio's messaging limit, counted and kept to: `250`, `2k`, `10k`, `100k`, `unlimited`,
/// or `off` (the default: nothing counted).
pub const MESSAGING_LIMIT: &str = "MESSAGING_LIMIT";
/// Warm-ups of marketing first attempts under the messaging limit: `2026-12-01:10%,25%,50%` (the
/// first day, then the share of the limit each day) for the portfolio, and/or
/// `<phone number id>@2026-12-01:10%,25%` for each number marked new, separated by `;`; or `off`
/// (the default).
pub const WARM_UP: &str = "WARM_UP";
/// The share of throughput and messaging limit a YELLOW-rated number's marketing first attempts
/// may take: `50%` (the default).
pub const QUALITY_YELLOW_SHARE: &str = "QUALITY_YELLOW_SHARE";
/// The Meta app secret that signs webhooks (the local stack; Lambda reads it from SSM).
pub const WHATSAPP_APP_SECRET: &str = "WHATSAPP_APP_SECRET";
/// The Cloud API access token (the local stack; Lambda reads it from SSM).
pub const WHATSAPP_ACCESS_TOKEN: &str = "WHATSAPP_ACCESS_TOKEN";
/// The token Meta's verification handshake must present (the local stack; Lambda reads it from SSM).
pub const WHATSAPP_VERIFY_TOKEN: &str = "WHATSAPP_VERIFY_TOKEN";
/// The SSM parameter (SecureString) holding the app secret.
pub const WHATSAPP_APP_SECRET_PARAM: &str = "WHATSAPP_APP_SECRET_PARAM";
/// The SSM parameter (SecureString) holding the access token.
pub const WHATSAPP_ACCESS_TOKEN_PARAM: &str = "WHATSAPP_ACCESS_TOKEN_PARAM";
/// The SSM parameter (SecureString) holding the verify token.
pub const WHATSAPP_VERIFY_TOKEN_PARAM: &str = "WHATSAPP_VERIFY_TOKEN_PARAM";
/// The DynamoDB table.
pub const TABLE_NAME: &str = "TABLE_NAME";
/// How long items are kept, e.g. `90d`.
pub const DATA_RETENTION: &str = "DATA_RETENTION";
/// The EventBridge Scheduler group that holds the retry schedules.
pub const SCHEDULE_GROUP: &str = "SCHEDULE_GROUP";
/// The retry executor function the schedules invoke.
pub const RETRY_FUNCTION_ARN: &str = "RETRY_FUNCTION_ARN";
/// The role EventBridge Scheduler assumes to invoke it.
pub const SCHEDULER_ROLE_ARN: &str = "SCHEDULER_ROLE_ARN";
/// The queue that receives invocations the scheduler gave up on.
pub const SCHEDULER_DLQ_ARN: &str = "SCHEDULER_DLQ_ARN";
/// The Graph API's base URL (the sandbox's, locally).
pub const GRAPH_API_BASE_URL: &str = "GRAPH_API_BASE_URL";
/// The Graph API version, e.g. `v25.0`.
pub const GRAPH_API_VERSION: &str = "GRAPH_API_VERSION";
/// `messages` (the Cloud API) or `marketing_messages` (the Marketing Messages API).
pub const SEND_ENDPOINT: &str = "SEND_ENDPOINT";
/// Messages per second per business number.
pub const THROUGHPUT_PER_SECOND: &str = "THROUGHPUT_PER_SECOND";
/// How often `capguard serve` sweeps for overdue sends, e.g. `5m` (on AWS the template's
/// `SweepIntervalMinutes` sets the sweep schedule's rate).
pub const SWEEP_INTERVAL: &str = "SWEEP_INTERVAL";

/// How long a held send waits before it may go out as the hold's probe, e.g. `30m`.
pub const HOLD_PROBE_EVERY: &str = "HOLD_PROBE_EVERY";
/// A hold older than this raises an alarm, e.g. `24h`.
pub const HOLD_ALARM_AFTER: &str = "HOLD_ALARM_AFTER";
/// Sends held longer than this end as `held_too_long`, e.g. `72h`.
pub const HOLD_GIVE_UP_AFTER: &str = "HOLD_GIVE_UP_AFTER";
/// The queue that carries the chunks of a large send request (send-dispatch on AWS).
pub const SEND_QUEUE_URL: &str = "SEND_QUEUE_URL";
/// The EventBridge bus the functions publish their outcome events to; none published when unset
/// or empty (the template sets `default`).
pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
/// The ARN of the SQS queue webhook-intake sends every verified webhook body to: the business's
/// own, or the template's forward queue, which webhook-forward empties into the business's
/// endpoint. No forwarding when unset or empty.
pub const FORWARD_QUEUE_ARN: &str = "FORWARD_QUEUE_ARN";
/// The business's HTTPS endpoint webhook-forward posts the bodies to.
pub const FORWARD_URL: &str = "FORWARD_URL";
/// The SSM parameter holding the secret forwarded bodies are signed with.
pub const FORWARD_SECRET_PARAM: &str = "FORWARD_SECRET_PARAM";
/// The forwarding secret itself, for `capguard serve`.
pub const FORWARD_SECRET: &str = "FORWARD_SECRET";

/// A variable that is set but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

/// What every capguard process reads alike: the rules, how long items are kept, how sends go out.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub rules: Rules,
    pub retention: TimeDelta,
    pub sending: SendSettings,
}

impl Settings {
    /// Reads the settings from variables looked up by name; an unset variable takes its default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let rules = Rules::from_lookup(&lookup)?;
        // An unfinished send must outlive its longest wait: a message in flight waits Meta's
        // delivery window out, a capped one the ladder's longest step, which the policy may
        // double (a contact capped again and again) and move past a night.
        let longest_step = rules.ladder.delays().iter().copied().max().unwrap_or_default();
        let shortest = DELIVERY_HORIZON + longest_step * 2 + TimeDelta::days(1);
        let retention = match lookup(DATA_RETENTION) {
            None => DEFAULT_RETENTION,
            Some(text) => parse_delay(&text).ok().filter(|d| *d > shortest).ok_or(ConfigError {
                name: DATA_RETENTION,
                message: format!(
                    "{text:?} is not a period longer than {} days (how long a send may stay unfinished), e.g. 90d",
                    shortest.num_days()
                ),
            })?,
        };
        let endpoint = match lookup(SEND_ENDPOINT).as_deref() {
            None | Some("messages") => Endpoint::Messages,
            Some("marketing_messages") => Endpoint::MarketingMessages,
            Some(other) => {
                return Err(ConfigError {
                    name: SEND_ENDPOINT,
                    message: format!("{other:?} is not messages or marketing_messages"),
                });
            }
        };
        let throughput = parse_or(&lookup, THROUGHPUT_PER_SECOND, 80_u32)?;
        if throughput == 0 {
            return Err(ConfigError { name: THROUGHPUT_PER_SECOND, message: "must be at least 1".into() });
        }
        let sending = SendSettings { endpoint, throughput_per_second: throughput, ..SendSettings::default() };
        Ok(Self { rules, retention, sending })
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

fn parse_or<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(text) => {
            text.trim().parse().map_err(|_| ConfigError { name, message: format!("{text:?} is not a whole number") })
        }
    }
}

impl Rules {
    /// Builds the rules from variables looked up by name; an unset variable takes its default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn read<T: std::str::FromStr + Default>(
            lookup: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            match lookup(name) {
                None => Ok(T::default()),
                Some(value) => value.parse().map_err(|e: T::Err| ConfigError { name, message: e.to_string() }),
            }
        }
        Ok(Self {
            ladder: ladder(&lookup)?,
            paused_regions: read::<PausedRegions>(&lookup, MARKETING_PAUSED_REGIONS)?,
            opt_out_keywords: read::<OptOutKeywords>(&lookup, OPT_OUT_KEYWORDS)?,
            frequency_cap: read::<FrequencyCap>(&lookup, MARKETING_FREQUENCY_CAP)?,
            backoff: Backoff::default(),
            holds: hold_limits(&lookup)?,
            policy: policy(&lookup)?,
            require_opt_in: switch(&lookup, REQUIRE_OPT_IN, false)?,
            messaging_limit: messaging_limit(&lookup)?,
            warm_up: warm_up(&lookup)?,
            yellow_share: read::<YellowShare>(&lookup, QUALITY_YELLOW_SHARE)?,
        })
    }

    /// Builds the rules from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// `RETRY_DELAYS`, none of its steps shorter than `RETRY_MIN_STEP`. A problem is put on the
/// variable that was set: the minimum when it is not positive, or when it is longer than a step of
/// the default ladder that `RETRY_DELAYS` was left to.
fn ladder(lookup: &impl Fn(&str) -> Option<String>) -> Result<Ladder, ConfigError> {
    let on_min_step = |message: String| ConfigError { name: RETRY_MIN_STEP, message };
    let min_step = match lookup(RETRY_MIN_STEP) {
        None => DEFAULT_MIN_STEP,
        Some(text) => parse_delay(&text).map_err(|e| on_min_step(e.to_string()))?,
    };
    let set = lookup(RETRY_DELAYS);
    let delays = set.as_deref().unwrap_or(DEFAULT_LADDER);
    Ladder::parse_with_min_step(delays, min_step).map_err(|e| match e {
        LadderError::MinStepNotPositive(_) => on_min_step(e.to_string()),
        _ if set.is_some() => ConfigError { name: RETRY_DELAYS, message: e.to_string() },
        _ => on_min_step(format!("{e}, in the default ladder {DEFAULT_LADDER}: set {RETRY_DELAYS} too")),
    })
}

/// The default policy, with the parts the environment switches off.
fn policy(lookup: &impl Fn(&str) -> Option<String>) -> Result<Policy, ConfigError> {
    let defaults = Policy::default();
    let quiet_hours = match lookup(QUIET_HOURS).as_deref().map(str::trim) {
        None => defaults.quiet_hours,
        Some("off") => None,
        Some(text) => Some(text.parse().map_err(|message| ConfigError { name: QUIET_HOURS, message })?),
    };
    let in_window = switch(lookup, RETRY_IN_WINDOW, defaults.in_window)?;
    let engaged_first = switch(lookup, ENGAGED_FIRST, defaults.engaged_first)?;
    let rest_after_cap = match lookup(REST_AFTER_CAP).as_deref().map(str::trim) {
        None => defaults.rest_after_cap,
        Some("off") => None,
        Some(text) => {
            Some(parse_delay(text).map_err(|e| ConfigError { name: REST_AFTER_CAP, message: e.to_string() })?)
        }
    };
    let stretch_from = match lookup(STRETCH_FROM_CAPS).as_deref().map(str::trim) {
        None => defaults.stretch_from,
        Some("off") => None,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                let message = format!("{text:?} is not a count of caps (1 or more) or off");
                return Err(ConfigError { name: STRETCH_FROM_CAPS, message });
            }
        },
    };
    Ok(Policy { rest_after_cap, stretch_from, in_window, quiet_hours, engaged_first })
}

/// A setting that is `on` or `off`, `default` when not set.
fn switch(lookup: &impl Fn(&str) -> Option<String>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match lookup(name).as_deref().map(str::trim) {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(ConfigError { name, message: format!("{other:?} is not on or off") }),
    }
}

/// `MESSAGING_LIMIT`: a limit, or `off` (unset).
fn messaging_limit(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<MessagingLimit>, ConfigError> {
    match lookup(MESSAGING_LIMIT).as_deref().map(str::trim) {
        None => Ok(None),
        Some(text) if text.eq_ignore_ascii_case("off") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|message| ConfigError { name: MESSAGING_LIMIT, message }),
    }
}

/// `WARM_UP`: the warm-ups, or `off` (unset).
fn warm_up(lookup: &impl Fn(&str) -> Option<String>) -> Result<WarmUps, ConfigError> {
    match lookup(WARM_UP).as_deref().map(str::trim) {
        None => Ok(WarmUps::default()),
        Some(text) if text.eq_ignore_ascii_case("off") => Ok(WarmUps::default()),
        Some(text) => text.parse().map_err(|message| ConfigError { name: WARM_UP, message }),
    }
}

fn hold_limits(lookup: &impl Fn(&str) -> Option<String>) -> Result<HoldLimits, ConfigError> {
    let defaults = HoldLimits::default();
    let period = |name: &'static str, default| match lookup(name) {
        None => Ok(default),
        Some(text) => parse_delay(&text).map_err(|e| ConfigError { name, message: e.to_string() }),
    };
    let probe_every = period(HOLD_PROBE_EVERY, defaults.probe_every)?;
    let alarm_after = period(HOLD_ALARM_AFTER, defaults.alarm_after)?;
    let give_up_after = period(HOLD_GIVE_UP_AFTER, defaults.give_up_after)?;
    HoldLimits::new(probe_every, alarm_after, give_up_after).map_err(|e| {
        let name = match e {
            HoldLimitsError::ProbeEvery(..) => HOLD_PROBE_EVERY,
            HoldLimitsError::AlarmAfter(..) => HOLD_GIVE_UP_AFTER,
        };
        ConfigError { name, message: e.to_string() }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn unset_variables_take_the_defaults() {
        assert_eq!(Rules::from_lookup(|_| None), Ok(Rules::default()));
    }

    #[test]
    fn set_variables_are_read() {
        let env = HashMap::from([(RETRY_DELAYS, "24h,48h,96h"), (MARKETING_FREQUENCY_CAP, "off")]);
        let rules = Rules::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(rules.ladder.to_string(), "24h,48h,96h");
        assert_eq!(rules.frequency_cap, FrequencyCap::Off);
    }

    #[test]
    fn opt_in_is_required_only_when_switched_on() {
        assert!(!Rules::from_lookup(|_| None).unwrap().require_opt_in);
        let on = Rules::from_lookup(|name| (name == REQUIRE_OPT_IN).then(|| "on".to_owned())).unwrap();
        assert!(on.require_opt_in);
        let err = Rules::from_lookup(|name| (name == REQUIRE_OPT_IN).then(|| "yes".to_owned())).unwrap_err();
        assert_eq!(err.to_string(), "REQUIRE_OPT_IN: \"yes\" is not on or off");
    }

    #[test]
    fn the_messaging_limit_is_off_unless_set() {
        let with =
            |value: &'static str| Rules::from_lookup(move |name| (name == MESSAGING_LIMIT).then(|| value.to_owned()));
        assert_eq!(Rules::from_lookup(|_| None).unwrap().messaging_limit, None);
        assert_eq!(with("off").unwrap().messaging_limit, None);
        assert_eq!(with("250").unwrap().messaging_limit, Some(MessagingLimit::Unique(250)));
        assert_eq!(with("10k").unwrap().messaging_limit, Some(MessagingLimit::Unique(10_000)));
        assert_eq!(with("unlimited").unwrap().messaging_limit, Some(MessagingLimit::Unlimited));
        let err = with("many").unwrap_err().to_string();
        assert!(err.starts_with("MESSAGING_LIMIT: "), "{err}");
        let warm = |value: &'static str| Rules::from_lookup(move |name| (name == WARM_UP).then(|| value.to_owned()));
        assert_eq!(Rules::from_lookup(|_| None).unwrap().warm_up, WarmUps::default());
        assert_eq!(warm("2026-12-01:10%,50%").unwrap().warm_up.portfolio.map(|w| w.ramp), Some(vec![10, 50]));
        let number = warm("106540352242922@2026-12-01:10%").unwrap().warm_up;
        assert_eq!(number.of_number("106540352242922").map(|w| w.ramp.clone()), Some(vec![10]));
        let err = warm("2026-12-01:10%,5%").unwrap_err().to_string();
        assert!(err.starts_with("WARM_UP: "), "{err}");
        let share = |value: &'static str| {
            Rules::from_lookup(move |name| (name == QUALITY_YELLOW_SHARE).then(|| value.to_owned()))
        };
        assert_eq!(Rules::from_lookup(|_| None).unwrap().yellow_share, YellowShare(50));
        assert_eq!(share("25%").unwrap().yellow_share, YellowShare(25));
        assert!(share("0%").is_err() && share("150").is_err());
    }

    #[test]
    fn hold_limits_are_read_and_checked() {
        use chrono::TimeDelta;
        let env = HashMap::from([(HOLD_PROBE_EVERY, "10m"), (HOLD_ALARM_AFTER, "6h"), (HOLD_GIVE_UP_AFTER, "2d")]);
        let rules = Rules::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
        let limits = HoldLimits::new(TimeDelta::minutes(10), TimeDelta::hours(6), TimeDelta::days(2)).unwrap();
        assert_eq!(rules.holds, limits);
        assert_eq!(rules.holds.hold(132015, chrono::DateTime::UNIX_EPOCH).probe_at.timestamp(), 600);
        let err = Rules::from_lookup(|name| (name == HOLD_GIVE_UP_AFTER).then(|| "1h".to_owned())).unwrap_err();
        assert_eq!(err.name, HOLD_GIVE_UP_AFTER);
        let err = Rules::from_lookup(|name| (name == HOLD_PROBE_EVERY).then(|| "4d".to_owned())).unwrap_err();
        assert_eq!(err.name, HOLD_PROBE_EVERY, "{err:?}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Rules::from_lookup(|name| (name == RETRY_DELAYS).then(|| "48h,24h".to_owned())).unwrap_err();
        assert_eq!(err.name, RETRY_DELAYS);
        assert!(err.to_string().starts_with("RETRY_DELAYS: retry delays may repeat but never shrink"), "{err}");
        let err = Rules::from_lookup(|name| (name == RETRY_MIN_STEP).then(|| "soon".to_owned())).unwrap_err();
        assert_eq!(err.name, RETRY_MIN_STEP);
    }

    #[test]
    fn the_policys_parts_are_on_unless_switched_off() {
        let rules = Rules::from_lookup(|_| None).unwrap();
        assert_eq!(rules.policy, Policy::default());
        let env = HashMap::from([
            (QUIET_HOURS, "off"),
            (RETRY_IN_WINDOW, "off"),
            (REST_AFTER_CAP, "off"),
            (STRETCH_FROM_CAPS, "off"),
            (ENGAGED_FIRST, "off"),
        ]);
        let rules = Rules::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(rules.policy, Policy::off());
        let env = HashMap::from([(QUIET_HOURS, "22:00-08:00")]);
        let rules = Rules::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(rules.policy.quiet_hours.map(|q| q.to_string()).as_deref(), Some("22:00-08:00"));
        let env = HashMap::from([(REST_AFTER_CAP, "24h")]);
        let rules = Rules::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(rules.policy.rest_after_cap, Some(TimeDelta::hours(24)));
        let bad = [
            (QUIET_HOURS, "late"),
            (RETRY_IN_WINDOW, "sometimes"),
            (ENGAGED_FIRST, "yes"),
            (REST_AFTER_CAP, "a day"),
            (STRETCH_FROM_CAPS, "0"),
        ];
        for (name, value) in bad {
            let env = HashMap::from([(name, value)]);
            let err = Rules::from_lookup(|n| env.get(n).map(|v| v.to_string())).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{name}: ")), "{err}");
        }
    }

    #[test]
    fn the_shortest_step_is_an_hour_unless_configured() {
        let quick = HashMap::from([(RETRY_DELAYS, "15s,30s,30s")]);
        let err = Rules::from_lookup(|name| quick.get(name).map(|v| v.to_string())).unwrap_err();
        assert_eq!(err.to_string(), "RETRY_DELAYS: retry delay 15s is shorter than the shortest step allowed, 1h");
        let allowed = HashMap::from([(RETRY_DELAYS, "15s,30s,30s"), (RETRY_MIN_STEP, "15s")]);
        let rules = Rules::from_lookup(|name| allowed.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(rules.ladder.to_string(), "15s,30s,30s");
        let strict = HashMap::from([(RETRY_MIN_STEP, "3d")]);
        let err = Rules::from_lookup(|name| strict.get(name).map(|v| v.to_string())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "RETRY_MIN_STEP: retry delay 48h is shorter than the shortest step allowed, 72h, in the default ladder \
             48h,48h,48h,48h,48h,48h,48h: set RETRY_DELAYS too"
        );
        let fits = HashMap::from([(RETRY_MIN_STEP, "3d"), (RETRY_DELAYS, "3d,3d")]);
        assert!(Rules::from_lookup(|name| fits.get(name).map(|v| v.to_string())).is_ok());
        for zero in
            [HashMap::from([(RETRY_MIN_STEP, "0s")]), HashMap::from([(RETRY_MIN_STEP, "0s"), (RETRY_DELAYS, "1h")])]
        {
            let err = Rules::from_lookup(|name| zero.get(name).map(|v| v.to_string())).unwrap_err();
            assert_eq!(err.to_string(), "RETRY_MIN_STEP: the shortest step allowed, 0s, is not positive");
        }
    }
}
