//! Webhooks: an HTTP POST of a JSON event to a URL the operator configured, signed with
//! HMAC-SHA256 over the exact body (`X-Ringer-Signature: sha256=<hex>`) so that the receiver
//! can tell it came from ringer. Tried again after a transport error, 429 or 5xx; any other
//! answer is final.

use std::time::Duration;

use registrar::auth::Secret;
use registrar::sms::Retry;
use ring::hmac;
use tracing::{info, warn};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Ringer-Signature";

/// Why a webhook could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("webhook {url}: {reason}")]
pub struct WebhookError {
    url: String,
    reason: String,
}

/// One webhook URL and its signing secret.
#[derive(Clone)]
pub struct Webhook {
    http: reqwest::Client,
    url: reqwest::Url,
    key: hmac::Key,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url.as_str()).finish_non_exhaustive()
    }
}

/// The signature of `body` with `key`, as the header carries it.
fn sign(key: &hmac::Key, body: &[u8]) -> String {
    let tag = hmac::sign(key, body);
    let hex: String = tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

impl Webhook {
    /// Posts to `url` (http or https), signing with `secret`; each request bounded by `timeout`.
    pub fn new(url: &str, secret: &Secret, timeout: Duration) -> Result<Self, WebhookError> {
        let error = |reason: String| WebhookError { url: url.to_owned(), reason };
        let parsed = reqwest::Url::parse(url).map_err(|e| error(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(error("not an http or https URL".into()));
        }
        tls::install_crypto_provider();
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| error(e.to_string()))?;
        Ok(Self { http, url: parsed, key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()) })
    }

    /// Posts `event`, trying again after a transport error, 429 or 5xx as `retry` allows;
    /// true once it is taken.
    pub async fn post(&self, event: &serde_json::Value, retry: Retry) -> bool {
        let body = event.to_string();
        let signature = sign(&self.key, body.as_bytes());
        for attempt in 1..=retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(retry.wait_before(attempt)).await;
            }
            let sent = self
                .http
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    info!(url = %self.url, attempt, "webhook taken");
                    return true;
                }
                Ok(response) if response.status().is_server_error() || response.status().as_u16() == 429 => {
                    warn!(url = %self.url, attempt, status = response.status().as_u16(), "webhook not taken yet; trying again");
                }
                Ok(response) => {
                    warn!(url = %self.url, status = response.status().as_u16(), "webhook refused; not sent again");
                    return false;
                }
                Err(error) => warn!(url = %self.url, attempt, %error, "webhook not delivered yet; trying again"),
            }
        }
        warn!(url = %self.url, attempts = retry.attempts, "webhook not delivered; giving up");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        assert_eq!(
            sign(&hmac::Key::new(hmac::HMAC_SHA256, b"Jefe"), b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
