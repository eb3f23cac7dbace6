//! The rules that decide whether a marketing send may go, and when: paused regions, opt-out
//! keywords, the customer-service window, our own frequency cap and the transient backoff.
//!
//! All pure: every function that needs the time takes it as an argument.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A template's category. Only marketing is capped, so only marketing takes the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marketing => "marketing",
            Self::Utility => "utility",
            Self::Authentication => "authentication",
        }
    }

    pub fn takes_ladder(self) -> bool {
        self == Self::Marketing
    }
}

impl FromStr for Category {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "marketing" => Ok(Self::Marketing),
            "utility" => Ok(Self::Utility),
            "authentication" => Ok(Self::Authentication),
            other => Err(format!("category {other:?} is not marketing, utility or authentication")),
        }
    }
}

/// The region a WhatsApp id or phone number belongs to (ISO 3166 alpha-2, e.g. `US`, `CA`), read
/// from the number's own numbering plan, so that +1 Canada is not mistaken for the US.
pub fn region_of(number: &str) -> Option<String> {
    let digits = number.trim().trim_start_matches('+');
    let parsed = phonenumber::parse(None, format!("+{digits}")).ok()?;
    parsed.country().id().map(|id| id.as_ref().to_owned())
}

/// A recipient's number as people write it (`+44 7400 100127`, `+1 (650) 555-0100`, or without
/// `+` and the country code when `default_country`, an ISO 3166 code such as `GB`, says where it
/// is) as the digits of its E.164 form, country code first; or why it is not a number capguard
/// can send to (the message never repeats the number). Parsed and checked against each country's
/// numbering plan by the phone-number library.
pub fn e164_digits(text: &str, default_country: Option<&str>) -> Result<String, String> {
    let text = text.trim();
    let country = match (text.starts_with('+'), default_country) {
        (true, _) => None,
        (false, Some(code)) => Some(country_id(code)?),
        (false, None) => return Err("has no + and country code, and no default country was given".into()),
    };
    let parsed = phonenumber::parse(country, text).map_err(|e| format!("is not a phone number ({e})"))?;
    if !phonenumber::is_valid(&parsed) {
        return Err("is not a valid number in its country's numbering plan".into());
    }
    Ok(parsed.format().mode(phonenumber::Mode::E164).to_string().trim_start_matches('+').to_owned())
}

/// The phone-number library's name of the country with ISO 3166 code `code` (`GB`, `in`).
pub fn country_id(code: &str) -> Result<phonenumber::country::Id, String> {
    code.trim().to_ascii_uppercase().parse().map_err(|_| format!("{code:?} is not an ISO 3166 country code"))
}

/// Regions where Meta delivers no marketing templates at all (`MARKETING_PAUSED_REGIONS`).
///
/// A number's region takes a parse against its numbering plan, which is most of the cost of
/// judging a webhook's failure; but only a number whose country calling code is a paused region's
/// needs it. Calling codes form a prefix code (ITU-T E.164), so a number that starts with none of
/// the paused regions' codes is in none of them, and is answered without the parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedRegions {
    regions: BTreeSet<String>,
    /// The paused regions' calling codes, as digits (`1` for the US, shared with Canada).
    calling_codes: BTreeSet<String>,
}

/// The regions paused when nothing is configured: the United States since April 2025.
pub const DEFAULT_PAUSED_REGIONS: &str = "US";

impl PausedRegions {
    /// Whether marketing to `number` can never be delivered.
    pub fn covers(&self, number: &str) -> bool {
        let digits = number.trim().trim_start_matches('+');
        self.calling_codes.iter().any(|code| digits.starts_with(code.as_str()))
            && region_of(digits).is_some_and(|region| self.regions.contains(&region))
    }
}

impl Default for PausedRegions {
    fn default() -> Self {
        DEFAULT_PAUSED_REGIONS.parse().expect("the default regions are valid")
    }
}

impl FromStr for PausedRegions {
    type Err = String;

    /// Reads `US` or `US,XX`; an empty list pauses nothing.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (mut regions, mut calling_codes) = (BTreeSet::new(), BTreeSet::new());
        for region in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let region = region.to_ascii_uppercase();
            let plan = phonenumber::country::Id::from_str(&region)
                .ok()
                .and_then(|_| phonenumber::metadata::DATABASE.by_id(region.as_str()));
            let Some(plan) = plan else {
                return Err(format!("{region:?} is not a two-letter region code (e.g. US)"));
            };
            calling_codes.insert(plan.country_code().to_string());
            regions.insert(region);
        }
        Ok(Self { regions, calling_codes })
    }
}

impl fmt::Display for PausedRegions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.regions.iter().cloned().collect::<Vec<_>>().join(","))
    }
}

/// Words that, as a whole message or a quick-reply payload, mean "stop marketing to me".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutKeywords(Vec<String>);

/// The keywords when nothing is configured.
pub const DEFAULT_OPT_OUT_KEYWORDS: &str = "STOP,UNSUBSCRIBE,STOP PROMOTIONS";

