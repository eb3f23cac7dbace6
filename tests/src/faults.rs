//! Fault injection: each port (store, scheduler, Cloud API) wrapped so that one of its calls, the
//! k-th of a run counted over all three, fails or "crashes".
//!
//! A failure is an error the use case sees: before the call ([`Fault::Fail`], nothing happened) or
//! after it ([`Fault::FailAfter`], the write landed or the message went out, and the answer was
//! lost). A crash stops the process: the call never returns, nor does any later call of any
//! port, and [`Faults::crashed`] tells the runner, which drops the use case's future as a
//! `kill -9` would end it; again before the call ([`Fault::Crash`]) or after it
//! ([`Fault::CrashAfter`]). A run that reached no k-th call saw no fault.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use shared::cloud::{CloudApi, CloudApiError, Endpoint};
use shared::domain::lifecycle::{Delivery, Slot};
use shared::domain::verdict::{FinalReason, Verdict};
use shared::schedule::{RetryJob, RetryScheduler, ScheduleError};
use shared::store::prelude::*;
use shared::store::{
    BusinessNumber, ConsentEvent, CountOf, Hold, HoldKey, Linked, MessagingCount, NewSend, Page, Place, QualityReport,
    RecipientRecord, Recorded, RecordedError, ReportedLimit, SendId, SendRecord, Start, StatusUpdate, StoreError,
    TemplateRecord, TemplateReport, WaitingSend, WamidEntry, WamidLink,
};
use shared::whatsapp::send::{SendRequest, SendResponse};
use tokio::sync::Notify;

/// What happens at the faulty call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The call fails before doing anything.
    Fail,
    /// The call does its work, then fails as if its answer were lost.
    FailAfter,
    /// The process dies at the call, before it does anything.
    Crash,
    /// The process dies right after the call did its work.
    CrashAfter,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Fail, Fault::FailAfter, Fault::Crash, Fault::CrashAfter];

    fn after(self) -> bool {
        matches!(self, Fault::FailAfter | Fault::CrashAfter)
    }

    fn crashes(self) -> bool {
        matches!(self, Fault::Crash | Fault::CrashAfter)
    }
}

/// The plan of one run: which call faults, and how. Shared by the three wrappers.
#[derive(Debug, Default)]
pub struct Faults {
    calls: AtomicU64,
    plan: Mutex<Plan>,
    struck: AtomicBool,
    crashed: AtomicBool,
    crash: Notify,
}

#[derive(Debug, Default, Clone, Copy)]
enum Plan {
    #[default]
    None,
    At(u64, Fault),
    /// Every call fails before doing anything: a port that is down.
    Down,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every call fails, for as long as the plan stands.
    pub fn down() -> Arc<Self> {
        let faults = Self::new();
        *faults.plan.lock().unwrap() = Plan::Down;
        faults
    }

    /// From now on, the `k`-th call (counting from 0) suffers `fault`.
    pub fn arm(&self, k: u64, fault: Fault) {
        self.calls.store(0, Ordering::SeqCst);
        self.struck.store(false, Ordering::SeqCst);
        *self.plan.lock().unwrap() = Plan::At(k, fault);
    }

    /// No more faults, and the process is alive again (a restart).
    pub fn disarm(&self) {
        *self.plan.lock().unwrap() = Plan::None;
        self.crashed.store(false, Ordering::SeqCst);
    }

    /// Whether the armed fault struck.
    pub fn struck(&self) -> bool {
        self.struck.load(Ordering::SeqCst)
    }

    /// Calls made since the plan was armed.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Resolves once a crash has struck.
    pub async fn crashed(&self) {
        loop {
            let notified = self.crash.notified();
            if self.crashed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Runs `work` until it ends, or until a crash strikes (then `None`: the work was dropped
    /// where it stood, as a killed process leaves it).
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            done = work => Some(done),
            () = self.crashed() => None,
        }
    }

    /// Makes one call through the plan: `call` is the real call, `error` makes the port's error
    /// (told whether the work was done).
    async fn around<T, E, F>(&self, call: impl FnOnce() -> F, error: impl FnOnce(bool) -> E) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        if self.crashed.load(Ordering::SeqCst) {
            return std::future::pending().await;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = match *self.plan.lock().unwrap() {
            Plan::None => None,
            Plan::Down => return Err(error(false)),
            Plan::At(k, fault) => (k == n).then_some(fault),
        };
        let Some(fault) = fault else { return call().await };
        self.struck.store(true, Ordering::SeqCst);
        if fault.after() {
            // The work is done whatever its answer; the answer is what is lost.
            let _ = call().await;
        }
        if fault.crashes() {
            self.crashed.store(true, Ordering::SeqCst);
            self.crash.notify_waiters();
            return std::future::pending().await;
        }
        Err(error(fault.after()))
    }
}

fn store_down(_: bool) -> StoreError {
    StoreError::Unavailable("injected fault".into())
}

/// A store whose calls go through a fault plan.
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    pub inner: S,
    pub faults: Arc<Faults>,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

impl<S: SendStore> Sends for FaultyStore<S> {
    async fn record_send(&self, send: &NewSend, start: Start, now: DateTime<Utc>) -> Result<Recorded, StoreError> {
        self.faults.around(|| self.inner.record_send(send, start, now), store_down).await
    }

