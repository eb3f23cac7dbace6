//! A campaign's funnel and per-recipient rows, computed from its sends.
//!
//! Every send lands in exactly one outcome bucket (delivered, exhausted, opted out, suppressed
//! up front, failed, paced by Meta, or still in progress), so the buckets add up to the sends; `read`, `capped`,
//! `held_for_limit` and the recoveries by retry are counts across those buckets, and so is the split by
//! engagement tier (of the marketing sends whose recipient's tier was known at their first
//! attempt).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::domain::classes::{FailureClass, classify};
use crate::domain::engagement::Tier;
use crate::domain::lifecycle::{Delivery, Phase};
use crate::domain::send::{AttemptRecord, SendRecord};
use crate::domain::verdict::FinalReason;
use crate::privacy::mask_number;

/// Where a send ended up, exclusively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Delivered {
        attempt: u32,
    },
    Exhausted,
    OptedOut,
    /// Refused before any send.
    Suppressed {
        reason: FinalReason,
    },
    /// Ended by any other failure; the last error code, when there was one.
    Failed {
        code: Option<i64>,
        reason: FinalReason,
    },
    /// Accepted, and held by Meta for pacing (`held_for_quality_assessment`): it goes out, or is
    /// dropped with 132015, once Meta has assessed its template.
    Paced,
    InProgress,
}

/// The outcome of one send.
pub fn outcome(send: &SendRecord) -> Outcome {
    match send.life.phase {
        Phase::Succeeded { .. } => Outcome::Delivered { attempt: send.life.slot.attempt },
        Phase::Final { reason } if send.attempts.is_empty() => Outcome::Suppressed { reason },
        Phase::Final { reason: FinalReason::Exhausted } => Outcome::Exhausted,
        Phase::Final { reason: FinalReason::OptedOut } => Outcome::OptedOut,
        // Capped, then out of time: the reason says more than the cap's code.
        Phase::Final { reason: FinalReason::Deadline } => Outcome::Failed { code: None, reason: FinalReason::Deadline },
        // Meta's codes are positive; capguard's own (a call that got no answer it could read, a
        // send it settled itself) say less than the reason does.
        Phase::Final { reason } => {
            Outcome::Failed { code: last_error(send).map(|(code, _)| code).filter(|code| *code > 0), reason }
        }
        Phase::Claimed { .. } | Phase::InFlight { .. } if send.attempt(send.life.slot).is_some_and(|a| a.paced()) => {
            Outcome::Paced
        }
        Phase::Waiting { .. } | Phase::Claimed { .. } | Phase::InFlight { .. } => Outcome::InProgress,
    }
}

/// When a send was first refused by the per-user cap and, if a retry then delivered it, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapHistory {
    pub capped_at: DateTime<Utc>,
    /// The delivery of the retry that went through (its read, when the delivery's status never
    /// came).
    pub recovered_at: Option<DateTime<Utc>>,
}

/// The cap history of a send the per-user cap refused at least once.
pub fn cap_history(send: &SendRecord) -> Option<CapHistory> {
    let first = send.attempts.iter().find(|a| capped(a))?;
    let recovered_at = match send.life.phase {
        Phase::Succeeded { .. } if send.life.slot.attempt > 1 => {
            send.attempt(send.life.slot).and_then(|a| a.delivered_at.or(a.read_at))
        }
        _ => None,
    };
    Some(CapHistory { capped_at: first.failed_at.unwrap_or(first.claimed_at), recovered_at })
}

/// Whether `attempt` was refused by the per-user cap.
pub fn capped(attempt: &AttemptRecord) -> bool {
    attempt.error.as_ref().is_some_and(|e| classify(e.code).class == FailureClass::PerUserCap)
}

fn last_error(send: &SendRecord) -> Option<(i64, Option<&str>)> {
    send.attempts.iter().rev().find_map(|a| a.error.as_ref()).map(|e| (e.code, e.title.as_deref()))
}

