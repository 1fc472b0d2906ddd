//! Supplementary-service codes dialled as calls (`*72+4799990002` forwards every call, `*73`
//! stops it, `*#72` tells where calls go): a subscriber whose calls the core loops through
//! this TAS dials one like a number; the router reads it before any number, changes the
//! subscriber's settings (the same as the settings API changes), and answers with what is now
//! set, spoken, then hangs up. No leg 3 is placed.
//!
//! Codes are configured per service (`[feature_codes.forward_always] on/off/query`); an `on`
//! code takes the target after it: an international number (`+…` or `00…`), nothing for
//! voicemail, and for no answer an optional `*seconds`. A trailing `#` is ignored.

use tracing::{info, warn};

use domain::types::{Msisdn, ServiceCode};

use crate::config::FeatureCodesConfig;
use crate::mailbox::prompts::Prompts;
use crate::mailbox::Mailboxes;
use crate::settings::{ForwardTarget, SubscriberSettings};

impl FeatureCodesConfig {
    /// What `code` asks, by the longest configured code it starts with.
    pub fn read(&self, code: &ServiceCode) -> Result<Request, Refusal> {
        let dialled = code.as_str();
        let mut best: Option<(usize, Service, Kind)> = None;
        let services = [
            (Service::ForwardAlways, &self.forward_always),
            (Service::ForwardBusy, &self.forward_busy),
            (Service::ForwardNoAnswer, &self.forward_no_answer),
            (Service::ForwardUnreachable, &self.forward_unreachable),
            (Service::DoNotDisturb, &self.do_not_disturb),
        ];
        for (service, codes) in services {
            for (kind, configured) in [(Kind::On, &codes.on), (Kind::Off, &codes.off), (Kind::Query, &codes.query)] {
                if dialled.starts_with(configured.as_str()) && best.is_none_or(|(len, ..)| configured.len() > len) {
                    best = Some((configured.len(), service, kind));
                }
            }
        }
        let (len, service, kind) = best.ok_or(Refusal::UnknownCode)?;
        let rest = dialled[len..].strip_suffix('#').unwrap_or(&dialled[len..]);
        match kind {
            Kind::Off if rest.is_empty() => Ok(Request::Off(service)),
            Kind::Query if rest.is_empty() => Ok(Request::Query(service)),
            Kind::On if service == Service::DoNotDisturb && rest.is_empty() => Ok(Request::On(service, None)),
            Kind::On if service != Service::DoNotDisturb => target(service, rest),
            _ => Err(Refusal::UnknownCode),
        }
    }
}

/// An `on` code's target: nothing for voicemail, else an international number, and for no
/// answer an optional `*seconds`.
fn target(service: Service, rest: &str) -> Result<Request, Refusal> {
    if rest.is_empty() {
        return Ok(Request::On(service, Some(Forward { target: ForwardTarget::Voicemail, seconds: None })));
    }
    let (number, seconds) = match rest.split_once('*') {
        Some((number, seconds)) if service == Service::ForwardNoAnswer => {
            (number, Some(seconds.parse::<u32>().map_err(|_| Refusal::BadNumber)?))
        }
        Some(_) => return Err(Refusal::BadNumber),
        None => (rest, None),
    };
    let international = match number.strip_prefix("00") {
        Some(digits) => format!("+{digits}"),
        None => number.to_owned(),
    };
    let number = Msisdn::parse(&international).map_err(|_| Refusal::BadNumber)?;
    Ok(Request::On(service, Some(Forward { target: ForwardTarget::Number(number), seconds })))
}

/// A setting codes act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Forward every call.
    ForwardAlways,
    /// Forward when busy.
    ForwardBusy,
    /// Forward when not answered.
    ForwardNoAnswer,
    /// Forward when unreachable.
    ForwardUnreachable,
    /// Refuse calls as busy.
    DoNotDisturb,
}

