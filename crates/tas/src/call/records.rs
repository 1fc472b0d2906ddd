//! Call detail records, one per call, into the store and into a file of JSON lines, each
//! handed to a writer off the call path. The store's writer writes in batches; a database
//! that fails is retried with the batch kept. The file's writer appends one line per call,
//! rotates the file past `call_records.max_size`, and reopens it on [`RecordWriter::reopen`]
//! (SIGHUP, after logrotate moved it). Only when a queue is full (the database down for a long
//! while under load, a disk that stalls) are records dropped, counted in a warning and in
//! `ringer_call_records_dropped_total`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::CallRecordsConfig;
use store::{CallRecordRow, Store};

/// Records waiting to be written, at most.
const QUEUED: usize = 10_000;
/// Records written in one transaction, at most.
const BATCH: usize = 500;
/// How long the first record of a batch waits for others to join it.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Hands call records to the writer tasks.
#[derive(Clone)]
pub struct RecordWriter {
    /// To the store's writer, when there is a store.
    store: Option<mpsc::Sender<CallRecordRow>>,
    /// To the file's writer, when `call_records.file` is set.
    file: Option<mpsc::Sender<FileCommand>>,
    /// Set to have the file's writer reopen the file (a queued command only wakes it, so a
    /// full queue loses no reopen).
    reopen: Arc<AtomicBool>,
    instance: Arc<str>,
    dropped: Arc<AtomicU64>,
}

/// The writer tasks, to stop at shutdown once the calls have ended.
pub struct RecordWriterTask {
    stop: CancellationToken,
    store: Option<tokio::task::JoinHandle<()>>,
    file: Option<(mpsc::Sender<FileCommand>, std::thread::JoinHandle<()>)>,
}

