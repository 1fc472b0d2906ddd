//! The apps a TAS answers calls with, on an [`AudioChannel`]: voicemail (greeting, beep,
//! recording into the [`Mailbox`]) and announcement (play, then hang up). Echo works on
//! packets and lives with the RTP code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::channel::{AudioChannel, Incoming};
use super::mailbox::{Mailbox, MessageMeta, SAMPLE_RATE};

/// Why an app stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnd {
    /// The caller hung up.
    CallerLeft,
    /// The app is done (announcement played; recording ended by `#`, silence or length): hang up.
    Done,
    /// No RTP for the media timeout: hang up.
    TimedOut,
}

/// How voicemail behaves.
#[derive(Debug, Clone)]
pub struct VoicemailSettings {
    /// Where messages go.
    pub mailbox: Mailbox,
    /// The system's greeting where the mailbox has none of its own, 8 kHz linear.
    pub greeting: Arc<Vec<i16>>,
    /// Longest message.
    pub max_length: Duration,
    /// This long without speech ends the recording.
    pub silence: Duration,
}

/// A tone of `frequency` Hz for `millis` at 8 kHz.
pub fn tone(frequency: f64, millis: u32, amplitude: f64) -> Vec<i16> {
    let count = (SAMPLE_RATE * millis / 1000) as usize;
    (0..count)
        .map(|n| {
            let t = n as f64 / f64::from(SAMPLE_RATE);
            (amplitude * (2.0 * std::f64::consts::PI * frequency * t).sin()) as i16
        })
        .collect()
}

/// The greeting used when none is configured: three rising notes (A4, C#5, E5).
pub fn default_greeting() -> Vec<i16> {
    let mut greeting = Vec::new();
    for frequency in [440.0, 554.37, 659.25] {
        greeting.extend(tone(frequency, 300, 8000.0));
        greeting.extend(std::iter::repeat_n(0i16, 800));
    }
    greeting
}

/// The beep before recording: 1,400 Hz for 400 ms.
pub fn beep() -> Vec<i16> {
    tone(1400.0, 400, 10000.0)
}

/// Why an audio file could not be read or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioFileError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The WAV reader or writer failed.
    #[error("{}: WAV: {source}", path.display())]
    Wav {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: hound::Error,
    },
    /// The Ogg container is broken.
    #[error("{}: Ogg: {source}", path.display())]
    Ogg {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: ogg::OggReadError,
    },
    /// The Opus stream does not decode.
    #[error("{}: Opus: {source}", path.display())]
    Opus {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: super::codec::CodecError,
    },
    /// The file is of a kind or shape ringer does not play.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What it is and what would do.
        reason: String,
    },
}

/// Reads an audio file as 8 kHz mono: WAV (16-bit PCM, mono or stereo, 8, 16 or 48 kHz) or
/// Ogg/Opus (RFC 7845), told apart by their first bytes.
pub fn load_audio(path: &Path) -> Result<Vec<i16>, AudioFileError> {
    let bytes = std::fs::read(path).map_err(|source| AudioFileError::Io { path: path.to_owned(), source })?;
    decode_audio(&bytes, path)
}

/// Decodes audio bytes (WAV or Ogg/Opus, as [`load_audio`] reads) as 8 kHz mono; `name`
/// (a file, or what the bytes came as) names them in errors.
pub fn decode_audio(bytes: &[u8], name: &Path) -> Result<Vec<i16>, AudioFileError> {
    decode_audio_at_most(bytes, name, usize::MAX)
}

/// As [`decode_audio`], refusing audio longer than `most` samples at 8 kHz before decoding
/// all of it: a few megabytes of Opus can hold hours.
pub fn decode_audio_at_most(bytes: &[u8], name: &Path, most: usize) -> Result<Vec<i16>, AudioFileError> {
    match bytes.get(..4) {
        Some(b"RIFF") => decode_wav(bytes, name, most),
        Some(b"OggS") => decode_ogg_opus(bytes, name, most),
        Some(_) => Err(unsupported(name, "neither WAV (RIFF) nor Ogg/Opus (OggS)")),
        None => Err(unsupported(name, "too short for an audio file")),
    }
}

