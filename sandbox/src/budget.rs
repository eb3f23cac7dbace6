//! One recipient's cross-business marketing budget: the model behind the sandbox's 131049.
//!
//! WhatsApp caps how many marketing templates a user receives from *all* businesses, dynamically,
//! by the user's read rate (docs/whatsapp.md#limits). Here each recipient has an allowance of `N`
//! marketing deliveries per rolling window (`N` drawn per recipient from its kind's range), raised
//! by one for every marketing message it read in the window, up to `2N`. Other businesses deliver
//! to it too, as a Poisson stream from the window before the run started on, and they are capped
//! by the same allowance, so they spend the budget our sends need. A marketing send is judged when
//! it is accepted:
//!
//! 1. inside a customer-service window (the recipient wrote within 24 h) it is delivered and not
//!    counted;
//! 2. within 24 h of this business's last cap for the recipient it fails again (131049), and the
//!    block restarts: Meta's "excessive retries" rule;
//! 3. otherwise, with the window's count at the allowance, it fails (131049);
//! 4. otherwise it is delivered and counts from the moment it was accepted.
//!
//! docs/sandbox.md gives the parameters and why.

use chrono::{DateTime, TimeDelta, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{BudgetRules, KindProfile};

/// What the budget makes of a marketing send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Delivered; `counted` unless a customer-service window was open.
    Deliver { counted: bool },
    /// The window's budget is spent.
    Capped,
    /// Resent too soon after a cap.
    RetryBlocked,
}

#[derive(Debug, Clone, Copy)]
struct Delivery {
    at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

/// A recipient's marketing deliveries, its messages to the business, and its last cap.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    allowance: u32,
    background_per_day: f64,
    read_probability: f64,
    rng: ChaCha8Rng,
    next_background: Option<DateTime<Utc>>,
    deliveries: Vec<Delivery>,
    inbound: Vec<DateTime<Utc>>,
    last_cap: Option<DateTime<Utc>>,
}

impl Budget {
    /// A recipient's budget at the run's `origin`, its draws made from `seed`.
    pub(crate) fn new(profile: &KindProfile, rules: &BudgetRules, origin: DateTime<Utc>, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha8Rng::from_seed(seed);
        let (low, high) = profile.budget;
        let allowance = rng.random_range(low.min(high)..=high.max(low));
        let mut budget = Self {
            allowance,
            background_per_day: profile.background_per_day,
            read_probability: profile.read_probability,
            rng,
            next_background: None,
            deliveries: Vec::new(),
            inbound: Vec::new(),
            last_cap: None,
        };
        if profile.starts_spent {
            // Others filled the window before the run; their deliveries leave it one by one.
            for _ in 0..allowance {
                let age = rules.window.num_seconds() as f64 * budget.rng.random::<f64>();
                budget.deliveries.push(Delivery { at: origin - TimeDelta::seconds(age as i64 + 1), read_at: None });
            }
            budget.next_background = budget.after(origin);
        } else {
            // Others have been sending for a window already.
            budget.next_background = budget.after(origin - rules.window);
        }
        budget
    }

    /// Judges a marketing send accepted at `now`; `capped_region` is false where the limit is
    /// not active.
    pub(crate) fn judge(&mut self, now: DateTime<Utc>, rules: &BudgetRules, capped_region: bool) -> Judgement {
        self.advance_background(now, rules);
        if self.window_open(now, rules) {
            return Judgement::Deliver { counted: false };
        }
        if self.last_cap.is_some_and(|cap| now < cap + rules.retry_block) {
            self.last_cap = Some(now);
            return Judgement::RetryBlocked;
        }
        if capped_region && self.counted(now, rules) >= self.allowance_at(now, rules) {
            self.last_cap = Some(now);
            return Judgement::Capped;
        }
        Judgement::Deliver { counted: true }
    }

    /// Records one of our marketing messages delivered (counted from `at`), read at `read_at`.
    pub(crate) fn record_delivery(&mut self, at: DateTime<Utc>, read_at: Option<DateTime<Utc>>) {
        self.deliveries.push(Delivery { at, read_at });
    }

    /// Records a message from the recipient to the business at `at`, which may be in the future
    /// for a reply already decided.
    pub(crate) fn record_inbound(&mut self, at: DateTime<Utc>) {
        self.inbound.push(at);
    }

    pub(crate) fn window_open(&self, now: DateTime<Utc>, rules: &BudgetRules) -> bool {
        self.inbound.iter().any(|at| *at <= now && now < *at + rules.service_window)
    }

    /// Delivered marketing messages in the window ending at `at`.
    fn counted(&self, at: DateTime<Utc>, rules: &BudgetRules) -> u32 {
        let from = at - rules.window;
        self.deliveries.iter().filter(|d| from < d.at && d.at <= at).count() as u32
    }

    /// The allowance at `at`: `N`, plus one per message read in the window, at most `2N`.
    fn allowance_at(&self, at: DateTime<Utc>, rules: &BudgetRules) -> u32 {
        let from = at - rules.window;
        let reads = self.deliveries.iter().filter(|d| d.read_at.is_some_and(|r| from < r && r <= at)).count() as u32;
        self.allowance + reads.min(self.allowance)
    }

    /// Plays other businesses' deliveries up to `until`: each one that finds room takes it.
    fn advance_background(&mut self, until: DateTime<Utc>, rules: &BudgetRules) {
        while let Some(at) = self.next_background.filter(|at| *at <= until) {
            if self.counted(at, rules) < self.allowance_at(at, rules) {
                let read = self.rng.random_bool(self.read_probability.clamp(0.0, 1.0));
                self.deliveries.push(Delivery { at, read_at: read.then_some(at) });
            }
            self.next_background = self.after(at);
        }
        let horizon = until - rules.window;
        self.deliveries.retain(|d| d.read_at.unwrap_or(d.at).max(d.at) > horizon);
    }

