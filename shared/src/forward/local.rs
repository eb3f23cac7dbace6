//! [`Forward`] in `capguard serve`'s data file: a verified body is written (through the store's
//! writer, in its group commits) before the webhook is answered, and [`deliver`] hands the bodies
//! on oldest first, in order, to the business's endpoint or queue. A body leaves the outbox only
//! once delivered, so a crash or a receiver that is down delays it and loses nothing. One that
//! fails [`ATTEMPTS`] times running is set aside in the dead-letter table (logged, counted by
//! [`LocalOutbox::set_aside`]) so that the bodies behind it go on.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{Notify, oneshot};

use super::{Forward, ForwardError};
use crate::store::embedded::StoreFile;

const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("forward_outbox");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("forward_dead_letters");

/// Tries of one body before it is set aside: with [`backoff`], about 17 minutes of a receiver
/// being down.
pub const ATTEMPTS: u32 = 12;

/// The wait after the `failures`-th failure in a row: 1 s, doubling, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

#[derive(Clone)]
pub struct LocalOutbox {
    file: StoreFile,
    /// Woken when a body is written.
    written: Arc<Notify>,
}

fn failed(e: impl std::fmt::Display) -> ForwardError {
    ForwardError::Failed(format!("the forward outbox: {e}"))
}

impl LocalOutbox {
    pub fn new(file: StoreFile) -> Result<Self, ForwardError> {
        let tx = file.database().begin_write().map_err(failed)?;
        tx.open_table(OUTBOX).map_err(failed)?;
        tx.open_table(DEAD).map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(Self { file, written: Arc::new(Notify::new()) })
    }

    /// The oldest body waiting, with its position.
    pub async fn oldest(&self) -> Result<Option<(u64, Vec<u8>)>, ForwardError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let tx = file.database().begin_read().map_err(failed)?;
            let table = tx.open_table(OUTBOX).map_err(failed)?;
            Ok(table.first().map_err(failed)?.map(|(position, body)| (position.value(), body.value().to_vec())))
        })
        .await
        .map_err(failed)?
    }

    /// How many bodies wait, and how many were set aside.
    pub async fn counts(&self) -> Result<(u64, u64), ForwardError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let tx = file.database().begin_read().map_err(failed)?;
            let waiting = tx.open_table(OUTBOX).map_err(failed)?.len().map_err(failed)?;
            let dead = tx.open_table(DEAD).map_err(failed)?.len().map_err(failed)?;
            Ok((waiting, dead))
        })
        .await
        .map_err(failed)?
    }

    /// Removes a delivered body.
    async fn done(&self, position: u64) -> Result<(), ForwardError> {
        self.file
            .write(move |tx| {
                tx.open_table(OUTBOX)?.remove(position)?;
                Ok(())
            })
            .await
            .map_err(failed)
    }

    /// Moves a body that never went through to the dead-letter table, in one transaction.
    async fn set_aside(&self, position: u64) -> Result<(), ForwardError> {
        self.file
            .write(move |tx| {
                let body = tx.open_table(OUTBOX)?.remove(position)?.map(|body| body.value().to_vec());
                if let Some(body) = body {
                    let mut dead = tx.open_table(DEAD)?;
                    let next = dead.last()?.map_or(0, |(at, _)| at.value() + 1);
                    dead.insert(next, body.as_slice())?;
                }
                Ok(())
            })
            .await
            .map_err(failed)
    }
}

impl Forward for LocalOutbox {
    fn forward<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, Result<(), ForwardError>> {
        Box::pin(async move {
            let body = body.to_vec();
            self.file
                .write(move |tx| {
                    let mut table = tx.open_table(OUTBOX)?;
                    let next = table.last()?.map_or(0, |(position, _)| position.value() + 1);
                    table.insert(next, body.as_slice())?;
                    Ok(())
                })
                .await
                .map_err(failed)?;
            self.written.notify_one();
            Ok(())
        })
    }
}

/// Hands the outbox's bodies to `target`, oldest first, until `stop` fires: a failure waits
/// [`backoff`] and tries the same body again (the receiver sees bodies in the order Meta sent
/// them), a body refused for good or failed [`ATTEMPTS`] times is set aside.
pub async fn deliver(outbox: LocalOutbox, target: Arc<dyn Forward>, mut stop: oneshot::Receiver<()>) {
    let mut failures = 0;
    loop {
        if stop.try_recv().is_ok() {
            return;
        }
        let pause = match outbox.oldest().await {
            Ok(Some((position, body))) => match target.forward(&body).await {
                Ok(()) => {
                    failures = 0;
                    match outbox.done(position).await {
                        Ok(()) => continue,
                        Err(error) => {
                            tracing::error!(%error, "a forwarded body could not leave the outbox");
                            backoff(1)
                        }
                    }
                }
                Err(error) => {
                    failures += 1;
                    let refused = matches!(error, ForwardError::Refused(_));
                    if refused || failures >= ATTEMPTS {
                        tracing::error!(%error, failures, "a webhook body was not forwarded; set aside in the data file");
                        failures = 0;
                        match outbox.set_aside(position).await {
                            Ok(()) => continue,
                            Err(error) => {
                                tracing::error!(%error, "a body could not be set aside");
                                backoff(ATTEMPTS)
                            }
                        }
                    } else {
                        tracing::warn!(%error, failures, "forwarding a webhook body failed; trying again");
                        backoff(failures)
                    }
                }
            },
            Ok(None) => {
                tokio::select! {
                    _ = &mut stop => return,
                    () = outbox.written.notified() => continue,
                }
            }
            Err(error) => {
                tracing::error!(%error, "the forward outbox could not be read");
                backoff(1)
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_a_second_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=ATTEMPTS).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }
}
