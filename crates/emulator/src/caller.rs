//! A handset calling in through the emulated SBC's access side, with the media the operator's
//! SBC puts in front of a TAS: a WebRTC-style offer ([`OfferingPeer`]), audio from a tone or a
//! file, and a recording of what comes back. `ringer dial` and the lab's Alice use it; so can
//! a test of any TAS behind the emulated core.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::numbers::Called;
use domain::types::Msisdn;
use media::peer::{OfferingPeer, PeerOptions};
use media::webrtc::WebRtcError;
use sip::call::CallHandle;
use sip::config::UaConfig;
use sip::dialog::{DialogId, OfferAnswer};
use sip::endpoint::{self, Endpoint, EndpointConfig};
use sip::message::header::NameAddr;
use sip::message::{StatusCode, Uri};
use sip::transport::policy::PeerPolicy;
use sip::transport::stream::StreamLimits;
use sip::ua::{PendingInvite, SessionHandler};
use sip::uac::{InviteSpec, OutgoingCall, Progress};

/// Why a call with media could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// A number does not make a SIP URI.
    #[error("{text} is not a SIP address: {source}")]
    Address {
        /// The address tried.
        text: String,
        /// Why it does not parse.
        #[source]
        source: sip::message::grammar::BadHeader,
    },
    /// The Request-URI made from the number does not parse.
    #[error("{text} is not a SIP URI: {source}")]
    RequestUri {
        /// The URI tried.
        text: String,
        /// Why it does not parse.
        #[source]
        source: sip::message::uri::BadUri,
    },
    /// The caller has no UDP socket to send from.
    #[error("the caller has no UDP socket")]
    NoSocket,
    /// The INVITE could not be sent.
    #[error("INVITE not sent: {0}")]
    Invite(#[from] sip::client::RequestError),
    /// The ACK could not be sent.
    #[error("ACK not sent: {0}")]
    Ack(#[source] sip::dialog::DialogError),
    /// The call was refused.
    #[error("refused: {status} {reason}")]
    Refused {
        /// The final status.
        status: StatusCode,
        /// Its reason phrase.
        reason: String,
    },
    /// No final answer came.
    #[error("no answer (timeout)")]
    NoAnswer,
    /// The offer could not be made or ICE and DTLS did not complete.
    #[error("media: {0}")]
    Media(#[from] WebRtcError),
    /// The 2xx carried no SDP answer that can be read.
    #[error("the answer's SDP: {0}")]
    Answer(#[from] sdp::SdpError),
}

/// The caller's answer to calls made to it: busy (it only places calls).
struct TakesNoCalls;

impl SessionHandler for TakesNoCalls {
    fn on_invite(&self, invite: PendingInvite) {
        invite.reject(StatusCode::BUSY_HERE, None, Some("this handset only places calls"));
    }

    fn on_offer(&self, _dialog: &DialogId, _offer: &Bytes) -> OfferAnswer {
        OfferAnswer::NotAcceptable("this handset only places calls".into())
    }
}

/// A SIP user agent on UDP that calls through the SBC's access side.
pub struct Caller {
    endpoint: Endpoint,
}

/// A call answered, its media up.
pub struct ConnectedCall {
    /// The dialog.
    pub call: CallHandle,
    /// The media peer: play, send DTMF, listen.
    pub peer: OfferingPeer,
    /// The answer's SDP.
    pub answer: sdp::SessionDescription,
    /// From INVITE to ICE and DTLS complete.
    pub setup: Duration,
}

impl Caller {
    /// A caller on a free UDP port of `bind`; `name` goes into its User-Agent.
    pub async fn start(bind: IpAddr, name: &str) -> std::io::Result<Caller> {
        let endpoint = endpoint::start(
            EndpointConfig {
                hep: None,
                tls: None,
                tcp: None,
                udp: Some(SocketAddr::new(bind, 0)),
                policy: PeerPolicy::default(),
                limits: StreamLimits::default(),
                ua: UaConfig::new(bind.to_string(), name),
                outbound: sip::outbound::OutboundSettings { tls: None, core: None, dns_server: None },
            },
            // Nobody calls a caller: anything that comes in is busy.
            Arc::new(TakesNoCalls),
        )
        .await?;
        Ok(Caller { endpoint })
    }

    /// The endpoint under the caller (its dialogs and transactions).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends an INVITE from `from` to `to` (a number or a service code) at `access` with
    /// `sdp`, as a handset would.
    pub fn invite(
        &self,
        access: SocketAddr,
        from: &Msisdn,
        to: impl Into<Called>,
        sdp: Bytes,
    ) -> Result<OutgoingCall, DialError> {
        let parse = |text: String| NameAddr::parse(&text).map_err(|source| DialError::Address { text, source });
        let to = match to.into() {
            Called::Number(number) => number.to_string(),
            Called::Code(code) => code.escaped(),
        };
        let request_uri = format!("sip:{to}@{access};user=phone");
        let spec = InviteSpec {
            uri: Uri::parse(&request_uri).map_err(|source| DialError::RequestUri { text: request_uri, source })?,
            from: parse(format!("<sip:{from}@handset.ringer.invalid;user=phone>"))?,
            to: parse(format!("<sip:{to}@core.ringer.invalid;user=phone>"))?,
            max_forwards: 70,
            headers: Vec::new(),
            body: sdp,
            offer_100rel: true,
        };
        let link = self.endpoint.udp_link(access).ok_or(DialError::NoSocket)?;
        Ok(self.endpoint.user_agent().invite(spec, link)?)
    }

    /// Calls `to` with a WebRTC-style offer shaped by `media`, and waits for the answer and for
    /// ICE and DTLS (each up to `timeout`).
    pub async fn dial(
        &self,
        access: SocketAddr,
        from: &Msisdn,
        to: impl Into<Called>,
        media: PeerOptions,
        timeout: Duration,
    ) -> Result<ConnectedCall, DialError> {
        let started = tokio::time::Instant::now();
        let (mut peer, offer) = OfferingPeer::offer(media).await?;
        let mut outgoing = self.invite(access, from, to, Bytes::from(offer.to_string()))?;
        let answered = tokio::time::timeout(timeout, async {
            loop {
                match outgoing.next().await {
                    Progress::Provisional(_) => continue,
                    Progress::Answered(call, response) => return Ok((call, response)),
                    Progress::Failed(response) => {
                        return Err(DialError::Refused { status: response.status, reason: response.reason })
                    }
                    Progress::Cancelled | Progress::TimedOut => return Err(DialError::NoAnswer),
                }
            }
        })
        .await;
        let (call, response) = match answered {
            Ok(answered) => answered?,
            Err(_) => {
                outgoing.cancel();
                peer.close().await;
                return Err(DialError::NoAnswer);
            }
        };
        if let Err(error) = call.ack(None) {
            peer.close().await;
            return Err(DialError::Ack(error));
        }
        let accepted = match sdp::SessionDescription::parse(&String::from_utf8_lossy(&response.body)) {
            Ok(answer) => peer.accept(&answer, timeout).await.map(|()| answer).map_err(DialError::from),
            Err(error) => Err(error.into()),
        };
        let answer = match accepted {
            Ok(answer) => answer,
            Err(error) => {
                let _ = call.hangup().await;
                peer.close().await;
                return Err(error);
            }
        };
        Ok(ConnectedCall { call, peer, answer, setup: started.elapsed() })
    }

    /// Stops the caller's endpoint.
    pub fn shutdown(self) {
        self.endpoint.shutdown();
    }
}
