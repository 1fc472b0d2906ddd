//! The emulated core's `SmsService` over real gRPC (HTTP/2), as a TAS's notifications will
//! meet it: texts checked and kept, answered OK, ERROR or REJECT as the test asks, refused
//! without the scope or with a bad number or text. The wire bytes are checked against the
//! operator's reference in crates/domain (`sms_wire_bytes_use_the_documented_numbers`).

mod common;

use std::time::Duration;

use common::*;
use ringer::config::core::{AuthMode, StaticToken, TokenKind};
use ringer::core::sms::{SentText, SmsAnswer, SEND_TO_SUBSCRIBER_SCOPE};
use ringer::proto::sms::v1::send_message_response::SendStatus;
use ringer::proto::sms::v1::sms_service_client::SmsServiceClient;
use ringer::proto::sms::v1::{SendMessageResponse, SendTextToSubscriberRequest};
use tonic::Code;

const SMS_TOKEN: &str = "sms-token";

/// The core with a client token allowed to send texts to subscribers.
async fn core() -> ringer::core::CoreHandle {
    let mut config = core_config(loopback_any_port(), AuthMode::Required, Duration::from_secs(3600));
    config.auth.tokens.push(StaticToken {
        token: SMS_TOKEN.into(),
        kind: TokenKind::Client,
        msisdn: None,
        scopes: vec![SEND_TO_SUBSCRIBER_SCOPE.into()],
    });
    ringer::core::start(&config).await.expect("core starts")
}

fn text(to: &str, content: &str) -> SendTextToSubscriberRequest {
    SendTextToSubscriberRequest {
        content: content.into(),
        to_subscriber: to.into(),
        from_address: "Voicemail".into(),
        delivery_deadline: Some(ringer::proto::duration_to_wire(Duration::from_secs(3600))),
    }
}

async fn send(
    core: &ringer::core::CoreHandle,
    token: &str,
    request: SendTextToSubscriberRequest,
) -> Result<SendMessageResponse, tonic::Status> {
    let mut client = SmsServiceClient::connect(core.endpoint()).await.expect("connects");
    let mut request = tonic::Request::new(request);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    client.send_text_to_subscriber(request).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn texts_to_subscribers_are_kept_and_answered_as_the_test_asks() {
    let core = core().await;
    let ok = send(&core, SMS_TOKEN, text("+4799990601", "1 new voicemail from +4711111111")).await.expect("sent");
    assert_eq!((SendStatus::try_from(ok.status), ok.num_fragments), (Ok(SendStatus::Ok), 1));
    assert!(!ok.message_id.is_empty());
    let long = send(&core, SMS_TOKEN, text("+4799990601", &"x".repeat(200))).await.expect("sent");
    assert_eq!(long.num_fragments, 2, "200 characters take two 153-character parts");

    core.sms().answer_with(SmsAnswer::Error);
    let error = send(&core, SMS_TOKEN, text("+4799990602", "try again")).await.expect("answered");
    assert_eq!((SendStatus::try_from(error.status), error.message_id.as_str()), (Ok(SendStatus::Error), ""));
    core.sms().answer_with(SmsAnswer::Reject);
    let reject = send(&core, SMS_TOKEN, text("+4799990603", "not allowed")).await.expect("answered");
    assert_eq!(SendStatus::try_from(reject.status), Ok(SendStatus::Reject));

    let sent = core.sms().sent();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(
        sent[0],
        SentText {
            to: msisdn("+4799990601"),
            from: "Voicemail".into(),
            content: "1 new voicemail from +4711111111".into(),
            delivery_deadline: Some(Duration::from_secs(3600)),
            status: SmsAnswer::Ok,
        }
    );
    let statuses: Vec<SmsAnswer> = sent.iter().map(|text| text.status).collect();
    assert_eq!(statuses, [SmsAnswer::Ok, SmsAnswer::Ok, SmsAnswer::Error, SmsAnswer::Reject]);
}

#[tokio::test]
async fn texts_without_the_scope_or_with_bad_fields_are_refused() {
    let core = core().await;
    // CLIENT_TOKEN carries call.routing:write only.
    let denied = send(&core, CLIENT_TOKEN, text("+4799990601", "hi")).await.expect_err("no scope");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let unknown = send(&core, "no-such-token", text("+4799990601", "hi")).await.expect_err("unknown token");
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    for (to, content, why) in [
        ("4799990601", "hi", "a number without +"),
        ("+4799990601", "", "an empty text"),
        ("+4799990601", &"x".repeat(2001), "a text over 2000 characters"),
    ] {
        let refused = send(&core, SMS_TOKEN, text(to, content)).await.expect_err(why);
        assert_eq!(refused.code(), Code::InvalidArgument, "{why}: {refused:?}");
    }
    let mut no_sender = text("+4799990601", "hi");
    no_sender.from_address = String::new();
    let refused = send(&core, SMS_TOKEN, no_sender).await.expect_err("no sender");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(core.sms().sent().is_empty(), "nothing refused is kept");
}