impl RecordWriterTask {
    /// Writes what is queued, then stops; gives up after `timeout`.
    pub async fn finish(self, timeout: Duration) {
        self.stop.cancel();
        let store = async {
            if let Some(task) = self.store {
                let _ = task.await;
            }
        };
        let file = async {
            if let Some((commands, thread)) = self.file {
                // Queued behind every record: the thread writes them all first.
                let _ = commands.send(FileCommand::Stop).await;
                // Watched, not joined: a thread stuck on a stalled disk must not hold the exit.
                while !thread.is_finished() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        if tokio::time::timeout(timeout, async { tokio::join!(store, file) }).await.is_err() {
            error!("call records still queued at shutdown could not be written in time");
        }
    }
}

/// Why call records cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("call_records.file {}: {source}", path.display())]
pub struct RecordFileError {
    /// The file.
    pub path: PathBuf,
    /// Why it cannot be opened.
    #[source]
    pub source: std::io::Error,
}

impl RecordWriter {
    /// Starts writing the records of instance `instance` into `store` when given and into
    /// the file `config` names when it names one; fails when that file cannot be opened.
    pub fn start(
        store: Option<Store>,
        config: &CallRecordsConfig,
        instance: &str,
    ) -> Result<(Self, RecordWriterTask), RecordFileError> {
        let stop = CancellationToken::new();
        let (store_queue, store_task) = match store {
            Some(store) => {
                let (queue, receiver) = mpsc::channel(QUEUED);
                (Some(queue), Some(tokio::spawn(write_batches(store, receiver, stop.clone()))))
            }
            None => (None, None),
        };
        let reopen = Arc::new(AtomicBool::new(false));
        let (file_queue, file_task) = match &config.file {
            Some(path) => {
                let file = RecordFile::open(path.clone(), config.max_size, reopen.clone())?;
                let (queue, receiver) = mpsc::channel(QUEUED);
                let thread = std::thread::Builder::new()
                    .name("call-records".into())
                    .spawn(move || file.run(receiver))
                    .map_err(|source| RecordFileError { path: path.clone(), source })?;
                (Some(queue.clone()), Some((queue, thread)))
            }
            None => (None, None),
        };
        let writer = Self {
            store: store_queue,
            file: file_queue,
            reopen,
            instance: instance.into(),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        Ok((writer, RecordWriterTask { stop, store: store_task, file: file_task }))
    }

    /// The instance named in the records.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// Queues `record` for each destination; never waits.
    pub(crate) fn write(&self, record: CallRecordRow) {
        if let Some(file) = &self.file {
            if file.try_send(FileCommand::Write(Box::new(record.clone()))).is_err() {
                self.dropped("file");
            }
        }
        if let Some(store) = &self.store {
            if store.try_send(record).is_err() {
                self.dropped("store");
            }
        }
    }

    /// Closes the records file and opens it again by name: after logrotate moved it away,
    /// new records go to a new file. Nothing is lost: records queued meanwhile wait.
    pub fn reopen(&self) {
        if let Some(file) = &self.file {
            self.reopen.store(true, Ordering::Release);
            // A full queue wakes the writer anyway.
            let _ = file.try_send(FileCommand::Reopen);
        }
    }

    fn dropped(&self, sink: &'static str) {
        metrics::counter!("ringer_call_records_dropped_total", "sink" => sink).increment(1);
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            warn!(dropped, sink, "call records dropped: the database or the disk does not keep up (or is down)");
        }
    }
}

/// What the file's writer thread is told.
enum FileCommand {
    Write(Box<CallRecordRow>),
    Reopen,
    Stop,
}

/// The file of JSON lines, as its writer thread holds it.
struct RecordFile {
    path: PathBuf,
    max_size: Option<u64>,
    reopen: Arc<AtomicBool>,
    out: std::io::BufWriter<std::fs::File>,
    size: u64,
}

impl RecordFile {
    fn open(path: PathBuf, max_size: Option<u64>, reopen: Arc<AtomicBool>) -> Result<Self, RecordFileError> {
        let (out, size) = append_to(&path).map_err(|source| RecordFileError { path: path.clone(), source })?;
        Ok(Self { path, max_size, reopen, out, size })
    }

    /// Writes records as they come, flushing whenever the queue is empty, until told to stop.
    fn run(mut self, mut commands: mpsc::Receiver<FileCommand>) {
        while let Some(command) = commands.blocking_recv() {
            let mut next = Some(command);
            while let Some(command) = next.take() {
                if self.reopen.swap(false, Ordering::AcqRel) {
                    self.flush();
                    self.reopen("reopened");
                }
                match command {
                    FileCommand::Write(record) => self.write(&record),
                    FileCommand::Reopen => {}
                    FileCommand::Stop => {
                        // Records that came after the stop was queued are written too.
                        commands.close();
                        while let Ok(command) = commands.try_recv() {
                            if let FileCommand::Write(record) = command {
                                self.write(&record);
                            }
                        }
                        self.flush();
                        return;
                    }
                }
                next = commands.try_recv().ok();
            }
            self.flush();
        }
        self.flush();
    }

    fn write(&mut self, record: &CallRecordRow) {
        let mut line = match serde_json::to_vec(&RecordLine::of(record)) {
            Ok(line) => line,
            Err(error) => {
                error!(%error, call_id = %record.call_id, "call record could not be written as JSON");
                return;
            }
        };
        line.push(b'\n');
        if self.max_size.is_some_and(|max| self.size > 0 && self.size + line.len() as u64 > max) {
            self.rotate();
        }
        match self.out.write_all(&line) {
            Ok(()) => self.size += line.len() as u64,
            Err(error) => {
                // Whatever part reached the file is ended, so the next record starts a line.
                let _ = self.out.write_all(b"\n");
                metrics::counter!("ringer_call_records_dropped_total", "sink" => "file").increment(1);
                error!(%error, path = %self.path.display(), call_id = %record.call_id, "call record not written");
            }
        }
    }

    fn flush(&mut self) {
        if let Err(error) = self.out.flush() {
            error!(%error, path = %self.path.display(), "call records file could not be flushed");
        }
    }

    /// Moves the full file aside (`NAME.YYYYMMDDTHHMMSSZ`) and starts a new one.
    fn rotate(&mut self) {
        self.flush();
        let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let aside_named = |suffix: String| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let mut aside = aside_named(format!(".{stamp}"));
        let mut n = 1;
        while aside.exists() {
            aside = aside_named(format!(".{stamp}.{n}"));
            n += 1;
        }
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => self.reopen(&format!("rotated to {}", aside.display())),
            Err(error) => error!(%error, path = %self.path.display(), "call records file could not be rotated"),
        }
    }

    /// Opens the file by its name again; on failure, writes on where it was.
    fn reopen(&mut self, why: &str) {
        match append_to(&self.path) {
            Ok((out, size)) => {
                self.out = out;
                self.size = size;
                info!(path = %self.path.display(), why, "call records file opened anew");
            }
            Err(error) => {
                // Not retried at every record: the size starts over on the file written on.
                self.size = 0;
                error!(%error, path = %self.path.display(), "call records file could not be reopened; writing on to the old one")
            }
        }
    }
}

/// `path` opened for appending (created when missing), with its size.
fn append_to(path: &Path) -> std::io::Result<(std::io::BufWriter<std::fs::File>, u64)> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((std::io::BufWriter::new(file), size))
}

