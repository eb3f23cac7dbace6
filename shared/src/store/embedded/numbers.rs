//! [`Numbers`] on the embedded store: one value per display number.

use super::*;
use crate::domain::quality::{BusinessNumber, QualityReport};
use crate::store::prelude::*;

impl EmbeddedStore {
    /// Applies `change` to the number `display` (a new one when unknown) in one write, and saves it.
    async fn change_number<T: Send + 'static>(
        &self,
        display: &str,
        now: DateTime<Utc>,
        mut change: impl FnMut(&mut BusinessNumber) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let display = display.to_owned();
        self.write(now, move |w| {
            let mut table = w.tx.open_table(NUMBERS)?;
            let stored: Option<Expiring<BusinessNumber>> = decode(&table, &display)?;
            let mut number = stored
                .filter(|stored| alive(stored.expires_at, w.now))
                .map(|stored| stored.value)
                .unwrap_or_else(|| BusinessNumber { display: display.clone(), ..BusinessNumber::default() });
            let answer = change(&mut number);
            table.insert(
                display.as_str(),
                encode(&Expiring { expires_at: w.expires_at(), value: &number })?.as_slice(),
            )?;
            drop(table);
            w.keep();
            Ok(answer)
        })
        .await
    }
}

impl Numbers for EmbeddedStore {
    async fn learn_number(
        &self,
        display: &str,
        phone_number_id: &str,
        waba_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (id, waba) = (phone_number_id.to_owned(), waba_id.to_owned());
        self.change_number(display, now, move |number| {
            number.phone_number_id = Some(id.clone());
            number.waba_id = Some(waba.clone());
        })
        .await
    }

    async fn report_quality(
        &self,
        display: &str,
        report: &QualityReport,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let report = report.clone();
        self.change_number(display, now, move |number| number.rate(&report)).await
    }

    async fn business_numbers(&self) -> Result<Vec<BusinessNumber>, StoreError> {
        self.read(move |tx, now| {
            let mut numbers = Vec::new();
            for entry in tx.open_table(NUMBERS)?.iter()? {
                let (_, value) = entry?;
                let stored: Expiring<BusinessNumber> =
                    serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if alive(stored.expires_at, now) {
                    numbers.push(stored.value);
                }
            }
            Ok(numbers)
        })
        .await
    }
}