fn unsupported(path: &Path, reason: impl Into<String>) -> AudioFileError {
    AudioFileError::Unsupported { path: path.to_owned(), reason: reason.into() }
}

fn too_long(path: &Path, most: usize) -> AudioFileError {
    unsupported(path, format!("longer than {} s", most / usize::try_from(SAMPLE_RATE).unwrap_or(8000)))
}

/// A WAV file's bytes (PCM 16-bit, mono or stereo, 8, 16 or 48 kHz) as 8 kHz mono.
fn decode_wav(bytes: &[u8], path: &Path, most: usize) -> Result<Vec<i16>, AudioFileError> {
    let wav = |source| AudioFileError::Wav { path: path.to_owned(), source };
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(wav)?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(unsupported(path, "only 16-bit PCM WAV is supported"));
    }
    let factor = match spec.sample_rate {
        8000 => 1,
        16000 => 2,
        48000 => 6,
        other => return Err(unsupported(path, format!("sample rate {other} Hz: use 8, 16 or 48 kHz"))),
    };
    let channels = usize::from(spec.channels.max(1));
    if usize::try_from(reader.duration()).unwrap_or(usize::MAX) / factor > most {
        return Err(too_long(path, most));
    }
    let samples: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>().map_err(wav)?;
    // Mix to mono, then average each group of `factor` samples (a crude low-pass before decimation).
    let mono: Vec<i32> = samples
        .chunks(channels)
        .map(|frame| frame.iter().map(|s| i32::from(*s)).sum::<i32>() / channels as i32)
        .collect();
    Ok(mono.chunks(factor).map(|group| (group.iter().sum::<i32>() / group.len() as i32) as i16).collect())
}

/// Writes 8 kHz mono `samples` as a 16-bit PCM WAV file.
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), AudioFileError> {
    std::fs::write(path, wav_bytes(samples)).map_err(|source| AudioFileError::Io { path: path.to_owned(), source })
}

/// 8 kHz mono `samples` as the bytes of a 16-bit PCM WAV file.
pub fn wav_bytes(samples: &[i16]) -> Vec<u8> {
    let mut bytes = super::mailbox::wav_header(u32::try_from(samples.len() * 2).unwrap_or(u32::MAX)).to_vec();
    bytes.extend(samples.iter().flat_map(|sample| sample.to_le_bytes()));
    bytes
}

/// 8 kHz mono `samples` as an Ogg/Opus file (RFC 7845): `OpusHead`, `OpusTags`, then one 20 ms
/// packet per page, as visual-voicemail clients and browsers play it.
pub fn ogg_opus_bytes(samples: &[i16]) -> Result<Vec<u8>, super::codec::CodecError> {
    // No pre-skip: the encoder's look-ahead is a few milliseconds of a voice message.
    ogg_opus_skipping(samples, 0)
}

/// As [`ogg_opus_bytes`], telling decoders to drop the first `pre_skip` samples (48 kHz).
fn ogg_opus_skipping(samples: &[i16], pre_skip: u16) -> Result<Vec<u8>, super::codec::CodecError> {
    use super::codec::{Codec, FRAME};
    let mut encoder = Codec::Opus.encoder()?;
    let mut bytes = Vec::new();
    let serial = 0x7269_6e67; // "ring"
    let mut writer = ogg::PacketWriter::new(&mut bytes);
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend(pre_skip.to_le_bytes());
    head.extend(SAMPLE_RATE.to_le_bytes());
    head.extend([0, 0, 0]);
    let page = |writer: &mut ogg::PacketWriter<&mut Vec<u8>>, data: Vec<u8>, end, position| {
        writer
            .write_packet(data, serial, end, position)
            .map_err(|error| super::codec::CodecError::Container(error.to_string()))
    };
    page(&mut writer, head, ogg::PacketWriteEndInfo::EndPage, 0)?;
    let mut tags = b"OpusTags".to_vec();
    tags.extend(6u32.to_le_bytes());
    tags.extend(b"ringer");
    tags.extend(0u32.to_le_bytes());
    page(&mut writer, tags, ogg::PacketWriteEndInfo::EndPage, 0)?;
    let frames: Vec<&[i16]> = samples.chunks(FRAME).collect();
    if frames.is_empty() {
        page(&mut writer, encoder.encode(&[0; FRAME])?, ogg::PacketWriteEndInfo::EndStream, 960)?;
    }
    for (n, frame) in frames.iter().enumerate() {
        let end =
            if n + 1 == frames.len() { ogg::PacketWriteEndInfo::EndStream } else { ogg::PacketWriteEndInfo::EndPage };
        // Granule positions count 48 kHz samples: 960 per 20 ms.
        page(&mut writer, encoder.encode(frame)?, end, (n as u64 + 1) * 960)?;
    }
    drop(writer);
    Ok(bytes)
}