/// One call as a line of the records file: the store's row, times in RFC 3339 (UTC, ms).
#[derive(Serialize)]
struct RecordLine<'a> {
    record_id: &'a str,
    instance: &'a str,
    call_id: &'a str,
    leg3_call_ids: &'a [String],
    request_uri: &'a str,
    subscriber: Option<&'a str>,
    direction: Option<&'a str>,
    route_type: Option<&'a str>,
    prefix: Option<&'a str>,
    caller: Option<&'a str>,
    callee: Option<&'a str>,
    actions: &'a [String],
    diversion_reason: Option<&'a str>,
    final_status: Option<u16>,
    invite_at: String,
    answered_at: Option<String>,
    ended_at: String,
    /// From the answer to the end, when answered.
    duration_ms: Option<i64>,
    ended_by: Option<&'a str>,
    codec: Option<&'a str>,
    media: Option<MediaLine>,
}

/// What arrived of the caller's media.
#[derive(Serialize)]
struct MediaLine {
    packets_received: u64,
    packets_lost: u64,
    /// Lost of expected, 0 to 1.
    loss: f64,
    jitter_ms: f64,
}

impl<'a> RecordLine<'a> {
    fn of(row: &'a CallRecordRow) -> Self {
        let time = |millis: i64| {
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0));
            humantime::format_rfc3339_millis(at).to_string()
        };
        RecordLine {
            record_id: &row.record_id,
            instance: &row.instance,
            call_id: &row.call_id,
            leg3_call_ids: &row.leg3_call_ids,
            request_uri: &row.request_uri,
            subscriber: row.subscriber.as_deref(),
            direction: row.direction.as_deref(),
            route_type: row.route_type.as_deref(),
            prefix: row.prefix.as_deref(),
            caller: row.caller.as_deref(),
            callee: row.callee.as_deref(),
            actions: &row.actions,
            diversion_reason: row.diversion_reason.as_deref(),
            final_status: row.final_status,
            invite_at: time(row.invite_at),
            answered_at: row.answered_at.map(time),
            ended_at: time(row.ended_at),
            duration_ms: row.answered_at.map(|answered| (row.ended_at - answered).max(0)),
            ended_by: row.ended_by.as_deref(),
            codec: row.codec.as_deref(),
            media: row.reception.map(|reception| {
                let expected = reception.packets_received + reception.packets_lost;
                MediaLine {
                    packets_received: reception.packets_received,
                    packets_lost: reception.packets_lost,
                    loss: if expected == 0 { 0.0 } else { reception.packets_lost as f64 / expected as f64 },
                    jitter_ms: reception.jitter_us as f64 / 1000.0,
                }
            }),
        }
    }
}

