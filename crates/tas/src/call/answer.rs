//! Answering calls with the TAS's own apps (voicemail, the mailbox menu, announcement, echo):
//! the media for the offer (plain RTP or WebRTC), the answer or early media, and the app
//! running until the call ends, with new offers in the call answered on the same media.

use bytes::Bytes;
use tracing::{info, warn, Instrument};

use domain::types::Msisdn;
use sip::dialog::OfferAnswer;
use sip::message::StatusCode;
use sip::ua::PendingInvite;

use crate::mailbox::greeting::Absence;
use crate::mailbox::menu::Login;
use crate::mailbox::Mailboxes;

use super::action::App;

/// The media an app runs on.
enum AppMedia {
    /// Plain RTP echoed packet by packet.
    PlainEcho(tokio::net::UdpSocket),
    /// WebRTC echoed by the stack.
    WebRtcEcho,
    /// Decoded audio in and out (voicemail, announcement).
    Channel(media::channel::AudioChannel),
}

/// Media made ready for an answer (or early media).
struct Prepared {
    /// The SDP answer.
    sdp: sdp::SessionDescription,
    /// What the app runs on.
    media: AppMedia,
    /// The codec agreed.
    codec: media::codec::Codec,
    /// The session under it.
    session: MediaSession,
}

/// The media of an answered call, as far as answering new offers in it goes.
enum MediaSession {
    /// Plain RTP on `port`: a new offer keeps the port and the codec.
    Plain { agreed: media::plain::Negotiated, advertise: std::net::IpAddr, port: u16, session: u64, version: u64 },
    /// A WebRTC connection, which answers new offers itself.
    WebRtc(media::webrtc::WebRtcSession),
}

impl MediaSession {
    /// The answer to a new offer within the call.
    async fn reanswer(&mut self, offer: &Bytes) -> OfferAnswer {
        use media::plain;
        use sdp::SessionDescription;
        let parsed = match SessionDescription::parse(&String::from_utf8_lossy(offer)) {
            Ok(parsed) => parsed,
            Err(error) => return OfferAnswer::NotAcceptable(error.to_string()),
        };
        match self {
            MediaSession::Plain { agreed, advertise, port, session, version } => {
                // The app's codec runs on: the new offer must still have it.
                match plain::negotiate(&parsed, &[agreed.codec]) {
                    Ok(renewed) => {
                        *version += 1;
                        *agreed = renewed;
                        let answer = plain::answer(&parsed, agreed, *advertise, *port, *session, *version);
                        OfferAnswer::Accept(Bytes::from(answer.to_string()))
                    }
                    Err(error) => OfferAnswer::NotAcceptable(format!("{error} (the call runs on {})", agreed.codec)),
                }
            }
            MediaSession::WebRtc(webrtc) => match webrtc.reanswer(&parsed).await {
                Ok(answer) => OfferAnswer::Accept(Bytes::from(answer.to_string())),
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
fn message_meta(info: &CallInfo, codec: &str) -> media::mailbox::MessageMeta {
    let number = |n: &Option<Msisdn>| n.as_ref().map(|n| n.as_str().to_owned());
    let direction = info.direction.map(|d| d.to_string());
    media::mailbox::MessageMeta::new(
        &number(&info.subscriber).unwrap_or_else(|| "unknown".into()),
        number(&info.caller).as_deref(),
        number(&info.callee).as_deref(),
        direction.as_deref(),
        codec,
    )
}

/// The voicemail app for `info.subscriber`: a full mailbox gets the "mailbox full"
/// announcement instead of a recording; the greeting is the owner's for why the call came.
async fn voicemail(
    channel: &mut media::channel::AudioChannel,
    settings: &MediaSettings,
    info: &CallInfo,
    meta: media::mailbox::MessageMeta,
    stop: &tokio_util::sync::CancellationToken,
) -> media::apps::AppEnd {
    let greeting = match (&settings.mailboxes, &info.subscriber) {
        (Some(mailboxes), Some(owner)) => {
            if mailboxes.is_full(owner).await {
                info!(subscriber = %owner, "mailbox full: no message taken");
                channel.play(&mailboxes.prompts().get("mailbox-full"), stop).await;
                return media::apps::AppEnd::Done;
            }
            mailboxes.greeting_for(owner, info.absence).await
        }
        _ => settings.voicemail.greeting.clone(),
    };
    media::apps::voicemail(channel, &settings.voicemail, &greeting, meta, settings.timeout, stop).await.0
}

/// Who ended a call, as its record tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The caller: a BYE or CANCEL from leg 2's side.
    Caller,
    /// The callee: a BYE from leg 3's side, or its refusal relayed.
    Callee,
    /// The TAS: a refusal, an app done, a media timeout, a timer.
    Tas,
}

impl EndedBy {
    /// `caller`, `callee` or `tas`, as call records write it.
    pub fn name(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Callee => "callee",
            EndedBy::Tas => "tas",
        }
    }
}

/// How an app's call ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppEnded {
    /// Who ended it.
    pub ended_by: EndedBy,
    /// What arrived of the caller's media, when the app listened to it.
    pub reception: Option<media::rtp::ReceptionSummary>,
}

/// The app a call was answered with, running until the call ends.
#[derive(Debug, Default)]
pub struct AppRunning {
    task: Option<tokio::task::JoinHandle<AppEnded>>,
    /// The codec the app's media runs on.
    codec: Option<media::codec::Codec>,
}

impl AppRunning {
    /// The codec agreed for the app's media, when a call was answered.
    pub fn codec(&self) -> Option<media::codec::Codec> {
        self.codec
    }

