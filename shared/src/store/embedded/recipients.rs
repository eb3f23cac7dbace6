//! [`Recipients`] on the embedded store.

use super::*;
use crate::domain::consent;
use crate::store::ConsentEvent;
use crate::store::prelude::*;

impl Recipients for EmbeddedStore {
    async fn get_recipient(&self, recipient: &str) -> Result<RecipientRecord, StoreError> {
        let recipient = recipient.to_owned();
        let retention = self.retention;
        self.read(move |tx, now| load_recipient(&tx.open_table(RECIPIENTS)?, &recipient, now, retention))
            .await
            .map(|stored| stored.record)
    }

    async fn set_opt_out(
        &self,
        recipient: &str,
        opted_out: bool,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let event = ConsentEvent::of_recipient(opted_out, source, at);
        self.change_recipient(recipient, at, move |_, stored| {
            let record = &mut stored.record;
            if record.opt_changed_at.is_some_and(|changed| at < changed) {
                return Ok(false);
            }
            record.opted_out = opted_out;
            record.opt_changed_at = Some(at);
            consent::add(&mut record.consent, event.clone());
            Ok(true)
        })
        .await
    }

    async fn record_opt_in(
        &self,
        recipient: &str,
        opt_in: &ConsentEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let opt_in = opt_in.clone();
        self.change_recipient(recipient, now, move |_, stored| {
            Ok(consent::add(&mut stored.record.consent, opt_in.clone()))
        })
        .await
    }

    async fn record_inbound(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.change_recipient(recipient, at, move |_, stored| {
            stored.record.last_inbound_at = stored.record.last_inbound_at.max(Some(at));
            Ok(())
        })
        .await
    }

    async fn record_read(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.change_recipient(recipient, at, move |_, stored| {
            stored.record.last_read_at = stored.record.last_read_at.max(Some(at));
            Ok(())
        })
        .await
    }

    async fn record_contact(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.change_recipient(recipient, at, move |_, stored| {
            stored.record.contacted_at = stored.record.contacted_at.max(Some(at));
            Ok(())
        })
        .await
    }

    async fn record_marketing_delivery(
        &self,
        recipient: &str,
        send: &SendId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let send = send.clone();
        self.change_recipient(recipient, at, move |w, stored| count_marketing_delivery(w, stored, &send, at)).await
    }

    async fn record_cap(
        &self,
        recipient: &str,
        send: &SendId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let counted = cap_token(send, attempt);
        self.change_recipient(recipient, at, move |_, stored| {
            stored.counted_caps.insert(counted.clone());
            Ok(u32::try_from(stored.counted_caps.len()).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn record_alias(&self, wa_id: &str, number: &str, at: DateTime<Utc>) -> Result<RecipientRecord, StoreError> {
        let number = number.to_owned();
        self.change_recipient(wa_id, at, move |_, stored| {
            if !stored.record.numbers.contains(&number) {
                stored.record.numbers.push(number.clone());
            }
            Ok(stored.record.clone())
        })
        .await
    }
}

/// Counts `send`'s marketing delivery at `at` on the recipient's record, once per send, and
/// resets the caps counted since the last one.
pub(super) fn count_marketing_delivery(
    w: &Write<'_>,
    stored: &mut StoredRecipient,
    send: &SendId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut counted = w.tx.open_table(COUNTED_DELIVERIES)?;
    let marker: Option<Expiring<()>> = decode(&counted, send.as_str())?;
    if marker.is_some_and(|marker| alive(marker.expires_at, w.now)) {
        return Ok(());
    }
    counted.insert(send.as_str(), encode(&Expiring { expires_at: w.expires_at(), value: () })?.as_slice())?;
    let deliveries = &mut stored.record.marketing_deliveries;
    deliveries.insert(deliveries.partition_point(|&delivered| delivered <= at), at);
    stored.counted_caps.clear();
    Ok(())
}
