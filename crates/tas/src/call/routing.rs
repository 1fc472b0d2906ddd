//! Which subscriber a call from the core is for, and in which direction: the core inserts the
//! registration's MO prefix after the `+` of the Request-URI when the caller is registered,
//! else the MT prefix when the answerer is. Pure functions, table-tested.

pub use domain::types::Direction;
use std::collections::{HashMap, HashSet};

use domain::types::{Msisdn, Prefix, RouteType, ServiceCode};
use sip::message::grammar::split_list;
use sip::message::header::NameAddr;
use sip::message::{Headers, Uri};

/// A subscriber as the router knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedSubscriber {
    /// The number.
    pub msisdn: Msisdn,
    /// Its route type.
    pub route_type: RouteType,
    /// Its MO prefix.
    pub mo_prefix: Option<Prefix>,
    /// Its MT prefix.
    pub mt_prefix: Option<Prefix>,
}

/// What the router made of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The direction.
    pub direction: Direction,
    /// The subscriber the TAS acts for.
    pub subscriber: Msisdn,
    /// The called number with the prefix removed (where leg 3 goes).
    pub callee: Msisdn,
    /// The prefix that was found, if the call carried one.
    pub prefix: Option<Prefix>,
}

/// Why a call could not be classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The Request-URI names no E.164 number (`+` and digits).
    #[error("Request-URI {0:?} holds no E.164 number")]
    NoNumber(String),
    /// Neither a prefix nor the caller or callee matches a subscriber of this TAS.
    #[error("no subscriber of this TAS matches {0} (no known prefix, caller or callee)")]
    UnknownNumber(String),
}

/// A stable order of the directions, for sorting prefixes.
fn order(direction: Direction) -> u8 {
    match direction {
        Direction::Originating => 0,
        Direction::Terminating => 1,
    }
}

/// The `+digits` number of a `sip:`/`sips:` user part or a `tel:` URI, visual separators removed.
pub fn number_of(uri: &Uri) -> Option<String> {
    let raw = match uri {
        Uri::Sip(sip) => sip.user.as_deref()?.split(';').next()?,
        Uri::Tel { number, .. } => number.as_str(),
        Uri::Other { .. } => return None,
    };
    let digits: String = raw.chars().filter(|c| !matches!(c, '-' | '.' | '(' | ')')).collect();
    let rest = digits.strip_prefix('+')?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The caller's number: `asserted` (what the core asserts, [`asserted_caller`]), else From.
pub fn caller_number(asserted: Option<&Msisdn>, from: &NameAddr) -> Option<Msisdn> {
    asserted.cloned().or_else(|| number_of(&from.uri).and_then(|number| Msisdn::parse(&number).ok()))
}

/// The caller's number as the network asserts it (RFC 3325 P-Asserted-Identity), not as the
/// caller claims it in From: what may stand in for a PIN.
pub fn asserted_caller(headers: &Headers) -> Option<Msisdn> {
    headers
        .get_all("P-Asserted-Identity")
        .flat_map(split_list)
        .filter_map(|value| number_of(&NameAddr::parse(value).ok()?.uri))
        .find_map(|number| Msisdn::parse(&number).ok())
}

/// The subscribers of this TAS and their prefixes, each with what the caller attached to it
/// (`T`: the router keeps its behaviours there, so one map entry holds all a call needs).
#[derive(Debug, Clone)]
pub struct RoutingTable<T = ()> {
    /// The subscribers by number: a call looks up two numbers at most, whatever their count.
    subscribers: HashMap<Msisdn, Routed<T>>,
    /// Every prefix in use with its direction, longest first (where prefixes overlap, the
    /// longest wins); a few, shared by many subscribers.
    prefixes: Vec<(Prefix, Direction)>,
}

/// One subscriber as the table keeps it: its number is the map's key.
#[derive(Debug, Clone)]
struct Routed<T> {
    route_type: RouteType,
    mo_prefix: Option<Prefix>,
    mt_prefix: Option<Prefix>,
    attached: T,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        Self { subscribers: HashMap::new(), prefixes: Vec::new() }
    }
}

impl<T> RoutingTable<T> {
    /// A table of `subscribers`, each with what the caller attaches to it.
    pub fn new(subscribers: impl IntoIterator<Item = (RoutedSubscriber, T)>) -> Self {
        let mut distinct_prefixes = HashSet::new();
        let subscribers: HashMap<Msisdn, Routed<T>> = subscribers
            .into_iter()
            .map(|(s, attached)| {
                distinct_prefixes.extend(s.mo_prefix.iter().map(|p| (p.clone(), Direction::Originating)));
                distinct_prefixes.extend(s.mt_prefix.iter().map(|p| (p.clone(), Direction::Terminating)));
                let routed =
                    Routed { route_type: s.route_type, mo_prefix: s.mo_prefix, mt_prefix: s.mt_prefix, attached };
                (s.msisdn, routed)
            })
            .collect();
        let mut prefixes: Vec<(Prefix, Direction)> = distinct_prefixes.into_iter().collect();
        prefixes.sort_by(|(a, a_direction), (b, b_direction)| {
            b.as_str()
                .len()
                .cmp(&a.as_str().len())
                .then(a.as_str().cmp(b.as_str()))
                .then(order(*a_direction).cmp(&order(*b_direction)))
        });
        Self { subscribers, prefixes }
    }

