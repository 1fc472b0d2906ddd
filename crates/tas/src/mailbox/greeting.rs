//! Which greeting a caller hears: the owner's busy greeting when the owner was busy, the
//! unavailable one when the owner did not answer or could not be reached, the temporary one
//! over both while it is set. Why the call came is the B2BUA's own condition, or what the
//! network wrote: the Request-URI's or History-Info's RFC 4458 `cause`, else Diversion's
//! RFC 5806 `reason`.

use std::fmt;
use std::str::FromStr;

use domain::types::Msisdn;
use sip::message::headers::Headers;
use sip::message::Uri;

/// The greetings a mailbox keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GreetingKind {
    /// For callers the owner did not answer, or who could not reach the owner.
    Unavailable,
    /// For callers who found the owner busy.
    Busy,
    /// Over both, while set (holidays).
    Temporary,
    /// The owner's name, said before the system greeting where the owner recorded no other.
    Name,
}

impl GreetingKind {
    /// Every kind, in the options menu's order (keys 1 to 4).
    pub const ALL: [GreetingKind; 4] =
        [GreetingKind::Unavailable, GreetingKind::Busy, GreetingKind::Name, GreetingKind::Temporary];

    /// Its name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            GreetingKind::Unavailable => "unavailable",
            GreetingKind::Busy => "busy",
            GreetingKind::Temporary => "temporary",
            GreetingKind::Name => "name",
        }
    }
}

impl fmt::Display for GreetingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GreetingKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        GreetingKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not a greeting: unavailable, busy, temporary or name"))
    }
}

/// Why the owner did not take the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Absence {
    /// Busy: the busy greeting.
    Busy,
    /// No answer, unreachable, or nothing told: the unavailable greeting.
    #[default]
    Unavailable,
}

impl Absence {
    /// From an RFC 4458 `cause` (a SIP status): 486 and 600 busy, anything else unavailable.
    pub fn of_cause(cause: u16) -> Self {
        match cause {
            486 | 600 => Absence::Busy,
            _ => Absence::Unavailable,
        }
    }

    /// What the network wrote on an INVITE that reached `owner`'s voicemail, most recent
    /// first: the Request-URI's `cause`; the last History-Info entry with one whose diverting
    /// entry (the one before it) is `owner`; the top Diversion's `reason` (`user-busy` is
    /// busy) when `owner` diverted. A cause another subscriber's diversion left on the call
    /// (it was busy, and forwarded here) is theirs, not the owner's. `None` when nothing tells.
    pub fn of_request(uri: &Uri, headers: &Headers, owner: &Msisdn) -> Option<Self> {
        let uri_cause = match uri {
            Uri::Sip(sip) => sip.params.get("cause").flatten().map(str::to_owned),
            Uri::Tel { params, .. } => params.get("cause").flatten().map(str::to_owned),
            _ => None,
        };
        if let Some(cause) = uri_cause.and_then(|cause| cause.parse().ok()) {
            return Some(Self::of_cause(cause));
        }
        let history = headers.values("History-Info");
        let owners = history.windows(2).rev().filter(|pair| number_in(pair[0]).as_ref() == Some(owner));
        if let Some(cause) = owners.into_iter().find_map(|pair| cause_in(pair[1])) {
            return Some(Self::of_cause(cause));
        }
        let diversion = headers.values("Diversion");
        let top = diversion.first().filter(|top| number_in(top).as_ref() == Some(owner))?;
        let reason = param(top, "reason")?;
        Some(match reason.trim_matches('"').to_ascii_lowercase().as_str() {
            "user-busy" => Absence::Busy,
            _ => Absence::Unavailable,
        })
    }
}

/// The number of a History-Info or Diversion entry's URI.
fn number_in(entry: &str) -> Option<Msisdn> {
    let addr = sip::message::header::NameAddr::parse(entry).ok()?;
    let user = match &addr.uri {
        Uri::Sip(sip) => sip.user.as_deref()?.split(';').next()?.to_owned(),
        Uri::Tel { number, .. } => number.clone(),
        Uri::Other { .. } => return None,
    };
    Msisdn::parse(&user).ok()
}

/// The `cause` of a History-Info entry's target URI (`<sip:...;cause=486>`); the escaped
/// `Reason` header inside an entry (`?Reason=SIP%3Bcause%3D486`) is the previous hop's, not it.
fn cause_in(entry: &str) -> Option<u16> {
    let target = entry.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(uri, _)| uri)?;
    let params = target.split_once('?').map_or(target, |(before, _)| before);
    param(params, "cause")?.parse().ok()
}

/// The value of `;name=value` in `text`, case-insensitively by name.
fn param<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.split(';').skip(1).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().split(['>', ',']).next().unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn absence(uri: &str, headers: &[(&str, &str)]) -> Option<Absence> {
        absence_of("+4711", uri, headers)
    }

    fn absence_of(owner: &str, uri: &str, headers: &[(&str, &str)]) -> Option<Absence> {
        let mut list = Headers::new();
        for (name, value) in headers {
            list.push(name, *value);
        }
        Absence::of_request(&Uri::parse(uri).unwrap(), &list, &Msisdn::parse(owner).unwrap())
    }

    #[test]
    fn the_reason_comes_from_the_uri_history_info_or_diversion() {
        assert_eq!(absence("sip:+4799@tas;cause=486", &[]), Some(Absence::Busy));
        assert_eq!(absence("sip:+4799@tas;cause=480", &[]), Some(Absence::Unavailable));
        // Our own leg 3's shape: the escaped Reason of the first entry is not the cause.
        let history = "<sip:+4711@core?Reason=SIP%3Bcause%3D486%3Btext%3D%22Busy%22>;index=1,<sip:+4722@core;cause=408>;index=1.1;mp=1";
        assert_eq!(absence("sip:+4722@tas", &[("History-Info", history)]), Some(Absence::Unavailable));
        let busy = "<sip:+4711@core>;index=1,<sip:+4722@core;cause=486>;index=1.1";
        assert_eq!(absence("sip:+4722@tas", &[("History-Info", busy)]), Some(Absence::Busy));
        assert_eq!(
            absence("sip:+4722@tas", &[("Diversion", "<sip:+4711@core>;reason=user-busy;counter=1")]),
            Some(Absence::Busy)
        );
        assert_eq!(
            absence("sip:+4722@tas", &[("Diversion", "<sip:+4711@core>;reason=\"no-answer\"")]),
            Some(Absence::Unavailable)
        );
        assert_eq!(absence("sip:+4722@tas", &[("History-Info", "<sip:+4711@core>;index=1")]), None);
        assert_eq!(absence("tel:+4722;cause=600", &[]), Some(Absence::Busy));
    }

    #[test]
    fn a_cause_another_subscriber_left_is_not_the_owner_s() {
        // +4711 was busy and forwarded to +4722, whose voicemail takes the call.
        let busy = "<sip:+4711@core>;index=1,<sip:+4722@core;cause=486>;index=1.1";
        assert_eq!(absence_of("+4722", "sip:+4722@tas", &[("History-Info", busy)]), None);
        let diversion = "<sip:+4711@core>;reason=user-busy;counter=1";
        assert_eq!(absence_of("+4722", "sip:+4722@tas", &[("Diversion", diversion)]), None);
    }

    #[test]
    fn greeting_kinds_round_trip_and_refuse_others() {
        for kind in GreetingKind::ALL {
            assert_eq!(kind.as_str().parse::<GreetingKind>(), Ok(kind));
        }
        assert!("holiday".parse::<GreetingKind>().unwrap_err().contains("unavailable, busy"));
    }
}
