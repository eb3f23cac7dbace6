//! Recording an opt-in, as a send request, `capguard consent add` and serve's route do it.

use chrono::{DateTime, Utc};

use crate::domain::consent::{self, OptIn};
use crate::store::{RecipientRecord, Recipients, StoreError};

/// Records `opt_in` for `number` at `now`, unless it is no news to the recipient's record:
/// `known` when the caller has read it (and then the opt-in is added to it, for the decision that
/// follows), read here otherwise. An undated opt-in that repeats the standing one's source and
/// note (the same request or command again) adds nothing; a dated one is the store's to take once.
/// Returns whether a history entry was added.
pub async fn record_opt_in<S: Recipients>(
    store: &S,
    number: &str,
    opt_in: &OptIn,
    known: Option<&mut RecipientRecord>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let standing = match &known {
        Some(record) => record.opt_in().cloned(),
        None if opt_in.at.is_none() => store.get_recipient(number).await?.opt_in().cloned(),
        None => None,
    };
    if !opt_in.is_news(standing.as_ref()) {
        return Ok(false);
    }
    let event = opt_in.event(now);
    let added = store.record_opt_in(number, &event, now).await?;
    if let Some(record) = known {
        consent::add(&mut record.consent, event);
    }
    Ok(added)
}
