//! Carrying out a [`Behaviour`] on one call: answer, reject, or relay it back to the core as
//! leg 3 (loop, forward) through the B2BUA, and on busy, no answer or unreachable move on to
//! the configured next action.

use std::fmt;

use tracing::{info, warn};

use domain::types::Msisdn;
use sip::b2bua::{self, JoinEnd, LegOutcome};
use sip::core::UserAgent;
use sip::message::header::{NameAddr, SessionId};
use sip::message::{StatusCode, Uri};
use sip::transport::Link;
use sip::ua::PendingInvite;
use sip::uac::InviteSpec;

use crate::mailbox::greeting::Absence;

pub use super::action::ForwardCause;
use super::action::{Action, Behaviour};
use super::answer::{Answerer, AppEnded, AppRunning, CallInfo, EndedBy, MediaSettings};
use super::stats::CallStats;

/// What became of a call, for the log and the call records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The actions taken, in order (`loop`, then `answer voicemail` on no answer...).
    pub actions: Vec<String>,
    /// Leg 3 INVITEs sent.
    pub legs_placed: u32,
    /// The Call-IDs of the leg 3 INVITEs, in order.
    pub leg3_call_ids: Vec<String>,
    /// Why the call was diverted last, if it was.
    pub diversion: Option<ForwardCause>,
    /// The final status the core got on leg 2 (487 when it cancelled); `None` until there is one.
    pub status: Option<StatusCode>,
    /// When leg 2 was answered, if it was.
    pub answered_at: Option<std::time::SystemTime>,
    /// Who ended the call, once it is known.
    pub ended_by: Option<EndedBy>,
    /// The audio codec agreed (rtpmap name, as `PCMA` or `opus`), when the call was answered.
    pub codec: Option<String>,
    /// What arrived of the caller's media, when the TAS answered with an app that listened.
    pub reception: Option<media::rtp::ReceptionSummary>,
}

impl Outcome {
    /// Takes in how the answering app's call ended.
    pub fn app_ended(&mut self, ended: AppEnded) {
        self.ended_by = Some(ended.ended_by);
        self.reception = ended.reception;
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} -> {status}", self.actions.join(", then ")),
            None => write!(f, "{} -> (no final status)", self.actions.join(", then ")),
        }
    }
}

/// What the engine needs of the TAS. Leg 3 goes out through the user agent that received
/// leg 2.
pub struct Engine {
    /// Answers calls with the apps.
    pub answerer: Answerer,
    /// What the relay adds to call setup.
    pub stats: std::sync::Arc<CallStats>,
    /// `sip.core_uri`, read once: leg 3's Request-URI addresses its host and port.
    core: Option<sip::message::uri::SipUri>,
}

enum Step {
    Act(Action, Option<ForwardCause>),
    Done(StatusCode),
}

impl Engine {
    /// An engine sending leg 3 to `core` (`sip.core_uri`; unset: back over leg 2's
    /// connection), recording its latency into `stats`.
    pub fn new(core: Option<&str>, media: MediaSettings, stats: std::sync::Arc<CallStats>) -> Self {
        let core = match core.map(Uri::parse) {
            Some(Ok(Uri::Sip(core))) => Some(core),
            _ => None,
        };
        Self { answerer: Answerer::new(media), stats, core }
    }