    /// Waits until the app is done and the call ended; `None` at once when nothing was answered.
    pub async fn finished(self) -> Option<AppEnded> {
        self.task?.await.ok()
    }
}

/// How the TAS's own answers get media.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// The address written into SDP answers; unspecified: the address the INVITE came to.
    pub advertise: std::net::IpAddr,
    /// Where RTP sockets are opened.
    pub ports: media::plain::PortRange,
    /// No RTP for this long ends the call.
    pub timeout: std::time::Duration,
    /// Audio codecs by preference, plain RTP and WebRTC alike.
    pub codecs: Vec<media::codec::Codec>,
    /// The voicemail app.
    pub voicemail: media::apps::VoicemailSettings,
    /// What the announcement app plays.
    pub announcement: std::sync::Arc<Vec<i16>>,
    /// The mailboxes in the store (greetings, quota, the owner's menu); without them every
    /// caller hears the configured greeting and the menu is refused.
    pub mailboxes: Option<Mailboxes>,
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
    /// Why the subscriber did not take the call, for the voicemail greeting.
    pub absence: Absence,
    /// Who calls the mailbox menu.
    pub login: Login,
    /// What a feature code call hears.
    pub spoken: Vec<crate::feature_codes::Spoken>,
}

/// Answers calls with apps, on the configured media.
pub struct Answerer {
    /// The media settings.
    pub media: MediaSettings,
    /// SDP session ids of plain RTP answers.
    sessions: std::sync::atomic::AtomicU64,
}

impl Answerer {
    /// An answerer on `media`.
    pub fn new(media: MediaSettings) -> Self {
        Self { media, sessions: std::sync::atomic::AtomicU64::new(1) }
    }

