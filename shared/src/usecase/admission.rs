//! Admission's reads: what [`crate::domain::admission`] decides on, read from the store.

use super::{Deps, UseCaseError};
use crate::domain::admission::{Admission, Candidate, Facts, admit};
use crate::store::{Holds, Recipients};

/// May `candidate` go now? Reads the recipient (when the decision needs it) and the holds that can
/// keep the send, then decides.
pub async fn admission<S: Recipients + Holds, R, C>(
    deps: &Deps<S, R, C>,
    candidate: &Candidate<'_>,
) -> Result<Admission, UseCaseError> {
    let recipient =
        if candidate.needs_recipient() { Some(deps.store.get_recipient(candidate.recipient).await?) } else { None };
    let mut holds = Vec::new();
    for key in candidate.hold_keys() {
        if let Some(hold) = deps.store.get_hold(&key).await? {
            holds.push((key, hold));
        }
    }
    let facts = Facts { recipient: recipient.as_ref(), holds: &holds };
    Ok(admit(&deps.rules, candidate, facts, deps.clock.now()))
}