    /// Carries out `behaviour` on `invite`; `callee` is the number with the prefix removed.
    /// A forward the call's history forbids (`limit`) gives way to `limit.instead`.
    /// Returns once the call is refused or, when answered by a relay, has ended; an app
    /// answering it may run on until the call ends ([`AppRunning`]).
    pub async fn run(
        &self,
        invite: PendingInvite,
        info: &CallInfo,
        callee: &Msisdn,
        behaviour: &Behaviour,
        limit: &DiversionLimit,
    ) -> (Outcome, AppRunning) {
        let mut outcome = Outcome::default();
        if let Some(ring_time) = behaviour.ring_time {
            invite.provisional(StatusCode::RINGING, None);
            tokio::select! {
                () = invite.cancelled() => {
                    outcome.actions.push(format!("ring {}", humantime::format_duration(ring_time)));
                    outcome.status = Some(StatusCode::REQUEST_TERMINATED);
                    return (outcome, AppRunning::default());
                }
                () = tokio::time::sleep(ring_time) => {}
            }
        }
        let mut invite = Some(invite);
        let mut app = AppRunning::default();
        let mut step = Step::Act(behaviour.action.clone(), behaviour.cause);
        // The conditions apply to the first relay only: a forward on busy that is busy again ends there.
        let mut conditions = Some(behaviour);
        loop {
            let (action, cause) = match step {
                Step::Done(status) => {
                    outcome.status = Some(status);
                    return (outcome, app);
                }
                Step::Act(action, cause) => (action, cause),
            };
            // A step to act on always comes with the INVITE handed back.
            let Some(pending) = invite.take() else { return (outcome, app) };
            if cause.is_some() {
                outcome.diversion = cause;
            }
            outcome.actions.push(match cause {
                Some(cause) => format!("{action} ({})", cause.diversion_reason()),
                None => action.to_string(),
            });
            step = match action {
                Action::Reject { .. } | Action::Answer(_) | Action::Announce { .. } => {
                    // Voicemail after a busy or unanswered leg 3 greets for that reason.
                    let diverted;
                    let info = match cause {
                        Some(cause) => {
                            diverted = CallInfo { absence: Absence::of_cause(cause.cause().as_u16()), ..info.clone() };
                            &diverted
                        }
                        None => info,
                    };
                    let (status, running) = self.settle_status(pending, &action, info).await;
                    if status.is_success() {
                        outcome.answered_at = Some(std::time::SystemTime::now());
                    }
                    outcome.codec = running.codec().map(|codec| codec.name().to_owned());
                    app = running;
                    Step::Done(status)
                }
                Action::Loop => self.relay(&mut outcome, pending, callee, None, conditions.take(), &mut invite).await,
                Action::Forward(to) => {
                    match limit.refusal(pending.request(), info.subscriber.as_ref().unwrap_or(callee), &to) {
                        Some(why) => {
                            warn!(call_id = %pending.essentials().call_id, to = %to, why, instead = %limit.instead,
                            "not forwarded again");
                            if let Some(recorded) = outcome.actions.last_mut() {
                                recorded.push_str(" (not forwarded: hop limit)");
                            }
                            invite = Some(pending);
                            Step::Act(limit.instead.clone(), cause)
                        }
                        None => {
                            let cause = cause.unwrap_or(ForwardCause::Unconditional);
                            outcome.diversion = Some(cause);
                            let diversion = Some((callee, cause));
                            self.relay(&mut outcome, pending, &to, diversion, conditions.take(), &mut invite).await
                        }
                    }
                }
            };
        }
    }

    /// Answers or rejects a call that has no subscriber to relay for (a relay action is
    /// refused with 500: config validation keeps it out).
    pub async fn settle(&self, invite: PendingInvite, action: &Action, info: &CallInfo) -> (Outcome, AppRunning) {
        let (status, app) = self.settle_status(invite, action, info).await;
        let answered_at = status.is_success().then(std::time::SystemTime::now);
        let codec = app.codec().map(|codec| codec.name().to_owned());
        let outcome = Outcome {
            actions: vec![action.to_string()],
            status: Some(status),
            answered_at,
            codec,
            ..Outcome::default()
        };
        (outcome, app)
    }

