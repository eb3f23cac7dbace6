//! [`SendQueue`] in a redb database (`capguard serve`'s data file): the chunks are written in one
//! transaction before the request is answered, taken oldest first, and removed only once their
//! dispatch ran, so a chunk that a crash interrupted is dispatched again after a restart.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::Notify;

use super::{QueueError, SendQueue};
use crate::usecase::dispatch::DispatchRequest;

const CHUNKS: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_chunks");

#[derive(Clone)]
pub struct LocalQueue {
    db: Arc<Database>,
    /// Woken when chunks are queued.
    queued: Arc<Notify>,
}

fn failed(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

impl LocalQueue {
    pub fn new(db: Arc<Database>) -> Result<Self, QueueError> {
        let tx = db.begin_write().map_err(failed)?;
        tx.open_table(CHUNKS).map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(Self { db, queued: Arc::new(Notify::new()) })
    }

    /// The oldest chunk still queued, with its position for [`Self::done`].
    pub async fn oldest(&self) -> Result<Option<(u64, DispatchRequest)>, QueueError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(failed)?;
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
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(failed)?;
            tx.open_table(CHUNKS).map_err(failed)?.len().map_err(failed)
        })
        .await
        .map_err(failed)?
    }

    /// Removes a chunk whose dispatch ran.
    pub async fn done(&self, position: u64) -> Result<(), QueueError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(failed)?;
            tx.open_table(CHUNKS).map_err(failed)?.remove(position).map_err(failed)?;
            tx.commit().map_err(failed)
        })
        .await
        .map_err(failed)?
    }

    /// Waits until chunks are queued (or returns at once if some were queued since the last wait).
    pub async fn wait(&self) {
        self.queued.notified().await;
    }
}

impl SendQueue for LocalQueue {
    async fn enqueue(&self, chunks: &[DispatchRequest]) -> Result<(), QueueError> {
        let encoded: Vec<Vec<u8>> = chunks.iter().map(serde_json::to_vec).collect::<Result<_, _>>().map_err(failed)?;
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(failed)?;
            {
                let mut table = tx.open_table(CHUNKS).map_err(failed)?;
                let first = table.last().map_err(failed)?.map_or(0, |(position, _)| position.value() + 1);
                for (position, chunk) in (first..).zip(&encoded) {
                    table.insert(position, chunk.as_slice()).map_err(failed)?;
                }
            }
            tx.commit().map_err(failed)
        })
        .await
        .map_err(failed)??;
        self.queued.notify_one();
        Ok(())
    }
}
