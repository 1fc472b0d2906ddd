//! The operator's `SmsService` as the emulated core serves it: each text checked as the API
//! reference describes it (../shared/spec/sms-api.md), kept in an outbox a test can read, and
//! answered OK, or ERROR or REJECT when told to, so that a TAS's notifications can be tested
//! end to end, retries included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::auth::Authenticator;
pub use crate::config::SmsAnswer;
use domain::proto::duration_from_wire;
use domain::proto::sms::v1::send_message_response::SendStatus;
use domain::proto::sms::v1::sms_service_server::SmsService;
use domain::proto::sms::v1::{
    SendDataToSubscriberRequest, SendMessageResponse, SendTextFromSubscriberRequest, SendTextToSubscriberRequest,
};
use domain::types::Msisdn;

/// The scope `SendTextToSubscriber` needs.
pub const SEND_TO_SUBSCRIBER_SCOPE: &str = "sms.text:send_to_subscriber";

/// The longest text, in characters.
const MAX_CONTENT_CHARS: usize = 2000;

/// A text the core was asked to send, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentText {
    /// The subscriber it is for.
    pub to: Msisdn,
    /// The sender shown to the subscriber.
    pub from: String,
    /// The text.
    pub content: String,
    /// How long the network may try to deliver it; `None`: the maximum, 7 days.
    pub delivery_deadline: Option<Duration>,
    /// What the core answered.
    pub status: SmsAnswer,
}

/// The texts asked for, and the answer the next ones get.
#[derive(Debug, Default)]
pub struct Outbox {
    sent: Mutex<Vec<SentText>>,
    answer: Mutex<SmsAnswer>,
}

impl Outbox {
    /// An empty outbox answering `answer`.
    pub fn new(answer: SmsAnswer) -> Self {
        Self { sent: Mutex::new(Vec::new()), answer: Mutex::new(answer) }
    }

    /// Every text asked for so far, oldest first (refused ones included).
    pub fn sent(&self) -> Vec<SentText> {
        self.sent.lock().clone()
    }

    /// Answers the next texts with `answer`.
    pub fn answer_with(&self, answer: SmsAnswer) {
        *self.answer.lock() = answer;
    }
}

/// Serves `SmsService` over an [`Outbox`].
#[derive(Debug, Clone)]
pub struct SmsCore {
    auth: Arc<Authenticator>,
    outbox: Arc<Outbox>,
    ids: Arc<AtomicU64>,
}

impl SmsCore {
    /// A service checking callers with `auth` and keeping texts in `outbox`.
    pub fn new(auth: Arc<Authenticator>, outbox: Arc<Outbox>) -> Self {
        Self { auth, outbox, ids: Arc::new(AtomicU64::new(1)) }
    }

    /// The answer to a method the emulated core does not serve: the caller's token is
    /// checked for `scope` first, as the operator would, then UNIMPLEMENTED.
    fn not_served(&self, metadata: &tonic::metadata::MetadataMap, scope: &str) -> Status {
        match self.auth.authorize(metadata, scope) {
            Ok(_) => Status::unimplemented("the emulated core sends texts to subscribers only"),
            Err(refused) => refused,
        }
    }
}

/// How many SMS a text takes: 160 characters fit one, longer ones go in parts of 153 (GSM
/// 7-bit); outside the GSM alphabet, 70 and 67 (UCS-2).
fn fragments(content: &str) -> u32 {
    let chars = content.chars().count();
    let (single, part) = if content.chars().all(|c| (c.is_ascii() && !c.is_ascii_control()) || c == '\n') {
        (160, 153)
    } else {
        (70, 67)
    };
    let count = if chars <= single { 1 } else { chars.div_ceil(part) };
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl SmsService for SmsCore {
    async fn send_text_from_subscriber(
        &self,
        request: Request<SendTextFromSubscriberRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        Err(self.not_served(request.metadata(), "sms.text:send_from_subscriber"))
    }

    async fn send_text_to_subscriber(
        &self,
        request: Request<SendTextToSubscriberRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        self.auth.authorize(request.metadata(), SEND_TO_SUBSCRIBER_SCOPE)?;
        let request = request.into_inner();
        let chars = request.content.chars().count();
        if chars == 0 || chars > MAX_CONTENT_CHARS {
            return Err(Status::invalid_argument(format!(
                "content must be 1 to {MAX_CONTENT_CHARS} characters (got {chars})"
            )));
        }
        let to = Msisdn::parse(&request.to_subscriber).map_err(|error| Status::invalid_argument(error.to_string()))?;
        if request.from_address.trim().is_empty() {
            return Err(Status::invalid_argument("from_address is required"));
        }
        let delivery_deadline = duration_from_wire(request.delivery_deadline.as_ref());
        let answer = *self.outbox.answer.lock();
        let sent = SentText {
            to,
            from: request.from_address.clone(),
            content: request.content.clone(),
            delivery_deadline,
            status: answer,
        };
        info!(to = %sent.to, from = %sent.from, ?answer, "text to subscriber");
        self.outbox.sent.lock().push(sent);
        let response = match answer {
            SmsAnswer::Ok => SendMessageResponse {
                message_id: format!("sms-{}", self.ids.fetch_add(1, Ordering::Relaxed)),
                status: SendStatus::Ok as i32,
                description: String::new(),
                num_fragments: fragments(&request.content),
            },
            SmsAnswer::Error => SendMessageResponse {
                status: SendStatus::Error as i32,
                description: "temporary failure (emulated)".into(),
                ..SendMessageResponse::default()
            },
            SmsAnswer::Reject => SendMessageResponse {
                status: SendStatus::Reject as i32,
                description: "not allowed (emulated)".into(),
                ..SendMessageResponse::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn send_data_to_subscriber(
        &self,
        request: Request<SendDataToSubscriberRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        Err(self.not_served(request.metadata(), "sms.data:send_to_subscriber"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_non_gsm_texts_take_several_fragments() {
        assert_eq!(fragments(&"a".repeat(160)), 1);
        assert_eq!(fragments(&"a".repeat(161)), 2);
        assert_eq!(fragments(&"a".repeat(306)), 2);
        assert_eq!(fragments(&"å".repeat(70)), 1);
        assert_eq!(fragments(&"å".repeat(71)), 2);
    }
}
