//! [`Numbers`] on the DynamoDB store: one item per business number in the `NUMBERS` partition,
//! keyed by its display number, holding its phone number id and WABA, its current rating and one attribute
//! per rating reported (`rated#<nanoseconds>#<rating>`, the report as JSON: the same report twice
//! is one attribute).

use super::*;
use crate::domain::quality::{BusinessNumber, QualityReport};
use crate::store::prelude::*;

const NUMBER_ID: &str = "phone_number_id";
const WABA_ID: &str = "waba_id";
const QUALITY: &str = "quality";
const QUALITY_AT: &str = "quality_at";
const RATED_PREFIX: &str = "rated#";

fn encode(report: &QualityReport) -> Result<(String, AttributeValue), StoreError> {
    let name = format!("{RATED_PREFIX}{}#{}", nanos_of(report.at), report.rating);
    let json =
        serde_json::to_string(report).map_err(|e| StoreError::Corrupt(format!("cannot encode a rating: {e}")))?;
    Ok((name, s(json)))
}

fn decode(item: &Item) -> Result<BusinessNumber, StoreError> {
    let (pk, sk) = (pk_of(item)?, Fields::new(item, keys::NUMBERS).text(SK)?);
    let f = Fields::new(item, pk);
    let report = |name: &str| {
        serde_json::from_str::<QualityReport>(f.text(name)?)
            .map_err(|e| StoreError::Corrupt(format!("{sk}: {name}: {e}")))
    };
    let mut history = item
        .keys()
        .filter(|name| name.starts_with(RATED_PREFIX))
        .map(|name| report(name))
        .collect::<Result<Vec<_>, _>>()?;
    history.sort_by_key(|report| report.at);
    Ok(BusinessNumber {
        display: sk.strip_prefix("NUMBER#").unwrap_or(sk).to_owned(),
        phone_number_id: f.opt_text(NUMBER_ID)?.map(str::to_owned),
        waba_id: f.opt_text(WABA_ID)?.map(str::to_owned),
        quality: f.opt_text(QUALITY)?.map(|_| report(QUALITY)).transpose()?,
        history,
    })
}

impl Numbers for DynamoStore {
    async fn learn_number(
        &self,
        display: &str,
        phone_number_id: &str,
        waba_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let store_now = self.advance(now);
        let mut update = Update::default();
        update.set(NUMBER_ID, s(phone_number_id));
        update.set(WABA_ID, s(waba_id));
        update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
        self.update(keys::NUMBERS.to_owned(), &keys::number(display), update, ReturnValue::None).await?;
        Ok(())
    }

    async fn report_quality(
        &self,
        display: &str,
        report: &QualityReport,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let store_now = self.advance(now);
        let (entry, value) = encode(report)?;
        let json = value.clone();
        for current in [true, false] {
            let mut update = Update::default();
            if current {
                let (never, older) = (update.missing(QUALITY_AT), update.compare(QUALITY_AT, "<", time(report.at)));
                update.require(format!("{never} OR {older}"));
                update.set(QUALITY, json.clone());
                update.set(QUALITY_AT, time(report.at));
            }
            update.set(&entry, value.clone());
            update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
            match self.update(keys::NUMBERS.to_owned(), &keys::number(display), update, ReturnValue::None).await? {
                Written::Done(_) => return Ok(current),
                Written::Refused(_) => {}
            }
        }
        let number = crate::privacy::mask_number(display);
        Err(StoreError::Unavailable(format!("recording a rating for {number} was refused")))
    }

    async fn business_numbers(&self) -> Result<Vec<BusinessNumber>, StoreError> {
        self.partition(keys::NUMBERS).await?.iter().map(decode).collect()
    }
}
