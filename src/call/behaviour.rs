//! Carrying out a [`Behaviour`] on one call: answer, reject, or relay it back to the core as
//! leg 3 (loop, forward) through the B2BUA, and on busy, no answer or unreachable move on to
//! the configured next action.

use std::fmt;

use bytes::Bytes;
use tracing::{info, warn};

use crate::sip::b2bua::{self, LegOutcome};
use crate::sip::dialog::OfferAnswer;
use crate::sip::message::{reason_phrase, Uri};
use crate::sip::transport::Link;
use crate::sip::ua::{PendingInvite, UserAgent};
use crate::sip::uac::InviteSpec;
use crate::types::Msisdn;

use super::action::{Action, App, Behaviour};
use super::stats::CallStats;

/// The media an app runs on.
enum AppMedia {
    /// Plain RTP echoed packet by packet.
    PlainEcho(tokio::net::UdpSocket),
    /// WebRTC echoed by the stack.
    WebRtcEcho,
    /// Decoded audio in and out (voicemail, announcement).
    Channel(crate::media::channel::AudioChannel),
}

/// Media made ready for an answer (or early media).
struct Prepared {
    /// The SDP answer.
    sdp: String,
    /// What the app runs on.
    media: AppMedia,
    /// The codec agreed.
    codec: crate::media::codec::Codec,
    /// The session under it.
    session: MediaSession,
}

/// The media of an answered call, as far as answering new offers in it goes.
enum MediaSession {
    /// Plain RTP on `port`: a new offer keeps the port and the codec.
    Plain { agreed: crate::media::plain::Negotiated, advertise: std::net::IpAddr, port: u16, session: u64, version: u64 },
    /// A WebRTC connection, which answers new offers itself.
    WebRtc(crate::media::webrtc::WebRtcSession),
}

impl MediaSession {
    /// The answer to a new offer within the call.
    async fn reanswer(&mut self, offer: &Bytes) -> OfferAnswer {
        use crate::media::{plain, sdp::SessionDescription};
        let text = String::from_utf8_lossy(offer);
        match self {
            MediaSession::Plain { agreed, advertise, port, session, version } => {
                let parsed = match SessionDescription::parse(&text) {
                    Ok(parsed) => parsed,
                    Err(error) => return OfferAnswer::NotAcceptable(error.to_string()),
                };
                // The app's codec runs on: the new offer must still have it.
                match plain::negotiate(&parsed, &[agreed.codec]) {
                    Ok(renewed) => {
                        *version += 1;
                        *agreed = renewed;
                        OfferAnswer::Accept(Bytes::from(plain::answer(&parsed, agreed, *advertise, *port, *session, *version)))
                    }
                    Err(error) => OfferAnswer::NotAcceptable(format!("{error} (the call runs on {})", agreed.codec)),
                }
            }
            MediaSession::WebRtc(webrtc) => match webrtc.reanswer(&text).await {
                Ok(answer) => OfferAnswer::Accept(Bytes::from(answer)),
                Err(error) => OfferAnswer::NotAcceptable(error.to_string()),
            },
        }
    }

    /// Whether the media is up within `timeout`: ICE and DTLS for WebRTC, at once for plain RTP.
    async fn connected_within(&self, timeout: std::time::Duration) -> bool {
        match self {
            MediaSession::WebRtc(webrtc) => tokio::time::timeout(timeout, webrtc.connected()).await.unwrap_or(false),
            MediaSession::Plain { .. } => true,
        }
    }

    /// Resolves when a WebRTC connection fails; never for plain RTP.
    async fn failed(&self) {
        match self {
            MediaSession::WebRtc(webrtc) => webrtc.failed().await,
            MediaSession::Plain { .. } => std::future::pending().await,
        }
    }

    /// Ends the media.
    async fn close(self) {
        if let MediaSession::WebRtc(webrtc) = self {
            webrtc.close().await;
        }
    }
}