/// An Ogg/Opus file's bytes (RFC 7845: `OpusHead`, `OpusTags`, then audio packets) as 8 kHz
/// mono, without the encoder's pre-skip.
fn decode_ogg_opus(bytes: &[u8], path: &Path, most: usize) -> Result<Vec<i16>, AudioFileError> {
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let mut next = || reader.read_packet().map_err(|source| AudioFileError::Ogg { path: path.to_owned(), source });
    let head = next()?.ok_or_else(|| unsupported(path, "empty Ogg stream"))?;
    if head.data.len() < 19 || &head.data[..8] != b"OpusHead" {
        return Err(unsupported(path, "not an Ogg/Opus stream (no OpusHead)"));
    }
    if head.data[18] != 0 {
        return Err(unsupported(path, "multichannel (mapping family > 0) Opus is not supported"));
    }
    // Pre-skip counts 48 kHz samples.
    let pre_skip = usize::from(u16::from_le_bytes([head.data[10], head.data[11]])) / 6;
    let tags = next()?.ok_or_else(|| unsupported(path, "no OpusTags packet"))?;
    if !tags.data.starts_with(b"OpusTags") {
        return Err(unsupported(path, "the second packet is not OpusTags"));
    }
    let opus = |source| AudioFileError::Opus { path: path.to_owned(), source };
    let mut decoder = super::codec::Codec::Opus.decoder().map_err(opus)?;
    let mut samples = Vec::new();
    while let Some(packet) = next()? {
        samples.extend(decoder.decode(&packet.data).map_err(opus)?);
        if samples.len() > most.saturating_add(pre_skip) {
            return Err(too_long(path, most));
        }
    }
    Ok(samples.split_off(pre_skip.min(samples.len())))
}