async fn write_batches(store: Store, mut queue: mpsc::Receiver<CallRecordRow>, stop: CancellationToken) {
    // One vector for every batch: a new one per window, grown record by record, had the
    // allocator map fresh pages (zeroed huge pages) for each batch under load.
    let mut batch = Vec::new();
    loop {
        batch.clear();
        let first = tokio::select! {
            record = queue.recv() => record,
            () = stop.cancelled() => queue.try_recv().ok(),
        };
        let Some(first) = first else { return };
        batch.push(first);
        // Records that come within BATCH_WINDOW join the batch: one transaction (one commit,
        // one sync to disk) per window under load rather than one per call. The window is
        // slept through and the queue drained after it: waiting on the queue would wake this
        // task (and often another worker thread) once per record.
        let window = tokio::time::Instant::now() + BATCH_WINDOW;
        tokio::select! {
            () = tokio::time::sleep_until(window) => {}
            () = stop.cancelled() => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize) -> CallRecordRow {
        CallRecordRow {
            record_id: format!("{n:032x}"),
            instance: "a".into(),
            call_id: format!("call-{n}@core"),
            leg3_call_ids: vec![format!("leg3-{n}@tas")],
            request_uri: "sip:+214799990001@tas.test".into(),
            subscriber: Some("+4799990001".into()),
            direction: Some("MT".into()),
            route_type: Some("loop".into()),
            prefix: Some("21".into()),
            caller: Some("+4711111111".into()),
            callee: Some("+4799990001".into()),
            actions: vec!["loop".into()],
            diversion_reason: None,
            final_status: Some(200),
            invite_at: 1_764_000_000_000,
            answered_at: Some(1_764_000_001_500),
            ended_at: 1_764_000_061_500,
            ended_by: Some("callee".into()),
            codec: Some("PCMA".into()),
            reception: Some(store::Reception { packets_received: 2990, packets_lost: 10, jitter_us: 2500 }),
        }
    }

    #[test]
    fn a_line_has_every_field_with_times_in_rfc3339() {
        let line = serde_json::to_value(RecordLine::of(&row(1))).expect("JSON");
        assert_eq!(line["invite_at"], "2025-11-24T16:00:00.000Z");
        assert_eq!(line["answered_at"], "2025-11-24T16:00:01.500Z");
        assert_eq!(line["duration_ms"], 60_000);
        assert_eq!(line["media"]["loss"], 10.0 / 3000.0);
        assert_eq!(line["media"]["jitter_ms"], 2.5);
        assert_eq!((&line["ended_by"], &line["codec"]), (&serde_json::json!("callee"), &serde_json::json!("PCMA")));
    }

    #[test]
    fn the_file_is_moved_aside_past_its_size_and_nothing_is_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("calls.jsonl");
        let (queue, commands) = mpsc::channel(100);
        let file = RecordFile::open(path.clone(), Some(4096), Arc::default()).expect("open");
        let thread = std::thread::spawn(move || file.run(commands));
        for n in 0..20 {
            queue.blocking_send(FileCommand::Write(Box::new(row(n)))).expect("queued");
        }
        queue.blocking_send(FileCommand::Stop).expect("stop");
        thread.join().expect("writer thread");
        let mut files: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").path()).collect();
        files.sort();
        assert!(files.len() >= 2, "rotated at 4 KiB: {files:?}");
        let mut ids = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read");
            assert!(text.len() <= 4096, "{} is {} bytes", file.display(), text.len());
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                ids.push(value["call_id"].as_str().expect("call id").to_owned());
            }
        }
        assert_eq!(ids.len(), 20, "every record kept across the files: {ids:?}");
        assert!(files.iter().any(|file| file == &path), "a fresh file by the configured name");
    }
}