/// What a new voicemail message records of the call.
fn message_meta(info: &CallInfo, codec: &str) -> crate::media::mailbox::MessageMeta {
    let number = |n: &Option<Msisdn>| n.as_ref().map(|n| n.as_str().to_owned());
    let direction = info.direction.map(|d| d.to_string());
    crate::media::mailbox::MessageMeta::new(
        &number(&info.subscriber).unwrap_or_else(|| "unknown".into()),
        number(&info.caller).as_deref(),
        number(&info.callee).as_deref(),
        direction.as_deref(),
        codec,
    )
}

/// Why a call is forwarded: RFC 4458 cause values, RFC 5806 Diversion reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardCause {
    /// Call forwarding unconditional.
    Unconditional,
    /// Call forwarding on busy.
    Busy,
    /// Call forwarding on no reply.
    NoAnswer,
    /// Call forwarding when not reachable.
    Unreachable,
}

impl ForwardCause {
    /// The RFC 4458 `cause` (also the SIP status in History-Info's Reason).
    pub fn cause(self) -> u16 {
        match self {
            ForwardCause::Unconditional => 302,
            ForwardCause::Busy => 486,
            ForwardCause::NoAnswer => 408,
            ForwardCause::Unreachable => 503,
        }
    }

    /// The RFC 5806 Diversion `reason`.
    pub fn diversion_reason(self) -> &'static str {
        match self {
            ForwardCause::Unconditional => "unconditional",
            ForwardCause::Busy => "user-busy",
            ForwardCause::NoAnswer => "no-answer",
            ForwardCause::Unreachable => "unavailable",
        }
    }
}

/// What became of a call, for the log and the call records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The actions taken, in order (`loop`, then `answer voicemail` on no answer...).
    pub actions: Vec<String>,
    /// Leg 3 INVITEs sent.
    pub legs_placed: u32,
    /// The final status the core got on leg 2 (487 when it cancelled).
    pub status: u16,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.actions.join(", then "), self.status)
    }
}

/// How the TAS's own answers get media.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// The address written into SDP answers; unspecified: the address the INVITE came to.
    pub advertise: String,
    /// Where RTP sockets are opened.
    pub ports: crate::media::plain::PortRange,
    /// No RTP for this long ends the call.
    pub timeout: std::time::Duration,
    /// Audio codecs by preference, plain RTP and WebRTC alike.
    pub codecs: Vec<crate::media::codec::Codec>,
    /// The voicemail app.
    pub voicemail: crate::media::apps::VoicemailSettings,
    /// What the announcement app plays.
    pub announcement: std::sync::Arc<Vec<i16>>,
}

/// Who a call is about, for the apps (a voicemail's metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The subscriber the TAS acts for.
    pub subscriber: Option<Msisdn>,
    /// Whether the subscriber makes or receives the call.
    pub direction: Option<super::routing::Direction>,
    /// The caller's number.
    pub caller: Option<Msisdn>,
    /// The number called (prefix removed).
    pub callee: Option<Msisdn>,
}

/// What the engine needs of the TAS.
pub struct Engine {
    /// The user agent that places leg 3.
    pub ua: UserAgent,
    /// Media of the calls it answers.
    pub media: MediaSettings,
    /// What the relay adds to call setup.
    pub stats: std::sync::Arc<CallStats>,
    /// `sip.core_uri`, read once: leg 3's Request-URI addresses its host and port.
    core: Option<crate::sip::message::uri::SipUri>,
    sessions: std::sync::atomic::AtomicU64,
}

enum Step {
    Act(Action, Option<ForwardCause>),
    Done(u16),
}

impl Engine {
    /// An engine placing calls through `ua`, recording its latency into `stats`.
    pub fn new(ua: UserAgent, media: MediaSettings, stats: std::sync::Arc<CallStats>) -> Self {
        let core = match ua.outbound().core().map(Uri::parse) {
            Some(Ok(Uri::Sip(core))) => Some(core),
            _ => None,
        };
        Self { ua, media, stats, core, sessions: std::sync::atomic::AtomicU64::new(1) }
    }

