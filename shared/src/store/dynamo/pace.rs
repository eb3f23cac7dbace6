//! The deployment's shared throughput count ([`TurnBook`]) in the table: one small item per
//! business number per wall-clock second, counted up by a conditional write that stops at the
//! rate (a second's first count starts after the places already gone by). Each second is its own
//! partition key, so a number sending at Meta's top rate (1,000 a second) writes to no partition
//! faster than DynamoDB allows one (1,000 writes a second). The items expire an hour after their
//! second: nothing ever reads them again.

use aws_sdk_dynamodb::types::ReturnValue;
use futures::future::BoxFuture;

use super::DynamoStore;
use super::errors::Written;
use super::expr::Update;
use super::item::{Fields, n};
use super::schema::{EXPIRES_AT, keys};
use crate::pace::TurnBook;
use crate::store::StoreError;

/// The count of turns taken in one second.
const TAKEN: &str = "taken";

/// How long a second's count is kept, past the second.
const KEPT_FOR_SECONDS: u64 = 3_600;

impl TurnBook for DynamoStore {
    fn book<'a>(
        &'a self,
        number: &'a str,
        second: u64,
        past: u32,
        rate: u32,
    ) -> BoxFuture<'a, Result<Option<u32>, StoreError>> {
        Box::pin(async move {
            let mut update = Update::default();
            let (fresh, room) = (update.missing(TAKEN), update.compare(TAKEN, "<", n(rate)));
            update.require(format!("{fresh} OR {room}"));
            let (taken, past, one) = (update.name(TAKEN), update.value(n(past)), update.value(n(1)));
            update.set_expression(&format!("{taken} = if_not_exists({taken}, {past}) + {one}"));
            update.set(EXPIRES_AT, n(second + KEPT_FOR_SECONDS));
            let pk = keys::turns(number, second);
            match self.update(pk.clone(), keys::TURNS, update, ReturnValue::UpdatedNew).await? {
                Written::Done(Some(item)) => Ok(Some(Fields::new(&item, &pk).number(TAKEN)?)),
                Written::Done(None) => Err(StoreError::Corrupt(format!("{pk}: the count came back empty"))),
                Written::Refused(_) => Ok(None),
            }
        })
    }
}
