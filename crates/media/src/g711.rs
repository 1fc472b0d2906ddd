//! G.711 (ITU-T) A-law and µ-law: 16-bit linear PCM to and from one byte a sample.

/// Encodes one linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let sign = if sample >= 0 { 0x80 } else { 0x00 };
    // A-law works on 13 bits of magnitude.
    let mut magnitude = (i32::from(sample).unsigned_abs() >> 3).min(0x0FFF) as u16;
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let mut exponent = 1u8;
        while magnitude >= 64 && exponent < 7 {
            magnitude >>= 1;
            exponent += 1;
        }
        (exponent << 4) | ((magnitude >> 1) as u8 & 0x0F)
    };
    (sign | code) ^ 0x55
}

/// Decodes one A-law byte to a linear sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let byte = byte ^ 0x55;
    let exponent = (byte >> 4) & 0x07;
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        _ => ((mantissa << 4) + 0x108) << (exponent - 1),
    };
    (if byte & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Encodes one linear sample as µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let sign = if sample < 0 { 0x80 } else { 0x00 };
    let magnitude = (i32::from(sample).abs().min(ULAW_CLIP)) + ULAW_BIAS;
    let exponent = (7 - (magnitude.leading_zeros() as i32 - 17).clamp(0, 7)) as u8;
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Decodes one µ-law byte to a linear sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    let byte = !byte;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if byte & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_stay_within_the_step_size() {
        for sample in (-32768i32..=32767).step_by(7) {
            let sample = sample as i16;
            let error = |decoded: i16| (i32::from(decoded) - i32::from(sample)).abs();
            // The quantisation step grows with the magnitude: about 1/16 of it, at least 16.
            let allowed = (i32::from(sample).abs() / 16).max(16) + 8;
            assert!(error(alaw_decode(alaw_encode(sample))) <= allowed, "A-law {sample}");
            assert!(error(ulaw_decode(ulaw_encode(sample))) <= allowed * 2, "µ-law {sample}");
        }
        // Known code points: silence and the extremes.
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
    }
}
