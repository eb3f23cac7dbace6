//! [`Recipients`] on the DynamoDB store.

use super::*;
use crate::store::ConsentEvent;
use crate::store::prelude::*;

impl Recipients for DynamoStore {
    async fn get_recipient(&self, recipient: &str) -> Result<RecipientRecord, StoreError> {
        self.read_recipient(recipient, false).await
    }

    async fn recent_recipient(&self, recipient: &str) -> Result<RecipientRecord, StoreError> {
        self.read_recipient(recipient, true).await
    }

    async fn set_opt_out(
        &self,
        recipient: &str,
        opted_out: bool,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (entry, value) = consent_attribute(&ConsentEvent::of_recipient(opted_out, source, at))?;
        let applied = self
            .update_recipient(recipient, at, ReturnValue::None, |update| {
                let (never, older) = (update.missing(OPT_CHANGED_AT), update.compare(OPT_CHANGED_AT, "<=", time(at)));
                update.require(format!("{never} OR {older}"));
                update.set(OPTED_OUT, AttributeValue::Bool(opted_out));
                update.set(OPT_CHANGED_AT, time(at));
                update.set(&entry, value.clone());
            })
            .await?;
        Ok(applied.is_some())
    }

    async fn record_opt_in(
        &self,
        recipient: &str,
        opt_in: &ConsentEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (entry, value) = consent_attribute(opt_in)?;
        let added = self
            .update_recipient(recipient, now, ReturnValue::None, |update| {
                let new = update.missing(&entry);
                update.require(new);
                update.set(&entry, value.clone());
            })
            .await?;
        Ok(added.is_some())
    }

    async fn record_inbound(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.keep_latest(recipient, LAST_INBOUND_AT, at).await
    }

    async fn record_read(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.keep_latest(recipient, LAST_READ_AT, at).await
    }

    async fn record_contact(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.keep_latest(recipient, CONTACTED_AT, at).await
    }

    async fn record_marketing_delivery(
        &self,
        recipient: &str,
        send: &SendId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let name = delivered(send.as_str());
        let written = self
            .update_recipient(recipient, at, ReturnValue::AllNew, |update| {
                // Once per send: a repeated `delivered` neither counts again nor resets the caps.
                let new = update.missing(&name);
                update.require(new);
                update.set(&name, time(at));
                update.remove(CAPS);
            })
            .await?;
        if let Some(item) = written {
            self.prune_deliveries(recipient, &item, self.now()).await;
        }
        Ok(())
    }

    async fn record_cap(
        &self,
        recipient: &str,
        send: &SendId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let capped = AttributeValue::Ss(vec![format!("{send}#{attempt}")]);
        let item = self
            .update_recipient(recipient, at, ReturnValue::UpdatedNew, |update| update.add(CAPS, capped.clone()))
            .await?
            .ok_or_else(|| StoreError::Unavailable("counting a cap was refused".into()))?;
        Ok(u32::try_from(string_set(&item, CAPS, "a recipient")?.len()).unwrap_or(u32::MAX))
    }

    async fn record_alias(&self, wa_id: &str, number: &str, at: DateTime<Utc>) -> Result<RecipientRecord, StoreError> {
        let number = AttributeValue::Ss(vec![number.to_owned()]);
        let item = self
            .update_recipient(wa_id, at, ReturnValue::AllNew, |update| update.add(NUMBERS, number.clone()))
            .await?
            .ok_or_else(|| StoreError::Unavailable("recording a wa_id was refused".into()))?;
        decode_recipient(wa_id, &item, self.now(), self.retention)
    }
}

impl DynamoStore {
    async fn read_recipient(&self, recipient: &str, recent: bool) -> Result<RecipientRecord, StoreError> {
        match self.get(keys::recipient(recipient), keys::RECIPIENT, recent).await? {
            Some(item) => decode_recipient(recipient, &item, self.now(), self.retention),
            None => Ok(RecipientRecord { recipient: recipient.to_owned(), ..RecipientRecord::default() }),
        }
    }
}

impl DynamoStore {
    /// Sets the recipient's time `attribute` to `at` unless it holds one at least as recent:
    /// refused then, so the latest is kept.
    async fn keep_latest(&self, recipient: &str, attribute: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.update_recipient(recipient, at, ReturnValue::None, |update| {
            let (never, older) = (update.missing(attribute), update.compare(attribute, "<", time(at)));
            update.require(format!("{never} OR {older}"));
            update.set(attribute, time(at));
        })
        .await?;
        Ok(())
    }
}
