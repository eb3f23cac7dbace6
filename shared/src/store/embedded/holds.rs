//! [`Holds`] on the embedded store.

use super::*;
use crate::store::prelude::*;

impl Holds for EmbeddedStore {
    async fn set_hold(&self, key: &HoldKey, hold: Option<Hold>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let key = encode_text(key)?;
        self.write(now, move |w| {
            {
                let mut holds = w.tx.open_table(HOLDS)?;
                match &hold {
                    Some(hold) => {
                        let stored = Expiring { expires_at: w.expires_at(), value: hold };
                        holds.insert(key.as_str(), encode(&stored)?.as_slice())?;
                    }
                    None => {
                        holds.remove(key.as_str())?;
                    }
                }
            }
            w.keep();
            Ok(())
        })
        .await
    }

    async fn get_hold(&self, key: &HoldKey) -> Result<Option<Hold>, StoreError> {
        let key = encode_text(key)?;
        self.read(move |tx, now| {
            let stored: Option<Expiring<Hold>> = decode(&tx.open_table(HOLDS)?, &key)?;
            Ok(stored.filter(|stored| alive(stored.expires_at, now)).map(|stored| stored.value))
        })
        .await
    }

    async fn list_holds(&self) -> Result<Vec<(HoldKey, Hold)>, StoreError> {
        self.read(move |tx, now| {
            let mut holds = Vec::new();
            for entry in tx.open_table(HOLDS)?.iter()? {
                let (key, value) = entry?;
                let key: HoldKey = serde_json::from_str(key.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let stored: Expiring<Hold> =
                    serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if alive(stored.expires_at, now) {
                    holds.push((key, stored.value));
                }
            }
            Ok(holds)
        })
        .await
    }

    async fn take_probe(
        &self,
        key: &HoldKey,
        probe_at: DateTime<Utc>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = encode_text(key)?;
        self.write(now, move |w| {
            let taken = {
                let mut holds = w.tx.open_table(HOLDS)?;
                let stored: Option<Expiring<Hold>> = decode(&holds, &key)?;
                match stored {
                    Some(mut stored) if alive(stored.expires_at, w.now) && stored.value.probe_at == probe_at => {
                        stored.value.probe_at = next;
                        holds.insert(key.as_str(), encode(&stored)?.as_slice())?;
                        true
                    }
                    _ => false,
                }
            };
            w.keep();
            Ok(taken)
        })
        .await
    }
}
