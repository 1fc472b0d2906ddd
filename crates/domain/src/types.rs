//! Small domain types shared by every module: subscriber numbers, route types, prefixes and the
//! TAS's secure SIP URI, each validated once when it enters the program.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// E.164 allows at most 15 digits after the country code's `+`.
const E164_MAX_DIGITS: usize = 15;

/// Prefixes are short digit strings; longer ones would eat into the E.164 number space.
const PREFIX_MAX_DIGITS: usize = 8;

/// A value that failed validation, with a message meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidValue {
    /// A phone number that is not `+` followed by 1 to 15 digits.
    #[error("phone number {0:?} is not in E.164 form (`+` followed by 1 to 15 digits)")]
    PhoneNumber(String),
    /// A prefix that is not 1 to 8 digits.
    #[error("prefix {0:?} must be 1 to 8 digits")]
    Prefix(String),
    /// A dialled string that is no supplementary-service code.
    #[error("{0:?} is not a service code (`*` or `#` first, then up to 32 digits, `*`, `#` or `+`)")]
    ServiceCode(String),
    /// A route type name nobody knows.
    #[error("unknown route type {0:?} (expected loop, loop-mo, loop-mt, fork, fallback or ingress)")]
    RouteType(String),
    /// A TAS address that is not a secure SIP URI; the wording is the core's own.
    #[error("Secure SIP domain name required (got {0:?}, expected sips:host or sips:host:port)")]
    SipsUri(String),
}

/// Short ASCII text kept inline, zero-padded: no allocation, and the same order as the text
/// (a shorter text's padding sorts before any character). A million subscribers hold several
/// numbers and prefixes each, so these must not cost a heap allocation apiece.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct InlineText<const N: usize>([u8; N]);

impl<const N: usize> InlineText<N> {
    /// `text` inline; the caller has checked it is at most `N` ASCII bytes without NUL.
    fn new(text: &str) -> Self {
        debug_assert!(text.len() <= N && text.is_ascii() && !text.contains('\0'), "{text:?} does not fit");
        let mut bytes = [0; N];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Self(bytes)
    }

    fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        // Only validated ASCII digits (and `+`) are ever stored, so this never falls back.
        std::str::from_utf8(&self.0[..len]).unwrap_or_default()
    }
}

/// A subscriber's number (MSISDN) in E.164 form: `+` and 1 to 15 digits, kept inline in 16
/// bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Msisdn(InlineText<{ 1 + E164_MAX_DIGITS }>);

impl Msisdn {
    /// Validates `text` as an E.164 number.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let digits = text.strip_prefix('+').ok_or_else(|| InvalidValue::PhoneNumber(text.to_owned()))?;
        let valid = !digits.is_empty() && digits.len() <= E164_MAX_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(Self(InlineText::new(text)))
        } else {
            Err(InvalidValue::PhoneNumber(text.to_owned()))
        }
    }

    /// The number with its leading `+`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The digits after the `+`.
    pub fn digits(&self) -> &str {
        self.as_str().strip_prefix('+').unwrap_or_default()
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Msisdn").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Msisdn {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Msisdn {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Msisdn> for String {
    fn from(value: Msisdn) -> Self {
        value.as_str().to_owned()
    }
}

/// The longest service code read, in characters: room for a code, a 15-digit number and `#`.
const SERVICE_CODE_MAX: usize = 32;

/// A supplementary-service code as keyed on a phone (`*72+4799990002`, `*73`, `*#72#`): `*`
/// or `#` first, then digits, `*`, `#` and `+`. Phones dial them as calls; the core passes
/// them to the caller's TAS like any number, with the MO prefix after a `+`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServiceCode(String);

impl ServiceCode {
    /// Validates `text` as keyed (`#` as itself).
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let starts = text.starts_with(['*', '#']);
        let keyed = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'+'));
        match starts && keyed && text.len() <= SERVICE_CODE_MAX {
            true => Ok(Self(text.to_owned())),
            false => Err(InvalidValue::ServiceCode(text.to_owned())),
        }
    }

    /// Reads a code from a SIP user part or a `tel:` number, where `#` and `*` may come escaped
    /// (`%23`, `%2A`: RFC 3261 §25.1 does not allow `#` in a user part as it is).
    pub fn from_escaped(text: &str) -> Result<Self, InvalidValue> {
        let refused = || InvalidValue::ServiceCode(text.to_owned());
        let mut keyed = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            keyed.push_str(&rest[..at]);
            let escape = rest.get(at + 1..at + 3).ok_or_else(refused)?;
            match escape.to_ascii_uppercase().as_str() {
                "23" => keyed.push('#'),
                "2A" => keyed.push('*'),
                "2B" => keyed.push('+'),
                _ => return Err(refused()),
            }
            rest = &rest[at + 3..];
        }
        keyed.push_str(rest);
        Self::parse(&keyed).map_err(|_| refused())
    }

    /// The code as keyed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code as a SIP user part: `#` escaped as `%23`.
    pub fn escaped(&self) -> String {
        self.0.replace('#', "%23")
    }
}

