//! The default policy: what capguard does to a ladder step, knowing the recipient.
//!
//! A fixed calendar retries a capped send at the same offsets for everyone. The policy places
//! each retry for the recipient it is for, each part switchable so that `capguard lab` can show
//! what it adds:
//!
//! - **rest after a cap** (off unless configured, since it overrides the ladder's own steps): no
//!   retry comes sooner than a set time after the cap it answers; Meta's page says to wait at
//!   least 24 h, and that a resend sooner can block the user for up to 24 h more;
//! - **per-contact memory:** a contact capped again and again (across campaigns: the count of
//!   caps since its last delivery, which a delivery resets) rests longer: from its
//!   `stretch_from`-th consecutive cap on, each step is twice as long;
//! - **inside the window:** a cap of a message sent before the recipient wrote, judged while the
//!   customer-service window their message opened is still open, is retried at once, inside it,
//!   where Meta does not count the message against the cap (and so without the rest after a cap);
//!   a message sent inside the window and capped all the same waits for its step;
//! - **quiet hours:** a retry that would land in the recipient's night (21:00 to 09:00 local by
//!   default, local time from the number's country or the request's own offset) is moved to the
//!   morning: later than its step, never earlier;
//! - **a deadline:** a send whose request set `retry_until` is not retried past it (a flash sale
//!   that ended), and ends as `deadline` instead; admission holds a retry that a hold or an
//!   outage kept past it to the same deadline;
//! - **engaged first:** a marketing request's first attempts go to its engaged recipients first,
//!   then the dormant, then the new ([`super::engagement`]), so that the recipients most likely
//!   to read it are reached before a hold, a deadline or the end of the number's throughput.

use chrono::{DateTime, FixedOffset, NaiveTime, TimeDelta, Utc};

/// How the default policy adapts the ladder. [`Policy::default`] has every part on but the rest
/// after a cap; [`Policy::off`] is the bare ladder, a fixed calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The least time between a cap and its ladder retry (a retry inside an open window, which
    /// Meta does not count against the cap, excepted).
    pub rest_after_cap: Option<TimeDelta>,
    /// From this many consecutive caps of the contact on (this one included), steps are doubled.
    pub stretch_from: Option<u32>,
    pub in_window: bool,
    pub quiet_hours: Option<QuietHours>,
    /// A marketing request's first attempts go to its engaged recipients first.
    pub engaged_first: bool,
}

/// The consecutive cap from which a contact's steps are doubled: the third, so that a contact
/// capped on two earlier attempts (this campaign's or another's) waits longer from then on.
pub const STRETCH_FROM: u32 = 3;

impl Default for Policy {
    fn default() -> Self {
        Self {
            rest_after_cap: None,
            stretch_from: Some(STRETCH_FROM),
            in_window: true,
            quiet_hours: Some(QuietHours::default()),
            engaged_first: true,
        }
    }
}

impl Policy {
    pub const fn off() -> Self {
        Self { rest_after_cap: None, stretch_from: None, in_window: false, quiet_hours: None, engaged_first: false }
    }
}

/// The recipient's night, in their local time: from `start` to `end` (crossing midnight when
/// `start` is later than `end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Default for QuietHours {
    fn default() -> Self {
        Self { start: hour(21), end: hour(9) }
    }
}

/// How long before the quiet hours a retry is already kept for the morning: a timer fires a
/// little after its due time (EventBridge Scheduler within a minute, a busy local stack later).
pub const QUIET_LEAD: TimeDelta = TimeDelta::minutes(30);

fn hour(h: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, 0, 0).expect("a valid hour")
}