    /// Answers with an app: plain RTP offers on a UDP port of the configured range, WebRTC-style
    /// offers (ICE, DTLS-SRTP) through the `webrtc` crate. An offer with nothing ringer can
    /// answer gets 488 and a Warning.
    /// Returns the final status and, when answered, the app's task, which ends with the call.
    pub async fn answer(&self, invite: PendingInvite, app: App, info: &CallInfo) -> (StatusCode, AppRunning) {
        let call_id = invite.essentials().call_id.clone();
        if matches!(app, App::VoicemailMain | App::FeatureCode) && self.media.mailboxes.is_none() {
            let why = "the mailbox menu and feature codes need a store (store.url)";
            info!(%call_id, why, "mailbox menu refused");
            invite.reject(StatusCode::SERVICE_UNAVAILABLE, None, Some(why));
            return (StatusCode::SERVICE_UNAVAILABLE, AppRunning::default());
        }
        let prepared = match self.prepare_media(&invite, app).await {
            Ok(prepared) => prepared,
            Err((status, why)) => {
                info!(%call_id, status = status.as_u16(), why, "offer refused");
                invite.reject(status, None, Some(&why));
                return (status, AppRunning::default());
            }
        };
        let Some(call) = invite.answer(Bytes::from(prepared.sdp.to_string())) else {
            prepared.session.close().await;
            return (StatusCode::REQUEST_TERMINATED, AppRunning::default());
        };
        info!(%call_id, %app, codec = %prepared.codec, "answered");
        let meta = message_meta(info, prepared.codec.name());
        let running = self.run_app(call, prepared.media, app, info.clone(), meta, prepared.session);
        (StatusCode::OK, AppRunning { task: Some(running), codec: Some(prepared.codec) })
    }

