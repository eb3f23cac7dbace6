//! [`Sends`] on the DynamoDB store.

use super::*;
use crate::store::prelude::*;

impl Sends for DynamoStore {
    async fn record_send(&self, send: &NewSend, start: Start, now: DateTime<Utc>) -> Result<Recorded, StoreError> {
        let id = send.id();
        let (life, claimed_slot) = start.life(send.max_attempts, now);
        let template = serde_json::to_string(&send.template)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the template of send {id}: {e}")))?;
        let store_now = self.advance(now);
        let mut update = Update::default();
        // An expired send is gone, whatever TTL has done yet: a new one may take its id. Every
        // attribute is then set or removed, so nothing of the old item survives.
        let (absent, expired) = (update.missing(PK), update.compare(EXPIRES_AT, "<=", epoch_seconds(store_now)));
        update.require(format!("{absent} OR {expired}"));
        update.set(IDEMPOTENCY_KEY, s(send.idempotency_key.clone()));
        update.set(RECIPIENT, s(send.recipient.clone()));
        update.set(PHONE_NUMBER_ID, s(send.phone_number_id.clone()));
        update.set(TEMPLATE, s(template));
        update.set(CATEGORY, s(send.category.as_str()));
        match &send.campaign {
            Some(campaign) => update.set(CAMPAIGN, s(campaign.clone())),
            None => update.remove(CAMPAIGN),
        }
        match send.retry_until {
            Some(until) => update.set(RETRY_UNTIL, time(until)),
            None => update.remove(RETRY_UNTIL),
        }
        match send.utc_offset_minutes {
            Some(minutes) => update.set(UTC_OFFSET, n(minutes)),
            None => update.remove(UTC_OFFSET),
        }
        match send.tier {
            Some(tier) => update.set(TIER, s(tier.as_str())),
            None => update.remove(TIER),
        }
        match &send.opt_in_source {
            Some(source) => update.set(OPT_IN_SOURCE, s(source.as_str())),
            None => update.remove(OPT_IN_SOURCE),
        }
        match send.held_for_limit {
            true => update.set(HELD_FOR_LIMIT, AttributeValue::Bool(true)),
            false => update.remove(HELD_FOR_LIMIT),
        }
        update.set(CREATED_AT, time(now));
        update.set(UPDATED_AT, time(now));
        update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
        write_life(&mut update, &id, &life);
        let attempts = claimed_slot.map(|slot| (slot_key(slot), claimed_attempt(now)));
        update.set(ATTEMPTS, AttributeValue::M(attempts.into_iter().collect()));
        match self.update_send(&id, update).await? {
            Written::Done(send) => Ok(Recorded { send, created: true }),
            Written::Refused(Some(first)) => Ok(Recorded { send: decode_send(&first)?, created: false }),
            Written::Refused(None) => Err(StoreError::Unavailable(format!("send {id} was refused but not returned"))),
        }
    }

    async fn get_send(&self, id: &SendId) -> Result<Option<SendRecord>, StoreError> {
        self.get(keys::send(id), keys::SEND, false).await?.map(|item| decode_send(&item)).transpose()
    }

    async fn recent_send(&self, id: &SendId) -> Result<Option<SendRecord>, StoreError> {
        self.get(keys::send(id), keys::SEND, true).await?.map(|item| decode_send(&item)).transpose()
    }

    async fn claim(
        &self,
        id: &SendId,
        slot: Slot,
        now: DateTime<Utc>,
        settle_by: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        let mut update = Update::default();
        self.stamp_send(&mut update, now);
        require_phase(&mut update, &[WAITING]);
        require_slot(&mut update, slot);
        update.set(PHASE, s(CLAIMED));
        update.set(DELIVERY_RANK, n(0));
        update.set(&format!("{ATTEMPTS}.{}", slot_key(slot)), claimed_attempt(now));
        enter_due_index(&mut update, id, settle_by);
        leave_waiting_index(&mut update);
        self.transition(id, update).await
    }

    async fn record_accepted(
        &self,
        id: &SendId,
        slot: Slot,
        wamid: &str,
        now: DateTime<Utc>,
    ) -> Result<Linked, StoreError> {
        // The link first: it is true whatever the send's state, writing it again is harmless, and
        // a crash before the send's update leaves nothing a retry would not fix.
        let parked = self.link_wamid(wamid, &WamidLink { send_id: id.clone(), slot }, now).await?;
        let mut update = Update::default();
        self.stamp_send(&mut update, now);
        require_phase(&mut update, &[CLAIMED]);
        require_slot(&mut update, slot);
        update.set(PHASE, s(IN_FLIGHT));
        update.set(DELIVERY_RANK, n(rank(Delivery::Accepted)));
        // The claim's due time stays: an index write saved on every send (see `SendLife`).
        update.set(&attempt_field(slot, WAMID), s(wamid));
        update.set(&attempt_field(slot, ACCEPTED_AT), time(now));
        Ok(Linked { send: self.transition(id, update).await?, parked })
    }

