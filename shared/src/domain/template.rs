//! A template's standing with Meta, as its webhooks report it: its review status
//! (`message_template_status_update`: `APPROVED`, `PAUSED`, `DISABLED`, …) and its quality score
//! (`message_template_quality_update`: `GREEN`, `YELLOW`, `RED`), each kept with its history.
//! A pause or a disabling holds the template's sends ([`super::hold`]); an approval, a
//! reinstatement or an unpause lifts the hold.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

/// Which webhook a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateField {
    /// `message_template_status_update`: the value is its `event`.
    Status,
    /// `message_template_quality_update`: the value is its `new_quality_score`.
    Quality,
}

impl TemplateField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Quality => "quality",
        }
    }
}

/// One report about a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateReport {
    pub field: TemplateField,
    /// The status (`PAUSED`) or the quality score (`YELLOW`).
    pub value: String,
    /// A status's `other_info.title` (`FIRST_PAUSE`, `UNPAUSE`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub at: DateTime<Utc>,
}

/// A template (name and language) and what Meta reported about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    pub name: String,
    /// As sends name it (`en_US`, for a webhook's `en-US`).
    pub language: String,
    pub status: Option<TemplateReport>,
    pub quality: Option<TemplateReport>,
    /// Every report, oldest first.
    #[serde(default)]
    pub history: Vec<TemplateReport>,
}

impl TemplateRecord {
    /// Adds `report` to the history (once), and makes it the current status or quality unless a
    /// later one is; returns whether it is the current one now (the same report again still is:
    /// what it calls for may not have been done the first time).
    pub fn record(&mut self, report: &TemplateReport) -> bool {
        if !self.history.contains(report) {
            let at = self.history.partition_point(|earlier| earlier.at <= report.at);
            self.history.insert(at, report.clone());
        }
        let current = match report.field {
            TemplateField::Status => &mut self.status,
            TemplateField::Quality => &mut self.quality,
        };
        let latest = current.as_ref().is_none_or(|known| known.at <= report.at);
        if latest {
            *current = Some(report.clone());
        }
        latest
    }
}

/// A template's language as sends name it: `en_US` for Meta's webhook `en-US`.
pub fn send_language(language: &str) -> String {
    language.replace('-', "_")
}

/// The error code a status that holds a template's sends stands for: a pause (132015) or a
/// disabling (132016); none for any other status, nor for the end of a pause.
pub fn holding_code(event: &str, title: Option<&str>) -> Option<i64> {
    if title.is_some_and(|title| title.eq_ignore_ascii_case("UNPAUSE")) {
        return None;
    }
    match event.to_ascii_uppercase().as_str() {
        "PAUSED" => Some(132015),
        "DISABLED" => Some(132016),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap()
    }

    #[test]
    fn a_pause_or_a_disabling_holds_and_an_unpause_does_not() {
        assert_eq!(holding_code("PAUSED", Some("FIRST_PAUSE")), Some(132015));
        assert_eq!(holding_code("DISABLED", None), Some(132016));
        assert_eq!(holding_code("PAUSED", Some("UNPAUSE")), None);
        assert_eq!(holding_code("APPROVED", None), None);
        assert_eq!(send_language("en-US"), "en_US");
    }

    #[test]
    fn a_template_keeps_its_newest_status_and_quality_and_every_report_once() {
        let report =
            |field, value: &str, seconds| TemplateReport { field, value: value.into(), title: None, at: at(seconds) };
        let mut record = TemplateRecord::default();
        assert!(record.record(&report(TemplateField::Status, "PAUSED", 10)));
        assert!(record.record(&report(TemplateField::Quality, "RED", 5)), "a quality is current on its own");
        assert!(!record.record(&report(TemplateField::Status, "APPROVED", 1)), "older");
        assert!(record.record(&report(TemplateField::Status, "PAUSED", 10)), "the same again is still current");
        assert_eq!(record.status.as_ref().map(|s| s.value.as_str()), Some("PAUSED"));
        assert_eq!(record.quality.as_ref().map(|s| s.value.as_str()), Some("RED"));
        let values: Vec<_> = record.history.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(values, ["APPROVED", "RED", "PAUSED"]);
    }
}
