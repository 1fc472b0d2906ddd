//! The audio codecs ringer speaks (G.711 A-law and µ-law, Opus) and their encoders and
//! decoders. Apps work on 8 kHz mono linear audio whatever the codec: Opus is encoded from and
//! decoded to 8 kHz (a voice mailbox keeps narrowband audio), while its RTP clock stays at 48 kHz
//! (RFC 7587).

use std::fmt;

use super::g711;

/// Samples in one 20 ms frame at the apps' 8 kHz.
pub const FRAME: usize = 160;

/// The apps' sample rate.
pub const SAMPLE_RATE: u32 = 8000;

/// An audio codec ringer can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Codec {
    /// G.711 A-law.
    Pcma,
    /// G.711 µ-law.
    Pcmu,
    /// Opus (RFC 6716, RTP payload RFC 7587).
    Opus,
}

impl Codec {
    /// Every codec, in ringer's default order of preference.
    pub const ALL: [Codec; 3] = [Codec::Pcma, Codec::Pcmu, Codec::Opus];

    /// The encoding name in `a=rtpmap` (compared without regard to case).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcma => "PCMA",
            Codec::Pcmu => "PCMU",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcma | Codec::Pcmu => 8000,
            Codec::Opus => 48000,
        }
    }

    /// The channel count in `a=rtpmap` (Opus is always signalled as 2, RFC 7587 §7).
    pub fn channels(self) -> u16 {
        match self {
            Codec::Pcma | Codec::Pcmu => 1,
            Codec::Opus => 2,
        }
    }

    /// The static payload type (RFC 3551), if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcma => Some(8),
            Codec::Pcmu => Some(0),
            Codec::Opus => None,
        }
    }

    /// Whether an `a=rtpmap` entry (`name`, `rate`) is this codec.
    pub fn matches(self, name: &str, rate: u32) -> bool {
        name.eq_ignore_ascii_case(self.name()) && rate == self.clock_rate()
    }

    /// The encoder of 8 kHz linear audio into this codec's payloads.
    pub fn encoder(self) -> Result<Encoder, CodecError> {
        Ok(match self {
            Codec::Pcma => Encoder::Alaw,
            Codec::Pcmu => Encoder::Ulaw,
            Codec::Opus => {
                let mut opus = opus_rs::OpusEncoder::new(SAMPLE_RATE as i32, 1, opus_rs::Application::Voip)
                    .map_err(CodecError::Opus)?;
                opus.bitrate_bps = 16_000;
                Encoder::Opus(Box::new(opus))
            }
        })
    }

    /// The decoder of this codec's payloads into 8 kHz linear audio.
    pub fn decoder(self) -> Result<Decoder, CodecError> {
        Ok(match self {
            Codec::Pcma => Decoder::Alaw,
            Codec::Pcmu => Decoder::Ulaw,
            Codec::Opus => {
                Decoder::Opus(Box::new(opus_rs::OpusDecoder::new(SAMPLE_RATE as i32, 1).map_err(CodecError::Opus)?))
            }
        })
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec that would not start or a payload that would not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The Opus codec refused.
    #[error("Opus: {0}")]
    Opus(&'static str),
    /// The container around the codec's packets could not be written.
    #[error("Ogg: {0}")]
    Container(String),
}

/// Turns 8 kHz linear frames into RTP payloads.
pub enum Encoder {
    /// G.711 A-law.
    Alaw,
    /// G.711 µ-law.
    Ulaw,
    /// Opus, with its state.
    Opus(Box<opus_rs::OpusEncoder>),
}

impl Encoder {
    /// One payload for `samples` (a 20 ms frame for Opus: shorter frames are padded).
    pub fn encode(&mut self, samples: &[i16]) -> Result<Vec<u8>, CodecError> {
        match self {
            Encoder::Alaw => Ok(samples.iter().map(|s| g711::alaw_encode(*s)).collect()),
            Encoder::Ulaw => Ok(samples.iter().map(|s| g711::ulaw_encode(*s)).collect()),
            Encoder::Opus(opus) => {
                let mut frame = [0i16; FRAME];
                let length = samples.len().min(FRAME);
                frame[..length].copy_from_slice(&samples[..length]);
                let mut out = [0u8; 400];
                let written = opus.encode_i16(&frame, FRAME, &mut out).map_err(CodecError::Opus)?;
                Ok(out[..written].to_vec())
            }
        }
    }

    /// RTP timestamp ticks for a frame of `samples` 8 kHz samples.
    pub fn ticks(&self, samples: usize) -> u32 {
        match self {
            Encoder::Opus(_) => (samples * 6) as u32,
            _ => samples as u32,
        }
    }
}

/// Turns RTP payloads into 8 kHz linear audio.
pub enum Decoder {
    /// G.711 A-law.
    Alaw,
    /// G.711 µ-law.
    Ulaw,
    /// Opus, with its state.
    Opus(Box<opus_rs::OpusDecoder>),
}

/// The longest Opus packet (120 ms) at 8 kHz.
const OPUS_MAX_SAMPLES: usize = 960;

impl Decoder {
    /// The audio in `payload`.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, CodecError> {
        match self {
            Decoder::Alaw => Ok(payload.iter().map(|b| g711::alaw_decode(*b)).collect()),
            Decoder::Ulaw => Ok(payload.iter().map(|b| g711::ulaw_decode(*b)).collect()),
            Decoder::Opus(opus) => {
                let mut pcm = [0f32; OPUS_MAX_SAMPLES];
                let decoded = opus.decode(payload, OPUS_MAX_SAMPLES, &mut pcm).map_err(CodecError::Opus)?;
                Ok(pcm[..decoded.min(OPUS_MAX_SAMPLES)]
                    .iter()
                    .map(|s| (s * 32768.0).clamp(-32768.0, 32767.0) as i16)
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frequency: f64, count: usize) -> Vec<i16> {
        (0..count)
            .map(|n| (10000.0 * (2.0 * std::f64::consts::PI * frequency * n as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    fn correlation(a: &[i16], b: &[i16]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let norm = |v: &[i16]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn every_codec_carries_a_tone_through() {
        let input = tone(440.0, FRAME * 25);
        for codec in Codec::ALL {
            let (mut encoder, mut decoder) = (codec.encoder().unwrap(), codec.decoder().unwrap());
            let mut output = Vec::new();
            for frame in input.chunks(FRAME) {
                let payload = encoder.encode(frame).unwrap();
                output.extend(decoder.decode(&payload).unwrap());
            }
            assert_eq!(output.len(), input.len(), "{codec}");
            // Opus delays its output by a few milliseconds: find the best alignment.
            let best = (0..80)
                .map(|delay| correlation(&input[..input.len() - 80], &output[delay..input.len() - 80 + delay]))
                .fold(f64::MIN, f64::max);
            assert!(best > 0.9, "{codec}: correlation {best}");
        }
    }

    #[test]
    fn rtpmap_entries_match_by_name_and_clock_rate() {
        assert!(Codec::Opus.matches("OPUS", 48000));
        assert!(!Codec::Opus.matches("opus", 8000));
        assert!(Codec::Pcma.matches("pcma", 8000));
        assert_eq!(Codec::Opus.encoder().unwrap().ticks(FRAME), 960);
        assert_eq!(Codec::Pcmu.encoder().unwrap().ticks(FRAME), 160);
    }

    #[test]
    fn a_garbage_opus_payload_is_an_error_not_a_panic() {
        let mut decoder = Codec::Opus.decoder().unwrap();
        let mut seed = 0x2545_f491_u32;
        for length in 0..300 {
            // A cheap xorshift: the same bytes every run.
            let payload: Vec<u8> = (0..length % 97)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            if let Ok(samples) = decoder.decode(&payload) {
                assert!(samples.len() <= OPUS_MAX_SAMPLES, "{length}: {} samples", samples.len());
            }
        }
    }
}