impl Service {
    /// The settings key (and config table) of the service.
    pub fn key(self) -> &'static str {
        match self {
            Service::ForwardAlways => "forward_always",
            Service::ForwardBusy => "forward_busy",
            Service::ForwardNoAnswer => "forward_no_answer",
            Service::ForwardUnreachable => "forward_unreachable",
            Service::DoNotDisturb => "do_not_disturb",
        }
    }

    /// The prompts saying the service is on / off (`forward-busy-on`...).
    fn prompts(self) -> (&'static str, &'static str) {
        match self {
            Service::ForwardAlways => ("forward-always-on", "forward-always-off"),
            Service::ForwardBusy => ("forward-busy-on", "forward-busy-off"),
            Service::ForwardNoAnswer => ("forward-no-answer-on", "forward-no-answer-off"),
            Service::ForwardUnreachable => ("forward-unreachable-on", "forward-unreachable-off"),
            Service::DoNotDisturb => ("do-not-disturb-on", "do-not-disturb-off"),
        }
    }

    fn forward(self, settings: &mut SubscriberSettings) -> Option<&mut Option<ForwardTarget>> {
        match self {
            Service::ForwardAlways => Some(&mut settings.forward_always),
            Service::ForwardBusy => Some(&mut settings.forward_busy),
            Service::ForwardNoAnswer => Some(&mut settings.forward_no_answer),
            Service::ForwardUnreachable => Some(&mut settings.forward_unreachable),
            Service::DoNotDisturb => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    On,
    Off,
    Query,
}

/// Where an `on` code forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The number, or voicemail.
    pub target: ForwardTarget,
    /// The no-answer time given with it.
    pub seconds: Option<u32>,
}

/// What a dialled code asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Switch on (a forward with its target; do-not-disturb with none).
    On(Service, Option<Forward>),
    /// Switch off.
    Off(Service),
    /// Say how it is set.
    Query(Service),
}

/// Why a code changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No configured code matches.
    #[error("no such code")]
    UnknownCode,
    /// The target is not an international number (or the seconds not a number).
    #[error("the number after the code is not international (+ or 00)")]
    BadNumber,
    /// The settings would be invalid (forwarding to oneself, timer out of range...).
    #[error("{0}")]
    NotAllowed(String),
    /// The store could not be read or written.
    #[error("settings not available: {0}")]
    Unavailable(String),
}

/// What the caller hears: prompts, and numbers spoken digit by digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spoken {
    /// A prompt by name.
    Prompt(&'static str),
    /// A number, each digit.
    Digits(String),
}

/// Carries out `request` for `subscriber` in `mailboxes`' store; returns what to say.
pub async fn perform(mailboxes: &Mailboxes, subscriber: &Msisdn, request: &Request) -> Result<Vec<Spoken>, Refusal> {
    let mut settings = SubscriberSettings::read(mailboxes.store(), subscriber)
        .await
        .map_err(|error| Refusal::Unavailable(error.to_string()))?;
    let service = match request {
        Request::Query(service) => *service,
        Request::Off(service) | Request::On(service, _) => {
            let service = *service;
            let on = match request {
                Request::On(_, forward) => forward.clone(),
                _ => None,
            };
            match service.forward(&mut settings) {
                Some(slot) => *slot = on.as_ref().map(|forward| forward.target.clone()),
                None => settings.do_not_disturb = matches!(request, Request::On(..)),
            }
            if let Some(seconds) = on.and_then(|forward| forward.seconds) {
                settings.no_answer_seconds = Some(seconds);
            }
            settings.check(subscriber).map_err(Refusal::NotAllowed)?;
            mailboxes
                .subscriber_settings()
                .save(subscriber, &settings)
                .await
                .map_err(|error| Refusal::Unavailable(error.to_string()))?;
            info!(%subscriber, service = service.key(), ?request, "settings changed by a feature code");
            service
        }
    };
    Ok(state_of(&settings, service))
}

/// How `service` stands in `settings`, as said to the subscriber.
fn state_of(settings: &SubscriberSettings, service: Service) -> Vec<Spoken> {
    let (on, off) = service.prompts();
    let do_not_disturb = settings.do_not_disturb;
    let mut settings = settings.clone();
    match service.forward(&mut settings) {
        None if do_not_disturb => vec![Spoken::Prompt(on)],
        Some(Some(ForwardTarget::Number(number))) => vec![Spoken::Prompt(on), Spoken::Digits(number.to_string())],
        Some(Some(ForwardTarget::Voicemail)) => vec![Spoken::Prompt(on), Spoken::Prompt("your-voicemail")],
        _ => vec![Spoken::Prompt(off)],
    }
}

/// What a refusal sounds like.
pub fn refusal_spoken(refusal: &Refusal) -> Vec<Spoken> {
    let prompt = match refusal {
        Refusal::UnknownCode => "code-unknown",
        Refusal::BadNumber | Refusal::NotAllowed(_) => "code-refused",
        Refusal::Unavailable(_) => "code-unavailable",
    };
    if let Refusal::Unavailable(why) = refusal {
        warn!(why, "a feature code could not be carried out");
    }
    vec![Spoken::Prompt(prompt)]
}