    /// The route type of subscriber `msisdn`.
    pub fn route_type(&self, msisdn: &Msisdn) -> Option<RouteType> {
        self.subscribers.get(msisdn).map(|s| s.route_type)
    }

    /// What was attached to subscriber `msisdn`.
    pub fn attached(&self, msisdn: &Msisdn) -> Option<&T> {
        self.subscribers.get(msisdn).map(|s| &s.attached)
    }

    /// The subscriber with number `msisdn`, with its number as the table keeps it.
    fn find(&self, msisdn: &Msisdn) -> Option<(&Msisdn, &Routed<T>)> {
        self.subscribers.get_key_value(msisdn)
    }

    /// A service code the caller dialled (`*72+4799990002`), and the subscriber it is for:
    /// the caller, when a subscriber here, with its MO prefix (if it has one) between the `+`
    /// and the code; `#` may come escaped (`%23`), in `sip:` or `tel:` form.
    pub fn service_code(&self, request_uri: &Uri, caller: Option<&Msisdn>) -> Option<(Msisdn, ServiceCode)> {
        let written = match request_uri {
            Uri::Sip(sip) => sip.user.as_deref()?.split(';').next()?,
            Uri::Tel { number, .. } => number.as_str(),
            Uri::Other { .. } => return None,
        };
        let (subscriber, routed) = self.find(caller?)?;
        let dialled = written.strip_prefix('+').unwrap_or(written);
        let dialled = match &routed.mo_prefix {
            Some(prefix) => dialled.strip_prefix(prefix.as_str())?,
            None => dialled,
        };
        let code = ServiceCode::from_escaped(dialled).ok()?;
        Some((subscriber.clone(), code))
    }

