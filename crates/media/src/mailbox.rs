//! The voicemail store: one folder per subscriber, each message a WAV file (16-bit PCM, mono,
//! 8 kHz) with its metadata in JSON beside it.
//!
//! Nothing is lost and nothing half-written looks complete. A message is recorded into
//! `<id>.wav.partial`, with its metadata in `<id>.partial.json` from the start and the audio
//! synced every second. When it ends, the header gets its sizes, the file is synced, the
//! metadata is written (temporary file, then rename), the audio renamed to `<id>.wav`, and the
//! folder synced. After a crash or kill, [`Mailbox::recover`] turns every leftover
//! `.wav.partial` into a message marked `"partial": true`, its header fixed from the length of
//! what reached the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use super::codec::SAMPLE_RATE;
const HEADER: u64 = 44;
const PARTIAL_WAV: &str = ".wav.partial";
const PARTIAL_META: &str = ".partial.json";

/// What is known of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Its id (time of recording and a random suffix).
    pub id: String,
    /// The mailbox's subscriber.
    pub subscriber: String,
    /// Who left it.
    pub caller: Option<String>,
    /// The number that was called.
    pub callee: Option<String>,
    /// `MO` or `MT`, when known.
    pub direction: Option<String>,
    /// When recording started (RFC 3339).
    pub recorded_at: String,
    /// Length in milliseconds.
    pub duration_ms: u64,
    /// The codec it arrived in.
    pub codec: String,
    /// Cut short by a crash or kill and recovered.
    pub partial: bool,
}

impl MessageMeta {
    /// What a new message is about; id, time, duration and flags are set when recording starts.
    pub fn new(
        subscriber: &str,
        caller: Option<&str>,
        callee: Option<&str>,
        direction: Option<&str>,
        codec: &str,
    ) -> Self {
        Self {
            id: String::new(),
            subscriber: subscriber.to_owned(),
            caller: caller.map(str::to_owned),
            callee: callee.map(str::to_owned),
            direction: direction.map(str::to_owned),
            recorded_at: String::new(),
            duration_ms: 0,
            codec: codec.to_owned(),
            partial: false,
        }
    }
}

/// A voicemail store rooted at one folder.
#[derive(Debug, Clone)]
pub struct Mailbox {
    root: PathBuf,
}

/// A message being recorded.
pub struct Recording {
    file: File,
    folder: PathBuf,
    meta: MessageMeta,
    samples: u64,
    last_sync: Instant,
}

