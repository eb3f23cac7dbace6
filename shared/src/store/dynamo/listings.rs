//! [`Listings`] on the DynamoDB store.

use super::*;
use crate::store::prelude::*;

impl Listings for DynamoStore {
    async fn waiting_for(&self, recipient: &str) -> Result<Vec<WaitingSend>, StoreError> {
        let mut waiting = Vec::new();
        let mut start = None;
        loop {
            let query = self
                .index_query(WAITING_INDEX)
                .key_condition_expression("#recipient = :recipient")
                .expression_attribute_names("#recipient", RECIPIENT)
                .expression_attribute_values(":recipient", s(recipient))
                .set_exclusive_start_key(start);
            let output = self.run_query(query).await?;
            for entry in output.items() {
                let (pk, send_id) = send_key_of(entry)?;
                let slot = Fields::new(entry, pk).text(WAITING_SLOT)?;
                let slot = parse_slot_key(slot)
                    .ok_or_else(|| StoreError::Corrupt(format!("{pk}: {WAITING_SLOT} {slot:?} is not a slot")))?;
                waiting.push(WaitingSend { send_id, slot });
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(waiting),
            }
        }
    }

    async fn overdue(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<SendId>, StoreError> {
        // Each shard gives up to `limit` of its most overdue, and the merge keeps the most overdue
        // of all: the overdue sends may all sit in one shard.
        let per_shard = limit.max(1);
        let mut overdue: Vec<(DateTime<Utc>, SendId)> = Vec::new();
        for shard in keys::DUE_SHARDS {
            let query = self
                .index_query(DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :before")
                .expression_attribute_names("#shard", DUE_SHARD)
                .expression_attribute_names("#due", DUE)
                .expression_attribute_values(":shard", s(shard))
                .expression_attribute_values(":before", time(before))
                .limit(i32::try_from(per_shard).unwrap_or(i32::MAX));
            let output = self.run_query(query).await?;
            for entry in output.items() {
                let (pk, id) = send_key_of(entry)?;
                overdue.push((Fields::new(entry, pk).time(DUE)?, id));
            }
        }
        overdue.sort();
        overdue.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(overdue.into_iter().map(|(_, id)| id).collect())
    }

    async fn campaign_sends(
        &self,
        campaign: &str,
        page: Option<&str>,
        limit: u32,
    ) -> Result<Page<SendRecord>, StoreError> {
        let start = page.map(PageToken::parse).transpose()?;
        // A page of nothing would hand back the token it was given, and a caller would loop.
        let limit = limit.clamp(1, MAX_PAGE);
        // One more key than the page holds tells whether another page follows.
        let query = self
            .index_query(CAMPAIGN_INDEX)
            .key_condition_expression("#campaign = :campaign")
            .expression_attribute_names("#campaign", CAMPAIGN)
            .expression_attribute_values(":campaign", s(campaign))
            .set_exclusive_start_key(start.map(|start| start.start_key(campaign)))
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX));
        let output = self.run_query(query).await?;
        let mut listed = Vec::new();
        for entry in output.items() {
            let (pk, id) = send_key_of(entry)?;
            listed.push(PageToken { created_at: Fields::new(entry, pk).time(CREATED_AT)?, id });
        }
        let more = listed.len() > limit as usize || output.last_evaluated_key.is_some();
        listed.truncate(limit as usize);
        let next = listed.last().filter(|_| more).map(PageToken::token);
        let ids: Vec<SendId> = listed.into_iter().map(|position| position.id).collect();
        let mut found = self.batch_get_sends(&ids).await?;
        let items = ids.iter().filter_map(|id| found.remove(id)).collect();
        Ok(Page { items, next })
    }
}
