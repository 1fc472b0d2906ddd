//! Call detail records into the store: one row per call, handed to a writer task that writes
//! them in batches, off the call path. A database that fails is retried with the batch kept;
//! only when the queue is full (the database down for a long while under load) are records
//! dropped, each counted in a warning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use store::{CallRecordRow, Store};

/// Records waiting to be written, at most.
const QUEUED: usize = 10_000;
/// Records written in one transaction, at most.
const BATCH: usize = 500;

/// Hands call records to the writer task.
#[derive(Clone)]
pub struct RecordWriter {
    queue: mpsc::Sender<CallRecordRow>,
    instance: Arc<str>,
    dropped: Arc<AtomicU64>,
}

/// The writer task, to stop at shutdown once the calls have ended.
pub struct RecordWriterTask {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RecordWriterTask {
    /// Writes what is queued, then stops; gives up after `timeout`.
    pub async fn finish(self, timeout: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            error!("call records still queued at shutdown could not be written in time");
        }
    }
}

impl RecordWriter {
    /// Starts writing into `store` the records of instance `instance`.
    pub fn start(store: Store, instance: &str) -> (Self, RecordWriterTask) {
        let (queue, receiver) = mpsc::channel(QUEUED);
        let stop = CancellationToken::new();
        let task = tokio::spawn(write_batches(store, receiver, stop.clone()));
        let writer = Self { queue, instance: instance.into(), dropped: Arc::new(AtomicU64::new(0)) };
        (writer, RecordWriterTask { stop, task })
    }

    /// The instance named in the records.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// Queues `record`; never waits.
    pub(crate) fn write(&self, record: CallRecordRow) {
        if self.queue.try_send(record).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(dropped, "call records dropped: the database does not keep up (or is down)");
            }
        }
    }
}

async fn write_batches(store: Store, mut queue: mpsc::Receiver<CallRecordRow>, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            record = queue.recv() => record,
            () = stop.cancelled() => queue.try_recv().ok(),
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let mut attempt = 0u32;
        while let Err(error) = store.add_call_records(&batch).await {
            attempt += 1;
            warn!(%error, records = batch.len(), attempt, "call records not written yet; retrying");
            if stop.is_cancelled() && attempt >= 3 {
                error!(records = batch.len(), "call records lost at shutdown: the database could not be written");
                break;
            }
            tokio::time::sleep(Duration::from_secs(1).min(Duration::from_millis(100) * attempt)).await;
        }
    }
}
