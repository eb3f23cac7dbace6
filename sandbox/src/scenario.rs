//! Account events on a schedule: what Meta does to a business's account while a campaign runs
//! (a new messaging limit, a quality rating that drops and recovers, a template paused or paced),
//! played by the sandbox at set times after it starts, each with the webhook Meta would post.
//! The same events can be ordered one at a time through [`crate::SandboxHandle`].
//!
//! A scenario is written as a comma-separated list of `<delay> <event>`, the delay from the
//! sandbox's start in simulated time (`30m`, `6h`, `2d`):
//!
//! | event | what Meta does |
//! |---|---|
//! | `limit=250`, `limit=2k`, `limit=unlimited` | changes the portfolio's messaging limit |
//! | `quality=red`, `quality=green` | flags the number's quality as low, or lifts the flag |
//! | `template=NAME/paused` (`disabled`, `unpaused`, `reinstated`, `approved`) | changes a template's status |
//! | `template_quality=NAME/yellow` (`green`, `red`) | rescores a template's quality |
//! | `pace=NAME/6h`, `pace=NAME/off` | paces a template in every language, holding each message that long, or stops |
//!
//! A template's name may carry its language, `NAME@pt_BR`; it is `en_US` otherwise (pacing, as
//! the sandbox models it, is by name).
//! [`Scenario::HEALTH`] is the one `capguard demo --events health` plays.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;
use shared::domain::ladder::{format_delay, parse_delay};
use shared::domain::limit::MessagingLimit;

/// One thing Meta does to the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    /// The portfolio's messaging limit changes (`None`: unlimited); Meta posts
    /// `business_capability_update`.
    MessagingLimit(Option<u32>),
    /// The number's quality rating drops to low (`flagged`, RED) or recovers (GREEN); Meta posts
    /// `phone_number_quality_update`.
    Quality { flagged: bool },
    /// A template's status changes; Meta posts `message_template_status_update`.
    TemplateStatus { name: String, language: String, status: TemplateStatus },
    /// A template's quality is rescored (`GREEN`, `YELLOW`, `RED`); Meta posts
    /// `message_template_quality_update`.
    TemplateQuality { name: String, language: String, score: String },
    /// Meta paces a template (in every language), holding each of its messages `hold` before it
    /// goes out; `None` stops. Nothing is posted: the sends' answers say
    /// `held_for_quality_assessment`.
    Pace { name: String, hold: Option<TimeDelta> },
}

/// The template statuses a scenario can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateStatus {
    Paused,
    Unpaused,
    Disabled,
    Reinstated,
    Approved,
}

impl TemplateStatus {
    /// The webhook's `event` and its `other_info.title`, as Meta writes them.
    pub fn meta_event(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Paused => ("PAUSED", Some("FIRST_PAUSE")),
            Self::Unpaused => ("PAUSED", Some("UNPAUSE")),
            Self::Disabled => ("DISABLED", None),
            Self::Reinstated => ("REINSTATED", None),
            Self::Approved => ("APPROVED", None),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Paused => "paused",
            Self::Unpaused => "unpaused",
            Self::Disabled => "disabled",
            Self::Reinstated => "reinstated",
            Self::Approved => "approved",
        }
    }
}

impl FromStr for TemplateStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Paused, Self::Unpaused, Self::Disabled, Self::Reinstated, Self::Approved]
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!("{text:?} is not a template status (paused, unpaused, disabled, reinstated, approved)")
            })
    }
}

/// An event and how long after the sandbox's start (simulated time) it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    pub after: TimeDelta,
    pub event: AccountEvent,
}

/// The account events of a run, in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scenario(Vec<Timed>);

impl Scenario {
    /// The demo's account-health story for its `spring_sale` campaign: Meta paces the new template
    /// for its first six hours, flags the number's quality at 20 h and lifts the flag at 44 h, then
    /// pauses the template from 68 h for three hours (the length of Meta's first pause), rating it
    /// RED.
    pub const HEALTH: &'static str = "0s pace=spring_sale/6h, 6h pace=spring_sale/off, 20h quality=red, \
        44h quality=green, 68h template=spring_sale/paused, 68h template_quality=spring_sale/red, \
        71h template=spring_sale/unpaused";

    pub fn events(&self) -> &[Timed] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Scenario {
    type Err = String;

    /// A comma-separated list of `<delay> <event>`; empty, or `none`, for no events.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(Self::default());
        }
        let entries = text.split(',').map(str::trim).filter(|entry| !entry.is_empty());
        let mut events = entries.map(str::parse::<Timed>).collect::<Result<Vec<_>, _>>()?;
        // Stable: events at the same time keep the order they were written in.
        events.sort_by_key(|timed| timed.after);
        Ok(Self(events))
    }
}

impl FromStr for Timed {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (delay, event) =
            text.split_once(char::is_whitespace).ok_or_else(|| format!("{text:?} is not `<delay> <event>`"))?;
        let after = parse_delay(delay).map_err(|problem| format!("{text:?}: {problem}"))?;
        if after < TimeDelta::zero() {
            return Err(format!("{text:?}: an event cannot come before the start"));
        }
        let event = event.trim().parse().map_err(|problem| format!("{text:?}: {problem}"))?;
        Ok(Self { after, event })
    }
}

/// `NAME` or `NAME@LANGUAGE`.
fn template(text: &str) -> Result<(String, String), String> {
    let (name, language) = text.split_once('@').unwrap_or((text, "en_US"));
    let valid = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !(valid(name) && valid(language)) {
        return Err(format!("{text:?} is not a template name (letters, digits, _) with an optional @language"));
    }
    Ok((name.to_owned(), language.to_owned()))
}