impl QuietHours {
    /// Whether `at` falls in the quiet hours at `offset`.
    pub fn covers(&self, at: DateTime<Utc>, offset: FixedOffset) -> bool {
        let local = at.with_timezone(&offset).time();
        if self.start <= self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// `at`, or the end of the quiet hours it falls in, or of those that begin within
    /// [`QUIET_LEAD`] after it: a retry due just before the night would go out in it if its
    /// timer fired late.
    pub fn after(&self, at: DateTime<Utc>, offset: FixedOffset) -> DateTime<Utc> {
        if self.covers(at, offset) {
            return self.end_of(at, offset);
        }
        match self.next_start(at, offset) {
            Some(start) if start - at <= QUIET_LEAD => self.end_of(start, offset),
            _ => at,
        }
    }

    /// The first start of the quiet hours after `at`.
    fn next_start(&self, at: DateTime<Utc>, offset: FixedOffset) -> Option<DateTime<Utc>> {
        let today = at.with_timezone(&offset).with_time(self.start).single()?.with_timezone(&Utc);
        Some(if today > at { today } else { today + TimeDelta::days(1) })
    }

    /// The end of the quiet hours that cover `at`.
    fn end_of(&self, at: DateTime<Utc>, offset: FixedOffset) -> DateTime<Utc> {
        let local = at.with_timezone(&offset);
        let end_today = local.with_time(self.end).single().map(|t| t.with_timezone(&Utc));
        match end_today {
            Some(end) if end > at => end,
            _ => end_today.map_or(at, |end| end + TimeDelta::days(1)),
        }
    }
}

impl std::str::FromStr for QuietHours {
    type Err = String;

    /// `21:00-09:00`, or `off` (no quiet hours) is handled by the caller.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("quiet hours {text:?} are not HH:MM-HH:MM, such as 21:00-09:00");
        let (start, end) = text.trim().split_once('-').ok_or_else(bad)?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let hours = Self { start: time(start)?, end: time(end)? };
        if hours.start == hours.end {
            return Err(format!("quiet hours {text:?} start and end at the same time"));
        }
        Ok(hours)
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start.format("%H:%M"), self.end.format("%H:%M"))
    }
}

/// What the policy knows of a send and its recipient when it places a retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryContext {
    /// When the recipient's customer-service window closes, if they ever wrote.
    pub window_until: Option<DateTime<Utc>>,
    /// The request's `retry_until`.
    pub retry_until: Option<DateTime<Utc>>,
    /// The recipient's UTC offset: the request's, or their number's country's.
    pub utc_offset: Option<FixedOffset>,
    /// The contact's caps since its last marketing delivery, before this one.
    pub consecutive_caps: u32,
    /// When the capped attempt was claimed (sent).
    pub attempt_sent_at: Option<DateTime<Utc>>,
    /// When the verdict is taken: a cap may be judged long after it happened (a webhook parked
    /// or redelivered), and a window open then may have closed since.
    pub now: Option<DateTime<Utc>>,
}

/// Where a ladder step goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    At(DateTime<Utc>),
    /// Past the request's `retry_until`: no retry.
    PastDeadline,
}

impl Policy {
    /// Places the retry of a send capped at `capped_at` whose ladder step is due at `step_due`.
    pub fn place(&self, capped_at: DateTime<Utc>, step_due: DateTime<Utc>, context: &RetryContext) -> Placed {
        let now = context.now.unwrap_or(capped_at).max(capped_at);
        let wrote_after_send = |until: DateTime<Utc>| {
            context.attempt_sent_at.is_none_or(|sent| sent < until - super::rules::CUSTOMER_SERVICE_WINDOW)
        };
        let due = match (self.in_window, context.window_until) {
            // The recipient wrote after the message went out and is reading their chat with the
            // business: now is the time.
            (true, Some(until)) if now < until && wrote_after_send(until) => now,
            _ => {
                let worn = self.stretch_from.is_some_and(|from| context.consecutive_caps + 1 >= from);
                let step_due = if worn { capped_at + (step_due - capped_at) * 2 } else { step_due };
                let rested = self.rest_after_cap.map_or(step_due, |rest| step_due.max(capped_at + rest));
                match (self.quiet_hours, context.utc_offset) {
                    (Some(quiet), Some(offset)) => quiet.after(rested, offset),
                    _ => rested,
                }
            }
        };
        match context.retry_until {
            Some(deadline) if due > deadline => Placed::PastDeadline,
            _ => Placed::At(due),
        }
    }
}

