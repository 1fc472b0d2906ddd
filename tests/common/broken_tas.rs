//! A broken TAS: answers every INVITE itself with `answer`, or relays it as leg 3 without
//! the Session-ID / without stripping the prefix.

use bytes::Bytes;
use ringer::sip::dialog::{DialogId, OfferAnswer};
use ringer::sip::ua::{PendingInvite, SessionHandler};

#[derive(Clone, Copy)]
pub(crate) enum Fault {
    /// 200 OK without an SDP answer.
    AnswerWithoutSdp,
    /// Leg 3 without leg 2's Session-ID.
    NoSessionId,
    /// Leg 3 to the Request-URI as it came, prefix and all.
    PrefixKept,
    /// Answers with a WebRTC echo itself, then refuses every re-INVITE.
    RefusesReoffers,
    /// Sends RTP to the offered candidate before anything else, then answers with an echo.
    MediaBeforeDtls,
}

pub(crate) struct BrokenTas {
    pub fault: Fault,
    pub core: String,
}

impl SessionHandler for BrokenTas {
    fn on_invite(&self, invite: PendingInvite) {
        let ua = invite.user_agent().clone();
        let (fault, core) = (self.fault, self.core.clone());
        tokio::spawn(async move {
            if let Fault::AnswerWithoutSdp = fault {
                invite.answer(Bytes::new());
                return;
            }
            if let Fault::MediaBeforeDtls = fault {
                let offer = ringer::sdp::SessionDescription::parse(&String::from_utf8_lossy(&invite.request().body))
                    .expect("the harness offers SDP");
                if let Some(candidate) = ringer::conformance::relay::first_candidate(&offer) {
                    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("socket");
                    // RTP version 2, PCMA: plain audio, no keys yet.
                    let packet = [0x80u8, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0xd5, 0xd5, 0xd5, 0xd5];
                    for _ in 0..5 {
                        let _ = socket.send_to(&packet, candidate).await;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            if matches!(fault, Fault::RefusesReoffers | Fault::MediaBeforeDtls) {
                let offer = ringer::sdp::SessionDescription::parse(&String::from_utf8_lossy(&invite.request().body))
                    .expect("the harness offers SDP");
                let options = ringer::media::webrtc::WebRtcOptions::on([127, 0, 0, 1].into());
                let Ok(answered) = ringer::media::webrtc::answer_echo(&offer, &options).await else { return };
                if let Some(call) = invite.answer(Bytes::from(answered.sdp.to_string())) {
                    call.ended().await;
                }
                answered.session.close().await;
                return;
            }
            let request = invite.request();
            let mut uri = request.uri.clone();
            if let (Fault::NoSessionId, ringer::sip::message::Uri::Sip(sip)) = (fault, &mut uri) {
                // Strip the two-digit prefix as a TAS should; only the Session-ID is missing.
                if let Some(user) = sip.user.as_mut() {
                    *user = format!("+{}", &user[3..]);
                }
            }
            let core = ringer::sip::message::Uri::parse(&core).expect("core URI");
            if let ringer::sip::message::Uri::Sip(sip) = &mut uri {
                let core = core.as_sip().expect("sip");
                sip.host = core.host.clone();
                sip.port = core.port;
            }
            let carried: &[&str] = match fault {
                Fault::NoSessionId => &["P-Asserted-Identity"],
                _ => &["P-Asserted-Identity", "Session-ID"],
            };
            let spec = ringer::sip::b2bua::onward(&invite, uri, carried);
            let Ok(link) = ua.outbound().link_to(&core).await else { return };
            let Ok(leg) = ua.invite(spec, link) else { return };
            if let ringer::sip::b2bua::LegOutcome::Answered(call, response) =
                ringer::sip::b2bua::ring(&invite, leg, None).await
            {
                if let Some(incoming) = invite.answer(response.body.clone()) {
                    ringer::sip::b2bua::hold(incoming, call).await;
                }
            }
        });
    }

    fn on_offer(&self, _dialog: &DialogId, _offer: &Bytes) -> OfferAnswer {
        OfferAnswer::NotAcceptable("broken".into())
    }
}
