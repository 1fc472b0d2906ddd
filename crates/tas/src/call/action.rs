//! What the TAS does with a call: an [`Action`], and a subscriber's [`Behaviour`] per direction
//! (the action, an optional ring time, and what to do when the called side is busy, does not
//! answer or cannot be reached: CFB, CFNR and CFNRc as users set them on a phone).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use domain::types::{Msisdn, RouteType};
use sip::message::StatusCode;

use super::routing::Direction;

/// An app the TAS answers a call with itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum App {
    /// Greeting, beep, then a recording into the subscriber's mailbox.
    Voicemail,
    /// A recorded message, then hang-up.
    Announcement,
    /// Sends back what it receives.
    Echo,
    /// The mailbox menu its owner calls in to (listen, delete, greetings, PIN).
    VoicemailMain,
    /// What a dialled feature code did, spoken (never configured: the router chooses it).
    FeatureCode,
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            App::Voicemail => "voicemail",
            App::Announcement => "announcement",
            App::Echo => "echo",
            App::VoicemailMain => "voicemail-main",
            App::FeatureCode => "feature-code",
        })
    }
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
    pub fn cause(self) -> StatusCode {
        match self {
            ForwardCause::Unconditional => StatusCode::MOVED_TEMPORARILY,
            ForwardCause::Busy => StatusCode::BUSY_HERE,
            ForwardCause::NoAnswer => StatusCode::REQUEST_TIMEOUT,
            ForwardCause::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
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

/// What the TAS does with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Back to the core as leg 3, to the same number with the prefix removed.
    Loop,
    /// Back to the core as leg 3, to another number (with History-Info and Diversion).
    Forward(Msisdn),
    /// A final refusal (400-699) with its reason phrase.
    Reject {
        /// The status.
        status: StatusCode,
        /// The reason phrase.
        reason: String,
    },
    /// Answered by the TAS itself.
    Answer(App),
    /// The announcement as early media (183), then this refusal ("number not in service").
    Announce {
        /// The final status (400-699).
        status: StatusCode,
        /// Its reason phrase.
        reason: String,
    },
}

impl Action {
    /// `reject <status>` with the standard phrase.
    pub fn reject(status: StatusCode) -> Self {
        Action::Reject { status, reason: status.reason_phrase().to_owned() }
    }

    /// Whether the action places leg 3.
    pub fn is_relay(&self) -> bool {
        matches!(self, Action::Loop | Action::Forward(_))
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (verb, rest) = text.split_once(char::is_whitespace).map(|(v, r)| (v, r.trim())).unwrap_or((text, ""));
        let expected =
            "expected loop, forward <+E.164>, reject <code> [reason], announce <code> [reason] or answer [voicemail|announcement|echo|voicemail-main]";
        match verb.to_ascii_lowercase().as_str() {
            "loop" if rest.is_empty() => Ok(Action::Loop),
            "forward" => Msisdn::parse(rest).map(Action::Forward).map_err(|error| format!("action {text:?}: {error}")),
            "reject" | "announce" => {
                let (code, reason) = rest.split_once(' ').map(|(c, r)| (c, r.trim())).unwrap_or((rest, ""));
                let status = code
                    .parse::<u16>()
                    .ok()
                    .and_then(|code| StatusCode::new(code).ok())
                    .ok_or_else(|| format!("action {text:?}: {code:?} is not a status code"))?;
                if status.class() < 4 {
                    return Err(format!("action {text:?}: a rejection is 400 to 699"));
                }
                let reason = if reason.is_empty() { status.reason_phrase().to_owned() } else { reason.to_owned() };
                Ok(match verb.eq_ignore_ascii_case("reject") {
                    true => Action::Reject { status, reason },
                    false => Action::Announce { status, reason },
                })
            }
            "answer" => match rest.to_ascii_lowercase().as_str() {
                "" | "voicemail" => Ok(Action::Answer(App::Voicemail)),
                "announcement" => Ok(Action::Answer(App::Announcement)),
                "echo" => Ok(Action::Answer(App::Echo)),
                "voicemail-main" => Ok(Action::Answer(App::VoicemailMain)),
                other => Err(format!(
                    "action {text:?}: unknown app {other:?} (voicemail, announcement, echo, voicemail-main)"
                )),
            },
            _ => Err(format!("action {text:?}: {expected}")),
        }
    }
}

impl TryFrom<String> for Action {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Written as the text it is read from (`reject 486`, `forward +4712345678`).
impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Loop => f.write_str("loop"),
            Action::Forward(to) => write!(f, "forward {to}"),
            Action::Reject { status, reason } => write!(f, "reject {status} {reason}"),
            Action::Answer(app) => write!(f, "answer {app}"),
            Action::Announce { status, reason } => write!(f, "announce {status} {reason}"),
        }
    }
}

