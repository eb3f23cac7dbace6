//! Admission's reads: what [`crate::domain::admission`] decides on, read from the store only as
//! far as the decision needs it (the recipient when a refusal depends on it, the holds only for a
//! send nothing refuses, and only until the first one found). The reads may be a moment stale
//! (see `crate::store` on recent reads): a stop or a hold made within that moment is a race that
//! exists whatever the read (it could as well come just after), which the stale read widens by
//! its lag and no later check closes; a send that goes out under a hold set meanwhile is refused
//! by Meta again and waits for the hold.

use super::{Deps, UseCaseError};
use crate::domain::admission::{Admission, Candidate, Facts, admit};
use crate::domain::verdict::FinalReason;
use crate::store::{Holds, RecipientRecord, Recipients};

/// May `candidate` go now? Refused for good, kept for the recipient's morning, kept waiting by a
/// hold, or go.
pub async fn admission<S: Recipients + Holds, R, C>(
    deps: &Deps<S, R, C>,
    candidate: &Candidate<'_>,
) -> Result<Admission, UseCaseError> {
    let recipient = recipient_for(deps, candidate).await?;
    match by_recipient(deps, candidate, recipient.as_ref()) {
        Admission::Go => held(deps, candidate).await,
        decided => Ok(decided),
    }
}

/// The recipient's record, read when `candidate`'s decision needs it.
pub async fn recipient_for<S: Recipients, R, C>(
    deps: &Deps<S, R, C>,
    candidate: &Candidate<'_>,
) -> Result<Option<RecipientRecord>, UseCaseError> {
    Ok(match candidate.needs_recipient(&deps.rules) {
        true => Some(deps.store.recent_recipient(candidate.recipient).await?),
        false => None,
    })
}

/// Why `candidate` must never go, if it must not, judged on its recipient's record as
/// [`recipient_for`] read it.
pub fn refusal<S, R, C>(
    deps: &Deps<S, R, C>,
    candidate: &Candidate<'_>,
    recipient: Option<&RecipientRecord>,
) -> Option<FinalReason> {
    match by_recipient(deps, candidate, recipient) {
        Admission::Refuse(reason) => Some(reason),
        Admission::Go | Admission::Wait { .. } | Admission::Morning(_) => None,
    }
}

/// What the recipient's record decides: a refusal, or their night.
fn by_recipient<S, R, C>(
    deps: &Deps<S, R, C>,
    candidate: &Candidate<'_>,
    recipient: Option<&RecipientRecord>,
) -> Admission {
    let facts = Facts { recipient, holds: &[] };
    admit(&deps.rules, candidate, facts, deps.clock.now())
}

/// For a `candidate` nothing refuses: whether a hold keeps it waiting (a halted number before a
/// held template), or it may go.
pub async fn held<S: Holds, R, C>(deps: &Deps<S, R, C>, candidate: &Candidate<'_>) -> Result<Admission, UseCaseError> {
    let mut holds = Vec::new();
    for key in candidate.hold_keys() {
        if let Some(hold) = deps.store.recent_hold(&key).await? {
            holds.push((key, hold));
            break;
        }
    }
    // The recipient was judged by `refusal` already; the holds decide now.
    let facts = Facts { recipient: None, holds: &holds };
    Ok(admit(&deps.rules, candidate, facts, deps.clock.now()))
}
