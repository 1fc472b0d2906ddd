//! Simulated handsets: SIP user agents on the SBC's own loopback port that ring, answer, are
//! busy or unreachable as configured, and remember every INVITE they got, so the whole call
//! path runs and is checked with no outside party.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::info;

use crate::config::{HandsetConfig, HandsetMode};
use crate::numbers::addressed_number;
use domain::types::Msisdn;
use sip::dialog::{DialogId, OfferAnswer};
use sip::message::StatusCode;
use sip::ua::{PendingInvite, SessionHandler};

/// An INVITE a handset received (what reached "Bob").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedCall {
    /// The handset's number.
    pub number: Msisdn,
    /// The Request-URI as received.
    pub request_uri: String,
    /// From.
    pub from: String,
    /// History-Info values, in order.
    pub history_info: Vec<String>,
    /// Diversion values, in order.
    pub diversion: Vec<String>,
    /// What the handset answered.
    pub status: StatusCode,
}

/// The handsets and what they saw.
pub struct Handsets {
    config: HashMap<Msisdn, HandsetConfig>,
    received: Mutex<Vec<ReceivedCall>>,
    /// Bumped to have every answered handset hang up at once.
    hang_up: tokio::sync::watch::Sender<u64>,
    /// Modes set at run time, over the configured ones.
    modes: Mutex<HashMap<Msisdn, HandsetMode>>,
}

impl Handsets {
    /// Handsets as configured.
    pub fn new(handsets: &[HandsetConfig]) -> Self {
        Self {
            config: handsets.iter().map(|handset| (handset.number.clone(), handset.clone())).collect(),
            received: Mutex::new(Vec::new()),
            hang_up: tokio::sync::watch::Sender::new(0),
            modes: Mutex::new(HashMap::new()),
        }
    }

    /// From now on the handset of `number` behaves as `mode` (busy, not answering...).
    pub fn set_mode(&self, number: &Msisdn, mode: HandsetMode) {
        self.modes.lock().insert(number.clone(), mode);
    }

    /// The handset of `number` as it behaves now.
    fn current(&self, number: &Msisdn) -> Option<HandsetConfig> {
        let mut config = self.config.get(number)?.clone();
        if let Some(mode) = self.modes.lock().get(number) {
            config.mode = *mode;
        }
        Some(config)
    }

    /// Every handset in a call hangs up now (a BYE race with the caller, for the
    /// conformance harness).
    pub fn hang_up_all(&self) {
        self.hang_up.send_modify(|generation| *generation += 1);
    }

    /// Whether `number` is a simulated handset.
    pub fn has(&self, number: &Msisdn) -> bool {
        self.config.contains_key(number)
    }

    /// Every INVITE received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedCall> {
        self.received.lock().clone()
    }

    fn remember(&self, invite: &PendingInvite, number: &Msisdn, status: StatusCode) {
        let headers = &invite.request().headers;
        self.received.lock().push(ReceivedCall {
            number: number.clone(),
            request_uri: invite.request().uri.to_string(),
            from: headers.get("From").unwrap_or_default().to_owned(),
            history_info: headers.get_all("History-Info").map(str::to_owned).collect(),
            diversion: headers.get_all("Diversion").map(str::to_owned).collect(),
            status,
        });
    }
}

/// The handsets as the UA's handler.
pub struct HandsetHandler(pub Arc<Handsets>);

/// A handset's answer to a WebRTC-style offer (ICE, DTLS-SRTP): an echo of what it hears, so
/// that a caller hears its own audio come back across the whole call path. Other offers get
/// every stream declined.
async fn handset_media(offer: &Bytes) -> (Bytes, Option<media::webrtc::WebRtcSession>) {
    use media::webrtc::{answer_echo, WebRtcOptions};
    let Some(parsed) = parse_offer(offer) else { return (Bytes::new(), None) };
    if parsed.media.iter().any(|media| media.kind == "audio" && media.proto.contains("/SAVP")) {
        match answer_echo(&parsed, &WebRtcOptions::on(std::net::IpAddr::from([127, 0, 0, 1]))).await {
            Ok(answered) => return (Bytes::from(answered.sdp.to_string()), Some(answered.session)),
            Err(error) => info!(%error, "handset declines the WebRTC offer"),
        }
    }
    (handset_answer(&parsed), None)
}