/// A campaign's funnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Funnel {
    pub sends: u64,
    /// Went out at least once (not suppressed up front).
    pub accepted: u64,
    pub delivered: u64,
    pub read: u64,
    /// Refused by the per-user cap at least once.
    pub capped: u64,
    /// Whose first attempt waited, at its request, for room under the messaging limit
    /// (`MESSAGING_LIMIT`).
    pub held_for_limit: u64,
    /// Delivered on retry n (attempt n + 1), by n.
    pub recovered_by_retry: BTreeMap<u32, u64>,
    pub exhausted: u64,
    pub opted_out: u64,
    pub suppressed: BTreeMap<String, u64>,
    pub failed_by_code: BTreeMap<String, u64>,
    /// Held by Meta for pacing, not sent yet.
    pub paced: u64,
    pub in_progress: u64,
    /// The marketing sends by their recipient's engagement tier at the first attempt.
    pub by_tier: BTreeMap<Tier, TierFunnel>,
}

/// One engagement tier's part of a funnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierFunnel {
    pub sends: u64,
    pub delivered: u64,
    pub read: u64,
    pub capped: u64,
    /// Delivered on a retry, after a cap or another failure.
    pub recovered: u64,
    pub exhausted: u64,
}

impl Funnel {
    pub fn of<'a>(sends: impl IntoIterator<Item = &'a SendRecord>) -> Self {
        let mut funnel = Self::default();
        for send in sends {
            funnel.count(send);
        }
        funnel
    }

    fn count(&mut self, send: &SendRecord) {
        let (was_capped, read) =
            (send.attempts.iter().any(capped), send.life.phase == (Phase::Succeeded { delivery: Delivery::Read }));
        let outcome = outcome(send);
        self.sends += 1;
        if !send.attempts.is_empty() {
            self.accepted += 1;
        }
        if was_capped {
            self.capped += 1;
        }
        if send.held_for_limit {
            self.held_for_limit += 1;
        }
        if read {
            self.read += 1;
        }
        if let Some(tier) = send.tier {
            let part = self.by_tier.entry(tier).or_default();
            part.sends += 1;
            part.capped += u64::from(was_capped);
            part.read += u64::from(read);
            match outcome {
                Outcome::Delivered { attempt } => {
                    part.delivered += 1;
                    part.recovered += u64::from(attempt > 1);
                }
                Outcome::Exhausted => part.exhausted += 1,
                _ => {}
            }
        }
        match outcome {
            Outcome::Delivered { attempt } => {
                self.delivered += 1;
                if attempt > 1 {
                    *self.recovered_by_retry.entry(attempt - 1).or_default() += 1;
                }
            }
            Outcome::Exhausted => self.exhausted += 1,
            Outcome::OptedOut => self.opted_out += 1,
            Outcome::Suppressed { reason } => *self.suppressed.entry(reason.as_str().to_owned()).or_default() += 1,
            Outcome::Failed { code, reason } => {
                let key = code.map_or_else(|| reason.as_str().to_owned(), |c| c.to_string());
                *self.failed_by_code.entry(key).or_default() += 1;
            }
            Outcome::Paced => self.paced += 1,
            Outcome::InProgress => self.in_progress += 1,
        }
    }

    /// Whether every send is in exactly one outcome bucket.
    pub fn adds_up(&self) -> bool {
        let buckets = self.delivered
            + self.exhausted
            + self.opted_out
            + self.suppressed.values().sum::<u64>()
            + self.failed_by_code.values().sum::<u64>()
            + self.paced
            + self.in_progress;
        buckets == self.sends
    }

    /// The funnel as an operator reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: u64| {
            let _ = writeln!(out, "  {label:<34}{value:>8}");
        };
        line("sends recorded", self.sends);
        line("accepted (sent at least once)", self.accepted);
        line("delivered", self.delivered);
        line("  of which read", self.read);
        line("capped by the per-user limit", self.capped);
        if self.held_for_limit > 0 {
            line("held for the messaging limit", self.held_for_limit);
        }
        for (retry, count) in &self.recovered_by_retry {
            line(&format!("  recovered at retry {retry}"), *count);
        }
        line("exhausted", self.exhausted);
        line("opted out", self.opted_out);
        for (reason, count) in &self.suppressed {
            line(&format!("suppressed: {reason}"), *count);
        }
        for (code, count) in &self.failed_by_code {
            line(&format!("failed: {code}"), *count);
        }
        if self.paced > 0 {
            line("paced by Meta (held, not sent yet)", self.paced);
        }
        line("in progress", self.in_progress);
        if !self.by_tier.is_empty() {
            let _ = writeln!(
                out,
                "  {:<18}{:>8}{:>11}{:>8}{:>8}{:>11}{:>11}",
                "by tier", "sends", "delivered", "read", "capped", "recovered", "exhausted"
            );
            for (tier, part) in &self.by_tier {
                let TierFunnel { sends, delivered, read, capped, recovered, exhausted } = part;
                let _ = writeln!(
                    out,
                    "    {:<16}{sends:>8}{delivered:>11}{read:>8}{capped:>8}{recovered:>11}{exhausted:>11}",
                    tier.as_str()
                );
            }
        }
        out
    }
}

