//! TLS set-up shared by every module that opens or accepts TLS connections.

use std::sync::Once;

/// Makes `ring` the process-wide rustls crypto provider.
///
/// `webrtc` pulls in `ring` and other crates may enable `aws-lc-rs`; with two providers compiled in,
/// rustls refuses to guess and panics at the first config. Every entry point calls this first.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub mod devcert;
