//! A business number's quality rating, and what it does to its marketing.
//!
//! Meta rates each number GREEN (high), YELLOW (medium) or RED (low) from how its recipients
//! receive its messages (blocks, reports, reads), and a low rating makes WhatsApp stricter with it.
//! capguard keeps the rating Meta last reported for each number, with its history, and:
//! - on YELLOW slows that number's marketing first attempts to a share (`QUALITY_YELLOW_SHARE`) of
//!   its throughput and of the messaging limit;
//! - on RED pauses them: they wait, re-looked at every `HOLD_PROBE_EVERY`, and an alarm is raised;
//! - back on GREEN, they go as before.
//!
//! Ladder retries keep their schedule, and utility and authentication are never slowed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rules::Category;

/// A number's quality rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QualityRating {
    Green,
    Yellow,
    Red,
}

impl QualityRating {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Green => "GREEN",
            Self::Yellow => "YELLOW",
            Self::Red => "RED",
        }
    }

    /// The rating a `phone_number_quality_update` reports: its rating field when it carries one
    /// (`GREEN`, `YELLOW`, `RED`, or `HIGH`, `MEDIUM`, `LOW`), or else its event: `FLAGGED` (the
    /// rating dropped to low) is RED, `UNFLAGGED` (it recovered) GREEN. Anything else says nothing.
    pub fn reported(rating: Option<&str>, event: Option<&str>) -> Option<Self> {
        rating.and_then(|rating| rating.parse().ok()).or_else(|| match event?.to_ascii_uppercase().as_str() {
            "FLAGGED" => Some(Self::Red),
            "UNFLAGGED" => Some(Self::Green),
            _ => None,
        })
    }
}

impl FromStr for QualityRating {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_uppercase().as_str() {
            "GREEN" | "HIGH" => Ok(Self::Green),
            "YELLOW" | "MEDIUM" => Ok(Self::Yellow),
            "RED" | "LOW" => Ok(Self::Red),
            _ => Err(format!("{text:?} is not a quality rating (GREEN, YELLOW or RED)")),
        }
    }
}

impl fmt::Display for QualityRating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rating Meta reported, when, and with which event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityReport {
    pub rating: QualityRating,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// A business number capguard has seen: Meta's display number, its phone number id and WABA once a
/// webhook named them, and the ratings Meta reported for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessNumber {
    /// The display number, digits only (how `phone_number_quality_update` names it).
    pub display: String,
    pub phone_number_id: Option<String>,
    /// The WhatsApp Business Account it belongs to (the webhook entry's `id`).
    #[serde(default)]
    pub waba_id: Option<String>,
    /// The latest rating reported.
    pub quality: Option<QualityReport>,
    /// Every rating reported, oldest first.
    #[serde(default)]
    pub history: Vec<QualityReport>,
}

impl BusinessNumber {
    /// Adds `report` to the history (once), and makes it current unless a later one is.
    pub fn rate(&mut self, report: &QualityReport) -> bool {
        if !self.history.contains(report) {
            let at = self.history.partition_point(|earlier| earlier.at <= report.at);
            self.history.insert(at, report.clone());
        }
        let newer = self.quality.as_ref().is_none_or(|current| current.at < report.at);
        if newer {
            self.quality = Some(report.clone());
        }
        newer
    }
}

/// What a number's rating does to a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityEffect {
    None,
    /// The send may take only this percentage of the number's throughput and of the limit.
    Slow {
        share: u8,
    },
    /// The send waits.
    Pause,
}

impl QualityEffect {
    /// The share a slowed send may take.
    pub fn share(self) -> Option<u8> {
        match self {
            Self::Slow { share } => Some(share),
            Self::None | Self::Pause => None,
        }
    }
}

/// What `rating` does to an attempt `attempt` of a `category` send: only marketing first
/// attempts are slowed (to `yellow_share`) or paused.
pub fn effect(
    rating: Option<QualityRating>,
    category: Category,
    attempt: u32,
    yellow_share: YellowShare,
) -> QualityEffect {
    if category != Category::Marketing || attempt != 1 {
        return QualityEffect::None;
    }
    match rating {
        Some(QualityRating::Red) => QualityEffect::Pause,
        Some(QualityRating::Yellow) => QualityEffect::Slow { share: yellow_share.0 },
        Some(QualityRating::Green) | None => QualityEffect::None,
    }
}

/// How many turns of a pace at the number's rate a send slowed to `share` percent takes, so that
/// such sends go at that share of the rate.
pub fn turns(share: u8) -> u32 {
    100_u32.div_ceil(u32::from(share.max(1)))
}

/// `QUALITY_YELLOW_SHARE`: the percentage (1 to 100) of its throughput and of the messaging limit
/// that a YELLOW number's marketing first attempts may take; half by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YellowShare(pub u8);

impl Default for YellowShare {
    fn default() -> Self {
        Self(50)
    }
}

impl FromStr for YellowShare {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim()
            .trim_end_matches('%')
            .parse::<u8>()
            .ok()
            .filter(|share| (1..=100).contains(share))
            .map(Self)
            .ok_or_else(|| format!("{text:?} is not a percentage from 1% to 100%"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rating_is_read_from_its_field_or_else_from_a_flag() {
        assert_eq!(QualityRating::reported(Some("YELLOW"), Some("FLAGGED")), Some(QualityRating::Yellow));
        assert_eq!(QualityRating::reported(Some("low"), None), Some(QualityRating::Red));
        assert_eq!(QualityRating::reported(None, Some("FLAGGED")), Some(QualityRating::Red));
        assert_eq!(QualityRating::reported(None, Some("UNFLAGGED")), Some(QualityRating::Green));
        assert_eq!(QualityRating::reported(None, Some("UPGRADE")), None);
        assert_eq!(QualityRating::reported(Some("UNKNOWN"), None), None);
    }

    #[test]
    fn only_marketing_first_attempts_are_slowed_or_paused() {
        let red = Some(QualityRating::Red);
        assert_eq!(effect(red, Category::Marketing, 1, YellowShare(50)), QualityEffect::Pause);
        assert_eq!(
            effect(red, Category::Marketing, 2, YellowShare(50)),
            QualityEffect::None,
            "a ladder retry keeps its time"
        );
        assert_eq!(effect(red, Category::Utility, 1, YellowShare(50)), QualityEffect::None);
        assert_eq!(effect(red, Category::Authentication, 1, YellowShare(50)), QualityEffect::None);
        let yellow = Some(QualityRating::Yellow);
        assert_eq!(effect(yellow, Category::Marketing, 1, YellowShare(25)), QualityEffect::Slow { share: 25 });
        assert_eq!(effect(Some(QualityRating::Green), Category::Marketing, 1, YellowShare(50)), QualityEffect::None);
        assert_eq!(effect(None, Category::Marketing, 1, YellowShare(50)), QualityEffect::None);
        assert_eq!((turns(50), turns(25), turns(30), turns(100)), (2, 4, 4, 1));
    }
}