/// The offer in `body`, when there is one that can be read.
fn parse_offer(body: &Bytes) -> Option<sdp::SessionDescription> {
    sdp::SessionDescription::parse(std::str::from_utf8(body).ok()?).ok()
}

/// An SDP answer with every offered stream declined (empty when nothing was offered).
fn handset_answer(offer: &sdp::SessionDescription) -> Bytes {
    let session = rand::random::<u32>() as u64;
    let answer = sdp::decline_all(offer, session, std::net::IpAddr::from([127, 0, 0, 1]));
    answer.map(|answer| Bytes::from(answer.to_string())).unwrap_or_default()
}

impl SessionHandler for HandsetHandler {
    fn on_invite(&self, invite: PendingInvite) {
        let handsets = self.0.clone();
        let number = addressed_number(&invite.request().uri);
        let Some((number, config)) = number.and_then(|n| handsets.current(&n).map(|c| (n, c))) else {
            invite.reject(StatusCode::NOT_FOUND, None, None);
            return;
        };
        tokio::spawn(async move {
            let status = match config.mode {
                HandsetMode::Busy => StatusCode::BUSY_HERE,
                HandsetMode::Unreachable => StatusCode::TEMPORARILY_UNAVAILABLE,
                HandsetMode::Answer => StatusCode::OK,
                HandsetMode::NoAnswer => StatusCode::REQUEST_TERMINATED,
            };
            handsets.remember(&invite, &number, status);
            info!(%number, mode = ?config.mode, "handset got a call");
            match config.mode {
                HandsetMode::Busy | HandsetMode::Unreachable => invite.reject(status, None, None),
                HandsetMode::NoAnswer => {
                    invite.provisional(StatusCode::RINGING, None);
                    invite.cancelled().await;
                }
                HandsetMode::Answer => {
                    invite.provisional(StatusCode::RINGING, None);
                    tokio::select! {
                        () = invite.cancelled() => return,
                        () = tokio::time::sleep(config.ring_time) => {}
                    }
                    let (answer, media) = handset_media(&invite.request().body).await;
                    let Some(call) = invite.answer(answer) else {
                        if let Some(media) = media {
                            media.close().await;
                        }
                        return;
                    };
                    let mut told = handsets.hang_up.subscribe();
                    let hang_up = async {
                        match config.hang_up_after {
                            Some(after) => {
                                tokio::select! {
                                    () = tokio::time::sleep(after) => {}
                                    _ = told.changed() => {}
                                }
                            }
                            None => {
                                let _ = told.changed().await;
                            }
                        }
                    };
                    tokio::pin!(hang_up);
                    // A WebRTC call answers new offers on its own connection, so media goes on.
                    let mut offers = media.as_ref().map(|_| call.offers());
                    loop {
                        let offer = async {
                            match offers.as_mut() {
                                Some(offers) => offers.recv().await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            _ = call.ended() => break,
                            () = &mut hang_up => {
                                let _ = call.hangup().await;
                                break;
                            }
                            Some(offer) = offer => {
                                let answer = match (parse_offer(&offer.sdp), media.as_ref()) {
                                    (None, _) => OfferAnswer::NotAcceptable("the offer is not SDP ringer can read".into()),
                                    (Some(parsed), Some(session)) => match session.reanswer(&parsed).await {
                                        Ok(sdp) => OfferAnswer::Accept(Bytes::from(sdp.to_string())),
                                        Err(error) => OfferAnswer::NotAcceptable(error.to_string()),
                                    },
                                    (Some(parsed), None) => OfferAnswer::Accept(handset_answer(&parsed)),
                                };
                                offer.answer(answer);
                            }
                        }
                    }
                    if let Some(media) = media {
                        media.close().await;
                    }
                }
            }
        });
    }

    fn on_offer(&self, _dialog: &DialogId, offer: &Bytes) -> OfferAnswer {
        match parse_offer(offer) {
            Some(offer) => OfferAnswer::Accept(handset_answer(&offer)),
            None => OfferAnswer::NotAcceptable("the offer is not SDP ringer can read".into()),
        }
    }
}