    async fn get_send(&self, id: &SendId) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.get_send(id), store_down).await
    }

    async fn claim(
        &self,
        id: &SendId,
        slot: Slot,
        now: DateTime<Utc>,
        settle_by: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.claim(id, slot, now, settle_by), store_down).await
    }

    async fn record_accepted(
        &self,
        id: &SendId,
        slot: Slot,
        wamid: &str,
        now: DateTime<Utc>,
    ) -> Result<Linked, StoreError> {
        self.faults.around(|| self.inner.record_accepted(id, slot, wamid, now), store_down).await
    }

    async fn record_paced(&self, id: &SendId, slot: Slot, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.faults.around(|| self.inner.record_paced(id, slot, now), store_down).await
    }

    async fn await_delivery(
        &self,
        id: &SendId,
        slot: Slot,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.await_delivery(id, slot, until, now), store_down).await
    }

    async fn record_status(
        &self,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.record_status(id, slot, delivery, at), store_down).await
    }

    async fn record_marketing_status(
        &self,
        recipient: &str,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.record_marketing_status(recipient, id, slot, delivery, at), store_down).await
    }

    async fn record_failure(
        &self,
        id: &SendId,
        slot: Slot,
        error: &RecordedError,
        verdict: Verdict,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.record_failure(id, slot, error, verdict, at), store_down).await
    }

    async fn reschedule(
        &self,
        id: &SendId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.reschedule(id, due, now), store_down).await
    }

    async fn finish_waiting(
        &self,
        id: &SendId,
        reason: FinalReason,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.finish_waiting(id, reason, now), store_down).await
    }
}

impl<S: SendStore> WamidLinks for FaultyStore<S> {
    async fn find_by_wamid(&self, wamid: &str) -> Result<Option<WamidEntry>, StoreError> {
        self.faults.around(|| self.inner.find_by_wamid(wamid), store_down).await
    }