impl OptOutKeywords {
    /// Whether `text` is one of the keywords: the whole message, ignoring case and surrounding
    /// or repeated spaces ("please stop" is not an opt-out; " Stop " is).
    pub fn matches(&self, text: &str) -> bool {
        let text = normalise(text);
        !text.is_empty() && self.0.contains(&text)
    }
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

impl Default for OptOutKeywords {
    fn default() -> Self {
        DEFAULT_OPT_OUT_KEYWORDS.parse().expect("the default keywords are valid")
    }
}

impl FromStr for OptOutKeywords {
    type Err = String;

    /// Reads a comma-separated list; an empty list turns keyword opt-out off.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.split(',').map(normalise).filter(|k| !k.is_empty()).collect()))
    }
}

/// How long a user's message keeps the customer-service window open.
pub const CUSTOMER_SERVICE_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Whether a user who last wrote at `last_inbound` has an open window at `now`.
pub fn window_open(last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_inbound.is_some_and(|last| last <= now && now < last + CUSTOMER_SERVICE_WINDOW)
}

/// Our own cap on delivered marketing per recipient (`MARKETING_FREQUENCY_CAP`, e.g. `2/7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrequencyCap {
    Off,
    Limit { max: u32, period: TimeDelta },
}

/// The cap when nothing is configured: two delivered marketing messages per rolling week.
pub const DEFAULT_FREQUENCY_CAP: &str = "2/7d";

impl FrequencyCap {
    /// The start of the rolling period that counts at `now`; `None` when the cap is off.
    pub fn counts_since(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Off => None,
            Self::Limit { period, .. } => Some(now - period),
        }
    }

    /// Whether one more marketing send may go to a recipient with these deliveries.
    pub fn allows(self, deliveries: &[DateTime<Utc>], now: DateTime<Utc>) -> bool {
        match (self, self.counts_since(now)) {
            (Self::Limit { max, .. }, Some(since)) => {
                let recent = deliveries.iter().filter(|at| **at > since && **at <= now).count();
                recent < usize::try_from(max).unwrap_or(usize::MAX)
            }
            _ => true,
        }
    }
}

impl Default for FrequencyCap {
    fn default() -> Self {
        DEFAULT_FREQUENCY_CAP.parse().expect("the default cap is valid")
    }
}

impl FromStr for FrequencyCap {
    type Err = String;

    /// Reads `off`, or `<max>/<period>` such as `2/7d`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        let bad = || format!("frequency cap {text:?} is not \"off\" or <max>/<period> such as 2/7d");
        let (max, period) = text.split_once('/').ok_or_else(bad)?;
        let max: u32 = max.trim().parse().map_err(|_| bad())?;
        let period = super::ladder::parse_delay(period).map_err(|_| bad())?;
        if max == 0 || period <= TimeDelta::zero() {
            return Err(bad());
        }
        Ok(Self::Limit { max, period })
    }
}

/// Short waits for transient failures (Meta: retry after 4^x seconds), bounded, never counted as
/// ladder attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Transient retries allowed per attempt.
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { max_retries: 3 }
    }
}