    /// Carries out `behaviour` on `invite`; `callee` is the number with the prefix removed.
    pub async fn run(&self, invite: PendingInvite, info: &CallInfo, callee: &Msisdn, behaviour: &Behaviour) -> Outcome {
        let mut outcome = Outcome { actions: Vec::new(), legs_placed: 0, status: 0 };
        if let Some(ring_time) = behaviour.ring_time {
            invite.provisional(180, None);
            tokio::select! {
                () = invite.cancelled() => {
                    outcome.actions.push(format!("ring {}", humantime::format_duration(ring_time)));
                    outcome.status = 487;
                    return outcome;
                }
                () = tokio::time::sleep(ring_time) => {}
            }
        }
        let mut invite = Some(invite);
        let mut step = Step::Act(behaviour.action.clone(), None);
        // The conditions apply to the first relay only: a forward on busy that is busy again ends there.
        let mut conditions = Some(behaviour);
        loop {
            let (action, cause) = match step {
                Step::Done(status) => {
                    outcome.status = status;
                    return outcome;
                }
                Step::Act(action, cause) => (action, cause),
            };
            // A step to act on always comes with the INVITE handed back.
            let Some(pending) = invite.take() else { return outcome };
            outcome.actions.push(match cause {
                Some(cause) => format!("{action} ({})", cause.diversion_reason()),
                None => action.to_string(),
            });
            step = match action {
                Action::Reject { .. } | Action::Answer(_) | Action::Announce { .. } => {
                    Step::Done(self.settle(pending, &action, info).await.status)
                }
                Action::Loop => self.relay(&mut outcome, pending, callee, None, conditions.take(), &mut invite).await,
                Action::Forward(to) => {
                    let diversion = Some((callee, cause.unwrap_or(ForwardCause::Unconditional)));
                    self.relay(&mut outcome, pending, &to, diversion, conditions.take(), &mut invite).await
                }
            };
        }
    }

    /// Answers or rejects a call that has no subscriber to relay for (a relay action is
    /// refused with 500: config validation keeps it out).
    pub async fn settle(&self, invite: PendingInvite, action: &Action, info: &CallInfo) -> Outcome {
        let status = match action {
            Action::Reject { status, reason } => {
                invite.reject(*status, Some(reason), None);
                *status
            }
            Action::Answer(app) => self.answer(invite, *app, info).await,
            Action::Announce { status, reason } => self.announce_then_reject(invite, *status, reason).await,
            Action::Loop | Action::Forward(_) => {
                invite.reject(500, None, Some("no subscriber to relay for"));
                500
            }
        };
        Outcome { actions: vec![action.to_string()], legs_placed: 0, status }
    }

    /// Answers with an app: plain RTP offers on a UDP port of the configured range, WebRTC-style
    /// offers (ICE, DTLS-SRTP) through the `webrtc` crate. An offer with nothing ringer can
    /// answer gets 488 and a Warning.
    async fn answer(&self, invite: PendingInvite, app: App, info: &CallInfo) -> u16 {
        let call_id = invite.essentials().call_id.clone();
        let prepared = match self.prepare_media(&invite, app).await {
            Ok(prepared) => prepared,
            Err((status, why)) => {
                info!(%call_id, status, why, "offer refused");
                invite.reject(status, None, Some(&why));
                return status;
            }
        };
        let Some(call) = invite.answer(Bytes::from(prepared.sdp)) else {
            prepared.session.close().await;
            return 487;
        };
        info!(%call_id, %app, codec = %prepared.codec, "answered");
        let meta = message_meta(info, prepared.codec.name());
        self.run_app(call, prepared.media, app, meta, prepared.session);
        200
    }

