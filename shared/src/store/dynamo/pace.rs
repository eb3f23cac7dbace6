//! The deployment's shared throughput count ([`TurnBook`]) in the table: one small item per
//! business number, wall-clock second and counter ([`Counter`]), counted up by a conditional write
//! that stops at the counter's capacity (its first count starts after the places already gone by).
//! Each is its own partition key and takes at most 250 turns a second, so that even at Meta's top
//! rate (1,000 a second, four counters) no item is written near DynamoDB's 1,000 writes a second.
//! The items expire an hour after their second: nothing ever reads them again.

use aws_sdk_dynamodb::types::ReturnValue;
use futures::future::BoxFuture;

use super::DynamoStore;
use super::errors::Written;
use super::expr::Update;
use super::item::{Fields, n};
use super::schema::{EXPIRES_AT, keys};
use crate::pace::{Counter, TurnBook};
use crate::store::StoreError;

/// The count of turns taken in one second.
const TAKEN: &str = "taken";

/// How long a second's count is kept, past the second.
const KEPT_FOR_SECONDS: u64 = 3_600;

impl TurnBook for DynamoStore {
    fn book<'a>(
        &'a self,
        number: &'a str,
        counter: Counter,
        past: u32,
        capacity: u32,
    ) -> BoxFuture<'a, Result<Option<u32>, StoreError>> {
        Box::pin(async move {
            let mut update = Update::default();
            let (fresh, room) = (update.missing(TAKEN), update.compare(TAKEN, "<", n(capacity)));
            update.require(format!("{fresh} OR {room}"));
            let (taken, past, one) = (update.name(TAKEN), update.value(n(past)), update.value(n(1)));
            update.set_expression(&format!("{taken} = if_not_exists({taken}, {past}) + {one}"));
            update.set(EXPIRES_AT, n(counter.second + KEPT_FOR_SECONDS));
            let pk = keys::turns(number, counter.second, counter.shard);
            match self.update(pk.clone(), keys::TURNS, update, ReturnValue::UpdatedNew).await? {
                Written::Done(Some(item)) => Ok(Some(Fields::new(&item, &pk).number(TAKEN)?)),
                Written::Done(None) => Err(StoreError::Corrupt(format!("{pk}: the count came back empty"))),
                Written::Refused(_) => Ok(None),
            }
        })
    }
}
