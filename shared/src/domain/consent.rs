//! Consent: what a recipient agreed to and withdrew, with where and when. An opt-in is recorded
//! by the business (the send request, `capguard send`'s CSV, `capguard consent`); an opt-out and a
//! resume come from the recipient (a 131050, Meta's marketing-preferences webhook, a STOP keyword
//! or button). With `REQUIRE_OPT_IN` on, marketing to a recipient without an opt-in is refused up
//! front ([`crate::domain::admission`]).
//!
//! An opt-in never lifts an opt-out: a recipient who stopped marketing in WhatsApp is refused by
//! Meta (131050) until they resume there, whatever the business recorded since. A resume lifts the
//! opt-out and leaves the opt-in standing, so the recipient is marketable again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest source name (`website_form`, `qr_code`, `checkout`, `support_chat`, ...).
pub const MAX_SOURCE_LEN: usize = 40;
/// The longest note kept with an opt-in.
pub const MAX_NOTE_LEN: usize = 200;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentChange {
    /// The recipient agreed to marketing, as the business recorded it.
    OptIn,
    /// The recipient stopped marketing.
    OptOut,
    /// The recipient took a stop back.
    Resume,
}

impl ConsentChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptIn => "opt_in",
            Self::OptOut => "opt_out",
            Self::Resume => "resume",
        }
    }
}

/// Where an opt-out or resume capguard recorded by itself came from.
pub mod sources {
    /// A send refused with 131050 (or the On-Premises 498): the user stopped marketing.
    pub const ERROR_131050: &str = "meta_131050";
    /// Meta's `user_preferences` webhook (the user's marketing preference in WhatsApp).
    pub const MARKETING_PREFERENCES: &str = "marketing_preferences";
    /// A reply that was an opt-out keyword, or a quick-reply button's opt-out payload.
    pub const KEYWORD: &str = "stop_keyword";
    /// Taken over from the `wa_id` Meta reported for the number.
    pub const WA_ID: &str = "wa_id";
}

/// One entry of a recipient's consent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    pub change: ConsentChange,
    /// Where it came from: an opt-in's source as the business gave it, or one of [`sources`].
    pub source: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ConsentEvent {
    /// An opt-out or resume capguard recorded by itself.
    pub fn of_recipient(opted_out: bool, source: &str, at: DateTime<Utc>) -> Self {
        let change = if opted_out { ConsentChange::OptOut } else { ConsentChange::Resume };
        Self { change, source: source.to_owned(), at, note: None }
    }

    /// The same entry: recording it again adds nothing.
    pub fn same(&self, other: &Self) -> bool {
        self.change == other.change && self.at == other.at && self.source == other.source
    }
}

/// An opt-in as a caller gives it: the send request's `opt_in`, a CSV row's `opt_in_*` columns,
/// `capguard consent add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptIn {
    /// Where the recipient agreed: `website_form`, `qr_code`, `checkout`, `support_chat`, or any
    /// other name of lowercase letters, digits and `_`, up to 40 characters.
    pub source: String,
    /// When (RFC 3339); by default when it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Free text: the form's version, the wording shown, a reference (up to 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl OptIn {
    /// What is wrong with it, if anything; no problem repeats the note.
    pub fn problems(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut problems = Vec::new();
        let source = &self.source;
        if source.is_empty() || source.len() > MAX_SOURCE_LEN {
            problems.push(format!("opt_in.source must have 1 to {MAX_SOURCE_LEN} characters"));
        } else if !source.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            problems.push("opt_in.source must be lowercase letters, digits and _ (website_form, qr_code)".into());
        }
        if self.note.as_ref().is_some_and(|note| note.chars().count() > MAX_NOTE_LEN) {
            problems.push(format!("opt_in.note is longer than {MAX_NOTE_LEN} characters"));
        }
        if self.at.is_some_and(|at| at > now + chrono::TimeDelta::minutes(5)) {
            problems.push("opt_in.at is in the future".into());
        }
        problems
    }

    /// Whether recording it adds to what `standing` (the recipient's latest opt-in) says: always
    /// with a time (the store takes the same entry once); without one, when its source or note
    /// differs, so that the same request made again does not add an entry each time.
    pub fn is_news(&self, standing: Option<&ConsentEvent>) -> bool {
        match standing {
            Some(standing) if self.at.is_none() => {
                standing.source != self.source || standing.note != self.note.clone().filter(|n| !n.trim().is_empty())
            }
            _ => true,
        }
    }

    /// The history entry it makes, dated `now` when it gave no time.
    pub fn event(&self, now: DateTime<Utc>) -> ConsentEvent {
        ConsentEvent {
            change: ConsentChange::OptIn,
            source: self.source.clone(),
            at: self.at.unwrap_or(now),
            note: self.note.clone().filter(|note| !note.trim().is_empty()),
        }
    }
}

