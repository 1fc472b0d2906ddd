//! A client of the operator's SmsService (`wgtwo.sms.v1`): texts to subscribers, such as
//! "a new voicemail message is waiting", over the same connection and OAuth client as the
//! registrations (the client needs scope `sms.text:send_to_subscriber` beside its own).
//! A temporary failure (`SEND_STATUS_ERROR`, an unreachable core) is tried again with
//! backoff; a refusal (`SEND_STATUS_REJECT`) is not, as the API reference asks.

use std::time::Duration;

use tonic::transport::Channel;
use tracing::{info, warn};

use crate::client::{ClientError, CoreConnection};
use domain::proto::duration_to_wire;
use domain::proto::sms::v1::send_message_response::SendStatus;
use domain::proto::sms::v1::sms_service_client::SmsServiceClient;
use domain::proto::sms::v1::{SendMessageResponse, SendTextToSubscriberRequest};
use domain::types::Msisdn;

/// A text for a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The subscriber.
    pub to: Msisdn,
    /// The sender shown (pre-approved by the operator).
    pub from: String,
    /// The text, 1 to 2000 characters.
    pub content: String,
    /// How long the network may try to deliver it; `None`: the maximum, 7 days.
    pub delivery_deadline: Option<Duration>,
}

/// How often and how patiently a text is tried again after temporary failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; doubled for each one after, up to ten times this.
    pub first_wait: Duration,
}

impl Retry {
    /// The wait before attempt `attempt` (the second is 2): `first_wait`, doubled for each
    /// attempt after, up to ten times it.
    pub fn wait_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(4);
        (self.first_wait * 2u32.pow(doublings)).min(self.first_wait * 10)
    }
}

/// What became of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The core accepted it (not yet delivered): its id and how many SMS it takes.
    Accepted {
        /// The core's message id.
        message_id: String,
        /// SMS parts.
        fragments: u32,
    },
    /// The core refused it (policy, rights or content): not tried again.
    Rejected(String),
    /// Every attempt failed for a reason that may pass; the last one's.
    GaveUp(String),
}

impl Delivery {
    /// `accepted`, `refused` or `failed`, as metrics label it.
    pub fn label(&self) -> &'static str {
        match self {
            Delivery::Accepted { .. } => "accepted",
            Delivery::Rejected(_) => "refused",
            Delivery::GaveUp(_) => "failed",
        }
    }
}

/// A client of SmsService.
#[derive(Debug, Clone)]
pub struct SmsClient {
    grpc: SmsServiceClient<Channel>,
    core: CoreConnection,
}

impl SmsClient {
    /// A client over `core`, the connection the registrations use.
    pub fn over(core: CoreConnection) -> Self {
        Self { grpc: SmsServiceClient::new(core.channel()), core }
    }

    /// Sends `text` once.
    pub async fn send(&self, text: &Text) -> Result<SendMessageResponse, ClientError> {
        let message = SendTextToSubscriberRequest {
            content: text.content.clone(),
            to_subscriber: text.to.as_str().to_owned(),
            from_address: text.from.clone(),
            delivery_deadline: text.delivery_deadline.map(duration_to_wire),
        };
        let started = std::time::Instant::now();
        let result = self
            .core
            .with_token(
                |request| {
                    let mut grpc = self.grpc.clone();
                    async move { grpc.send_text_to_subscriber(request).await }
                },
                message,
            )
            .await;
        crate::client::count_core_call("SendTextToSubscriber", result.as_ref().err(), started);
        result
    }

    /// Sends `text`, trying again after temporary failures as `retry` allows.
    pub async fn deliver(&self, text: &Text, retry: Retry) -> Delivery {
        let mut last = String::new();
        for attempt in 1..=retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(retry.wait_before(attempt)).await;
            }
            match self.send(text).await {
                Ok(response) => match SendStatus::try_from(response.status) {
                    Ok(SendStatus::Ok) => {
                        info!(to = %text.to, message_id = %response.message_id, attempt, "text accepted");
                        return Delivery::Accepted {
                            message_id: response.message_id,
                            fragments: response.num_fragments,
                        };
                    }
                    Ok(SendStatus::Reject) => {
                        warn!(to = %text.to, description = %response.description, "text rejected; not sent again");
                        return Delivery::Rejected(response.description);
                    }
                    // ERROR, and a status this build does not know: temporary.
                    _ => last = format!("SEND_STATUS {}: {}", response.status, response.description),
                },
                Err(error) if error.is_transient() => last = error.to_string(),
                Err(error) => {
                    warn!(to = %text.to, %error, "text not sent; not tried again");
                    return Delivery::GaveUp(error.to_string());
                }
            }
            warn!(to = %text.to, attempt, reason = %last, "text not sent yet; trying again");
        }
        warn!(to = %text.to, attempts = retry.attempts, reason = %last, "text not sent; giving up");
        Delivery::GaveUp(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_ten_times_the_first() {
        let retry = Retry { attempts: 8, first_wait: Duration::from_secs(1) };
        let waits: Vec<u64> = (2..=8).map(|attempt| retry.wait_before(attempt).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
    }
}