impl FromStr for AccountEvent {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not `<event>=<value>`"))?;
        let value = value.trim();
        let templated = || {
            value.split_once('/').ok_or_else(|| format!("{key}= takes `NAME/<value>`, not {value:?}")).and_then(
                |(name, what)| template(name.trim()).map(|(name, language)| (name, language, what.trim().to_owned())),
            )
        };
        match key.trim() {
            "limit" => match value.parse::<MessagingLimit>()? {
                MessagingLimit::Unique(n) => Ok(Self::MessagingLimit(Some(n))),
                MessagingLimit::Unlimited => Ok(Self::MessagingLimit(None)),
            },
            "quality" => match value.to_ascii_lowercase().as_str() {
                "red" => Ok(Self::Quality { flagged: true }),
                "green" => Ok(Self::Quality { flagged: false }),
                _ => Err(format!("quality= takes red or green, not {value:?}")),
            },
            "template" => {
                let (name, language, status) = templated()?;
                Ok(Self::TemplateStatus { name, language, status: status.parse()? })
            }
            "template_quality" => {
                let (name, language, score) = templated()?;
                let score = score.to_ascii_uppercase();
                if !["GREEN", "YELLOW", "RED"].contains(&score.as_str()) {
                    return Err(format!("template_quality= takes green, yellow or red, not {score:?}"));
                }
                Ok(Self::TemplateQuality { name, language, score })
            }
            "pace" => {
                let (name, _, hold) = templated()?;
                let hold = match hold.as_str() {
                    "off" => None,
                    hold => match parse_delay(hold) {
                        Ok(hold) if hold > TimeDelta::zero() => Some(hold),
                        _ => return Err(format!("pace= takes a hold such as 6h, or off, not {hold:?}")),
                    },
                };
                Ok(Self::Pace { name, hold })
            }
            other => Err(format!("{other:?} is not an event (limit, quality, template, template_quality, pace)")),
        }
    }
}

impl fmt::Display for AccountEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MessagingLimit(Some(n)) => write!(f, "messaging limit {n}"),
            Self::MessagingLimit(None) => write!(f, "messaging limit unlimited"),
            Self::Quality { flagged: true } => write!(f, "quality RED (flagged)"),
            Self::Quality { flagged: false } => write!(f, "quality GREEN (unflagged)"),
            Self::TemplateStatus { name, language, status } => {
                write!(f, "template {name} ({language}) {}", status.as_str())
            }
            Self::TemplateQuality { name, language, score } => write!(f, "template {name} ({language}) rated {score}"),
            Self::Pace { name, hold: Some(hold) } => {
                write!(f, "pacing {name}, each message held {}", format_delay(*hold))
            }
            Self::Pace { name, hold: None } => write!(f, "pacing {name} over"),
        }
    }
}

impl fmt::Display for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, hours, minutes) =
            (self.after.num_days(), self.after.num_hours() % 24, self.after.num_minutes() % 60);
        write!(f, "+{days}d {hours:02}h{minutes:02}  {}", self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_reads_every_kind_of_event_in_time_order() {
        let scenario: Scenario =
            "2d quality=green, 1d quality=red, 0s limit=2k, 3d template=promo@pt_BR/paused, 3d pace=promo/6h"
                .parse()
                .unwrap();
        let events: Vec<String> = scenario.events().iter().map(Timed::to_string).collect();
        assert_eq!(
            events,
            [
                "+0d 00h00  messaging limit 2000",
                "+1d 00h00  quality RED (flagged)",
                "+2d 00h00  quality GREEN (unflagged)",
                "+3d 00h00  template promo (pt_BR) paused",
                "+3d 00h00  pacing promo, each message held 6h",
            ]
        );
        assert_eq!(
            "1h template_quality=promo/yellow".parse::<Timed>().unwrap().event,
            AccountEvent::TemplateQuality { name: "promo".into(), language: "en_US".into(), score: "YELLOW".into() }
        );
        assert_eq!("5m limit=unlimited".parse::<Timed>().unwrap().event, AccountEvent::MessagingLimit(None));
        assert_eq!(
            "5m pace=promo/off".parse::<Timed>().unwrap().event,
            AccountEvent::Pace { name: "promo".into(), hold: None }
        );
        assert!("None".parse::<Scenario>().unwrap().is_empty());
        assert_eq!("1d quality=red,".parse::<Scenario>().unwrap().events().len(), 1, "a trailing comma");
        assert_eq!(Scenario::HEALTH.parse::<Scenario>().unwrap().events().len(), 7);
    }

    #[test]
    fn a_bad_event_is_refused_with_what_was_wrong() {
        for (text, says) in [
            ("quality=red", "is not `<delay> <event>`"),
            ("soon quality=red", "soon"),
            ("1d quality=amber", "red or green"),
            ("1d template=promo/retired", "not a template status"),
            ("1d template=promo", "NAME/<value>"),
            ("1d template=pro mo/paused", "not a template name"),
            ("1d pace=promo/0h", "a hold such as 6h"),
            ("1d limit=lots", "lots"),
            ("1d weather=rain", "not an event"),
            ("-1d quality=red", "before the start"),
        ] {
            let problem = text.parse::<Scenario>().unwrap_err();
            assert!(problem.contains(says), "{text}: {problem}");
        }
    }
}