/// Root mean square of a frame.
fn loudness(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

/// Below this RMS a frame counts as silence (about -44 dBFS).
const SILENCE: f64 = 200.0;

/// Whether a frame is silence (below about -44 dBFS), as the recordings' end of speech.
pub fn is_silent(samples: &[i16]) -> bool {
    loudness(samples) < SILENCE
}

/// How long a caller being recorded has been silent: a message or a greeting ends after
/// enough of it.
#[derive(Debug, Default)]
pub struct SilenceClock {
    silent_for: Duration,
}

impl SilenceClock {
    /// The silence up to the end of `frame` (8 kHz): longer by its length when it is silent,
    /// none when it is speech.
    pub fn after(&mut self, frame: &[i16]) -> Duration {
        let length = Duration::from_millis(frame.len() as u64 * 1000 / u64::from(SAMPLE_RATE));
        self.silent_for = if is_silent(frame) { self.silent_for + length } else { Duration::ZERO };
        self.silent_for
    }
}

/// Plays `audio`, then ends.
pub async fn announcement(channel: &mut AudioChannel, audio: &[i16], stop: &CancellationToken) -> AppEnd {
    match channel.play(audio, stop).await {
        true => AppEnd::Done,
        false => AppEnd::CallerLeft,
    }
}

/// `greeting`, beep, then a recording until the caller hangs up, presses `#`, stays silent, or
/// reaches the maximum length; the message is stored whichever way it ends.
pub async fn voicemail(
    channel: &mut AudioChannel,
    settings: &VoicemailSettings,
    greeting: &[i16],
    meta: MessageMeta,
    timeout: Duration,
    stop: &CancellationToken,
) -> (AppEnd, Option<MessageMeta>) {
    if !channel.play(greeting, stop).await || !channel.play(&beep(), stop).await {
        return (AppEnd::CallerLeft, None);
    }
    // What the caller said over the greeting is not part of the message.
    channel.discard_pending();
    let mut recording = match settings.mailbox.start(meta) {
        Ok(recording) => recording,
        Err(error) => {
            warn!(%error, "cannot record: the mailbox is not writable");
            return (AppEnd::Done, None);
        }
    };
    let mut silence = SilenceClock::default();
    let end = loop {
        let incoming = tokio::select! {
            () = stop.cancelled() => break AppEnd::CallerLeft,
            incoming = channel.recv(timeout) => incoming,
        };
        match incoming {
            None => break AppEnd::TimedOut,
            Some(Incoming::Dtmf('#')) => break AppEnd::Done,
            Some(Incoming::Dtmf(_)) => {}
            Some(Incoming::Audio(samples)) => {
                if let Err(error) = recording.append(&samples) {
                    warn!(%error, "recording stopped: cannot write");
                    break AppEnd::Done;
                }
                if silence.after(&samples) >= settings.silence || recording.duration() >= settings.max_length {
                    break AppEnd::Done;
                }
            }
        }
    };
    match recording.finish() {
        Ok(stored) => (end, Some(stored)),
        Err(error) => {
            // The partial file stays; the next start recovers it.
            warn!(%error, "could not complete the message; it will be recovered as partial");
            (end, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_longer_than_allowed_is_refused_before_it_is_all_decoded() {
        let two_seconds = tone(440.0, 2000, 9000.0);
        for bytes in [wav_bytes(&two_seconds), ogg_opus_bytes(&two_seconds).unwrap()] {
            let error = decode_audio_at_most(&bytes, Path::new("upload"), 8000).unwrap_err().to_string();
            assert!(error.contains("longer than 1 s") && error.contains("upload"), "{error}");
            let decoded = decode_audio_at_most(&bytes, Path::new("upload"), 3 * 8000).unwrap();
            assert!((15_000..=16_500).contains(&decoded.len()), "{}", decoded.len());
        }
    }

    fn write_ogg_opus(path: &Path, samples: &[i16], pre_skip: u16) {
        std::fs::write(path, ogg_opus_skipping(samples, pre_skip).unwrap()).unwrap();
    }

    fn share(samples: &[i16], frequency: f64) -> f64 {
        // Goertzel power at `frequency` over the whole signal's.
        let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / 8000.0).cos();
        let (mut previous, mut before) = (0.0, 0.0);
        for sample in samples {
            let current = f64::from(*sample) + coefficient * previous - before;
            before = previous;
            previous = current;
        }
        let power = previous * previous + before * before - coefficient * previous * before;
        power / (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() * samples.len() as f64 / 2.0)
    }

    #[test]
    fn an_ogg_opus_greeting_is_read_at_8_khz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greeting.opus");
        write_ogg_opus(&path, &tone(700.0, 1000, 9000.0), 312);
        let audio = load_audio(&path).unwrap();
        // One second less the pre-skip (312 / 6 = 52 samples at 8 kHz).
        assert_eq!(audio.len(), 8000 - 52);
        assert!(share(&audio[400..], 700.0) > 0.8, "the tone survives Opus");
    }

    #[test]
    fn a_wav_greeting_is_read_by_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greeting.bin");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for sample in tone(500.0, 500, 9000.0) {
            // 16 kHz stereo: each 8 kHz sample twice, on both channels.
            for _ in 0..4 {
                writer.write_sample(sample).unwrap();
            }
        }
        writer.finalize().unwrap();
        let audio = load_audio(&path).unwrap();
        assert_eq!(audio.len(), 4000);
        assert!(share(&audio, 500.0) > 0.8);
    }

    #[test]
    fn files_that_are_not_audio_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("text.wav", &b"hello world"[..]),
            ("short.ogg", b"Og"),
            (
                "vorbis.ogg",
                b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let error = load_audio(&path).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
        let missing = load_audio(&dir.path().join("missing.wav")).unwrap_err();
        assert!(matches!(&missing, AudioFileError::Io { path, .. } if path.ends_with("missing.wav")), "{missing}");
        assert_eq!(
            std::error::Error::source(&missing).map(|cause| cause.to_string().contains("No such file")),
            Some(true)
        );
    }
}
