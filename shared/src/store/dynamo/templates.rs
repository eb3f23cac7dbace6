//! [`Templates`] on the DynamoDB store: one item per template (name and language) in the
//! `TEMPLATES` partition, holding its current status and quality and one attribute per report
//! (`report#<nanoseconds>#<field>#<value>`, the report as JSON: the same report twice is one
//! attribute).

use super::*;
use crate::domain::template::{TemplateField, TemplateRecord, TemplateReport};
use crate::store::prelude::*;

const NAME: &str = "template_name";
const LANGUAGE: &str = "template_language";
const REPORT_PREFIX: &str = "report#";

/// The attributes of a field's current report and its time.
fn current(field: TemplateField) -> (&'static str, &'static str) {
    match field {
        TemplateField::Status => ("status", "status_at"),
        TemplateField::Quality => ("quality", "quality_at"),
    }
}

fn decode(item: &Item) -> Result<TemplateRecord, StoreError> {
    let f = Fields::new(item, keys::TEMPLATES);
    let report = |name: &str| {
        serde_json::from_str::<TemplateReport>(f.text(name)?)
            .map_err(|e| StoreError::Corrupt(format!("{}: {name}: {e}", keys::TEMPLATES)))
    };
    let mut history = item
        .keys()
        .filter(|name| name.starts_with(REPORT_PREFIX))
        .map(|name| report(name))
        .collect::<Result<Vec<_>, _>>()?;
    history.sort_by(|a, b| (a.at, a.field, &a.value).cmp(&(b.at, b.field, &b.value)));
    let field = |field| {
        let (name, _) = current(field);
        f.opt_text(name)?.map(|_| report(name)).transpose()
    };
    Ok(TemplateRecord {
        name: f.text(NAME)?.to_owned(),
        language: f.text(LANGUAGE)?.to_owned(),
        status: field(TemplateField::Status)?,
        quality: field(TemplateField::Quality)?,
        history,
    })
}

impl Templates for DynamoStore {
    async fn report_template(
        &self,
        name: &str,
        language: &str,
        report: &TemplateReport,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let store_now = self.advance(now);
        let json = serde_json::to_string(report)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a template report: {e}")))?;
        // The value is Meta's text: only its letters, digits and `_` go into the name (a `.` would
        // read as a path into a map).
        let value: String = report.value.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let entry = format!("{REPORT_PREFIX}{}#{}#{value}", nanos_of(report.at), report.field.as_str());
        let (attribute, attribute_at) = current(report.field);
        for newer in [true, false] {
            let mut update = Update::default();
            if newer {
                let (never, older) =
                    (update.missing(attribute_at), update.compare(attribute_at, "<=", time(report.at)));
                update.require(format!("{never} OR {older}"));
                update.set(attribute, s(json.clone()));
                update.set(attribute_at, time(report.at));
            }
            update.set(NAME, s(name));
            update.set(LANGUAGE, s(language));
            update.set(&entry, s(json.clone()));
            update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
            let key = keys::template(name, language);
            match self.update(keys::TEMPLATES.to_owned(), &key, update, ReturnValue::None).await? {
                Written::Done(_) => return Ok(newer),
                Written::Refused(_) => {}
            }
        }
        Err(StoreError::Unavailable(format!("recording a report on template {name} was refused")))
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.partition(keys::TEMPLATES).await?.iter().map(decode).collect()
    }
}