    /// Plays the announcement as early media (183 Session Progress with the answer), then
    /// refuses the call with `status`, as operators do for "number not in service". The
    /// caller's CANCEL stops it.
    pub async fn announce_then_reject(&self, invite: PendingInvite, status: StatusCode, reason: &str) -> StatusCode {
        let call_id = invite.essentials().call_id.clone();
        let prepared = match self.prepare_media(&invite, App::Announcement).await {
            Ok(prepared) => prepared,
            Err((refusal, why)) => {
                // No media to play: the refusal itself still tells the caller.
                info!(%call_id, refusal = refusal.as_u16(), why, "no early media; refusing at once");
                invite.reject(status, Some(reason), None);
                return status;
            }
        };
        invite.provisional(StatusCode::SESSION_PROGRESS, Some(Bytes::from(prepared.sdp.to_string())));
        info!(%call_id, codec = %prepared.codec, status = status.as_u16(), "announcement as early media");
        let AppMedia::Channel(mut channel) = prepared.media else {
            invite.reject(status, Some(reason), None);
            return status;
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let played = async {
            // Nothing is sent before ICE and DTLS are up.
            if prepared.session.connected_within(self.media.timeout).await {
                media::apps::announcement(&mut channel, &self.media.announcement, &stop).await;
            }
        };
        let cancelled = tokio::select! {
            () = played => false,
            () = invite.cancelled() => true,
        };
        prepared.session.close().await;
        if cancelled {
            return StatusCode::REQUEST_TERMINATED;
        }
        invite.reject(status, Some(reason), None);
        status
    }

    /// Media for `app` on `invite`'s offer: the SDP answer, the channel, the session. Errors
    /// carry the status to refuse with and why.
    async fn prepare_media(&self, invite: &PendingInvite, app: App) -> Result<Prepared, (StatusCode, String)> {
        use media::plain::{self, NegotiationError};
        use sdp::SessionDescription;
        let text = std::str::from_utf8(&invite.request().body).unwrap_or_default();
        let offer = SessionDescription::parse(text).map_err(|error| (StatusCode::BAD_REQUEST, error.to_string()))?;
        match plain::negotiate(&offer, &self.media.codecs) {
            Ok(agreed) => return self.prepare_plain(invite, &offer, agreed, app).await,
            Err(error @ (NegotiationError::NoCommonCodec(_) | NegotiationError::NoAddress)) => {
                return Err((StatusCode::NOT_ACCEPTABLE_HERE, error.to_string()))
            }
            Err(NegotiationError::NoPlainAudio) => {}
        }
        if offer.media.iter().any(|m| m.kind == "audio" && m.port != 0 && m.proto.contains("SAVP")) {
            return self.prepare_webrtc(invite, &offer, app).await;
        }
        Err((StatusCode::NOT_ACCEPTABLE_HERE, "no audio stream in the offer (RTP/AVP or UDP/TLS/RTP/SAVP[F])".into()))
    }

    /// Media for a WebRTC-style offer (ICE, DTLS-SRTP).
    async fn prepare_webrtc(
        &self,
        invite: &PendingInvite,
        offer: &sdp::SessionDescription,
        app: App,
    ) -> Result<Prepared, (StatusCode, String)> {
        use media::webrtc::{self, WebRtcOptions};
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
        let answered = answered.map_err(|error| (StatusCode::NOT_ACCEPTABLE_HERE, error.to_string()))?;
        let media = match answered.audio {
            None => AppMedia::WebRtcEcho,
            Some(audio) => match media::channel::AudioChannel::webrtc(
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
                    return Err((StatusCode::SERVER_INTERNAL_ERROR, error.to_string()));
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
        offer: &sdp::SessionDescription,
        agreed: media::plain::Negotiated,
        app: App,
    ) -> Result<Prepared, (StatusCode, String)> {
        use media::plain;
        let socket = plain::bind(&self.media.ports).await.map_err(|error| {
            warn!(call_id = %invite.essentials().call_id, %error, "no RTP port");
            (StatusCode::SERVICE_UNAVAILABLE, "no RTP port free".to_owned())
        })?;
        let port = socket.local_addr().map(|addr| addr.port()).unwrap_or_default();
        let session = self.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let advertise = self.advertised(invite);
        let sdp = plain::answer(offer, &agreed, advertise, port, session, 0);
        let media = match app {
            App::Echo => AppMedia::PlainEcho(socket),
            _ => AppMedia::Channel(
                media::channel::AudioChannel::udp(socket, agreed.clone())
                    .map_err(|error| (StatusCode::SERVER_INTERNAL_ERROR, error.to_string()))?,
            ),
        };
        let codec = agreed.codec;
        Ok(Prepared {
            sdp,
            media,
            codec,
            session: MediaSession::Plain { agreed, advertise, port, session, version: 0 },
        })
    }

    /// The address SDP answers carry: the configured one, else where the INVITE came in.
    fn advertised(&self, invite: &PendingInvite) -> std::net::IpAddr {
        match self.media.advertise {
            address if !address.is_unspecified() => address,
            _ => invite.link().local().ip(),
        }
    }

    /// Runs `app` on `media` until it is done, the caller hangs up, no RTP comes for the media
    /// timeout, or (WebRTC) ICE or DTLS fail; then ends the call with BYE unless the caller did.
    /// The caller's BYE stops the app, which still finishes (a recording is stored). New offers
    /// within the call are answered on the same media, which goes on.
    fn run_app(
        &self,
        call: sip::call::CallHandle,
        media: AppMedia,
        app: App,
        info: CallInfo,
        meta: media::mailbox::MessageMeta,
        mut session: MediaSession,
    ) -> tokio::task::JoinHandle<AppEnded> {
        use media::{apps, plain};
        let timeout = self.media.timeout;
        let settings = self.media.clone();
        let mut offers = call.offers();
        // Boxed: the app's state machine is large, and spawning moves it several times.
        tokio::spawn(Box::pin(async move {
            let _live = LiveMediaSession::open();
            // No media before ICE and DTLS are up (and none at all if they fail).
            let connected = tokio::select! {
                connected = session.connected_within(timeout) => connected,
                _ = call.ended() => false,
            };
            if !connected {
                let ended_by = if call.ended_by_peer() {
                    EndedBy::Caller
                } else if call.is_ended() {
                    EndedBy::Tas
                } else {
                    info!(call_id = %call.id().call_id, "ICE or DTLS did not complete: hanging up");
                    let _ = call.hangup().await;
                    EndedBy::Tas
                };
                session.close().await;
                return AppEnded { ended_by, reception: None };
            }
            let stop = tokio_util::sync::CancellationToken::new();
            let activity = match &session {
                MediaSession::WebRtc(webrtc) => Some(webrtc.activity()),
                MediaSession::Plain { .. } => None,
            };
            let running = async {
                match media {
                    AppMedia::PlainEcho(socket) => match plain::echo(socket, timeout, stop.clone()).await {
                        plain::MediaEnd::TimedOut => (apps::AppEnd::TimedOut, None),
                        plain::MediaEnd::Stopped => (apps::AppEnd::CallerLeft, None),
                    },
                    // The WebRTC stack reflects the packets itself; the media timeout still applies.
                    AppMedia::WebRtcEcho => {
                        let Some(activity) = activity else { return (apps::AppEnd::Done, None) };
                        loop {
                            let idle = activity.idle_for();
                            if idle >= timeout {
                                break (apps::AppEnd::TimedOut, None);
                            }
                            tokio::select! {
                                () = stop.cancelled() => break (apps::AppEnd::CallerLeft, None),
                                () = tokio::time::sleep(timeout - idle) => {}
                            }
                        }
                    }
                    AppMedia::Channel(mut channel) => {
                        let end = on_channel(&mut channel, app, &settings, &info, meta, &stop).await;
                        // Only apps that listen read what arrives; the others leave it unread.
                        let listens = matches!(app, App::Voicemail | App::VoicemailMain);
                        (end, listens.then(|| channel.reception()))
                    }
                }
            };
            tokio::pin!(running);
            let (end, reception) = loop {
                tokio::select! {
                    end = &mut running => break end,
                    _ = call.ended() => {
                        stop.cancel();
                        break running.await;
                    }
                    () = session.failed() => {
                        info!(call_id = %call.id().call_id, "ICE or DTLS failed");
                        stop.cancel();
                        break (apps::AppEnd::TimedOut, running.await.1);
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
            let ended_by = if call.ended_by_peer() { EndedBy::Caller } else { EndedBy::Tas };
            session.close().await;
            if let Some(reception) = &reception {
                count_reception(reception);
            }
            AppEnded { ended_by, reception }
        }.in_current_span()))
    }
}

/// Runs `app` on decoded audio until it is done or `stop` fires.
async fn on_channel(
    channel: &mut media::channel::AudioChannel,
    app: App,
    settings: &MediaSettings,
    info: &CallInfo,
    meta: media::mailbox::MessageMeta,
    stop: &tokio_util::sync::CancellationToken,
) -> media::apps::AppEnd {
    use media::apps;
    match app {
        App::Voicemail => voicemail(channel, settings, info, meta, stop).await,
        App::VoicemailMain => match &settings.mailboxes {
            Some(mailboxes) => crate::mailbox::menu::run(channel, mailboxes, info.login.clone(), stop).await,
            None => apps::AppEnd::Done,
        },
        App::FeatureCode => {
            if let Some(mailboxes) = &settings.mailboxes {
                let audio = crate::feature_codes::audio(mailboxes.prompts(), &info.spoken);
                // A breath first: the caller's phone may still be bringing up its audio.
                let pause = vec![0; 4000];
                if channel.play(&pause, stop).await {
                    channel.play(&audio, stop).await;
                }
            }
            apps::AppEnd::Done
        }
        App::Echo | App::Announcement => apps::announcement(channel, &settings.announcement, stop).await,
    }
}

/// `ringer_media_sessions`: the calls whose media the TAS terminates, while they last.
struct LiveMediaSession;

impl LiveMediaSession {
    fn open() -> Self {
        metrics::gauge!("ringer_media_sessions").increment(1);
        Self
    }
}

impl Drop for LiveMediaSession {
    fn drop(&mut self) {
        metrics::gauge!("ringer_media_sessions").decrement(1);
    }
}

/// What a call's reception adds to `ringer_media_packets_received_total`,
/// `ringer_media_packets_lost_total` and the `ringer_media_jitter_seconds` histogram.
fn count_reception(reception: &media::rtp::ReceptionSummary) {
    metrics::counter!("ringer_media_packets_received_total").increment(reception.received);
    metrics::counter!("ringer_media_packets_lost_total").increment(reception.lost);
    metrics::histogram!("ringer_media_jitter_seconds").record(reception.jitter.as_secs_f64());
}