    /// Plays the announcement as early media (183 Session Progress with the answer), then
    /// refuses the call with `status`, as operators do for "number not in service". The
    /// caller's CANCEL stops it.
    async fn announce_then_reject(&self, invite: PendingInvite, status: u16, reason: &str) -> u16 {
        let call_id = invite.essentials().call_id.clone();
        let prepared = match self.prepare_media(&invite, App::Announcement).await {
            Ok(prepared) => prepared,
            Err((refusal, why)) => {
                // No media to play: the refusal itself still tells the caller.
                info!(%call_id, refusal, why, "no early media; refusing at once");
                invite.reject(status, Some(reason), None);
                return status;
            }
        };
        invite.provisional(183, Some(Bytes::from(prepared.sdp)));
        info!(%call_id, codec = %prepared.codec, status, "announcement as early media");
        let AppMedia::Channel(mut channel) = prepared.media else {
            invite.reject(status, Some(reason), None);
            return status;
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let played = async {
            // Nothing is sent before ICE and DTLS are up.
            if prepared.session.connected_within(self.media.timeout).await {
                crate::media::apps::announcement(&mut channel, &self.media.announcement, &stop).await;
            }
        };
        let cancelled = tokio::select! {
            () = played => false,
            () = invite.cancelled() => true,
        };
        prepared.session.close().await;
        if cancelled {
            return 487;
        }
        invite.reject(status, Some(reason), None);
        status
    }

    /// Media for `app` on `invite`'s offer: the SDP answer, the channel, the session. Errors
    /// carry the status to refuse with and why.
    async fn prepare_media(&self, invite: &PendingInvite, app: App) -> Result<Prepared, (u16, String)> {
        use crate::media::plain::{self, NegotiationError};
        use crate::media::sdp::SessionDescription;
        let text = std::str::from_utf8(&invite.request().body).unwrap_or_default().to_owned();
        let offer = SessionDescription::parse(&text).map_err(|error| (400, error.to_string()))?;
        match plain::negotiate(&offer, &self.media.codecs) {
            Ok(agreed) => return self.prepare_plain(invite, &offer, agreed, app).await,
            Err(error @ (NegotiationError::NoCommonCodec(_) | NegotiationError::NoAddress)) => {
                return Err((488, error.to_string()))
            }
            Err(NegotiationError::NoPlainAudio) => {}
        }
        if offer.media.iter().any(|m| m.kind == "audio" && m.port != 0 && m.proto.contains("SAVP")) {
            return self.prepare_webrtc(invite, &text, app).await;
        }
        Err((488, "no audio stream in the offer (RTP/AVP or UDP/TLS/RTP/SAVP[F])".into()))
    }

    /// Media for a WebRTC-style offer (ICE, DTLS-SRTP).
    async fn prepare_webrtc(&self, invite: &PendingInvite, offer: &str, app: App) -> Result<Prepared, (u16, String)> {
        use crate::media::webrtc::{self, WebRtcOptions};
        let bind = match self.media.ports.bind {
            address if address.is_unspecified() => invite.link().local().ip(),
            address => address,
        };
        let options = WebRtcOptions {
            bind,
            public: Some(self.advertised(invite)),
            ports: Some(self.media.ports.ports.clone()),
            codecs: self.media.codecs.clone(),
        };
        let answered = match app {
            App::Echo => webrtc::answer_echo(offer, &options).await,
            _ => webrtc::answer_for_app(offer, &options).await,
        };
        let answered = answered.map_err(|error| (488, error.to_string()))?;
        let media = match answered.audio {
            None => AppMedia::WebRtcEcho,
            Some(audio) => match crate::media::channel::AudioChannel::webrtc(
                audio.incoming,
                audio.track,
                audio.codec,
                audio.payload_type,
                audio.telephone_event,
                audio.ssrc,
            ) {
                Ok(channel) => AppMedia::Channel(channel),
                Err(error) => {
                    answered.session.close().await;
                    return Err((500, error.to_string()));
                }
            },
        };
        Ok(Prepared {
            sdp: answered.sdp,
            media,
            codec: answered.codec,
            session: MediaSession::WebRtc(answered.session),
        })
    }

    /// Media for a plain RTP offer, on a port of the configured range.
    async fn prepare_plain(
        &self,
        invite: &PendingInvite,
        offer: &crate::media::sdp::SessionDescription,
        agreed: crate::media::plain::Negotiated,
        app: App,
    ) -> Result<Prepared, (u16, String)> {
        use crate::media::plain;
        let socket = plain::bind(&self.media.ports).await.map_err(|error| {
            warn!(call_id = %invite.essentials().call_id, %error, "no RTP port");
            (503, "no RTP port free".to_owned())
        })?;
        let port = socket.local_addr().map(|addr| addr.port()).unwrap_or_default();
        let session = self.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let advertise = self.advertised(invite);
        let sdp = plain::answer(offer, &agreed, advertise, port, session, 0);
        let media = match app {
            App::Echo => AppMedia::PlainEcho(socket),
            _ => AppMedia::Channel(
                crate::media::channel::AudioChannel::udp(socket, agreed.clone())
                    .map_err(|error| (500, error.to_string()))?,
            ),
        };
        let codec = agreed.codec;
        Ok(Prepared { sdp, media, codec, session: MediaSession::Plain { agreed, advertise, port, session, version: 0 } })
    }

    /// The address SDP answers carry: the configured one, else where the INVITE came in.
    fn advertised(&self, invite: &PendingInvite) -> std::net::IpAddr {
        match self.media.advertise.parse::<std::net::IpAddr>() {
            Ok(address) if !address.is_unspecified() => address,
            _ => invite.link().local().ip(),
        }
    }

    /// Runs `app` on `media` until it is done, the caller hangs up, no RTP comes for the media
    /// timeout, or (WebRTC) ICE or DTLS fail; then ends the call with BYE unless the caller did.
    /// The caller's BYE stops the app, which still finishes (a recording is stored). New offers
    /// within the call are answered on the same media, which goes on.
    fn run_app(
        &self,
        call: crate::sip::dialog::CallHandle,
        media: AppMedia,
        app: App,
        meta: crate::media::mailbox::MessageMeta,
        mut session: MediaSession,
    ) {
        use crate::media::{apps, plain};
        let timeout = self.media.timeout;
        let settings = self.media.clone();
        let mut offers = call.offers();
        tokio::spawn(async move {
            // No media before ICE and DTLS are up (and none at all if they fail).
            let connected = tokio::select! {
                connected = session.connected_within(timeout) => connected,
                _ = call.ended() => false,
            };
            if !connected {
                if !call.is_ended() {
                    info!(call_id = %call.id().call_id, "ICE or DTLS did not complete: hanging up");
                    let _ = call.hangup().await;
                }
                session.close().await;
                return;
            }
            let stop = tokio_util::sync::CancellationToken::new();
            let activity = match &session {
                MediaSession::WebRtc(webrtc) => Some(webrtc.activity()),
                MediaSession::Plain { .. } => None,
            };
            let running = async {
                match (media, app) {
                    (AppMedia::PlainEcho(socket), _) => match plain::echo(socket, timeout, stop.clone()).await {
                        plain::MediaEnd::TimedOut => apps::AppEnd::TimedOut,
                        plain::MediaEnd::Stopped => apps::AppEnd::CallerLeft,
                    },
                    // The WebRTC stack reflects the packets itself; the media timeout still applies.
                    (AppMedia::WebRtcEcho, _) => {
                        let Some(activity) = activity else { return apps::AppEnd::Done };
                        loop {
                            let idle = activity.idle_for();
                            if idle >= timeout {
                                break apps::AppEnd::TimedOut;
                            }
                            tokio::select! {
                                () = stop.cancelled() => break apps::AppEnd::CallerLeft,
                                () = tokio::time::sleep(timeout - idle) => {}
                            }
                        }
                    }
                    (AppMedia::Channel(mut channel), App::Voicemail) => {
                        apps::voicemail(&mut channel, &settings.voicemail, meta, timeout, &stop).await.0
                    }
                    (AppMedia::Channel(mut channel), _) => {
                        apps::announcement(&mut channel, &settings.announcement, &stop).await
                    }
                }
            };
            tokio::pin!(running);
            let end = loop {
                tokio::select! {
                    end = &mut running => break end,
                    _ = call.ended() => {
                        stop.cancel();
                        break running.await;
                    }
                    () = session.failed() => {
                        info!(call_id = %call.id().call_id, "ICE or DTLS failed");
                        stop.cancel();
                        running.await;
                        break apps::AppEnd::TimedOut;
                    }
                    Some(offer) = offers.recv() => {
                        let answer = session.reanswer(&offer.sdp).await;
                        if let OfferAnswer::NotAcceptable(why) = &answer {
                            info!(call_id = %call.id().call_id, why, "new offer refused; the media goes on as it was");
                        }
                        offer.answer(answer);
                    }
                }
            };
            if end != apps::AppEnd::CallerLeft && !call.is_ended() {
                info!(call_id = %call.id().call_id, ?end, "the app is done: hanging up");
                let _ = call.hangup().await;
            }
            session.close().await;
        });
    }

    /// Places leg 3 to `target` and follows it; returns the next step, handing `invite` back
    /// through `keep` when a condition applies.
    async fn relay(
        &self,
        outcome: &mut Outcome,
        invite: PendingInvite,
        target: &Msisdn,
        diversion: Option<(&Msisdn, ForwardCause)>,
        conditions: Option<&Behaviour>,
        keep: &mut Option<PendingInvite>,
    ) -> Step {
        let call_id = invite.essentials().call_id.clone();
        let spec = match leg3(&invite, target, diversion) {
            Ok(mut spec) => {
                // Leg 2 addressed the TAS; leg 3 addresses the core.
                if let (Uri::Sip(uri), Some(core)) = (&mut spec.uri, &self.core) {
                    uri.host = core.host.clone();
                    uri.port = core.port;
                    uri.params.remove("transport");
                }
                spec
            }
            Err((status, why)) => {
                warn!(%call_id, why, "cannot place leg 3");
                invite.reject(status, None, Some(why));
                return Step::Done(status);
            }
        };
        let placed = match self.leg3_link(invite.link()).await {
            Ok(link) => self.ua.invite(spec, link).map_err(|error| error.to_string()),
            Err(error) => Err(error),
        };
        let leg = match placed {
            Ok(leg) => {
                // The first leg 3 of a call without ring time measures the relay itself.
                if conditions.is_some_and(|c| c.ring_time.is_none()) {
                    self.stats.request_hop.record(invite.received_at().elapsed());
                }
                leg
            }
            Err(error) => {
                warn!(%call_id, %error, "leg 3 could not be sent to the core");
                return self.on_condition(
                    invite,
                    conditions.and_then(|c| c.on_unreachable.clone()),
                    ForwardCause::Unreachable,
                    503,
                    keep,
                );
            }
        };
        outcome.legs_placed += 1;
        info!(%call_id, leg3 = leg.call_id(), to = %target, "leg 3 placed");
        let no_answer = conditions.filter(|c| c.on_no_answer.is_some()).map(|c| c.no_answer_after);
        match b2bua::ring(&invite, leg, no_answer).await {
            LegOutcome::Answered(call, response) => {
                let answered_at = tokio::time::Instant::now();
                let Some(incoming) = invite.answer(response.body.clone()) else {
                    let _ = call.ack(None);
                    let _ = call.hangup().await;
                    return Step::Done(487);
                };
                self.stats.answer_hop.record(answered_at.elapsed());
                let end = b2bua::hold(incoming, call).await;
                info!(%call_id, ?end, "relayed call ended");
                Step::Done(200)
            }
            LegOutcome::Refused(response) => {
                let next = match response.status {
                    486 | 600 => conditions.and_then(|c| c.on_busy.clone()).map(|a| (a, ForwardCause::Busy)),
                    408 | 480 | 503 => {
                        conditions.and_then(|c| c.on_unreachable.clone()).map(|a| (a, ForwardCause::Unreachable))
                    }
                    _ => None,
                };
                match next {
                    Some((action, cause)) => {
                        *keep = Some(invite);
                        Step::Act(action, Some(cause))
                    }
                    None => {
                        // Relay the refusal as the core's callee gave it.
                        invite.relay_refusal(&response);
                        Step::Done(response.status)
                    }
                }
            }
            LegOutcome::NoAnswer => self.on_condition(
                invite,
                conditions.and_then(|c| c.on_no_answer.clone()),
                ForwardCause::NoAnswer,
                480,
                keep,
            ),
            LegOutcome::Unreachable => self.on_condition(
                invite,
                conditions.and_then(|c| c.on_unreachable.clone()),
                ForwardCause::Unreachable,
                408,
                keep,
            ),
            LegOutcome::CallerCancelled => Step::Done(487),
        }
    }

    fn on_condition(
        &self,
        invite: PendingInvite,
        action: Option<Action>,
        cause: ForwardCause,
        otherwise: u16,
        keep: &mut Option<PendingInvite>,
    ) -> Step {
        match action {
            Some(action) => {
                *keep = Some(invite);
                Step::Act(action, Some(cause))
            }
            None => {
                invite.reject(otherwise, None, None);
                Step::Done(otherwise)
            }
        }
    }

    /// Leg 3 goes to the core's configured SIP address, else back over leg 2's connection.
    async fn leg3_link(&self, leg2: &Link) -> Result<Link, String> {
        match self.ua.outbound().core() {
            Some(core) => self.ua.outbound().link_to(core).await.map_err(|error| error.to_string()),
            None if leg2.is_open() => Ok(leg2.clone()),
            None => Err("leg 2's connection has closed and sip.core_uri is not set".into()),
        }
    }
}

/// Headers of leg 2 that leg 3 carries on unchanged.
const CARRIED: [&str; 4] = ["P-Asserted-Identity", "Privacy", "Session-ID", "History-Info"];

/// The leg 3 INVITE for `invite`, to `target`; with `diversion` (the diverting number and why)
/// it carries History-Info (RFC 7044) and Diversion (RFC 5806) entries. Errors carry the status
/// to answer leg 2 with.
pub fn leg3(
    invite: &PendingInvite,
    target: &Msisdn,
    diversion: Option<(&Msisdn, ForwardCause)>,
) -> Result<InviteSpec, (u16, &'static str)> {
    let request = invite.request();
    let essentials = invite.essentials();
    if b2bua::max_forwards(invite) == Some(0) {
        return Err((483, "Max-Forwards reached zero"));
    }
    let uri = retarget(&request.uri, target).ok_or((404, "the Request-URI cannot carry a number"))?;
    let mut spec = b2bua::onward(invite, uri, &CARRIED);
    // Leg 3 keeps no header parameter of leg 2's To.
    spec.to.params = Default::default();
    let headers = &mut spec.headers;
    if request.headers.get("Session-ID").is_none_or(|value| value.trim().is_empty()) {
        warn!(call_id = %essentials.call_id, "leg 2 carries no Session-ID: the core may not recognise leg 3");
    }
    if let Some((diverting, cause)) = diversion {
        let original = retarget(&request.uri, diverting).ok_or((404, "the Request-URI cannot carry a number"))?;
        let index = request.headers.values("History-Info").len() + 1;
        let code = cause.cause();
        let phrase = reason_phrase(code).replace(' ', "%20");
        headers.push((
            "History-Info".into(),
            format!(
                "<{original}?Reason=SIP%3Bcause%3D{code}%3Btext%3D%22{phrase}%22>;index={index},<{}>;index={index}.1;mp={index}",
                with_cause(&spec.uri, code)
            ),
        ));
        let counter = request.headers.values("Diversion").len() + 1;
        let mut diversions =
            vec![format!("<{original}>;reason={};counter={counter};privacy=off", cause.diversion_reason())];
        diversions.extend(request.headers.get_all("Diversion").map(str::to_owned));
        headers.retain(|(name, _)| name != "Diversion");
        headers.extend(diversions.into_iter().map(|value| ("Diversion".to_owned(), value)));
    }
    Ok(spec)
}

/// `uri` with its number replaced by `number` (`sip:`/`sips:` user part, or `tel:`).
pub fn retarget(uri: &Uri, number: &Msisdn) -> Option<Uri> {
    match uri {
        Uri::Sip(sip) => {
            let mut sip = sip.clone();
            sip.user = Some(number.as_str().to_owned());
            Some(Uri::Sip(sip))
        }
        Uri::Tel { params, .. } => Some(Uri::Tel { number: number.as_str().to_owned(), params: params.clone() }),
        Uri::Other { .. } => None,
    }
}

/// The target URI with the RFC 4458 `cause` parameter, as History-Info writes the new target.
fn with_cause(uri: &Uri, cause: u16) -> Uri {
    let mut uri = uri.clone();
    match &mut uri {
        Uri::Sip(sip) => sip.params.set("cause", Some(cause.to_string())),
        Uri::Tel { params, .. } => params.set("cause", Some(cause.to_string())),
        Uri::Other { .. } => {}
    }
    uri
}