/// `history` with `event` added in time order (at the same time, an opt-in before an opt-out before
/// a resume, then by source), unless it holds the same entry already; returns whether it was added.
pub fn add(history: &mut Vec<ConsentEvent>, event: ConsentEvent) -> bool {
    if history.iter().any(|known| known.same(&event)) {
        return false;
    }
    let at = history
        .partition_point(|known| (known.at, known.change, &known.source) <= (event.at, event.change, &event.source));
    history.insert(at, event);
    true
}

/// The latest opt-in in `history`, if any.
pub fn latest_opt_in(history: &[ConsentEvent]) -> Option<&ConsentEvent> {
    history.iter().rev().find(|event| event.change == ConsentChange::OptIn)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + seconds, 0).unwrap()
    }

    fn opt_in(source: &str) -> OptIn {
        OptIn { source: source.into(), at: None, note: None }
    }

    #[test]
    fn an_opt_in_names_its_source_in_a_short_lowercase_word() {
        assert!(opt_in("website_form").problems(t(0)).is_empty());
        assert!(opt_in("qr_code_2").problems(t(0)).is_empty());
        for bad in ["", "Website Form", "form-1", &"x".repeat(MAX_SOURCE_LEN + 1)] {
            let problems = opt_in(bad).problems(t(0));
            assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
            assert!(problems[0].starts_with("opt_in.source"), "{problems:?}");
        }
    }

    #[test]
    fn an_opt_in_has_a_short_note_and_no_future_time() {
        let long = OptIn { note: Some("é".repeat(MAX_NOTE_LEN + 1)), ..opt_in("checkout") };
        assert_eq!(long.problems(t(0)), vec![format!("opt_in.note is longer than {MAX_NOTE_LEN} characters")]);
        let fine = OptIn { note: Some("é".repeat(MAX_NOTE_LEN)), at: Some(t(60)), ..opt_in("checkout") };
        assert!(fine.problems(t(0)).is_empty());
        let future = OptIn { at: Some(t(3600)), ..opt_in("checkout") };
        assert_eq!(future.problems(t(0)), vec!["opt_in.at is in the future".to_owned()]);
    }

    #[test]
    fn an_opt_in_without_a_time_is_dated_when_recorded_and_drops_a_blank_note() {
        let event = OptIn { note: Some("  ".into()), ..opt_in("qr_code") }.event(t(5));
        assert_eq!(
            event,
            ConsentEvent { change: ConsentChange::OptIn, source: "qr_code".into(), at: t(5), note: None }
        );
        let dated = OptIn { at: Some(t(-100)), note: Some("v2".into()), ..opt_in("qr_code") }.event(t(5));
        assert_eq!((dated.at, dated.note.as_deref()), (t(-100), Some("v2")));
    }

    #[test]
    fn an_undated_opt_in_that_repeats_the_standing_one_is_no_news() {
        let standing = opt_in("checkout").event(t(0));
        assert!(!opt_in("checkout").is_news(Some(&standing)));
        assert!(opt_in("qr_code").is_news(Some(&standing)));
        assert!(OptIn { note: Some("v2".into()), ..opt_in("checkout") }.is_news(Some(&standing)));
        assert!(
            OptIn { at: Some(t(9)), ..opt_in("checkout") }.is_news(Some(&standing)),
            "a dated one is the store's to judge"
        );
        assert!(opt_in("checkout").is_news(None));
    }

    #[test]
    fn the_history_is_in_time_order_and_takes_an_entry_once() {
        let mut history = Vec::new();
        assert!(add(&mut history, opt_in("checkout").event(t(10))));
        assert!(add(&mut history, ConsentEvent::of_recipient(true, sources::ERROR_131050, t(30))));
        assert!(add(&mut history, opt_in("website_form").event(t(20))));
        assert!(!add(&mut history, opt_in("checkout").event(t(10))), "the same entry again");
        assert!(add(&mut history, ConsentEvent::of_recipient(false, sources::MARKETING_PREFERENCES, t(40))));
        let order: Vec<_> = history.iter().map(|e| (e.change.as_str(), e.at)).collect();
        assert_eq!(order, [("opt_in", t(10)), ("opt_in", t(20)), ("opt_out", t(30)), ("resume", t(40))]);
        assert_eq!(latest_opt_in(&history).map(|e| e.source.as_str()), Some("website_form"));
        assert_eq!(latest_opt_in(&history[2..]), None);
    }
}
