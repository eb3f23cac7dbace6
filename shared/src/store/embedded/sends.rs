//! [`Sends`] on the embedded store.

use super::*;
use crate::store::prelude::*;

impl Sends for EmbeddedStore {
    async fn record_send(&self, send: &NewSend, start: Start, now: DateTime<Utc>) -> Result<Recorded, StoreError> {
        let new = send.clone();
        self.write(now, move |w| {
            let id = new.id();
            let found: Option<SendRecord> = decode(&w.tx.open_table(SENDS)?, id.as_str())?;
            match found {
                Some(send) if alive(send.expires_at, w.now) => return Ok(Recorded { send, created: false }),
                Some(expired) => forget(w.tx, &expired)?,
                None => {}
            }
            let (life, claimed_slot) = start.life(new.max_attempts, now);
            let send = SendRecord {
                id,
                idempotency_key: new.idempotency_key.clone(),
                recipient: new.recipient.clone(),
                phone_number_id: new.phone_number_id.clone(),
                template: new.template.clone(),
                category: new.category,
                campaign: new.campaign.clone(),
                retry_until: new.retry_until,
                utc_offset_minutes: new.utc_offset_minutes,
                tier: new.tier,
                opt_in_source: new.opt_in_source.clone(),
                held_for_limit: new.held_for_limit,
                created_at: now,
                updated_at: now,
                expires_at: w.expires_at(),
                life,
                attempts: claimed_slot.map(|slot| AttemptRecord::claimed(slot, now)).into_iter().collect(),
            };
            if let Some(campaign) = &send.campaign {
                let key = (campaign.as_str(), instant_key(send.created_at), send.id.as_str());
                w.tx.open_table(CAMPAIGNS)?.insert(key, ())?;
            }
            save_send(w.tx, &send, None)?;
            w.keep();
            Ok(Recorded { send, created: true })
        })
        .await
    }

    async fn get_send(&self, id: &SendId) -> Result<Option<SendRecord>, StoreError> {
        let id = id.clone();
        self.read(move |tx, now| load_send(&tx.open_table(SENDS)?, id.as_str(), now)).await
    }

    async fn claim(
        &self,
        id: &SendId,
        slot: Slot,
        now: DateTime<Utc>,
        settle_by: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, now, move |send| {
            let effect = send.life.apply(Input::Claim(slot, settle_by));
            if let Effect::Send(slot) = effect {
                send.attempts.push(AttemptRecord::claimed(slot, now));
            }
            effect
        })
        .await
    }

    async fn record_accepted(
        &self,
        id: &SendId,
        slot: Slot,
        wamid: &str,
        now: DateTime<Utc>,
    ) -> Result<Linked, StoreError> {
        let (id, wamid) = (id.clone(), wamid.to_owned());
        self.write(now, move |w| {
            let Some(mut send) = load_send(&w.tx.open_table(SENDS)?, id.as_str(), w.now)? else {
                return Ok(Linked { send: None, parked: Vec::new() });
            };
            // Linked even when a webhook has already moved the send on (the answer came late): a
            // later webhook naming only this wamid must still find its send.
            let parked = Self::link(w, &wamid, &WamidLink { send_id: send.id.clone(), slot })?;
            let before = send.clone();
            let changed = send.life.apply(Input::Accepted(slot)) != Effect::Unchanged;
            if changed {
                if let Some(attempt) = attempt_mut(&mut send, slot) {
                    attempt.wamid = Some(wamid.clone());
                    attempt.accepted_at = Some(now);
                }
                save_changed(w, &mut send, &before, now)?;
            }
            w.keep();
            Ok(Linked { send: changed.then_some(send), parked })
        })
        .await
    }

    async fn record_paced(&self, id: &SendId, slot: Slot, now: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(now, move |w| {
            let Some(mut send) = load_send(&w.tx.open_table(SENDS)?, id.as_str(), w.now)? else { return Ok(()) };
            let before = send.clone();
            if let Some(attempt) = attempt_mut(&mut send, slot).filter(|attempt| attempt.paced_at.is_none()) {
                attempt.paced_at = Some(now);
                save_changed(w, &mut send, &before, now)?;
                w.keep();
            }
            Ok(())
        })
        .await
    }

    async fn await_delivery(
        &self,
        id: &SendId,
        slot: Slot,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, now, move |send| send.life.apply(Input::AwaitDelivery(slot, until))).await
    }

    async fn record_status(
        &self,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, at, move |send| status_step(send, slot, delivery, at)).await
    }

    /// One write: the delivery counted on the recipient's record and the status on the send's.
    async fn record_marketing_status(
        &self,
        recipient: &str,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError>
    where
        Self: Recipients,
    {
        let (recipient, id) = (recipient.to_owned(), id.clone());
        self.write(at, move |w| {
            Self::change_recipient_in(w, &recipient, |w, stored| {
                recipients::count_marketing_delivery(w, stored, &id, at)
            })?;
            Self::change_send_in(w, &id, at, |send| status_step(send, slot, delivery, at))
        })
        .await
    }

    async fn record_failure(
        &self,
        id: &SendId,
        slot: Slot,
        error: &RecordedError,
        verdict: Verdict,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        let error = error.clone();
        self.change_send(id, at, move |send| {
            let effect = send.life.apply(Input::Failed(slot, verdict));
            if effect != Effect::Unchanged
                && let Some(attempt) = attempt_mut(send, slot)
            {
                attempt.failed_at = Some(at);
                attempt.error = Some(error.clone());
            }
            effect
        })
        .await
    }

    async fn reschedule(
        &self,
        id: &SendId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, now, move |send| {
            // Only a hold pushes a send later; a reply can only bring it forward.
            let input = match send.life.phase {
                Phase::Waiting { due: current } if due > current => Input::Replan(due),
                _ => Input::Reply(due),
            };
            send.life.apply(input)
        })
        .await
    }

    async fn finish_waiting(
        &self,
        id: &SendId,
        reason: FinalReason,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, now, move |send| {
            if reason == FinalReason::OptedOut {
                return send.life.apply(Input::OptOut);
            }
            let effect = send.life.apply(Input::Cancel);
            // The domain ends a waiting send on the business's word as "cancelled"; the caller
            // may name a more precise reason, which the report should show.
            if effect != Effect::Unchanged {
                send.life.phase = Phase::Final { reason };
            }
            effect
        })
        .await
    }
}

/// A status applied to a send: its phase moved on, and the attempt's time for it noted.
fn status_step(send: &mut SendRecord, slot: Slot, delivery: Delivery, at: DateTime<Utc>) -> Effect {
    let effect = send.life.apply(Input::Status(slot, delivery));
    if effect != Effect::Unchanged
        && let Some(attempt) = attempt_mut(send, slot)
    {
        *delivery_time(attempt, delivery) = Some(at);
    }
    effect
}