    /// Classifies a call from its Request-URI and the caller's number (From or
    /// P-Asserted-Identity, when it is a `+` number).
    pub fn classify(&self, request_uri: &Uri, caller: Option<&Msisdn>) -> Result<Classified, RoutingError> {
        let number = number_of(request_uri).ok_or_else(|| RoutingError::NoNumber(request_uri.to_string()))?;
        let digits = &number[1..];
        let candidates = self
            .prefixes
            .iter()
            .filter(|(prefix, _)| digits.starts_with(prefix.as_str()) && digits.len() > prefix.as_str().len());
        for (prefix, direction) in candidates {
            let direction = *direction;
            let Ok(callee) = Msisdn::parse(&format!("+{}", &digits[prefix.as_str().len()..])) else { continue };
            let subscriber = match direction {
                Direction::Originating => {
                    caller.and_then(|c| self.find(c)).filter(|(_, s)| s.mo_prefix.as_ref() == Some(prefix))
                }
                Direction::Terminating => self.find(&callee).filter(|(_, s)| s.mt_prefix.as_ref() == Some(prefix)),
            };
            if let Some((subscriber, _)) = subscriber {
                return Ok(Classified {
                    direction,
                    subscriber: subscriber.clone(),
                    callee,
                    prefix: Some(prefix.clone()),
                });
            }
        }
        // Registrations without prefixes: the caller, then the callee, against the subscribers.
        let callee = Msisdn::parse(&number).map_err(|_| RoutingError::NoNumber(number.clone()))?;
        if let Some((subscriber, _)) = caller.and_then(|c| self.find(c)).filter(|(_, s)| s.mo_prefix.is_none()) {
            return Ok(Classified {
                direction: Direction::Originating,
                subscriber: subscriber.clone(),
                callee,
                prefix: None,
            });
        }
        if let Some((subscriber, _)) = self.find(&callee).filter(|(_, s)| s.mt_prefix.is_none()) {
            return Ok(Classified {
                direction: Direction::Terminating,
                subscriber: subscriber.clone(),
                callee,
                prefix: None,
            });
        }
        Err(RoutingError::UnknownNumber(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(number: &str, mo: Option<&str>, mt: Option<&str>) -> RoutedSubscriber {
        RoutedSubscriber {
            msisdn: Msisdn::parse(number).unwrap(),
            route_type: RouteType::Loop,
            mo_prefix: mo.map(|p| Prefix::parse(p).unwrap()),
            mt_prefix: mt.map(|p| Prefix::parse(p).unwrap()),
        }
    }

    /// Each subscriber attached its own route name, to see the table hand back the right one.
    fn table() -> RoutingTable<&'static str> {
        RoutingTable::new([
            (subscriber("+4799990001", Some("11"), Some("22")), "first"),
            (subscriber("+4799990002", Some("111"), None), "second"),
            (subscriber("+4799990003", None, None), "third"),
            (subscriber("+4799990004", None, Some("2")), "fourth"),
        ])
    }

    fn msisdn(text: &str) -> Msisdn {
        Msisdn::parse(text).unwrap()
    }

    #[test]
    fn service_codes_come_from_subscribers_with_their_mo_prefix() {
        let table = table();
        let code = |uri: &str, caller: &str| {
            table
                .service_code(&Uri::parse(uri).unwrap(), Some(&msisdn(caller)))
                .map(|(subscriber, code)| (subscriber.as_str().to_owned(), code.as_str().to_owned()))
        };
        let first = Some(("+4799990001".to_owned(), "*72+4799990002".to_owned()));
        assert_eq!(code("sip:+11*72+4799990002@tas.example;user=phone", "+4799990001"), first);
        assert_eq!(code("tel:+11*72+4799990002", "+4799990001"), first);
        let query = Some(("+4799990003".to_owned(), "*#72#".to_owned()));
        assert_eq!(code("sip:+*%2372%23@tas.example", "+4799990003"), query, "no prefix, # escaped");
        assert_eq!(code("sip:*%2372%23@tas.example", "+4799990003"), query, "no + either");
        assert_eq!(code("sip:+22*73@tas.example", "+4799990001"), None, "the MT prefix is not the caller's");
        assert_eq!(code("sip:+11*73@tas.example", "+4711111111"), None, "not a subscriber here");
        assert_eq!(code("sip:+114799990002@tas.example", "+4799990001"), None, "a number, not a code");
        assert_eq!(table.service_code(&Uri::parse("sip:+11*73@tas.example").unwrap(), None), None);
    }

    #[test]
    fn the_prefix_table() {
        let table = table();
        // (Request-URI, caller) -> (direction, subscriber, callee, prefix)
        type Case = (&'static str, Option<&'static str>, Direction, &'static str, &'static str, Option<&'static str>);
        let cases: &[Case] = &[
            (
                "sip:+1147112334455@core.example;user=phone",
                Some("+4799990001"),
                Direction::Originating,
                "+4799990001",
                "+47112334455",
                Some("11"),
            ),
            (
                "tel:+1147112334455",
                Some("+4799990001"),
                Direction::Originating,
                "+4799990001",
                "+47112334455",
                Some("11"),
            ),
            (
                "sips:+11147112334455@core.example",
                Some("+4799990002"),
                Direction::Originating,
                "+4799990002",
                "+47112334455",
                Some("111"),
            ),
            // MO prefix 11 for +...01 and 111 for +...02 overlap: the longest that fits the caller wins.
            (
                "sip:+11147112334455@core.example",
                Some("+4799990001"),
                Direction::Originating,
                "+4799990001",
                "+147112334455",
                Some("11"),
            ),
            (
                "sip:+224799990001@core.example;user=phone",
                Some("+4711111111"),
                Direction::Terminating,
                "+4799990001",
                "+4799990001",
                Some("22"),
            ),
            ("sip:+24799990004@core.example", None, Direction::Terminating, "+4799990004", "+4799990004", Some("2")),
            ("tel:+47-9999-0003", Some("+4711111111"), Direction::Terminating, "+4799990003", "+4799990003", None),
            (
                "sip:+4711111111@core.example",
                Some("+4799990003"),
                Direction::Originating,
                "+4799990003",
                "+4711111111",
                None,
            ),
        ];
        for (uri, caller, direction, subscriber, callee, prefix) in cases {
            let classified = table.classify(&Uri::parse(uri).unwrap(), caller.map(msisdn).as_ref()).unwrap();
            assert_eq!(
                (
                    classified.direction,
                    classified.subscriber.as_str(),
                    classified.callee.as_str(),
                    classified.prefix.as_ref().map(Prefix::as_str)
                ),
                (*direction, *subscriber, *callee, *prefix),
                "{uri} from {caller:?}"
            );
        }
        let attached = ["+4799990001", "+4799990004", "+4799990005"].map(|n| table.attached(&msisdn(n)).copied());
        assert_eq!(attached, [Some("first"), Some("fourth"), None]);
    }

    #[test]
    fn unknown_and_malformed_numbers() {
        let table = table();
        let unknown =
            table.classify(&Uri::parse("sip:+4712345678@core.example").unwrap(), Some(&msisdn("+4700000000")));
        assert!(matches!(unknown, Err(RoutingError::UnknownNumber(_))));
        // An MO prefix whose caller is not that subscriber is no match.
        let wrong_caller =
            table.classify(&Uri::parse("sip:+1147112334455@core.example").unwrap(), Some(&msisdn("+4700000000")));
        assert!(matches!(wrong_caller, Err(RoutingError::UnknownNumber(_))));
        for bad in
            ["sip:alice@core.example", "sip:4799990001@core.example", "tel:+47abc", "sip:core.example", "mailto:a@b"]
        {
            let Ok(uri) = Uri::parse(bad) else { continue };
            assert!(matches!(table.classify(&uri, None), Err(RoutingError::NoNumber(_))), "{bad}");
        }
    }
}
