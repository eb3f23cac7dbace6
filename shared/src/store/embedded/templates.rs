//! [`Templates`] on the embedded store: one value per template, keyed `<name>#<language>`.

use super::*;
use crate::domain::template::{TemplateRecord, TemplateReport};
use crate::store::prelude::*;

impl Templates for EmbeddedStore {
    async fn report_template(
        &self,
        name: &str,
        language: &str,
        report: &TemplateReport,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (name, language, report) = (name.to_owned(), language.to_owned(), report.clone());
        self.write(now, move |w| {
            let key = format!("{name}#{language}");
            let mut table = w.tx.open_table(TEMPLATES)?;
            let stored: Option<Expiring<TemplateRecord>> = decode(&table, &key)?;
            let mut template =
                stored.filter(|stored| alive(stored.expires_at, w.now)).map(|stored| stored.value).unwrap_or_else(
                    || TemplateRecord { name: name.clone(), language: language.clone(), ..TemplateRecord::default() },
                );
            let newer = template.record(&report);
            table
                .insert(key.as_str(), encode(&Expiring { expires_at: w.expires_at(), value: &template })?.as_slice())?;
            drop(table);
            w.keep();
            Ok(newer)
        })
        .await
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.read(move |tx, now| {
            let mut templates = Vec::new();
            for entry in tx.open_table(TEMPLATES)?.iter()? {
                let (_, value) = entry?;
                let stored: Expiring<TemplateRecord> =
                    serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if alive(stored.expires_at, now) {
                    templates.push(stored.value);
                }
            }
            Ok(templates)
        })
        .await
    }
}