    /// The next background delivery after `at`: exponential gaps at the kind's daily rate.
    fn after(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.background_per_day <= 0.0 {
            return None;
        }
        let days = -(1.0 - self.rng.random::<f64>()).ln() / self.background_per_day;
        Some(at + TimeDelta::seconds((days * 86_400.0).ceil() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn rules() -> BudgetRules {
        let clock = shared::clock::ScaledClock::new(origin(), 1.0);
        SandboxConfig::new(0, clock).budget
    }

    fn origin() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).unwrap()
    }

    fn quiet(budget: (u32, u32), read_probability: f64) -> KindProfile {
        KindProfile {
            weight: 1,
            budget,
            background_per_day: 0.0,
            starts_spent: false,
            read_probability,
            reply_probability: 0.0,
        }
    }

    fn hours(h: i64) -> TimeDelta {
        TimeDelta::hours(h)
    }

    #[test]
    fn the_budget_is_spent_after_n_deliveries_and_frees_up_as_they_leave_the_window() {
        let rules = rules();
        let mut budget = Budget::new(&quiet((2, 2), 0.0), &rules, origin(), [1; 32]);
        for h in [0, 1] {
            assert_eq!(budget.judge(origin() + hours(h), &rules, true), Judgement::Deliver { counted: true });
            budget.record_delivery(origin() + hours(h), None);
        }
        assert_eq!(budget.judge(origin() + hours(2), &rules, true), Judgement::Capped);
        // Seven days after the first delivery it has left the window (and the block is long over).
        assert_eq!(budget.judge(origin() + hours(24 * 7 + 1), &rules, true), Judgement::Deliver { counted: true });
    }

    #[test]
    fn reads_loosen_the_budget() {
        let rules = rules();
        let mut budget = Budget::new(&quiet((1, 1), 0.0), &rules, origin(), [1; 32]);
        assert_eq!(budget.judge(origin(), &rules, true), Judgement::Deliver { counted: true });
        budget.record_delivery(origin(), Some(origin() + hours(1)));
        assert_eq!(budget.judge(origin() + TimeDelta::minutes(30), &rules, true), Judgement::Capped);
        let mut reader = Budget::new(&quiet((1, 1), 0.0), &rules, origin(), [1; 32]);
        reader.record_delivery(origin(), Some(origin() + hours(1)));
        assert_eq!(reader.judge(origin() + hours(2), &rules, true), Judgement::Deliver { counted: true });
    }

    #[test]
    fn a_customer_service_window_suppresses_the_cap_and_the_send_does_not_count() {
        let rules = rules();
        let mut budget = Budget::new(&quiet((1, 1), 0.0), &rules, origin(), [1; 32]);
        budget.record_delivery(origin(), None);
        assert_eq!(budget.judge(origin() + hours(1), &rules, true), Judgement::Capped);
        budget.record_inbound(origin() + hours(30));
        assert_eq!(budget.judge(origin() + hours(31), &rules, true), Judgement::Deliver { counted: false });
        // The window closes 24 h after the message; the cap is back.
        assert_eq!(budget.judge(origin() + hours(55), &rules, true), Judgement::Capped);
    }

    #[test]
    fn resending_within_a_day_of_a_cap_is_refused_and_extends_the_block() {
        let rules = rules();
        let mut budget = Budget::new(&quiet((1, 1), 0.0), &rules, origin(), [1; 32]);
        budget.record_delivery(origin() - hours(24 * 7) + hours(13), None);
        assert_eq!(budget.judge(origin(), &rules, true), Judgement::Capped);
        // Twelve hours on, the old delivery has left the window, yet the resend is blocked…
        assert_eq!(budget.judge(origin() + hours(14), &rules, true), Judgement::RetryBlocked);
        // …and the block now runs 24 h from that resend, not from the cap.
        assert_eq!(budget.judge(origin() + hours(30), &rules, true), Judgement::RetryBlocked);
        assert_eq!(budget.judge(origin() + hours(55), &rules, true), Judgement::Deliver { counted: true });
    }

    #[test]
    fn other_businesses_spend_the_budget() {
        let rules = rules();
        let busy = KindProfile { background_per_day: 20.0, ..quiet((3, 3), 0.0) };
        let mut budget = Budget::new(&busy, &rules, origin(), [2; 32]);
        assert_eq!(budget.judge(origin(), &rules, true), Judgement::Capped);
    }

    #[test]
    fn a_spent_budget_frees_up_as_others_deliveries_age_out() {
        let rules = rules();
        let spent = KindProfile { starts_spent: true, ..quiet((2, 2), 0.0) };
        let mut budget = Budget::new(&spent, &rules, origin(), [3; 32]);
        assert_eq!(budget.judge(origin(), &rules, true), Judgement::Capped);
        assert_eq!(budget.judge(origin() + hours(24 * 8), &rules, true), Judgement::Deliver { counted: true });
    }

    #[test]
    fn no_cap_where_the_limit_is_not_active() {
        let rules = rules();
        let spent = KindProfile { starts_spent: true, ..quiet((2, 2), 0.0) };
        let mut budget = Budget::new(&spent, &rules, origin(), [3; 32]);
        assert_eq!(budget.judge(origin(), &rules, false), Judgement::Deliver { counted: true });
    }
}