    /// As [`Engine::settle`], returning the final status and the answering app.
    async fn settle_status(&self, invite: PendingInvite, action: &Action, info: &CallInfo) -> (StatusCode, AppRunning) {
        match action {
            Action::Reject { status, reason } => {
                invite.reject(*status, Some(reason), None);
                (*status, AppRunning::default())
            }
            Action::Answer(app) => self.answerer.answer(invite, *app, info).await,
            Action::Announce { status, reason } => {
                (self.answerer.announce_then_reject(invite, *status, reason).await, AppRunning::default())
            }
            Action::Loop | Action::Forward(_) => {
                invite.reject(StatusCode::SERVER_INTERNAL_ERROR, None, Some("no subscriber to relay for"));
                (StatusCode::SERVER_INTERNAL_ERROR, AppRunning::default())
            }
        }
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
        let placed = match self.leg3_link(invite.user_agent(), invite.link()).await {
            Ok(link) => invite.user_agent().invite(spec, link).map_err(Leg3Error::from),
            Err(error) => Err(error),
        };
        let leg = match placed {
            Ok(leg) => {
                // The first leg 3 of a call without ring time measures the relay itself.
                if conditions.is_some_and(|c| c.ring_time.is_none()) {
                    self.stats.record_request_hop(invite.received_at().elapsed());
                }
                leg
            }
            Err(error) => {
                warn!(%call_id, %error, "leg 3 could not be sent to the core");
                return self.on_condition(
                    invite,
                    conditions.and_then(|c| c.on_unreachable.clone()),
                    ForwardCause::Unreachable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    keep,
                );
            }
        };
        outcome.legs_placed += 1;
        outcome.leg3_call_ids.push(leg.call_id().to_owned());
        info!(%call_id, leg3 = leg.call_id(), to = %target, "leg 3 placed");
        let no_answer = conditions.filter(|c| c.on_no_answer.is_some()).map(|c| c.no_answer_after);
        match b2bua::ring(&invite, leg, no_answer).await {
            LegOutcome::Answered(call, response) => {
                let answered_at = tokio::time::Instant::now();
                let Some(incoming) = invite.answer(response.body.clone()) else {
                    let _ = call.ack(None);
                    let _ = call.hangup().await;
                    return Step::Done(StatusCode::REQUEST_TERMINATED);
                };
                self.stats.record_answer_hop(answered_at.elapsed());
                outcome.answered_at = Some(std::time::SystemTime::now());
                outcome.codec = sdp_codec(&response.body);
                let end = b2bua::hold(incoming, call).await;
                info!(%call_id, ?end, "relayed call ended");
                // A side "ended" by ringer itself (a session timer, no ACK) was the TAS's doing.
                let by_peer = |reason: &str| reason == sip::dialog::BYE_FROM_PEER;
                outcome.ended_by = Some(match end {
                    JoinEnd::CallerEnded(reason) if by_peer(&reason) => EndedBy::Caller,
                    JoinEnd::CalleeEnded(reason) if by_peer(&reason) => EndedBy::Callee,
                    JoinEnd::NotAnswered => EndedBy::Caller,
                    JoinEnd::CallerEnded(_) | JoinEnd::CalleeEnded(_) | JoinEnd::NoAck => EndedBy::Tas,
                });
                Step::Done(StatusCode::OK)
            }
            LegOutcome::Refused(response) => {
                let next = match response.status.as_u16() {
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
                        outcome.ended_by = Some(EndedBy::Callee);
                        Step::Done(response.status)
                    }
                }
            }
            LegOutcome::NoAnswer(_) => self.on_condition(
                invite,
                conditions.and_then(|c| c.on_no_answer.clone()),
                ForwardCause::NoAnswer,
                StatusCode::TEMPORARILY_UNAVAILABLE,
                keep,
            ),
            LegOutcome::Unreachable => self.on_condition(
                invite,
                conditions.and_then(|c| c.on_unreachable.clone()),
                ForwardCause::Unreachable,
                StatusCode::REQUEST_TIMEOUT,
                keep,
            ),
            LegOutcome::CallerCancelled(_) => {
                outcome.ended_by = Some(EndedBy::Caller);
                Step::Done(StatusCode::REQUEST_TERMINATED)
            }
        }
    }

    fn on_condition(
        &self,
        invite: PendingInvite,
        action: Option<Action>,
        cause: ForwardCause,
        otherwise: StatusCode,
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
    async fn leg3_link(&self, ua: &UserAgent, leg2: &Link) -> Result<Link, Leg3Error> {
        match ua.outbound().core() {
            Some(core) => Ok(ua.outbound().link_to(core).await?),
            None if leg2.is_open() => Ok(leg2.clone()),
            None => Err(Leg3Error::NoWayBack),
        }
    }
}

