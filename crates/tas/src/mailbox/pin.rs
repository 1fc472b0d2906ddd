//! Mailbox PINs, kept only as salted PBKDF2-HMAC-SHA256 hashes:
//! `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.

use std::num::NonZeroU32;

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// Enough to slow a stolen database's guessing, little beside a phone call's setup.
const ITERATIONS: u32 = 50_000;
const SCHEME: &str = "pbkdf2-sha256";

/// Why a PIN cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// A PIN is 4 to 8 digits.
    #[error("a PIN is 4 to 8 digits")]
    Shape,
    /// The system's random source failed.
    #[error("no random salt available")]
    Random,
}

/// Whether `pin` has a PIN's shape: 4 to 8 digits.
pub fn is_valid(pin: &str) -> bool {
    (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

/// The hash to store for `pin`.
pub fn hash(pin: &str) -> Result<String, PinError> {
    if !is_valid(pin) {
        return Err(PinError::Shape);
    }
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| PinError::Random)?;
    let mut out = [0u8; 32];
    let iterations = NonZeroU32::new(ITERATIONS).ok_or(PinError::Random)?;
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, pin.as_bytes(), &mut out);
    Ok(format!("{SCHEME}${ITERATIONS}${}${}", hex(&salt), hex(&out)))
}

/// Whether `pin` matches `stored` (a hash from [`hash`]); a stored value of another shape
/// matches nothing.
pub fn verify(pin: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(expected), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(iterations), Some(salt), Some(expected)) =
        (iterations.parse().ok().and_then(NonZeroU32::new), unhex(salt), unhex(expected))
    else {
        return false;
    };
    pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, pin.as_bytes(), &expected).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_verifies_against_its_hash_only() {
        let stored = hash("4711").unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$50000$") && !stored.contains("4711$"), "{stored}");
        assert!(verify("4711", &stored));
        assert!(!verify("4712", &stored));
        assert_ne!(hash("4711").unwrap(), stored, "salted");
        for broken in ["", "4711", "pbkdf2-sha256$0$00$00", "pbkdf2-sha256$1$zz$00", "md5$1$00$00"] {
            assert!(!verify("4711", broken), "{broken}");
        }
    }

    #[test]
    fn pins_are_four_to_eight_digits() {
        for bad in ["", "123", "123456789", "12a4", "12 34"] {
            assert_eq!(hash(bad), Err(PinError::Shape), "{bad:?}");
        }
        assert!(is_valid("0000") && is_valid("12345678"));
    }
}