/// What a subscriber's calls in one direction get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// The action.
    pub action: Action,
    /// Send 180 Ringing and wait this long before acting.
    pub ring_time: Option<Duration>,
    /// How long leg 3 may ring before `on_no_answer` applies.
    pub no_answer_after: Duration,
    /// When leg 3 gets 486 or 600 (call forwarding on busy).
    pub on_busy: Option<Action>,
    /// When leg 3 rings for `no_answer_after` (call forwarding on no reply).
    pub on_no_answer: Option<Action>,
    /// When leg 3 gets 408, 480 or 503, or no answer at all from the core (not reachable).
    pub on_unreachable: Option<Action>,
    /// Why `action` applies from the start, when it stands for a condition (do-not-disturb:
    /// busy, so a forward says `user-busy` and voicemail greets busy); `None`: unconditional.
    pub cause: Option<ForwardCause>,
}

/// The default of `no_answer_after`: what phones offer for CFNR.
pub const DEFAULT_NO_ANSWER: Duration = Duration::from_secs(20);

impl Behaviour {
    /// Just `action`, at once, with no conditions.
    pub fn plain(action: Action) -> Self {
        Self {
            action,
            ring_time: None,
            no_answer_after: DEFAULT_NO_ANSWER,
            on_busy: None,
            on_no_answer: None,
            on_unreachable: None,
            cause: None,
        }
    }

    /// What a subscriber of `route_type` gets in `direction` when the config says nothing, or
    /// `None` when the route type does not bring such calls to the TAS.
    pub fn default_for(route_type: RouteType, direction: Direction) -> Option<Self> {
        match (route_type, direction) {
            (RouteType::Loop, _)
            | (RouteType::LoopMo, Direction::Originating)
            | (RouteType::LoopMt, Direction::Terminating) => Some(Self::plain(Action::Loop)),
            // The TAS leg rings beside the handset: let the subscriber answer first, then take a message.
            (RouteType::Fork, Direction::Terminating) => {
                Some(Self { ring_time: Some(DEFAULT_NO_ANSWER), ..Self::plain(Action::Answer(App::Voicemail)) })
            }
            (RouteType::Fallback, Direction::Terminating) => Some(Self::plain(Action::Answer(App::Voicemail))),
            // The core forks the subscriber's own calls to the TAS beside the callee: decline
            // the copy so the callee's branch carries the call. 480, not a 6xx: a 6xx ends
            // every branch of a fork (RFC 3261 §16.7).
            (RouteType::Fork, Direction::Originating) => {
                Some(Self::plain(Action::reject(StatusCode::TEMPORARILY_UNAVAILABLE)))
            }
            _ => None,
        }
    }

    /// Checks the combination: conditions need a relay to apply to, and cannot loop again.
    pub fn validate(&self) -> Result<(), String> {
        let conditions = [
            ("on_busy", &self.on_busy),
            ("on_no_answer", &self.on_no_answer),
            ("on_unreachable", &self.on_unreachable),
        ];
        for (name, condition) in conditions {
            match condition {
                Some(Action::Loop) => return Err(format!("{name} = \"loop\" would loop the same call again")),
                Some(_) if !self.action.is_relay() => {
                    return Err(format!("{name} applies to loop or forward, not to {}", self.action))
                }
                _ => {}
            }
        }
        if self.no_answer_after.is_zero() {
            return Err("no_answer_after must be above zero".into());
        }
        Ok(())
    }
}