/// A country's UTC offset (its most populous zone's standard time), by ISO 3166 alpha-2 region:
/// the markets where WhatsApp marketing is sent most. Daylight saving moves some of them an hour,
/// which the quiet hours' edges absorb; a country not listed has no offset, and its retries are
/// not moved (a request may give its own offset).
pub fn country_offset(region: &str) -> Option<FixedOffset> {
    const MINUTES: &[(&str, i32)] = &[
        ("AE", 240),
        ("AR", -180),
        ("AU", 600),
        ("BD", 360),
        ("BR", -180),
        ("CA", -300),
        ("CL", -240),
        ("CO", -300),
        ("DE", 60),
        ("EG", 120),
        ("ES", 60),
        ("FR", 60),
        ("GB", 0),
        ("GH", 0),
        ("ID", 420),
        ("IN", 330),
        ("IT", 60),
        ("KE", 180),
        ("LK", 330),
        ("MX", -360),
        ("MY", 480),
        ("NG", 60),
        ("NL", 60),
        ("NP", 345),
        ("PE", -300),
        ("PH", 480),
        ("PK", 300),
        ("SA", 180),
        ("SG", 480),
        ("TR", 180),
        ("US", -300),
        ("ZA", 120),
    ];
    let minutes = MINUTES.iter().find(|(code, _)| *code == region)?.1;
    FixedOffset::east_opt(minutes * 60)
}