    async fn link_wamid(
        &self,
        wamid: &str,
        link: &WamidLink,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusUpdate>, StoreError> {
        self.faults.around(|| self.inner.link_wamid(wamid, link, now), store_down).await
    }

    async fn park_status(
        &self,
        wamid: &str,
        update: &StatusUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<WamidEntry>, StoreError> {
        self.faults.around(|| self.inner.park_status(wamid, update, now), store_down).await
    }
}

impl<S: SendStore> Recipients for FaultyStore<S> {
    async fn get_recipient(&self, recipient: &str) -> Result<RecipientRecord, StoreError> {
        self.faults.around(|| self.inner.get_recipient(recipient), store_down).await
    }

    async fn set_opt_out(
        &self,
        recipient: &str,
        opted_out: bool,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.faults.around(|| self.inner.set_opt_out(recipient, opted_out, source, at), store_down).await
    }

    async fn record_opt_in(
        &self,
        recipient: &str,
        opt_in: &ConsentEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.faults.around(|| self.inner.record_opt_in(recipient, opt_in, now), store_down).await
    }

    async fn record_inbound(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.faults.around(|| self.inner.record_inbound(recipient, at), store_down).await
    }

    async fn record_read(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.faults.around(|| self.inner.record_read(recipient, at), store_down).await
    }

    async fn record_marketing_delivery(
        &self,
        recipient: &str,
        send: &SendId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.faults.around(|| self.inner.record_marketing_delivery(recipient, send, at), store_down).await
    }

    async fn record_cap(
        &self,
        recipient: &str,
        send: &SendId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        self.faults.around(|| self.inner.record_cap(recipient, send, attempt, at), store_down).await
    }

    async fn record_contact(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.faults.around(|| self.inner.record_contact(recipient, at), store_down).await
    }

    async fn record_alias(&self, wa_id: &str, number: &str, at: DateTime<Utc>) -> Result<RecipientRecord, StoreError> {
        self.faults.around(|| self.inner.record_alias(wa_id, number, at), store_down).await
    }
}

impl<S: SendStore> Numbers for FaultyStore<S> {
    async fn learn_number(
        &self,
        display: &str,
        phone_number_id: &str,
        waba_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.faults.around(|| self.inner.learn_number(display, phone_number_id, waba_id, now), store_down).await
    }

    async fn report_quality(
        &self,
        display: &str,
        report: &QualityReport,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.faults.around(|| self.inner.report_quality(display, report, now), store_down).await
    }

    async fn business_numbers(&self) -> Result<Vec<BusinessNumber>, StoreError> {
        self.faults.around(|| self.inner.business_numbers(), store_down).await
    }
}

impl<S: SendStore> Templates for FaultyStore<S> {
    async fn report_template(
        &self,
        name: &str,
        language: &str,
        report: &TemplateReport,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.faults.around(|| self.inner.report_template(name, language, report, now), store_down).await
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.faults.around(|| self.inner.templates(), store_down).await
    }
}

impl<S: SendStore> Limits for FaultyStore<S> {
    async fn messaging_count(&self, of: CountOf<'_>) -> Result<MessagingCount, StoreError> {
        self.faults.around(|| self.inner.messaging_count(of), store_down).await
    }

    async fn count_contact(&self, places: &[Place<'_>], now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.faults.around(|| self.inner.count_contact(places, now), store_down).await
    }

    async fn report_limit(&self, reported: ReportedLimit, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.faults.around(|| self.inner.report_limit(reported, now), store_down).await
    }
}

impl<S: SendStore> Listings for FaultyStore<S> {
    async fn waiting_for(&self, recipient: &str) -> Result<Vec<WaitingSend>, StoreError> {
        self.faults.around(|| self.inner.waiting_for(recipient), store_down).await
    }

    async fn overdue(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<SendId>, StoreError> {
        self.faults.around(|| self.inner.overdue(before, limit), store_down).await
    }

    async fn campaign_sends(
        &self,
        campaign: &str,
        page: Option<&str>,
        limit: u32,
    ) -> Result<Page<SendRecord>, StoreError> {
        self.faults.around(|| self.inner.campaign_sends(campaign, page, limit), store_down).await
    }
}

impl<S: SendStore> Holds for FaultyStore<S> {
    async fn set_hold(&self, key: &HoldKey, hold: Option<Hold>, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.faults.around(|| self.inner.set_hold(key, hold.clone(), now), store_down).await
    }

    async fn get_hold(&self, key: &HoldKey) -> Result<Option<Hold>, StoreError> {
        self.faults.around(|| self.inner.get_hold(key), store_down).await
    }

    async fn list_holds(&self) -> Result<Vec<(HoldKey, Hold)>, StoreError> {
        self.faults.around(|| self.inner.list_holds(), store_down).await
    }

    async fn take_probe(
        &self,
        key: &HoldKey,
        probe_at: DateTime<Utc>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.faults.around(|| self.inner.take_probe(key, probe_at, next, now), store_down).await
    }
}

/// A scheduler whose calls go through a fault plan.
#[derive(Debug, Clone)]
pub struct FaultyScheduler<R> {
    pub inner: R,
    pub faults: Arc<Faults>,
}

impl<R> FaultyScheduler<R> {
    pub fn new(inner: R, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

fn schedule_down(_: bool) -> ScheduleError {
    ScheduleError::Unavailable("injected fault".into())
}

impl<R: RetryScheduler> RetryScheduler for FaultyScheduler<R> {
    async fn schedule(&self, job: &RetryJob, due: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        self.faults.around(|| self.inner.schedule(job, due, now), schedule_down).await
    }

    async fn cancel(&self, job: &RetryJob) -> Result<(), ScheduleError> {
        self.faults.around(|| self.inner.cancel(job), schedule_down).await
    }
}

/// A Cloud API whose calls go through a fault plan. A failure before the call is a connection
/// that never came up (nothing sent); after it, a timeout with the request sent.
#[derive(Debug, Clone)]
pub struct FaultyCloud<C> {
    pub inner: C,
    pub faults: Arc<Faults>,
}

impl<C> FaultyCloud<C> {
    pub fn new(inner: C, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

impl<C: CloudApi> CloudApi for FaultyCloud<C> {
    async fn send_template(
        &self,
        phone_number_id: &str,
        request: &SendRequest,
        endpoint: Endpoint,
    ) -> Result<SendResponse, CloudApiError> {
        self.faults
            .around(
                || self.inner.send_template(phone_number_id, request, endpoint),
                |request_sent| CloudApiError::Timeout { request_sent },
            )
            .await
    }

    async fn refresh_token(&self) -> bool {
        self.inner.refresh_token().await
    }
}