/// A behaviour in the config: an action alone (`mt = "loop"`) or a table. The database keeps
/// it as JSON of the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum BehaviourConfig {
    /// Just the action.
    Action(Action),
    /// The action and its conditions.
    Full {
        /// The action.
        action: Action,
        /// Ring this long (180 Ringing) before acting.
        #[serde(default, with = "humantime_serde")]
        ring_time: Option<Duration>,
        /// How long leg 3 may ring before `on_no_answer` applies.
        #[serde(default, with = "humantime_serde")]
        no_answer_after: Option<Duration>,
        /// On busy (486, 600).
        #[serde(default)]
        on_busy: Option<Action>,
        /// On no answer.
        #[serde(default)]
        on_no_answer: Option<Action>,
        /// On not reachable (408, 480, 503, no response).
        #[serde(default)]
        on_unreachable: Option<Action>,
    },
}

impl From<BehaviourConfig> for Behaviour {
    fn from(config: BehaviourConfig) -> Self {
        match config {
            BehaviourConfig::Action(action) => Behaviour::plain(action),
            BehaviourConfig::Full { action, ring_time, no_answer_after, on_busy, on_no_answer, on_unreachable } => {
                Behaviour {
                    action,
                    ring_time,
                    no_answer_after: no_answer_after.unwrap_or(DEFAULT_NO_ANSWER),
                    on_busy,
                    on_no_answer,
                    on_unreachable,
                    cause: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_print() {
        for (text, action) in [
            ("loop", Action::Loop),
            ("forward +4799991111", Action::Forward(Msisdn::parse("+4799991111").unwrap())),
            ("reject 486", Action::Reject { status: StatusCode::BUSY_HERE, reason: "Busy Here".into() }),
            ("reject 603 Not Today", Action::Reject { status: StatusCode::DECLINE, reason: "Not Today".into() }),
            ("answer", Action::Answer(App::Voicemail)),
            ("answer echo", Action::Answer(App::Echo)),
            ("ANSWER announcement", Action::Answer(App::Announcement)),
            ("announce 404", Action::Announce { status: StatusCode::NOT_FOUND, reason: "Not Found".into() }),
            (
                "announce 410 Number not in service",
                Action::Announce { status: StatusCode::GONE, reason: "Number not in service".into() },
            ),
        ] {
            assert_eq!(text.parse::<Action>(), Ok(action.clone()), "{text}");
            assert_eq!(action.to_string().parse::<Action>(), Ok(action), "round trip of {text}");
        }
        for bad in ["", "loop now", "forward", "forward 4799", "reject", "reject 200", "reject x", "answer fax", "ring"]
        {
            assert!(bad.parse::<Action>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn conditions_need_a_relay_and_cannot_loop() {
        let mut behaviour = Behaviour::plain(Action::Loop);
        behaviour.on_busy = Some(Action::Answer(App::Voicemail));
        assert_eq!(behaviour.validate(), Ok(()));
        behaviour.on_no_answer = Some(Action::Loop);
        assert!(behaviour.validate().unwrap_err().contains("loop the same call"));
        let mut answer = Behaviour::plain(Action::reject(StatusCode::BUSY_HERE));
        answer.on_busy = Some(Action::Answer(App::Voicemail));
        assert!(answer.validate().unwrap_err().contains("applies to loop or forward"));
    }

    #[test]
    fn route_types_bring_their_directions() {
        use Direction::{Originating as Mo, Terminating as Mt};
        let brings = |route, direction| Behaviour::default_for(route, direction).is_some();
        assert!(brings(RouteType::Loop, Mo) && brings(RouteType::Loop, Mt));
        assert!(brings(RouteType::LoopMo, Mo) && !brings(RouteType::LoopMo, Mt));
        assert!(!brings(RouteType::LoopMt, Mo) && brings(RouteType::LoopMt, Mt));
        assert!(brings(RouteType::Fork, Mo) && brings(RouteType::Fork, Mt));
        assert_eq!(
            Behaviour::default_for(RouteType::Fork, Mo).map(|b| b.action),
            Some(Action::reject(StatusCode::TEMPORARILY_UNAVAILABLE))
        );
        assert!(!brings(RouteType::Fallback, Mo) && brings(RouteType::Fallback, Mt));
        assert!(!brings(RouteType::Ingress, Mo) && !brings(RouteType::Ingress, Mt));
    }
}