/// `spoken` as audio from `prompts`.
pub fn audio(prompts: &Prompts, spoken: &[Spoken]) -> Vec<i16> {
    let mut audio = Vec::new();
    for part in spoken {
        let parts = match part {
            Spoken::Prompt(name) => vec![prompts.get(name)],
            Spoken::Digits(number) => prompts.digits(number),
        };
        for samples in parts {
            audio.extend_from_slice(&samples);
        }
    }
    audio
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(code: &str) -> Result<Request, Refusal> {
        FeatureCodesConfig::default().read(&ServiceCode::parse(code).unwrap())
    }

    fn to(number: &str) -> Option<Forward> {
        Some(Forward { target: ForwardTarget::Number(Msisdn::parse(number).unwrap()), seconds: None })
    }

    #[test]
    fn codes_are_read_with_their_targets() {
        assert_eq!(read("*72+4799990002"), Ok(Request::On(Service::ForwardAlways, to("+4799990002"))));
        assert_eq!(read("*72004799990002#"), Ok(Request::On(Service::ForwardAlways, to("+4799990002"))));
        let voicemail = Some(Forward { target: ForwardTarget::Voicemail, seconds: None });
        assert_eq!(read("*90#"), Ok(Request::On(Service::ForwardBusy, voicemail)));
        let timed = Some(Forward { seconds: Some(20), ..to("+4799990002").unwrap() });
        assert_eq!(read("*92+4799990002*20#"), Ok(Request::On(Service::ForwardNoAnswer, timed)));
        assert_eq!(read("*73"), Ok(Request::Off(Service::ForwardAlways)));
        assert_eq!(read("*#72#"), Ok(Request::Query(Service::ForwardAlways)));
        assert_eq!(read("*78"), Ok(Request::On(Service::DoNotDisturb, None)));
        assert_eq!(read("*79#"), Ok(Request::Off(Service::DoNotDisturb)));
    }

    #[test]
    fn unknown_codes_and_bad_targets_are_refused() {
        assert_eq!(read("*99"), Err(Refusal::UnknownCode));
        assert_eq!(read("*73+4799990002"), Err(Refusal::UnknownCode), "off takes no number");
        assert_eq!(read("*78+4799990002"), Err(Refusal::UnknownCode), "do-not-disturb takes no number");
        assert_eq!(read("*7299990002"), Err(Refusal::BadNumber), "national numbers are not E.164");
        assert_eq!(read("*72+4799990002*20"), Err(Refusal::BadNumber), "seconds only for no answer");
        assert_eq!(read("*92+4799990002*"), Err(Refusal::BadNumber));
    }

    #[test]
    fn the_config_is_checked() {
        assert_eq!(FeatureCodesConfig::default().check(), Ok(()));
        let mut twice = FeatureCodesConfig::default();
        twice.forward_busy.off = "*73".into();
        let error = twice.check().unwrap_err();
        assert!(error.contains("feature_codes.forward_busy.off") && error.contains("forward_always.off"), "{error}");
        let mut bad = FeatureCodesConfig::default();
        bad.do_not_disturb.on = "78".into();
        assert!(bad.check().unwrap_err().starts_with("feature_codes.do_not_disturb.on"));
    }

    #[test]
    fn states_are_spoken() {
        let mut settings = SubscriberSettings::default();
        assert_eq!(state_of(&settings, Service::ForwardAlways), vec![Spoken::Prompt("forward-always-off")]);
        settings.forward_always = Some(ForwardTarget::Number(Msisdn::parse("+4712").unwrap()));
        settings.forward_busy = Some(ForwardTarget::Voicemail);
        settings.do_not_disturb = true;
        assert_eq!(
            state_of(&settings, Service::ForwardAlways),
            vec![Spoken::Prompt("forward-always-on"), Spoken::Digits("+4712".into())]
        );
        assert_eq!(
            state_of(&settings, Service::ForwardBusy),
            vec![Spoken::Prompt("forward-busy-on"), Spoken::Prompt("your-voicemail")]
        );
        assert_eq!(state_of(&settings, Service::DoNotDisturb), vec![Spoken::Prompt("do-not-disturb-on")]);
    }
}
