//! What a DynamoDB failure means to a caller of the port: a refused condition is an answer, not an
//! error; throttling and everything else the service or the network does wrong are errors a
//! caller retries.

use std::fmt::Debug;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::item::Item;
use crate::store::StoreError;

/// The error codes DynamoDB throttles with (after the SDK's own retries gave up).
const THROTTLING: [&str; 3] = ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"];

/// A failed call, as the port reports it.
pub(super) fn service_failure<E, R>(operation: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: Debug,
{
    let detail = format!("{operation}: {}", crate::aws::readable(&error));
    if error.code().is_some_and(|code| THROTTLING.contains(&code)) {
        StoreError::Throttled(detail)
    } else {
        StoreError::Unavailable(detail)
    }
}

/// What a conditional write came to.
pub(super) enum Written<T> {
    Done(T),
    /// The condition did not hold: nothing was written. Carries the item as it was, when the
    /// request asked for it (`ReturnValuesOnConditionCheckFailure=ALL_OLD`) and it exists.
    Refused(Option<Item>),
}

/// An operation error that may be a refused condition.
pub(super) trait ConditionFailure {
    fn is_refusal(&self) -> bool;
    /// The item as it was, when this is a refusal that carries it.
    fn into_old_item(self) -> Option<Item>;
}

impl ConditionFailure for UpdateItemError {
    fn is_refusal(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }

    fn into_old_item(self) -> Option<Item> {
        match self {
            Self::ConditionalCheckFailedException(refused) => refused.item,
            _ => None,
        }
    }
}

/// A transaction is refused when one of its conditions did not hold, or when another write to one
/// of its items was under way (a lost race, as a refused condition is).
impl ConditionFailure for TransactWriteItemsError {
    fn is_refusal(&self) -> bool {
        match self {
            Self::TransactionCanceledException(cancelled) => cancelled
                .cancellation_reasons()
                .iter()
                .any(|reason| matches!(reason.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))),
            _ => false,
        }
    }

    fn into_old_item(self) -> Option<Item> {
        None
    }
}

impl ConditionFailure for DeleteItemError {
    fn is_refusal(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }

    fn into_old_item(self) -> Option<Item> {
        match self {
            Self::ConditionalCheckFailedException(refused) => refused.item,
            _ => None,
        }
    }
}

/// Splits a conditional write's result into written, refused, or failed.
pub(super) fn conditional<T, E, R>(operation: &str, result: Result<T, SdkError<E, R>>) -> Result<Written<T>, StoreError>
where
    E: ConditionFailure + ProvideErrorMetadata + std::error::Error + 'static,
    R: Debug,
{
    match result {
        Ok(output) => Ok(Written::Done(output)),
        Err(SdkError::ServiceError(failure)) if failure.err().is_refusal() => {
            Ok(Written::Refused(failure.into_err().into_old_item()))
        }
        Err(error) => Err(service_failure(operation, error)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;

    use super::*;

    fn coded(code: &str) -> SdkError<UpdateItemError, ()> {
        let meta = ErrorMetadata::builder().code(code).message("from the service").build();
        SdkError::service_error(UpdateItemError::generic(meta), ())
    }

    #[test]
    fn throttling_is_throttled_and_every_other_failure_unavailable() {
        for code in THROTTLING {
            assert!(matches!(service_failure("UpdateItem", coded(code)), StoreError::Throttled(_)), "{code}");
        }
        assert!(matches!(service_failure("UpdateItem", coded("InternalServerError")), StoreError::Unavailable(_)));
        let timeout: SdkError<UpdateItemError, ()> = SdkError::timeout_error("no answer in 3 s");
        assert!(matches!(service_failure("UpdateItem", timeout), StoreError::Unavailable(_)));
    }

    #[test]
    fn a_refused_condition_is_an_answer_with_the_old_item() {
        let old = HashMap::from([("pk".to_owned(), AttributeValue::S("SEND#x".into()))]);
        let refused = UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder().set_item(Some(old.clone())).build(),
        );
        let result: Result<(), _> = Err(SdkError::<_, ()>::service_error(refused, ()));
        assert!(matches!(conditional("UpdateItem", result), Ok(Written::Refused(Some(item))) if item == old));
        let result: Result<(), _> = Err(coded("ThrottlingException"));
        assert!(matches!(conditional("UpdateItem", result), Err(StoreError::Throttled(_))));
    }
}