/// Why leg 3 could not be sent to the core.
#[derive(Debug, thiserror::Error)]
enum Leg3Error {
    /// Leg 3 goes back over leg 2's connection when no core address is set, and it closed.
    #[error("leg 2's connection has closed and sip.core_uri is not set")]
    NoWayBack,
    /// No connection to the configured core.
    #[error(transparent)]
    Connect(#[from] sip::outbound::ConnectError),
    /// The INVITE could not be sent.
    #[error("INVITE not sent: {0}")]
    Request(#[from] sip::client::RequestError),
}

/// How far a call may be forwarded: hop limits against forwarding loops between subscribers
/// (each forward goes back through the core, which brings it to the TAS again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiversionLimit {
    /// Diversions a call may already show and still be forwarded.
    pub max: u32,
    /// What a call gets instead (never a relay).
    pub instead: Action,
}

impl DiversionLimit {
    /// Why `request` (for `subscriber`) may not be forwarded to `to`, or `None` when it may:
    /// too many diversions in its History-Info (entries with a `cause`) or Diversion headers
    /// (entries, or the largest RFC 5806 `counter`), or `to` already among the numbers it was
    /// diverted from (or the subscriber itself).
    pub fn refusal(&self, request: &sip::message::Request, subscriber: &Msisdn, to: &Msisdn) -> Option<&'static str> {
        let headers = &request.headers;
        let history = headers.values("History-Info");
        let diverted = headers.values("Diversion");
        // One entry per diversion carries the RFC 4458 `cause` in its URI (the new target).
        let by_history = history.iter().filter(|entry| has_cause(entry)).count();
        let by_counter = diverted.iter().filter_map(|entry| diversion_counter(entry)).max().unwrap_or(0);
        let count = u32::try_from(by_history.max(diverted.len())).unwrap_or(u32::MAX).max(by_counter);
        if count >= self.max {
            return Some("the call has been diverted as often as calls.max_diversions allows");
        }
        let numbers = history.iter().chain(diverted.iter()).filter_map(|entry| {
            let addr = NameAddr::parse(entry).ok()?;
            Msisdn::parse(&super::routing::number_of(&addr.uri)?).ok()
        });
        let mut seen = std::iter::once(subscriber.clone()).chain(numbers);
        seen.any(|number| number == *to).then_some("the target is already in the call's history (a forwarding loop)")
    }
}

/// The RFC 5806 `counter` of a Diversion entry: how many diversions it stands for.
fn diversion_counter(entry: &str) -> Option<u32> {
    let params = entry.rsplit_once('>').map_or(entry, |(_, after)| after);
    params.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("counter").then(|| value.trim().parse().ok()).flatten()
    })
}

/// Whether a History-Info entry's URI carries an RFC 4458 `cause` (the entry a diversion
/// retargeted to).
fn has_cause(entry: &str) -> bool {
    match NameAddr::parse(entry).map(|addr| addr.uri) {
        Ok(Uri::Sip(sip)) => sip.params.get("cause").is_some(),
        Ok(Uri::Tel { params, .. }) => params.get("cause").is_some(),
        _ => false,
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
) -> Result<InviteSpec, (StatusCode, &'static str)> {
    let request = invite.request();
    let essentials = invite.essentials();
    if b2bua::max_forwards(invite) == Some(0) {
        return Err((StatusCode::TOO_MANY_HOPS, "Max-Forwards reached zero"));
    }
    let uri = retarget(&request.uri, target).ok_or((StatusCode::NOT_FOUND, "the Request-URI cannot carry a number"))?;
    let mut spec = b2bua::onward(invite, uri, &CARRIED);
    // Leg 3 keeps no header parameter of leg 2's To.
    spec.to.params = Default::default();
    let headers = &mut spec.headers;
    match request.headers.typed::<SessionId>() {
        None => warn!(call_id = %essentials.call_id, "leg 2 carries no Session-ID: the core may not recognise leg 3"),
        Some(Err(error)) => {
            warn!(call_id = %essentials.call_id, %error, "leg 2's Session-ID is malformed: the core may not recognise leg 3")
        }
        Some(Ok(_)) => {}
    }
    if let Some((diverting, cause)) = diversion {
        let original = retarget(&request.uri, diverting)
            .ok_or((StatusCode::NOT_FOUND, "the Request-URI cannot carry a number"))?;
        let index = request.headers.values("History-Info").len() + 1;
        let code = cause.cause();
        let phrase = code.reason_phrase().replace(' ', "%20");
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
fn with_cause(uri: &Uri, cause: StatusCode) -> Uri {
    let mut uri = uri.clone();
    match &mut uri {
        Uri::Sip(sip) => sip.params.set("cause", Some(cause.to_string())),
        Uri::Tel { params, .. } => params.set("cause", Some(cause.to_string())),
        Uri::Other { .. } => {}
    }
    uri
}

/// The first audio codec of an SDP answer (its encoding name: `PCMA`, `opus`...).
fn sdp_codec(body: &[u8]) -> Option<String> {
    let sdp = sdp::SessionDescription::parse(std::str::from_utf8(body).ok()?).ok()?;
    let audio = sdp.media.iter().find(|media| media.kind == "audio" && media.port != 0)?;
    let payload_type = audio.formats.first()?.parse().ok()?;
    audio.rtpmap(payload_type).map(|(name, _)| name)
}