/// The columns of the per-recipient CSV, in order.
pub const CSV_COLUMNS: [&str; 18] = [
    "recipient",
    "send_id",
    "campaign",
    "template",
    "language",
    "category",
    "tier",
    "consent_source",
    "attempts",
    "state",
    "reason",
    "recovered_at_attempt",
    "last_error_code",
    "last_error_title",
    "created_at",
    "updated_at",
    "wamids",
    "attempt_times",
];

/// One send as a CSV record, in [`CSV_COLUMNS`]' order: the recipient masked, never in clear;
/// times in RFC 3339 (UTC); the attempts' wamids and the times each went out in order, separated
/// by spaces; `recovered_at_attempt` when a retry delivered it; `consent_source` the source of the
/// recipient's opt-in when the first attempt was judged (marketing).
pub fn csv_record(send: &SendRecord) -> [String; 18] {
    let attempts = send.attempts.iter().map(|a| a.slot.attempt).max().unwrap_or(0);
    let (state, reason) = match send.life.phase {
        Phase::Waiting { .. } => ("waiting", String::new()),
        Phase::InFlight { .. } | Phase::Claimed { .. } if outcome(send) == Outcome::Paced => ("paced", String::new()),
        Phase::Claimed { .. } => ("claimed", String::new()),
        Phase::InFlight { delivery, .. } => ("in_flight", format!("{delivery:?}").to_lowercase()),
        Phase::Succeeded { delivery } => (if delivery == Delivery::Read { "read" } else { "delivered" }, String::new()),
        Phase::Final { reason } => ("final", reason.as_str().to_owned()),
    };
    let recovered = match outcome(send) {
        Outcome::Delivered { attempt } if attempt > 1 => attempt.to_string(),
        _ => String::new(),
    };
    let (code, title) = last_error(send)
        .map_or((String::new(), String::new()), |(c, t)| (c.to_string(), t.unwrap_or_default().to_owned()));
    let wamids: Vec<&str> = send.attempts.iter().filter_map(|a| a.wamid.as_deref()).collect();
    let times: Vec<String> = send.attempts.iter().map(|a| rfc3339(a.claimed_at)).collect();
    [
        mask_number(&send.recipient),
        send.id.to_string(),
        send.campaign.clone().unwrap_or_default(),
        send.template.name.clone(),
        send.template.language.clone(),
        send.category.as_str().to_owned(),
        send.tier.map(Tier::as_str).unwrap_or_default().to_owned(),
        send.opt_in_source.clone().unwrap_or_default(),
        attempts.to_string(),
        state.to_owned(),
        reason,
        recovered,
        code,
        title,
        rfc3339(send.created_at),
        rfc3339(send.updated_at),
        wamids.join(" "),
        times.join(" "),
    ]
}

