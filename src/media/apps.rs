//! The apps a TAS answers calls with, on an [`AudioChannel`]: voicemail (greeting, beep,
//! recording into the [`Mailbox`]) and announcement (play, then hang up). Echo works on
//! packets and lives with the RTP code.

use std::path::Path;
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
    /// The greeting, 8 kHz linear.
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

/// Reads a WAV file (PCM 16-bit, mono or stereo, 8, 16 or 48 kHz) as 8 kHz mono.
pub fn load_wav(path: &Path) -> Result<Vec<i16>, String> {
    let fail = |why: String| format!("{}: {why}", path.display());
    let mut reader = hound::WavReader::open(path).map_err(|error| fail(error.to_string()))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(fail("only 16-bit PCM WAV is supported".into()));
    }
    let factor = match spec.sample_rate {
        8000 => 1,
        16000 => 2,
        48000 => 6,
        other => return Err(fail(format!("sample rate {other} Hz: use 8, 16 or 48 kHz"))),
    };
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>().map_err(|e| fail(e.to_string()))?;
    // Mix to mono, then average each group of `factor` samples (a crude low-pass before decimation).
    let mono: Vec<i32> = samples
        .chunks(channels)
        .map(|frame| frame.iter().map(|s| i32::from(*s)).sum::<i32>() / channels as i32)
        .collect();
    Ok(mono.chunks(factor).map(|group| (group.iter().sum::<i32>() / group.len() as i32) as i16).collect())
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

/// Plays `audio`, then ends.
pub async fn announcement(channel: &mut AudioChannel, audio: &[i16], stop: &CancellationToken) -> AppEnd {
    match channel.play(audio, stop).await {
        true => AppEnd::Done,
        false => AppEnd::CallerLeft,
    }
}

/// Greeting, beep, then a recording until the caller hangs up, presses `#`, stays silent, or
/// reaches the maximum length; the message is stored whichever way it ends.
pub async fn voicemail(
    channel: &mut AudioChannel,
    settings: &VoicemailSettings,
    meta: MessageMeta,
    timeout: Duration,
    stop: &CancellationToken,
) -> (AppEnd, Option<MessageMeta>) {
    if !channel.play(&settings.greeting, stop).await || !channel.play(&beep(), stop).await {
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
    let mut silent_for = Duration::ZERO;
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
                let length = Duration::from_millis(samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE));
                silent_for = if loudness(&samples) < SILENCE { silent_for + length } else { Duration::ZERO };
                if silent_for >= settings.silence || recording.duration() >= settings.max_length {
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
