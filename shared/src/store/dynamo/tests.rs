use super::*;
use crate::domain::lifecycle::{Phase, SendLife};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap()
}

/// The life a plan's write leaves, on a send whose life fits the plan's presumptions.
fn after_plan(plan: &FailurePlan, life: SendLife) -> SendLife {
    SendLife {
        slot: plan.slot,
        transient_retries: plan.transient_retries.unwrap_or(life.transient_retries),
        phase: match plan.next {
            AfterFailure::Wait(due) => Phase::Waiting { due },
            AfterFailure::End(reason) => Phase::Final { reason },
        },
        ..life
    }
}

fn fits(plan: &FailurePlan, life: &SendLife) -> bool {
    (!plan.presumes_unsuppressed || !life.suppressed)
        && plan.presumes_attempts.is_none_or(|attempt| life.max_attempts >= attempt)
}

/// The one-write failure path and the domain agree on every send whose state fits its
/// presumptions; on the others the write is refused and the domain decides.
#[test]
fn a_failure_plan_writes_what_the_domain_decides() {
    let verdicts = [
        Verdict::Ladder { attempt: 2, due: t(43_200) },
        Verdict::Ladder { attempt: 3, due: t(43_200) },
        Verdict::Ladder { attempt: 4, due: t(43_200) },
        Verdict::Ladder { attempt: 1, due: t(43_200) },
        Verdict::BackOff { retry: 2, due: t(8) },
        Verdict::HoldTemplate { due: t(1_800) },
        Verdict::HaltSender { due: t(1_800) },
        Verdict::SuppressRecipient,
        Verdict::Final(FinalReason::Unreachable),
    ];
    let mut checked = 0;
    for max_attempts in 1..=4 {
        for attempt in 1..=max_attempts {
            for phase in [Phase::Claimed { due: t(900) }, Phase::InFlight { delivery: Delivery::Sent, due: t(3) }] {
                for suppressed in [false, true] {
                    let slot = Slot { attempt, try_no: 2 };
                    let life = SendLife { max_attempts, slot, transient_retries: 1, suppressed, phase };
                    for verdict in verdicts {
                        let plan = FailurePlan::of(slot, verdict);
                        let mut expected = life;
                        assert_eq!(expected.apply(Input::Failed(slot, verdict)), Effect::Changed);
                        if fits(&plan, &life) {
                            assert_eq!(after_plan(&plan, life), expected, "{life:?} {verdict:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} cases fit");
}

#[test]
fn page_tokens_round_trip_and_junk_is_refused() {
    let id = SendId::derive("1", "2", "3");
    let position = PageToken { created_at: DateTime::from_timestamp(1_767_225_600, 5).unwrap(), id: id.clone() };
    let parsed = PageToken::parse(&position.token()).unwrap();
    assert_eq!((parsed.created_at, parsed.id), (position.created_at, id));
    for junk in ["not-a-token", "12.nothex", ".", "x.0123456789abcdef0123456789abcdef"] {
        assert!(matches!(PageToken::parse(junk), Err(StoreError::BadPageToken(_))), "{junk}");
    }
}
