//! [`Listings`] on the embedded store.

use super::*;
use crate::store::prelude::*;

impl Listings for EmbeddedStore {
    async fn waiting_for(&self, recipient: &str) -> Result<Vec<WaitingSend>, StoreError> {
        let recipient = recipient.to_owned();
        self.read(move |tx, now| {
            let sends = tx.open_table(SENDS)?;
            let mut waiting = Vec::new();
            for entry in tx.open_table(WAITING)?.range((recipient.as_str(), "")..)? {
                let (key, _) = entry?;
                let (of, id) = key.value();
                if of != recipient {
                    break;
                }
                if let Some(send) = load_send(&sends, id, now)? {
                    waiting.push(WaitingSend { send_id: send.id, slot: send.life.slot });
                }
            }
            Ok(waiting)
        })
        .await
    }

    async fn overdue(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<SendId>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.scan(move |tx, now| {
            let sends = tx.open_table(SENDS)?;
            let mut overdue = Vec::new();
            // Send ids are lowercase hex, so "~" sorts after every id due at `before`.
            for entry in tx.open_table(DUE)?.range(..=(instant_key(before), "~"))? {
                if overdue.len() == limit {
                    break;
                }
                let (key, _) = entry?;
                let (_, id) = key.value();
                // A send that outlived its retention while unfinished is gone, not overdue.
                if let Some(send) = load_send(&sends, id, now)? {
                    overdue.push(send.id);
                }
            }
            Ok(overdue)
        })
        .await
    }

    async fn campaign_sends(
        &self,
        campaign: &str,
        page: Option<&str>,
        limit: u32,
    ) -> Result<Page<SendRecord>, StoreError> {
        let campaign = campaign.to_owned();
        let position = page.map(PagePosition::parse).transpose()?;
        // A page of nothing would hand back the token it was given, and a caller would loop.
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        self.scan(move |tx, now| {
            let sends = tx.open_table(SENDS)?;
            let index = tx.open_table(CAMPAIGNS)?;
            let range = match &position {
                Some(last) => {
                    let last = (campaign.as_str(), last.nanos, last.id.as_str());
                    index.range((Bound::Excluded(last), Bound::Unbounded))?
                }
                None => index.range((campaign.as_str(), i128::MIN, "")..)?,
            };
            let mut items: Vec<SendRecord> = Vec::new();
            let mut next = None;
            for entry in range {
                let (key, _) = entry?;
                let (of, _, id) = key.value();
                if of != campaign {
                    break;
                }
                if items.len() == limit {
                    next = items.last().map(|last| PagePosition::of(last).token());
                    break;
                }
                if let Some(send) = load_send(&sends, id, now)? {
                    items.push(send);
                }
            }
            Ok(Page { items, next })
        })
        .await
    }
}
