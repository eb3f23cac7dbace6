//! [`WamidLinks`] on the embedded store.

use super::*;
use crate::store::prelude::*;

impl WamidLinks for EmbeddedStore {
    async fn find_by_wamid(&self, wamid: &str) -> Result<Option<WamidEntry>, StoreError> {
        let wamid = wamid.to_owned();
        self.read(move |tx, now| {
            let Some(StoredWamid { link: Some(link), parked, .. }) = decode(&tx.open_table(WAMIDS)?, &wamid)? else {
                return Ok(None);
            };
            let send = load_send(&tx.open_table(SENDS)?, link.send_id.as_str(), now)?;
            Ok(send.map(|_| WamidEntry { link, parked }))
        })
        .await
    }

    async fn link_wamid(
        &self,
        wamid: &str,
        link: &WamidLink,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusUpdate>, StoreError> {
        let (wamid, link) = (wamid.to_owned(), link.clone());
        self.write(now, move |w| {
            let parked = Self::link(w, &wamid, &link)?;
            w.keep();
            Ok(parked)
        })
        .await
    }

    async fn park_status(
        &self,
        wamid: &str,
        update: &StatusUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<WamidEntry>, StoreError> {
        let (wamid, update) = (wamid.to_owned(), update.clone());
        self.write(now, move |w| {
            let mut wamids = w.tx.open_table(WAMIDS)?;
            let mut entry: StoredWamid = decode(&wamids, &wamid)?.unwrap_or_default();
            if let Some(link) = entry.link {
                return Ok(Some(WamidEntry { link, parked: entry.parked }));
            }
            if entry.parked_until.is_some_and(|until| !alive(until, w.now)) {
                entry.parked.clear();
            }
            if !entry.parked.contains(&update) {
                entry.parked.push(update.clone());
            }
            entry.parked_until = Some(after(w.now, PARK_TIME));
            wamids.insert(wamid.as_str(), encode(&entry)?.as_slice())?;
            drop(wamids);
            w.keep();
            Ok(None)
        })
        .await
    }
}
