//! Audio for the media tests: a 1 kHz PCMA tone to send, and a Goertzel check of what came back.

/// Energy at `frequency` relative to the whole 8 kHz signal's (Goertzel).
pub(crate) fn tone_share(samples: &[f64], frequency: f64) -> f64 {
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / 8000.0).cos();
    let (mut previous, mut before) = (0.0, 0.0);
    for sample in samples {
        let current = sample + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    let power = previous * previous + before * before - coefficient * previous * before;
    let total: f64 = samples.iter().map(|s| s * s).sum::<f64>() * samples.len() as f64 / 2.0;
    if total == 0.0 {
        0.0
    } else {
        power / total
    }
}

/// 20 ms of a 1 kHz tone, A-law.
pub(crate) fn pcma_tone_frame() -> Vec<u8> {
    ringer::media::apps::tone(1000.0, 20, 12000.0).iter().map(|s| ringer::media::g711::alaw_encode(*s)).collect()
}

/// Packet `n` of a PCMA tone stream from `ssrc` (payload type 8, 160 samples a packet).
pub(crate) fn pcma_tone_packet(n: u32, ssrc: u32) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type: 8,
            sequence_number: n as u16,
            timestamp: n * 160,
            ssrc,
            ..Default::default()
        },
        payload: pcma_tone_frame().into(),
    }
}