    async fn await_delivery(
        &self,
        id: &SendId,
        slot: Slot,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        let mut update = Update::default();
        self.stamp_send(&mut update, now);
        require_phase(&mut update, &[IN_FLIGHT]);
        require_slot(&mut update, slot);
        let later = update.compare(DUE, "<", time(until));
        update.require(later);
        enter_due_index(&mut update, id, until);
        self.transition(id, update).await
    }

    async fn record_status(
        &self,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        let history = |update: &mut Update| update.set(&attempt_field(slot, delivery_field(delivery)), time(at));
        let mut update = Update::default();
        self.stamp_send(&mut update, at);
        require_slot(&mut update, slot);
        let ahead = update.compare(DELIVERY_RANK, "<", n(rank(delivery)));
        update.require(ahead);
        update.set(DELIVERY_RANK, n(rank(delivery)));
        if delivery.is_success() {
            require_phase(&mut update, &[CLAIMED, IN_FLIGHT, SUCCEEDED]);
            update.set(PHASE, s(SUCCEEDED));
            leave_due_index(&mut update);
        } else {
            // Claimed, when the status came ahead of the send call's answer; the due time stays.
            require_phase(&mut update, &[CLAIMED, IN_FLIGHT]);
            update.set(PHASE, s(IN_FLIGHT));
        }
        history(&mut update);
        match self.update_send(id, update).await? {
            Written::Done(send) => Ok(Some(send)),
            Written::Refused(old) => self.compare_and_set(id, old, Input::Status(slot, delivery), at, history).await,
        }
    }

    async fn record_failure(
        &self,
        id: &SendId,
        slot: Slot,
        error: &RecordedError,
        verdict: Verdict,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        let mut update = Update::default();
        self.stamp_send(&mut update, at);
        require_slot(&mut update, slot);
        require_phase(&mut update, &[CLAIMED, IN_FLIGHT]);
        FailurePlan::of(slot, verdict).write(&mut update, id);
        write_failure(&mut update, slot, error, at);
        match self.update_send(id, update).await? {
            Written::Done(send) => Ok(Some(send)),
            // Stale, or suppressed, or out of attempts: the domain decides on the stored send.
            Written::Refused(old) => {
                let input = Input::Failed(slot, verdict);
                self.compare_and_set(id, old, input, at, |update| write_failure(update, slot, error, at)).await
            }
        }
    }

    async fn record_paced(&self, id: &SendId, slot: Slot, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut update = Update::default();
        self.stamp_send(&mut update, now);
        let path = format!("{ATTEMPTS}.{}", slot_key(slot));
        let paced = format!("{path}.{PACED_AT}");
        let (claimed, first) = (update.exists(&path), update.missing(&paced));
        update.require(format!("{claimed} AND {first}"));
        update.set(&paced, time(now));
        self.transition(id, update).await?;
        Ok(())
    }

    async fn reschedule(
        &self,
        id: &SendId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        // A hold's replan or a reply's "now": either way the waiting send is due at `due`.
        let mut update = Update::default();
        self.stamp_send(&mut update, now);
        require_phase(&mut update, &[WAITING]);
        let moved = update.compare(DUE, "<>", time(due));
        update.require(moved);
        update.set(DUE, time(due));
        self.transition(id, update).await
    }

    async fn finish_waiting(
        &self,
        id: &SendId,
        reason: FinalReason,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        let mut update = Update::default();
        self.stamp_send(&mut update, now);
        require_phase(&mut update, &[WAITING]);
        update.set(PHASE, s(FINAL));
        update.set(REASON, s(reason.as_str()));
        leave_due_index(&mut update);
        leave_waiting_index(&mut update);
        if reason == FinalReason::OptedOut {
            update.set(SUPPRESSED, AttributeValue::Bool(true));
        }
        match self.update_send(id, update).await? {
            Written::Done(send) => Ok(Some(send)),
            // An opt-out also marks a send that is not waiting, so that it ends at its next wait.
            Written::Refused(old) if reason == FinalReason::OptedOut => {
                self.compare_and_set(id, old, Input::OptOut, now, |_| {}).await
            }
            Written::Refused(_) => Ok(None),
        }
    }
}