pub(crate) fn wav_header(data_bytes: u32) -> [u8; 44] {
    let mut header = [0u8; 44];
    header[0..4].copy_from_slice(b"RIFF");
    header[4..8].copy_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
    header[8..16].copy_from_slice(b"WAVEfmt ");
    header[16..20].copy_from_slice(&16u32.to_le_bytes());
    header[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    header[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    header[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    header[28..32].copy_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    header[32..34].copy_from_slice(&2u16.to_le_bytes());
    header[34..36].copy_from_slice(&16u16.to_le_bytes());
    header[36..40].copy_from_slice(b"data");
    header[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    header
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see all or nothing.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

/// A file name safe version of a number (`+4799990001` → `4799990001`).
fn folder_name(subscriber: &str) -> String {
    subscriber.chars().filter(char::is_ascii_alphanumeric).collect()
}

impl Mailbox {
    /// The store at `root`, created if missing.
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        Ok(Self { root: root.to_owned() })
    }

    /// Starts a message for `subscriber`; `meta`'s id, time, duration and flags are set here.
    pub fn start(&self, mut meta: MessageMeta) -> io::Result<Recording> {
        let folder = self.root.join(folder_name(&meta.subscriber));
        fs::create_dir_all(&folder)?;
        let now = SystemTime::now();
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        meta.id = format!("{}-{:04x}", stamp.replace([':', '-'], ""), rand::random::<u16>());
        meta.recorded_at = stamp;
        meta.duration_ms = 0;
        meta.partial = false;
        write_atomically(&folder.join(format!("{}{PARTIAL_META}", meta.id)), &serde_json::to_vec_pretty(&meta)?)?;
        let mut file = File::create(folder.join(format!("{}{PARTIAL_WAV}", meta.id)))?;
        file.write_all(&wav_header(0))?;
        Ok(Recording { file, folder, meta, samples: 0, last_sync: Instant::now() })
    }

    /// Turns every recording a crash left behind into a message marked partial; returns them.
    pub fn recover(&self) -> io::Result<Vec<MessageMeta>> {
        let mut recovered = Vec::new();
        for folder in fs::read_dir(&self.root)? {
            let folder = folder?.path();
            if !folder.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&folder)? {
                let path = entry?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
                let Some(id) = name.strip_suffix(PARTIAL_WAV) else { continue };
                match recover_one(&folder, id) {
                    Ok(meta) => {
                        warn!(id, subscriber = %meta.subscriber, duration_ms = meta.duration_ms, "recovered a message cut short");
                        recovered.push(meta);
                    }
                    Err(error) => warn!(id, %error, "could not recover a partial message; left as it is"),
                }
            }
        }
        Ok(recovered)
    }

    /// Every complete message, oldest first; only `subscriber`'s when given.
    pub fn list(&self, subscriber: Option<&str>) -> io::Result<Vec<MessageMeta>> {
        let mut messages = Vec::new();
        for folder in fs::read_dir(&self.root)? {
            let folder = folder?.path();
            if !folder.is_dir() {
                continue;
            }
            if let Some(subscriber) = subscriber {
                if folder.file_name().and_then(|n| n.to_str()) != Some(folder_name(subscriber).as_str()) {
                    continue;
                }
            }
            for entry in fs::read_dir(&folder)? {
                let path = entry?.path();
                let is_meta =
                    path.extension().is_some_and(|e| e == "json") && !path.to_string_lossy().ends_with(PARTIAL_META);
                if is_meta {
                    if let Ok(meta) = serde_json::from_slice::<MessageMeta>(&fs::read(&path)?) {
                        messages.push(meta);
                    }
                }
            }
        }
        messages.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(messages)
    }

    /// The audio file of message `id`.
    pub fn audio(&self, id: &str) -> io::Result<PathBuf> {
        self.find(id).map(|(folder, _)| folder.join(format!("{id}.wav")))
    }

    /// Deletes message `id` (audio and metadata).
    pub fn delete(&self, id: &str) -> io::Result<()> {
        let (folder, _) = self.find(id)?;
        fs::remove_file(folder.join(format!("{id}.json")))?;
        fs::remove_file(folder.join(format!("{id}.wav")))?;
        sync_folder(&folder)
    }

    fn find(&self, id: &str) -> io::Result<(PathBuf, MessageMeta)> {
        let meta = self
            .list(None)?
            .into_iter()
            .find(|meta| meta.id == id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no message {id}")))?;
        Ok((self.root.join(folder_name(&meta.subscriber)), meta))
    }
}

fn recover_one(folder: &Path, id: &str) -> io::Result<MessageMeta> {
    let audio = folder.join(format!("{id}{PARTIAL_WAV}"));
    let mut file = OpenOptions::new().read(true).write(true).open(&audio)?;
    let length = file.metadata()?.len();
    // Whole samples only: a write cut mid-sample loses that sample.
    let data = (length.saturating_sub(HEADER) / 2 * 2).min(u64::from(u32::MAX - 36));
    file.set_len(HEADER + data)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&wav_header(data as u32))?;
    file.sync_all()?;
    let meta_path = folder.join(format!("{id}{PARTIAL_META}"));
    let mut meta = match fs::read(&meta_path).ok().and_then(|bytes| serde_json::from_slice::<MessageMeta>(&bytes).ok())
    {
        Some(meta) => meta,
        None => MessageMeta {
            id: id.to_owned(),
            subscriber: folder.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned(),
            caller: None,
            callee: None,
            direction: None,
            recorded_at: String::new(),
            duration_ms: 0,
            codec: String::new(),
            partial: true,
        },
    };
    meta.partial = true;
    meta.duration_ms = data / 2 * 1000 / u64::from(SAMPLE_RATE);
    write_atomically(&folder.join(format!("{id}.json")), &serde_json::to_vec_pretty(&meta)?)?;
    fs::rename(&audio, folder.join(format!("{id}.wav")))?;
    let _ = fs::remove_file(&meta_path);
    sync_folder(folder)?;
    Ok(meta)
}

impl Recording {
    /// Appends audio; the data reaches the disk at least once a second.
    pub fn append(&mut self, samples: &[i16]) -> io::Result<()> {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.file.write_all(&bytes)?;
        self.samples += samples.len() as u64;
        if self.last_sync.elapsed() >= Duration::from_secs(1) {
            self.file.sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// How long the message is so far.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.samples * 1000 / u64::from(SAMPLE_RATE))
    }

    /// Completes the message: sizes in the header, synced, metadata beside it, renamed into place.
    pub fn finish(mut self) -> io::Result<MessageMeta> {
        let data = (self.samples * 2).min(u64::from(u32::MAX - 36)) as u32;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&wav_header(data))?;
        self.file.sync_all()?;
        let id = self.meta.id.clone();
        self.meta.duration_ms = self.duration().as_millis() as u64;
        write_atomically(&self.folder.join(format!("{id}.json")), &serde_json::to_vec_pretty(&self.meta)?)?;
        fs::rename(self.folder.join(format!("{id}{PARTIAL_WAV}")), self.folder.join(format!("{id}.wav")))?;
        let _ = fs::remove_file(self.folder.join(format!("{id}{PARTIAL_META}")));
        sync_folder(&self.folder)?;
        info!(id, subscriber = %self.meta.subscriber, duration_ms = self.meta.duration_ms, "voicemail message stored");
        Ok(self.meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MessageMeta {
        MessageMeta::new("+4799990001", Some("+4711111111"), Some("+4799990001"), Some("MT"), "PCMA")
    }

    #[test]
    fn a_finished_message_is_listed_with_its_metadata_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = Mailbox::open(dir.path()).unwrap();
        let mut recording = mailbox.start(meta()).unwrap();
        recording.append(&vec![1000i16; 8000]).unwrap();
        let stored = recording.finish().unwrap();
        assert_eq!(stored.duration_ms, 1000);
        let listed = mailbox.list(Some("+4799990001")).unwrap();
        assert_eq!(listed, vec![stored.clone()]);
        let reader = hound::WavReader::open(mailbox.audio(&stored.id).unwrap()).unwrap();
        assert_eq!((reader.spec().sample_rate, reader.spec().channels, reader.len()), (8000, 1, 8000));
        mailbox.delete(&stored.id).unwrap();
        assert!(mailbox.list(None).unwrap().is_empty());
    }

    #[test]
    fn a_recording_cut_short_is_recovered_marked_partial() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = Mailbox::open(dir.path()).unwrap();
        let mut recording = mailbox.start(meta()).unwrap();
        recording.append(&vec![500i16; 4000]).unwrap();
        recording.file.sync_all().unwrap();
        // The process dies here: no finish. Nothing is listed as a message yet.
        drop(recording);
        assert!(mailbox.list(None).unwrap().is_empty());
        let recovered = mailbox.recover().unwrap();
        assert_eq!(recovered.len(), 1);
        assert!(recovered[0].partial && recovered[0].duration_ms == 500, "{recovered:?}");
        assert_eq!(recovered[0].caller.as_deref(), Some("+4711111111"));
        let reader = hound::WavReader::open(mailbox.audio(&recovered[0].id).unwrap()).unwrap();
        assert_eq!(reader.len(), 4000, "the header was fixed from what reached the disk");
        assert!(mailbox.recover().unwrap().is_empty(), "recovered once");
    }
}