/// A time as the reports write it: RFC 3339, UTC, to the second.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Writes the header and one record per send.
pub fn write_csv<'a, W: std::io::Write>(
    sends: impl IntoIterator<Item = &'a SendRecord>,
    out: W,
) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CSV_COLUMNS)?;
    for send in sends {
        writer.write_record(csv_record(send))?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::domain::lifecycle::{SendLife, Slot};
    use crate::domain::rules::Category;
    use crate::domain::send::{AttemptRecord, RecordedError, SendId, TemplateRef};

    fn send(phase: Phase, attempts: &[(u32, Option<i64>)]) -> SendRecord {
        let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let last = attempts.last().map_or(1, |a| a.0);
        SendRecord {
            id: SendId::derive("1", &format!("{phase:?}{attempts:?}"), "919812345678"),
            idempotency_key: "k".into(),
            recipient: "919812345678".into(),
            phone_number_id: "1".into(),
            template: TemplateRef { name: "t".into(), language: "en".into(), components: vec![] },
            category: Category::Marketing,
            campaign: Some("c".into()),
            retry_until: None,
            utc_offset_minutes: None,
            tier: None,
            opt_in_source: None,
            held_for_limit: false,
            created_at: t,
            updated_at: t,
            expires_at: t,
            life: SendLife { phase, slot: Slot { attempt: last, try_no: 1 }, ..SendLife::new(4, t) },
            attempts: attempts
                .iter()
                .map(|(attempt, code)| AttemptRecord {
                    error: code.map(|code| RecordedError { code, title: Some("a, \"quoted\" title".into()) }),
                    ..AttemptRecord::claimed(Slot { attempt: *attempt, try_no: 1 }, t)
                })
                .collect(),
        }
    }

    #[test]
    fn every_send_lands_in_one_bucket_and_the_funnel_adds_up() {
        let sends = [
            send(Phase::Succeeded { delivery: Delivery::Read }, &[(1, None)]),
            send(
                Phase::Succeeded { delivery: Delivery::Delivered },
                &[(1, Some(131049)), (2, Some(131049)), (3, None)],
            ),
            send(
                Phase::Final { reason: FinalReason::Exhausted },
                &[(1, Some(131049)), (2, Some(131049)), (3, Some(131049)), (4, Some(131049))],
            ),
            send(Phase::Final { reason: FinalReason::MarketingPausedRegion }, &[]),
            send(Phase::Final { reason: FinalReason::Unreachable }, &[(1, Some(131026))]),
            send(Phase::Final { reason: FinalReason::OptedOut }, &[(1, Some(131049))]),
            send(Phase::Waiting { due: DateTime::UNIX_EPOCH }, &[(1, Some(131049))]),
            send(Phase::Final { reason: FinalReason::OutcomeUnknown }, &[(1, Some(-1))]),
        ];
        let funnel = Funnel::of(&sends);
        assert!(funnel.adds_up(), "{funnel:?}");
        assert_eq!((funnel.sends, funnel.accepted, funnel.delivered, funnel.read), (8, 7, 2, 1));
        assert_eq!(funnel.capped, 4);
        assert_eq!(funnel.recovered_by_retry, BTreeMap::from([(2, 1)]));
        assert_eq!((funnel.exhausted, funnel.opted_out, funnel.in_progress), (1, 1, 1));
        assert_eq!(funnel.suppressed, BTreeMap::from([("marketing_paused_region".to_owned(), 1)]));
        assert_eq!(
            funnel.failed_by_code,
            BTreeMap::from([("131026".to_owned(), 1), ("outcome_unknown".to_owned(), 1)]),
            "capguard's own code is shown as the reason"
        );
        assert!(funnel.render().contains("recovered at retry 2"));
        assert!(!funnel.render().contains("messaging limit"), "no line while the limit held nothing");
    }

    #[test]
    fn a_send_meta_holds_for_pacing_is_paced_until_a_status_reports_it() {
        let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let in_flight = Phase::InFlight { due: t, delivery: Delivery::Accepted };
        let mut paced = send(in_flight, &[(1, None)]);
        paced.attempts[0].paced_at = Some(t);
        assert_eq!(outcome(&paced), Outcome::Paced);
        assert_eq!(csv_record(&paced)[9], "paced");
        let funnel = Funnel::of([&paced, &send(in_flight, &[(1, None)])]);
        assert!(funnel.adds_up(), "{funnel:?}");
        assert_eq!((funnel.paced, funnel.in_progress), (1, 1));
        assert!(funnel.render().contains("paced by Meta"), "{}", funnel.render());
        paced.attempts[0].sent_at = Some(t);
        assert_eq!(outcome(&paced), Outcome::InProgress, "Meta released it");
    }

    #[test]
    fn the_funnel_counts_the_sends_held_for_the_messaging_limit_across_its_buckets() {
        let held =
            |phase, attempts: &[(u32, Option<i64>)]| SendRecord { held_for_limit: true, ..send(phase, attempts) };
        let sends = [
            held(Phase::Succeeded { delivery: Delivery::Delivered }, &[(1, None)]),
            held(Phase::Waiting { due: DateTime::UNIX_EPOCH }, &[]),
            send(Phase::Succeeded { delivery: Delivery::Delivered }, &[(1, None)]),
        ];
        let funnel = Funnel::of(&sends);
        assert!(funnel.adds_up(), "{funnel:?}");
        assert_eq!((funnel.held_for_limit, funnel.delivered, funnel.in_progress), (2, 2, 1));
        let rendered = funnel.render();
        let line = rendered.lines().find(|line| line.trim_start().starts_with("held for the messaging limit"));
        assert!(line.is_some_and(|line| line.ends_with(" 2")), "{rendered}");
    }

    #[test]
    fn the_funnel_splits_the_sends_of_known_tier_by_tier() {
        let tiered =
            |tier, phase, attempts: &[(u32, Option<i64>)]| SendRecord { tier: Some(tier), ..send(phase, attempts) };
        let delivered = Phase::Succeeded { delivery: Delivery::Delivered };
        let sends = [
            tiered(Tier::Engaged, Phase::Succeeded { delivery: Delivery::Read }, &[(1, None)]),
            tiered(Tier::Engaged, delivered, &[(1, Some(131049)), (2, None)]),
            tiered(
                Tier::Dormant,
                Phase::Final { reason: FinalReason::Exhausted },
                &[(1, Some(131049)), (2, Some(131049))],
            ),
            tiered(Tier::Dormant, delivered, &[(1, Some(131049)), (2, Some(131049)), (3, None)]),
            tiered(Tier::New, Phase::Final { reason: FinalReason::OptedOut }, &[]),
            send(Phase::Final { reason: FinalReason::MarketingPausedRegion }, &[]),
        ];
        let funnel = Funnel::of(&sends);
        let part = |sends, delivered, read, capped, recovered, exhausted| TierFunnel {
            sends,
            delivered,
            read,
            capped,
            recovered,
            exhausted,
        };
        let expected = BTreeMap::from([
            (Tier::Engaged, part(2, 2, 1, 1, 1, 0)),
            (Tier::Dormant, part(2, 1, 0, 2, 1, 1)),
            (Tier::New, part(1, 0, 0, 0, 0, 0)),
        ]);
        assert_eq!(funnel.by_tier, expected);
        let json = serde_json::to_value(&funnel).unwrap();
        assert_eq!(json["by_tier"]["dormant"]["recovered"], 1, "{json}");
        let text = funnel.render();
        assert!(
            text.contains("    engaged                2          2       1       1          1          0"),
            "{text}"
        );
        assert!(text.find("engaged") < text.find("dormant") && text.find("dormant") < text.find("    new"), "{text}");
    }

    #[test]
    fn the_csv_masks_the_recipient_quotes_what_needs_it_and_reads_back() {
        let exhausted = send(Phase::Final { reason: FinalReason::Exhausted }, &[(1, Some(131049)), (4, Some(131049))]);
        let mut recovered = send(Phase::Succeeded { delivery: Delivery::Read }, &[(1, Some(131049)), (2, None)]);
        recovered.tier = Some(Tier::Dormant);
        recovered.attempts[1].wamid = Some("wamid.B".into());
        recovered.attempts[1].error = None;
        recovered.attempts[0].error.as_mut().unwrap().title = Some("line\r\nbreak".into());
        let mut bytes = Vec::new();
        write_csv([&exhausted, &recovered], &mut bytes).unwrap();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
        let column =
            |row: &csv::StringRecord, name: &str| row[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()].to_owned();
        assert_eq!(column(&rows[0], "recipient"), "91******5678");
        assert_eq!(column(&rows[0], "last_error_title"), "a, \"quoted\" title", "commas and quotes survive");
        assert_eq!(column(&rows[0], "attempt_times"), "2026-01-01T00:00:00Z 2026-01-01T00:00:00Z");
        assert_eq!((column(&rows[0], "state"), column(&rows[0], "reason")), ("final".into(), "exhausted".into()));
        assert_eq!(column(&rows[0], "recovered_at_attempt"), "");
        assert_eq!(column(&rows[1], "tier"), "dormant");
        assert_eq!(column(&rows[1], "recovered_at_attempt"), "2");
        assert_eq!(column(&rows[1], "wamids"), "wamid.B");
        assert_eq!(column(&rows[1], "template"), "t");
        assert!(String::from_utf8(bytes).unwrap().contains("\"line\r\nbreak\""), "a carriage return is quoted");
        assert!(!rows.iter().any(|row| row.iter().any(|field| field.contains("919812345678"))), "no number in clear");
    }
}