impl fmt::Debug for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServiceCode").field(&self.0).finish()
    }
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The digits the core inserts after the `+` of the Request-URI to mark a call's direction.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix(InlineText<PREFIX_MAX_DIGITS>);

impl Prefix {
    /// Validates `text` as 1 to 8 digits.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let valid = !text.is_empty() && text.len() <= PREFIX_MAX_DIGITS && text.bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(Self(InlineText::new(text)))
        } else {
            Err(InvalidValue::Prefix(text.to_owned()))
        }
    }

    /// Reads the proto3 form, where an empty string means "no prefix".
    pub fn from_wire(text: &str) -> Result<Option<Self>, InvalidValue> {
        if text.is_empty() {
            Ok(None)
        } else {
            Self::parse(text).map(Some)
        }
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Prefix").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Prefix {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Prefix {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Prefix> for String {
    fn from(value: Prefix) -> Self {
        value.as_str().to_owned()
    }
}

/// Whether the subscriber makes or receives the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Mobile originating: the subscriber is the caller.
    Originating,
    /// Mobile terminating: the subscriber is the callee.
    Terminating,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Originating => "MO",
            Direction::Terminating => "MT",
        })
    }
}

/// How the core puts the TAS into a subscriber's calls (the `RouteType` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteType {
    /// Every call the subscriber makes or receives goes to the TAS and comes back as leg 3.
    Loop,
    /// Only calls the subscriber makes.
    LoopMo,
    /// Only calls the subscriber receives.
    LoopMt,
    /// The TAS rings in parallel with the subscriber.
    Fork,
    /// The TAS gets the call when the subscriber is busy or does not answer.
    Fallback,
    /// The TAS may place calls to the subscriber.
    Ingress,
}

impl RouteType {
    /// Every route type, in the API's enum order.
    pub const ALL: [RouteType; 6] = [
        RouteType::Loop,
        RouteType::Fork,
        RouteType::Fallback,
        RouteType::LoopMo,
        RouteType::LoopMt,
        RouteType::Ingress,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RouteType::Loop => "loop",
            RouteType::LoopMo => "loop-mo",
            RouteType::LoopMt => "loop-mt",
            RouteType::Fork => "fork",
            RouteType::Fallback => "fallback",
            RouteType::Ingress => "ingress",
        }
    }
}

impl fmt::Display for RouteType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RouteType {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalised = s.trim().to_ascii_lowercase().replace('_', "-");
        RouteType::ALL
            .into_iter()
            .find(|route| route.name() == normalised)
            .ok_or_else(|| InvalidValue::RouteType(s.to_owned()))
    }
}

/// The TAS's address as registered with the core: `sips:host` or `sips:host:port`.
///
/// Kept as the exact text given, because DeleteRegistration must repeat the upserted `sip_uri`.
/// Clones share one copy: every subscriber of a TAS registers the same URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SipsUri(Arc<SipsUriParts>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct SipsUriParts {
    text: String,
    host: String,
    port: Option<u16>,
}

impl SipsUri {
    /// Validates `text` as a secure SIP URI naming a host and maybe a port.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let invalid = || InvalidValue::SipsUri(text.to_owned());
        let scheme_len = "sips:".len();
        if text.len() < scheme_len || !text[..scheme_len].eq_ignore_ascii_case("sips:") {
            return Err(invalid());
        }
        // Parameters and headers (`;transport=tls`, `?x=y`) do not change where the core connects.
        let rest = &text[scheme_len..];
        let hostport = rest.split([';', '?']).next().unwrap_or_default();
        let hostport = hostport.rsplit('@').next().unwrap_or_default();
        let (host, port) = split_host_port(hostport).ok_or_else(invalid)?;
        if !valid_host(host) {
            return Err(invalid());
        }
        Ok(Self(Arc::new(SipsUriParts { text: text.to_owned(), host: host.to_owned(), port })))
    }

    /// The URI as given.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// The host name or address literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// The port, when the URI names one; without it the core resolves `_sips._tcp` SRV records.
    pub fn port(&self) -> Option<u16> {
        self.0.port
    }
}

