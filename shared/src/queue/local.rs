//! [`SendQueue`] in a redb database (`capguard serve`'s data file): the chunks are written in one
//! transaction before the request is answered, taken oldest first, and removed only once their
//! dispatch ran, so a chunk that a crash interrupted is dispatched again after a restart. Writes
//! go through the store's writer ([`StoreFile`]), in its group commits.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::Notify;

use super::{QueueError, SendQueue};
use crate::store::embedded::StoreFile;
use crate::usecase::dispatch::DispatchRequest;

const CHUNKS: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_chunks");

#[derive(Clone)]
pub struct LocalQueue {
    file: StoreFile,
    /// Woken when chunks are queued.
    queued: Arc<Notify>,
}

fn failed(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

impl LocalQueue {
    pub fn new(file: StoreFile) -> Result<Self, QueueError> {
        let tx = file.database().begin_write().map_err(failed)?;
        tx.open_table(CHUNKS).map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(Self { file, queued: Arc::new(Notify::new()) })
    }

    /// The oldest chunk still queued, with its position for [`Self::done`].
    pub async fn oldest(&self) -> Result<Option<(u64, DispatchRequest)>, QueueError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let tx = file.database().begin_read().map_err(failed)?;
            let table = tx.open_table(CHUNKS).map_err(failed)?;
            let Some(entry) = table.first().map_err(failed)? else { return Ok(None) };
            let (position, bytes) = entry;
            let chunk = serde_json::from_slice(bytes.value()).map_err(failed)?;
            Ok(Some((position.value(), chunk)))
        })
        .await
        .map_err(failed)?
    }

    /// How many chunks are queued (the one being dispatched included).
    pub async fn queued(&self) -> Result<u64, QueueError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let tx = file.database().begin_read().map_err(failed)?;
            tx.open_table(CHUNKS).map_err(failed)?.len().map_err(failed)
        })
        .await
        .map_err(failed)?
    }

    /// Removes a chunk whose dispatch ran.
    pub async fn done(&self, position: u64) -> Result<(), QueueError> {
        self.file
            .write(move |tx| {
                tx.open_table(CHUNKS)?.remove(position)?;
                Ok(())
            })
            .await
            .map_err(failed)
    }

    /// Waits until chunks are queued (or returns at once if some were queued since the last wait).
    pub async fn wait(&self) {
        self.queued.notified().await;
    }
}

impl SendQueue for LocalQueue {
    async fn enqueue(&self, chunks: &[DispatchRequest]) -> Result<(), QueueError> {
        let encoded: Vec<Vec<u8>> = chunks.iter().map(serde_json::to_vec).collect::<Result<_, _>>().map_err(failed)?;
        self.file
            .write(move |tx| {
                let mut table = tx.open_table(CHUNKS)?;
                let first = table.last()?.map_or(0, |(position, _)| position.value() + 1);
                for (position, chunk) in (first..).zip(&encoded) {
                    table.insert(position, chunk.as_slice())?;
                }
                Ok(())
            })
            .await
            .map_err(failed)?;
        self.queued.notify_one();
        Ok(())
    }
}
