//! [`Holds`] on the DynamoDB store.

use super::*;
use crate::store::prelude::*;

impl Holds for DynamoStore {
    async fn set_hold(&self, key: &HoldKey, hold: Option<Hold>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let store_now = self.advance(now);
        match hold {
            Some(hold) => {
                let mut item = hold_attributes(key, &hold);
                item.insert(PK.to_owned(), s(keys::HOLDS));
                item.insert(SK.to_owned(), s(keys::hold(key)));
                item.insert(EXPIRES_AT.to_owned(), epoch_seconds(expiry(store_now, self.retention)));
                self.put(item).await
            }
            None => {
                let output = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key(PK, s(keys::HOLDS))
                    .key(SK, s(keys::hold(key)))
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| service_failure("DeleteItem", e))?;
                self.meter_write(output.consumed_capacity());
                Ok(())
            }
        }
    }

    async fn get_hold(&self, key: &HoldKey) -> Result<Option<Hold>, StoreError> {
        self.read_hold(key, false).await
    }

    async fn recent_hold(&self, key: &HoldKey) -> Result<Option<Hold>, StoreError> {
        self.read_hold(key, true).await
    }

    async fn list_holds(&self) -> Result<Vec<(HoldKey, Hold)>, StoreError> {
        self.partition(keys::HOLDS).await?.iter().map(decode_hold).collect()
    }

    async fn take_probe(
        &self,
        key: &HoldKey,
        probe_at: DateTime<Utc>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let store_now = self.advance(now);
        let mut update = Update::default();
        let due = update.compare(HOLD_PROBE_AT, "=", time(probe_at));
        let alive = update.compare(EXPIRES_AT, ">", epoch_seconds(store_now));
        update.require(format!("{due} AND {alive}"));
        update.set(HOLD_PROBE_AT, time(next));
        let written = self.update(keys::HOLDS.to_owned(), &keys::hold(key), update, ReturnValue::None).await?;
        Ok(matches!(written, Written::Done(_)))
    }
}

impl DynamoStore {
    async fn read_hold(&self, key: &HoldKey, recent: bool) -> Result<Option<Hold>, StoreError> {
        let item = self.get(keys::HOLDS.to_owned(), &keys::hold(key), recent).await?;
        Ok(item.map(|item| decode_hold(&item)).transpose()?.map(|(_, hold)| hold))
    }
}