fn split_host_port(hostport: &str) -> Option<(&str, Option<u16>)> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(parse_port(after.strip_prefix(':')?)?))),
        };
    }
    match hostport.split_once(':') {
        None => Some((hostport, None)),
        Some((host, port)) => Some((host, Some(parse_port(port)?))),
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for SipsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SipsUri {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SipsUri {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SipsUri> for String {
    fn from(value: SipsUri) -> Self {
        value.as_str().to_owned()
    }
}

/// One subscriber's registration with the core: what `UpsertRegistration` carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Registration {
    /// The subscriber; may be left out only with a user's own token.
    pub phone_number: Option<Msisdn>,
    /// Where the core sends this subscriber's calls.
    pub sip_uri: SipsUri,
    /// How the core puts the TAS into the subscriber's calls.
    pub route_type: RouteType,
    /// Marks calls the subscriber makes.
    pub mo_prefix: Option<Prefix>,
    /// Marks calls the subscriber receives.
    pub mt_prefix: Option<Prefix>,
}

impl Registration {
    /// A name for logs: the phone number, or the token's own subscriber.
    pub fn label(&self) -> String {
        match &self.phone_number {
            Some(number) => number.to_string(),
            None => "(token's own number)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdn_accepts_e164_only() {
        assert_eq!(Msisdn::parse("+4799990000").map(|m| m.digits().to_owned()), Ok("4799990000".into()));
        for bad in ["", "+", "4799990000", "+47 9999", "+47-99", "+1234567890123456", "++47", "+४७"] {
            assert_eq!(Msisdn::parse(bad), Err(InvalidValue::PhoneNumber(bad.into())), "{bad:?}");
        }
        assert!(Msisdn::parse("+123456789012345").is_ok());
    }

    #[test]
    fn inline_numbers_keep_their_text_and_its_order() {
        let longest = Msisdn::parse("+123456789012345").unwrap();
        assert_eq!((longest.as_str(), longest.digits()), ("+123456789012345", "123456789012345"));
        assert_eq!(String::from(Prefix::parse("12345678").unwrap()), "12345678");
        let mut numbers: Vec<Msisdn> =
            ["+4799", "+47", "+470", "+123456789012345", "+9"].iter().map(|n| Msisdn::parse(n).unwrap()).collect();
        numbers.sort();
        let texts: Vec<&str> = numbers.iter().map(Msisdn::as_str).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
        assert_eq!(format!("{:?}", numbers[0]), "Msisdn(\"+123456789012345\")");
        // No allocation each: a million subscribers hold several numbers and prefixes apiece.
        assert_eq!((std::mem::size_of::<Msisdn>(), std::mem::size_of::<Option<Prefix>>()), (16, 9));
    }

    #[test]
    fn prefix_is_short_digits() {
        assert_eq!(Prefix::from_wire(""), Ok(None));
        assert_eq!(Prefix::from_wire("00").map(|p| p.map(String::from)), Ok(Some("00".into())));
        for bad in ["a1", "123456789", "+1", " 1"] {
            assert!(Prefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn route_type_names_round_trip() {
        for route in RouteType::ALL {
            assert_eq!(route.name().parse::<RouteType>(), Ok(route));
        }
        assert_eq!("LOOP_MO".parse::<RouteType>(), Ok(RouteType::LoopMo));
        assert!("loopy".parse::<RouteType>().is_err());
    }

    #[test]
    fn service_codes_as_keyed_and_as_escaped_in_a_user_part() {
        for good in ["*72+4799990002", "*73", "*#72#", "#31#", "*90"] {
            let code = ServiceCode::parse(good).unwrap();
            assert_eq!(code.as_str(), good);
            assert_eq!(ServiceCode::from_escaped(&code.escaped()).unwrap(), code, "{good}");
        }
        assert_eq!(ServiceCode::parse("*#72#").unwrap().escaped(), "*%2372%23");
        assert_eq!(ServiceCode::from_escaped("%2A72%2b47").unwrap().as_str(), "*72+47");
        for bad in ["", "72", "+4799", "*72a", "*72 1", &format!("*{}", "1".repeat(32))] {
            assert_eq!(ServiceCode::parse(bad), Err(InvalidValue::ServiceCode(bad.to_owned())), "{bad:?}");
        }
        for bad in ["*72%", "*72%2", "*72%41", "%23%", "4799"] {
            assert!(ServiceCode::from_escaped(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sips_uri_forms() {
        let uri = SipsUri::parse("sips:tas.example.com:5061").unwrap();
        assert_eq!((uri.host(), uri.port()), ("tas.example.com", Some(5061)));
        let uri = SipsUri::parse("SIPS:tas.example.com").unwrap();
        assert_eq!((uri.host(), uri.port()), ("tas.example.com", None));
        let uri = SipsUri::parse("sips:[::1]:5061;transport=tls").unwrap();
        assert_eq!((uri.host(), uri.port()), ("::1", Some(5061)));
        let uri = SipsUri::parse("sips:127.0.0.1").unwrap();
        assert_eq!(uri.host(), "127.0.0.1");
        for bad in [
            "sip:tas.example.com",
            "tas.example.com",
            "sips:",
            "sips:tas..example.com",
            "sips:tas.example.com:0",
            "sips:tas.example.com:99999",
            "sips:-bad.example.com",
            "https://tas.example.com",
        ] {
            let err = SipsUri::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("Secure SIP domain name required"), "{bad:?}");
        }
    }
}