/// Reads a UTC offset such as `+05:30`, `-03:00` or `Z`.
pub fn parse_offset(text: &str) -> Result<FixedOffset, String> {
    let text = text.trim();
    if text == "Z" || text == "+00:00" || text == "-00:00" {
        return Ok(FixedOffset::east_opt(0).expect("zero is an offset"));
    }
    let bad = || format!("{text:?} is not a UTC offset such as +05:30 or -03:00");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h.to_string().len() > 2 || !(0..60).contains(&m) || h > 14 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3_600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-06-01 00:00 UTC plus `hours`.
    fn utc(hours: f64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_272_000 + (hours * 3_600.0) as i64, 0).unwrap()
    }

    fn india() -> FixedOffset {
        country_offset("IN").unwrap()
    }

    #[test]
    fn a_retry_in_the_recipients_night_moves_to_their_morning_never_earlier() {
        let quiet = QuietHours::default();
        // 18:00 UTC is 23:30 in India: moved to 09:00 IST the next day, 03:30 UTC.
        assert!(quiet.covers(utc(18.0), india()));
        assert_eq!(quiet.after(utc(18.0), india()), utc(27.5));
        // 01:00 UTC is 06:30 IST: moved to 09:00 IST the same day.
        assert_eq!(quiet.after(utc(1.0), india()), utc(3.5));
        // 10:00 UTC is 15:30 IST: daytime, unchanged.
        assert_eq!(quiet.after(utc(10.0), india()), utc(10.0));
        // A quiet window that does not cross midnight.
        let lunch: QuietHours = "12:00-14:00".parse().unwrap();
        assert_eq!(lunch.after(utc(13.0), FixedOffset::east_opt(0).unwrap()), utc(14.0));
        assert!(!lunch.covers(utc(15.0), FixedOffset::east_opt(0).unwrap()));
    }

    #[test]
    fn a_retry_due_just_before_the_night_waits_for_the_morning() {
        let quiet = QuietHours::default();
        // 15:20 UTC is 20:50 IST, ten minutes before the night: a late timer would send it in it.
        assert_eq!(quiet.after(utc(15.0 + 20.0 / 60.0), india()), utc(27.5));
        // 15:00 UTC is 20:30 IST, the lead's edge: kept too.
        assert_eq!(quiet.after(utc(15.0), india()), utc(27.5));
        // 14:59 UTC is 20:29 IST, just out of the lead: it goes.
        let early = utc(15.0 - 1.0 / 60.0);
        assert_eq!(quiet.after(early, india()), early);
        // Quiet hours shorter than the lead, starting inside it.
        let short: QuietHours = "12:00-12:15".parse().unwrap();
        let gmt = FixedOffset::east_opt(0).unwrap();
        assert_eq!(short.after(utc(11.0 + 50.0 / 60.0), gmt), utc(12.25));
        assert_eq!(short.after(utc(12.5), gmt), utc(12.5), "after them, nothing moves");
    }

    #[test]
    fn the_policy_retries_inside_an_open_window_at_once_and_never_past_the_deadline() {
        let policy = Policy::default();
        let capped = utc(10.0);
        let step = capped + TimeDelta::hours(24);
        let nothing = RetryContext::default();
        assert_eq!(policy.place(capped, step, &nothing), Placed::At(step), "no offset known: the step as it is");
        let early = capped + TimeDelta::hours(12);
        assert_eq!(policy.place(capped, early, &nothing), Placed::At(early), "no rest unless configured");
        let resting = Policy { rest_after_cap: Some(TimeDelta::hours(24)), ..policy };
        assert_eq!(resting.place(capped, early, &nothing), Placed::At(step), "a day's rest after the cap");
        assert_eq!(Policy::off().place(capped, early, &nothing), Placed::At(early));
        let open = RetryContext { window_until: Some(capped + TimeDelta::hours(3)), ..nothing };
        assert_eq!(policy.place(capped, step, &open), Placed::At(capped));
        let judged_late = RetryContext { now: Some(capped + TimeDelta::hours(1)), ..open };
        assert_eq!(policy.place(capped, step, &judged_late), Placed::At(capped + TimeDelta::hours(1)), "now, not then");
        let closed_since = RetryContext { now: Some(capped + TimeDelta::hours(4)), ..open };
        assert_eq!(policy.place(capped, step, &closed_since), Placed::At(step), "the window closed before the verdict");
        // The recipient wrote 21 h before the cap; a message sent after that was capped anyway.
        let sent_inside = RetryContext { attempt_sent_at: Some(capped - TimeDelta::hours(1)), ..open };
        assert_eq!(policy.place(capped, step, &sent_inside), Placed::At(step), "the window did not help it");
        let sent_before = RetryContext { attempt_sent_at: Some(capped - TimeDelta::hours(22)), ..open };
        assert_eq!(policy.place(capped, step, &sent_before), Placed::At(capped));
        let closed = RetryContext { window_until: Some(capped - TimeDelta::hours(1)), ..nothing };
        assert_eq!(policy.place(capped, step, &closed), Placed::At(step));
        let deadline = RetryContext { retry_until: Some(step - TimeDelta::hours(1)), ..nothing };
        assert_eq!(policy.place(capped, step, &deadline), Placed::PastDeadline);
        let night = RetryContext { utc_offset: Some(india()), ..nothing };
        assert_eq!(policy.place(utc(18.0), utc(42.0), &night), Placed::At(utc(51.5)));
        assert_eq!(resting.place(utc(30.0), utc(42.0), &night), Placed::At(utc(54.0)), "rested a day, then daytime");
        assert_eq!(Policy::off().place(utc(18.0), utc(42.0), &night), Placed::At(utc(42.0)), "a fixed calendar");
        assert_eq!(Policy::off().place(capped, step, &open), Placed::At(step));

        let worn = RetryContext { consecutive_caps: STRETCH_FROM - 1, ..nothing };
        let double = capped + TimeDelta::hours(48);
        assert_eq!(policy.place(capped, step, &worn), Placed::At(double), "the third cap in a row: twice the step");
        let fresh = RetryContext { consecutive_caps: STRETCH_FROM - 2, ..nothing };
        assert_eq!(policy.place(capped, step, &fresh), Placed::At(step));
        assert_eq!(Policy::off().place(capped, step, &worn), Placed::At(step));
    }

    #[test]
    fn offsets_and_quiet_hours_read_back() {
        assert_eq!(parse_offset("+05:30").unwrap(), india());
        assert_eq!(parse_offset("-03:00").unwrap(), country_offset("BR").unwrap());
        assert_eq!(parse_offset("Z").unwrap(), country_offset("GB").unwrap());
        for bad in ["05:30", "+5", "+05:75", "+15:00", "IST"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
        let quiet: QuietHours = "22:30-07:00".parse().unwrap();
        assert_eq!(quiet.to_string(), "22:30-07:00");
        assert!("22:00".parse::<QuietHours>().is_err());
        assert!("09:00-09:00".parse::<QuietHours>().is_err());
    }
}
