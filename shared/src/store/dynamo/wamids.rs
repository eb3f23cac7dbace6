//! [`WamidLinks`] on the DynamoDB store.

use super::*;
use crate::store::prelude::*;

impl WamidLinks for DynamoStore {
    async fn find_by_wamid(&self, wamid: &str) -> Result<Option<WamidEntry>, StoreError> {
        match self.get(keys::wamid(wamid), keys::WAMID, false).await? {
            Some(item) => decode_wamid(&item),
            None => Ok(None),
        }
    }

    async fn link_wamid(
        &self,
        wamid: &str,
        link: &WamidLink,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusUpdate>, StoreError> {
        let store_now = self.advance(now);
        let mut update = Update::default();
        update.set(LINK_SEND_ID, s(link.send_id.as_str()));
        update.set(LINK_SLOT, s(slot_key(link.slot)));
        update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
        match self.update(keys::wamid(wamid), keys::WAMID, update, ReturnValue::AllNew).await? {
            Written::Done(item) => item.map_or(Ok(Vec::new()), |item| decode_parked(&item)),
            Written::Refused(_) => Err(StoreError::Unavailable(format!("linking {wamid} was refused"))),
        }
    }

    async fn park_status(
        &self,
        wamid: &str,
        parked: &StatusUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<WamidEntry>, StoreError> {
        let store_now = self.advance(now);
        let entry = encode_parked(parked)?;
        let mut update = Update::default();
        let unlinked = update.missing(LINK_SEND_ID);
        update.require(unlinked);
        let (list, empty) = (update.name(PARKED), update.value(AttributeValue::L(Vec::new())));
        // A redelivered status is parked once: the list's entries are the statuses' JSON.
        let (this, one) = (update.value(entry.clone()), update.value(AttributeValue::L(vec![entry])));
        update.require(format!("NOT contains({list}, {this})"));
        update.set_expression(&format!("{list} = list_append(if_not_exists({list}, {empty}), {one})"));
        update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, PARK_TIME)));
        match self.update(keys::wamid(wamid), keys::WAMID, update, ReturnValue::None).await? {
            Written::Done(_) => Ok(None),
            // Linked meanwhile (the caller applies the status through the link instead), or
            // parked already.
            Written::Refused(Some(item)) => decode_wamid(&item),
            Written::Refused(None) => Err(StoreError::Unavailable(format!("parking under {wamid} was refused"))),
        }
    }
}