impl Backoff {
    /// The wait before transient retry `retry` (1-based): 4 s, 16 s, 64 s, …; `None` past the bound.
    pub fn delay(self, retry: u32) -> Option<TimeDelta> {
        (1..=self.max_retries).contains(&retry).then(|| TimeDelta::seconds(4_i64.saturating_pow(retry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn regions_come_from_the_number_not_its_prefix() {
        assert_eq!(region_of("16505551234").as_deref(), Some("US"));
        assert_eq!(region_of("+12125550123").as_deref(), Some("US"));
        assert_eq!(region_of("14165550123").as_deref(), Some("CA"));
        assert_eq!(region_of("18765550123").as_deref(), Some("JM"));
        assert_eq!(region_of("447400123456").as_deref(), Some("GB"));
        assert_eq!(region_of("447700900123"), None, "a drama-range number belongs to no region");
        assert_eq!(region_of("919812345678").as_deref(), Some("IN"));
        assert_eq!(region_of("not a number"), None);
    }

    #[test]
    fn the_us_is_paused_by_default_and_canada_is_not() {
        let paused = PausedRegions::default();
        assert!(paused.covers("16505551234"));
        assert!(!paused.covers("14165550123"));
        assert!(!paused.covers("447700900123"));
        assert!(!paused.covers("garbage"));
    }

    #[test]
    fn paused_regions_are_configurable_and_checked() {
        let paused: PausedRegions = "us, ca".parse().unwrap();
        assert!(paused.covers("14165550123"));
        assert_eq!(paused.to_string(), "CA,US");
        let none: PausedRegions = "".parse().unwrap();
        assert!(!none.covers("16505551234"));
        assert!("USA".parse::<PausedRegions>().is_err());
        assert!("ZZ".parse::<PausedRegions>().is_err());
    }

    #[test]
    fn the_calling_code_shortcut_answers_as_the_full_lookup_does() {
        let numbers = [
            "16505551234",
            "14165550123",
            "+12025550143",
            "447400123456",
            "447781123456",
            "447624123456",
            "919812345678",
            "79161234567",
            "77012345678",
            "5511987654321",
            "551187654321",
            "34612345678",
            "2348031234567",
            "8613812345678",
            "61412345678",
            "999999999999",
            "garbage",
            "",
        ];
        for set in ["US", "CA", "US,CA", "GB", "IM", "KZ", "RU,BR", "IN,NG", ""] {
            let paused: PausedRegions = set.parse().unwrap();
            for number in numbers {
                let full = region_of(number).is_some_and(|region| set.split(',').any(|r| r == region));
                assert_eq!(paused.covers(number), full, "{number} in {set:?}");
            }
        }
    }

    #[test]
    fn opt_out_keywords_match_the_whole_message_in_any_case() {
        let keywords = OptOutKeywords::default();
        for yes in ["STOP", "stop", " Stop ", "unsubscribe", "Stop  Promotions", "stop\npromotions"] {
            assert!(keywords.matches(yes), "{yes:?}");
        }
        for no in ["please stop", "STOP!", "stopped", "", "  "] {
            assert!(!keywords.matches(no), "{no:?}");
        }
    }

    #[test]
    fn opt_out_keywords_are_configurable_and_can_be_off() {
        let keywords: OptOutKeywords = "BAJA, Parar".parse().unwrap();
        assert!(keywords.matches("baja"));
        assert!(keywords.matches("PARAR"));
        assert!(!keywords.matches("stop"));
        let off: OptOutKeywords = "".parse().unwrap();
        assert!(!off.matches("stop"));
    }

    #[test]
    fn a_message_opens_the_window_for_twenty_four_hours() {
        let wrote = at(1_000_000);
        assert!(window_open(Some(wrote), wrote));
        assert!(window_open(Some(wrote), wrote + TimeDelta::hours(24) - TimeDelta::seconds(1)));
        assert!(!window_open(Some(wrote), wrote + TimeDelta::hours(24)));
        assert!(!window_open(Some(wrote), wrote - TimeDelta::seconds(1)));
        assert!(!window_open(None, wrote));
    }

    #[test]
    fn numbers_are_taken_as_people_write_them_and_stored_in_e164() {
        let cases = [
            ("+919812345678", None, "919812345678"),
            (" +44 7400 100127 ", None, "447400100127"),
            ("+44 (0) 7400-100127", None, "447400100127"),
            ("+1 (650) 555-0100", None, "16505550100"),
            ("447400100127", Some("GB"), "447400100127"),
            ("07400 100127", Some("gb"), "447400100127"),
            ("98123 45678", Some("IN"), "919812345678"),
            ("+5511987654321", Some("GB"), "5511987654321"),
        ];
        for (text, country, digits) in cases {
            assert_eq!(e164_digits(text, country).as_deref(), Ok(digits), "{text:?} in {country:?}");
        }
    }

    #[test]
    fn what_is_not_a_number_is_refused_without_repeating_it() {
        let refused = [
            ("447400100127", None),
            ("+91 98123", None),
            ("+999999999999", None),
            ("call me", Some("GB")),
            ("07400 100127", Some("XX")),
        ];
        for (text, country) in refused {
            let problem = e164_digits(text, country).expect_err(text);
            assert!(!problem.contains("7400") && !problem.contains("98123"), "{problem}");
        }
        assert_eq!(
            e164_digits("447400100127", None),
            Err("has no + and country code, and no default country was given".into())
        );
    }

    #[test]
    fn the_frequency_cap_counts_a_rolling_week() {
        let cap = FrequencyCap::default();
        let now = at(10_000_000);
        let day = TimeDelta::days(1);
        assert!(cap.allows(&[], now));
        assert!(cap.allows(&[now - day], now));
        assert!(!cap.allows(&[now - day, now - day * 6], now));
        assert!(cap.allows(&[now - day, now - day * 7], now), "exactly seven days ago has rolled out");
        assert!(FrequencyCap::Off.allows(&[now; 10], now));
    }

    #[test]
    fn the_frequency_cap_reads_its_setting() {
        assert_eq!("off".parse(), Ok(FrequencyCap::Off));
        assert_eq!("3/1d".parse(), Ok(FrequencyCap::Limit { max: 3, period: TimeDelta::days(1) }));
        for bad in ["", "2", "0/7d", "2/0d", "2/7x", "-1/7d"] {
            assert!(bad.parse::<FrequencyCap>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_marketing_takes_the_ladder() {
        assert!(Category::Marketing.takes_ladder());
        assert!(!Category::Utility.takes_ladder());
        assert!(!Category::Authentication.takes_ladder());
        assert_eq!("UTILITY".parse(), Ok(Category::Utility));
        assert!("promo".parse::<Category>().is_err());
    }

    #[test]
    fn transient_backoff_grows_by_four_and_stops() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1), Some(TimeDelta::seconds(4)));
        assert_eq!(backoff.delay(2), Some(TimeDelta::seconds(16)));
        assert_eq!(backoff.delay(3), Some(TimeDelta::seconds(64)));
        assert_eq!(backoff.delay(4), None);
        assert_eq!(backoff.delay(0), None);
    }
}
