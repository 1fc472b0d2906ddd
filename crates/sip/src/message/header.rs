//! Typed readings of header values: lists, parameters, quoted strings, Via, name-addr
//! (From/To/Contact/Route), CSeq. Each parser is strict to RFC 3261 §25 where a looser reading
//! could misroute a message, and tolerant of linear whitespace wherever the grammar allows it.

use std::fmt;

use super::grammar::{
    find_byte, is_token, params_in, quoted_string, split_host_port, write_host_port, BadHeader, Params,
};
use super::headers::Headers;
use super::method::Method;
use super::uri::Uri;

/// One Via value: `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`…, upper-cased.
    pub transport: String,
    /// The sent-by host.
    pub host: String,
    /// The sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`…).
    pub params: Params,
}

/// The branch prefix that marks an RFC 3261 transaction id.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    /// Parses one Via value.
    pub fn parse(value: &str) -> Result<Self, BadHeader> {
        let bad = BadHeader("bad Via header");
        let mut rest = value.trim();
        let mut protocol = Vec::with_capacity(3);
        for part in 0..3 {
            rest = rest.trim_start();
            let end = rest.find(|c: char| c == '/' || c.is_whitespace()).unwrap_or(rest.len());
            let word = &rest[..end];
            if !is_token(word) {
                return Err(bad);
            }
            protocol.push(word);
            rest = rest[end..].trim_start();
            if part < 2 {
                rest = rest.strip_prefix('/').ok_or(bad.clone())?;
            }
        }
        if !protocol[0].eq_ignore_ascii_case("SIP") || protocol[1] != "2.0" {
            return Err(BadHeader("Via is not SIP/2.0"));
        }
        let end = find_byte(rest, b';').unwrap_or(rest.len());
        let sent_by = rest[..end].trim();
        let (host, port) = split_host_port(sent_by).ok_or(bad)?;
        let params = Params::parse(&rest[end..]).map_err(|_| BadHeader("bad Via parameters"))?;
        Ok(Self { transport: protocol[2].to_ascii_uppercase(), host: host.to_owned(), port, params })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// The branch of a Via value, reading its parameters only: for the top Via of a response,
    /// which this stack wrote into the request itself, and where parsing the whole value was
    /// most of the work of matching the response to its transaction. `None` where it is not a
    /// SIP/2.0 Via, where the parameters do not read (as [`Via::parse`] would refuse them) or
    /// hold no branch; unlike [`Via::parse`] it does not check the sent-by between.
    pub fn branch_of(value: &str) -> Option<&str> {
        let protocol = value.trim_start().get(..8)?;
        if !protocol.eq_ignore_ascii_case("SIP/2.0/") {
            return None;
        }
        let mut branch = None;
        for param in params_in(&value[find_byte(value, b';')?..]) {
            let (name, value) = param.ok()?;
            if branch.is_none() && name.eq_ignore_ascii_case("branch") {
                branch = Some(value);
            }
        }
        branch.flatten()
    }

    /// Whether the branch is an RFC 3261 one (magic cookie and something after it).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} ", self.transport)?;
        write_host_port(f, &self.host, self.port)?;
        write!(f, "{}", self.params)
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route…
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted form kept as written (quotes removed).
    pub display_name: Option<String>,
    /// The URI (always written in angle brackets, so that its parameters stay its own).
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`…).
    pub params: Params,
}

impl NameAddr {
    /// Parses one value.
    pub fn parse(value: &str) -> Result<Self, BadHeader> {
        let text = value.trim();
        let (display_name, rest) = if text.starts_with('"') {
            let (content, rest) = quoted_string(text)?;
            (Some(content.to_owned()), rest.trim_start())
        } else if let Some(open) = find_byte(text, b'<') {
            let name = text[..open].trim();
            // An unquoted display name is a series of tokens (RFC 3261 §25.1).
            if !name.split_whitespace().all(is_token) {
                return Err(BadHeader("display name must be tokens or a quoted string"));
            }
            (Some(name.to_owned()).filter(|n| !n.is_empty()), &text[open..])
        } else {
            (None, text)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let close = find_byte(inner, b'>').ok_or(BadHeader("missing '>'"))?;
            let uri_text = &inner[..close];
            if uri_text.starts_with(char::is_whitespace) || uri_text.ends_with(char::is_whitespace) {
                return Err(BadHeader("whitespace inside angle brackets"));
            }
            let uri = Uri::parse(uri_text).map_err(|_| BadHeader("bad URI"))?;
            let params = Params::parse(&inner[close + 1..])?;
            return Ok(Self { display_name, uri, params });
        }
        if display_name.is_some() {
            return Err(BadHeader("a display name needs an URI in angle brackets"));
        }
        // addr-spec: the URI ends at the first ';' and may not carry URI parameters or headers.
        let end = find_byte(rest, b';').unwrap_or(rest.len());
        let uri_text = rest[..end].trim();
        if uri_text.contains(['?', ',', ' ']) {
            return Err(BadHeader("an URI with headers must be in angle brackets"));
        }
        let uri = Uri::parse(uri_text).map_err(|_| BadHeader("bad URI"))?;
        let params = Params::parse(&rest[end..])?;
        Ok(Self { display_name, uri, params })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }

    /// The header parameters of a name-addr value (its `tag` and the like) without parsing its
    /// URI, which was most of the cost of asking for a tag. `None` where they do not read;
    /// unlike [`NameAddr::parse`] it does not refuse a URI that does not read (a request's From
    /// and To have been checked on arrival; a response's To is the request's, with the tag the
    /// answerer added).
    pub fn params_of(value: &str) -> Option<Params> {
        let text = value.trim();
        let rest = match text.strip_prefix('"') {
            Some(_) => quoted_string(text).ok()?.1,
            None => text,
        };
        let params = match find_byte(rest, b'<') {
            // A URI holds no unescaped '>' (RFC 3986 §2): the first one closes it.
            Some(open) => {
                let inner = &rest[open + 1..];
                &inner[find_byte(inner, b'>')? + 1..]
            }
            // addr-spec: everything from the first ';' is the header's (RFC 3261 §20.10).
            None => &rest[find_byte(rest, b';').unwrap_or(rest.len())..],
        };
        Params::parse(params).ok()
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            write!(f, "\"{name}\" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The `tag` parameter of the name-addr in header `name` (From, To) of `headers`; empty when
/// there is none or the header does not parse.
pub fn tag_of(headers: &Headers, name: &str) -> String {
    headers
        .get(name)
        .and_then(NameAddr::params_of)
        .and_then(|params| params.get("tag").flatten().map(str::to_owned))
        .unwrap_or_default()
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The number, below 2^31 (RFC 3261 §8.1.1.5).
    pub number: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1234 INVITE`.
    pub fn parse(value: &str) -> Result<Self, BadHeader> {
        let bad = BadHeader("bad CSeq header");
        let mut parts = value.split_whitespace();
        let number = parts.next().ok_or(bad.clone())?;
        let method = parts.next().ok_or(bad.clone())?;
        if parts.next().is_some() || !number.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
            return Err(bad);
        }
        let number: u32 = number.parse().map_err(|_| BadHeader("CSeq number out of range"))?;
        if number >= 1 << 31 {
            return Err(BadHeader("CSeq number out of range"));
        }
        Ok(Self { number, method: Method::from_token(method) })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number, self.method)
    }
}

/// Whether the option tag `tag` (`100rel`, `timer`) is listed in `header` (Supported,
/// Require...) of `headers`; tags compare case-insensitively (RFC 3261 §19.2).
pub fn lists_option(headers: &Headers, header: &str, tag: &str) -> bool {
    headers.values(header).iter().any(|value| value.eq_ignore_ascii_case(tag))
}

/// RAck (RFC 3262 §7.2): which reliable provisional response a PRACK acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    /// The RSeq of the provisional response.
    pub rseq: u32,
    /// The CSeq number of its request.
    pub cseq: u32,
    /// The method of its request.
    pub method: Method,
}

/// A delta-seconds or sequence number: digits only, below 2^32 (RFC 3261 §25.1).
fn number(text: &str) -> Result<u32, BadHeader> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadHeader("expected a number"));
    }
    text.parse().map_err(|_| BadHeader("number out of range"))
}

impl RAck {
    /// Parses `776656 1 INVITE`.
    pub fn parse(value: &str) -> Result<Self, BadHeader> {
        let mut parts = value.split_whitespace();
        let (Some(rseq), Some(cseq), Some(method), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadHeader("bad RAck header"));
        };
        if !is_token(method) {
            return Err(BadHeader("bad RAck method"));
        }
        Ok(Self { rseq: number(rseq)?, cseq: number(cseq)?, method: Method::from_token(method) })
    }
}

impl fmt::Display for RAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// Parses an RSeq value (RFC 3262 §7.1): 1 to 2^32-1.
pub fn parse_rseq(value: &str) -> Result<u32, BadHeader> {
    match number(value.trim())? {
        0 => Err(BadHeader("RSeq 0")),
        rseq => Ok(rseq),
    }
}

/// Who refreshes a session (RFC 4028 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The UAC of the transaction that set the interval.
    Uac,
    /// Its UAS.
    Uas,
}

impl fmt::Display for Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        })
    }
}

/// Session-Expires (RFC 4028 §4): the session interval in seconds and, when stated, who refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval.
    pub seconds: u32,
    /// The refresher, when the `refresher` parameter is there.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses `1800;refresher=uac` (other parameters are ignored, as the RFC allows).
    pub fn parse(value: &str) -> Result<Self, BadHeader> {
        let end = value.find(';').unwrap_or(value.len());
        let seconds = number(value[..end].trim())?;
        if seconds == 0 {
            return Err(BadHeader("Session-Expires of 0"));
        }
        let params = Params::parse(&value[end..])?;
        let refresher = match params.get("refresher").flatten().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("uac") => Some(Refresher::Uac),
            Some("uas") => Some(Refresher::Uas),
            Some(_) => return Err(BadHeader("refresher is uac or uas")),
        };
        Ok(Self { seconds, refresher })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.seconds)?;
        match self.refresher {
            Some(refresher) => write!(f, ";refresher={refresher}"),
            None => Ok(()),
        }
    }
}

/// Parses Min-SE (RFC 4028 §5): delta-seconds, parameters ignored.
pub fn parse_min_se(value: &str) -> Result<u32, BadHeader> {
    number(value.split(';').next().unwrap_or_default().trim())
}

/// Min-SE (RFC 4028 §5): the smallest session interval a party accepts, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinSe(pub u32);

/// RSeq (RFC 3262 §7.1): the sequence number of a reliable provisional response, 1 to 2^32-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RSeq(pub u32);

impl fmt::Display for MinSe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for RSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Session-ID (RFC 7989): the end-to-end identifier of a session, 32 lower-case hex digits,
/// and the far end's once it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId {
    /// The sender's UUID (read case-insensitively, kept lower-case).
    pub local: String,
    /// The `remote` parameter: the other end's UUID; all zeros while it is unknown.
    pub remote: Option<String>,
    /// Other parameters, kept as written.
    pub params: Params,
}

/// The UUID of a Session-ID: 32 hex digits (RFC 7989 §4.1).
fn session_uuid(text: &str) -> Result<String, BadHeader> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadHeader("a Session-ID is 32 hex digits"));
    }
    Ok(text.to_ascii_lowercase())
}

impl SessionId {
    /// A Session-ID whose far end is not known yet (`remote` of all zeros, RFC 7989 §7).
    pub fn unanswered(local: String) -> Self {
        Self { local, remote: Some("0".repeat(32)), params: Params::default() }
    }

    /// The sender's UUID of a Session-ID value, its parameters unread: what correlates a call,
    /// for readers that must not lose a call over a malformed parameter.
    pub fn local_of(value: &str) -> Result<String, BadHeader> {
        session_uuid(value.split(';').next().unwrap_or_default().trim())
    }

    /// Parses `ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000`.
    pub fn parse(value: &str) -> Result<Self, BadHeader> {
        let end = value.find(';').unwrap_or(value.len());
        let local = Self::local_of(&value[..end])?;
        let mut params = Params::parse(&value[end..])?;
        let remote = match params.get("remote") {
            Some(Some(remote)) => Some(session_uuid(remote)?),
            Some(None) => return Err(BadHeader("remote needs a value")),
            None => None,
        };
        params.remove("remote");
        Ok(Self { local, remote, params })
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.local)?;
        if let Some(remote) = &self.remote {
            write!(f, ";remote={remote}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// A Route value (RFC 3261 §20.34): one hop of the path a request is sent along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route(pub NameAddr);

/// A Record-Route value (RFC 3261 §20.30): a proxy asking to stay in the dialog's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRoute(pub NameAddr);

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for RecordRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A header whose grammar the stack reads: its name, how one value parses, and (through
/// `Display`) how it is written. [`Headers::typed`] and [`Headers::push_typed`] use it, so that
/// the name and the grammar of a header are stated once.
pub trait TypedHeader: Sized + fmt::Display {
    /// The canonical name.
    const NAME: &'static str;
    /// Whether one field line may carry several values separated by commas (RFC 3261 §7.3.1).
    const LIST: bool = false;
    /// Parses one value.
    fn parse_value(value: &str) -> Result<Self, BadHeader>;
}

macro_rules! typed_headers {
    ($($type:ty => $name:literal, list: $list:literal, $parse:expr;)*) => {
        $(
            impl TypedHeader for $type {
                const NAME: &'static str = $name;
                const LIST: bool = $list;
                fn parse_value(value: &str) -> Result<Self, BadHeader> {
                    $parse(value)
                }
            }
        )*
    };
}

typed_headers! {
    Via => "Via", list: true, Via::parse;
    CSeq => "CSeq", list: false, CSeq::parse;
    RAck => "RAck", list: false, RAck::parse;
    RSeq => "RSeq", list: false, |value| parse_rseq(value).map(RSeq);
    SessionExpires => "Session-Expires", list: false, SessionExpires::parse;
    MinSe => "Min-SE", list: false, |value| parse_min_se(value).map(MinSe);
    SessionId => "Session-ID", list: false, SessionId::parse;
    Route => "Route", list: true, |value| NameAddr::parse(value).map(Route);
    RecordRoute => "Record-Route", list: true, |value| NameAddr::parse(value).map(RecordRoute);
}

impl Headers {
    /// The first value of `H`: `None` when the header is absent, the error when it is malformed.
    pub fn typed<H: TypedHeader>(&self) -> Option<Result<H, BadHeader>> {
        let value = match H::LIST {
            true => self.values(H::NAME).into_iter().next(),
            false => self.get(H::NAME),
        }?;
        Some(H::parse_value(value))
    }

    /// The first value of `H` when it is there and well-formed: for readers to whom a malformed
    /// value is as good as none (the validation of a request has already refused what matters).
    pub fn parsed<H: TypedHeader>(&self) -> Option<H> {
        self.typed().and_then(Result::ok)
    }

    /// Every value of `H` in order, across field lines and comma lists; malformed values are
    /// left out.
    pub fn parsed_all<H: TypedHeader>(&self) -> Vec<H> {
        let values = match H::LIST {
            true => self.values(H::NAME),
            false => self.get_all(H::NAME).collect(),
        };
        values.into_iter().filter_map(|value| H::parse_value(value).ok()).collect()
    }

    /// Appends `header` as a field line of its own.
    pub fn push_typed<H: TypedHeader>(&mut self, header: &H) {
        self.push(H::NAME, header.to_string());
    }

    /// Replaces every field line of `H` by `header`.
    pub fn set_typed<H: TypedHeader>(&mut self, header: &H) {
        self.set(H::NAME, header.to_string());
    }

    /// The name-addr of header `name` (From, To, Contact, P-Asserted-Identity: the first value
    /// of a list) when it is there and parses.
    pub fn name_addr(&self, name: &str) -> Option<NameAddr> {
        self.values(name).into_iter().next().and_then(|value| NameAddr::parse(value).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A Via's branch read from its parameters alone is the whole parse's, for every value
        /// the whole parse accepts (quoted parameters holding ';' and "branch=", flags, case).
        #[test]
        fn a_branch_read_alone_is_the_whole_parses(
            transport in proptest::sample::select(vec!["UDP", "tls"]),
            sent_by in proptest::sample::select(vec!["10.0.0.1:5060", "[2001:db8::1]", "host.example"]),
            params in proptest::collection::vec(
                proptest::sample::select(vec![
                    ";branch=z9hG4bK1", ";BRANCH=z9hG4bKA", ";branch", ";rport", ";received=10.1.1.1",
                    " ; branch = z9hG4bKsp ", ";x=\"a;branch=bad\"", ";ttl=1",
                ]),
                0..4,
            ),
        ) {
            let value = format!("SIP/2.0/{transport} {sent_by}{}", params.concat());
            if let Ok(via) = Via::parse(&value) {
                proptest::prop_assert_eq!(Via::branch_of(&value), via.branch(), "{}", value);
            }
            let other_version = value.replace("SIP/2.0/", "SIP/3.0/");
            proptest::prop_assert_eq!(Via::branch_of(&other_version), None, "{}", other_version);
        }

        /// Reading only the header parameters gives what the whole parse gives, whatever the
        /// display name (quoted ones holding '<', '>' and ';'), URI parameters and form.
        #[test]
        fn header_params_without_the_uri_match_the_whole_parse(
            display in proptest::sample::select(vec!["", "Alice ", "\"A <b>; c\" ", "\"x\\\"y\" "]),
            user in "[a-z0-9+]{1,8}",
            uri_params in proptest::sample::select(vec!["", ";user=phone", ";transport=tls;lr"]),
            bracketed in proptest::bool::ANY,
            header_params in proptest::sample::select(vec!["", ";tag=abc", ";tag=1;x", " ; tag = q ;y=2", ";tag"]),
        ) {
            let value = if bracketed || !display.is_empty() {
                format!("{display}<sip:{user}@example.com{uri_params}>{header_params}")
            } else {
                format!("sip:{user}@example.com{header_params}")
            };
            let whole = NameAddr::parse(&value).map(|addr| addr.params);
            proptest::prop_assert_eq!(NameAddr::params_of(&value), whole.ok(), "{}", value);
        }
    }

    #[test]
    fn typed_headers_read_the_first_value_and_write_back() {
        let mut headers = Headers::new();
        headers.push("v", "SIP/2.0/TLS a.example;branch=z9hG4bK1, SIP/2.0/UDP b.example;branch=z9hG4bK2");
        headers.push("CSeq", "7 INVITE");
        headers.push("Record-Route", "<sip:p1;lr>, <sip:p2;lr>");
        headers.push("Record-Route", "<sip:p3;lr>");
        headers.push("Session-ID", "AB30317F1A784DC48FF824D0D3715D86;remote=00000000000000000000000000000000");
        headers.push("RSeq", "0");
        assert_eq!(headers.parsed::<Via>().and_then(|via| via.branch().map(str::to_owned)), Some("z9hG4bK1".into()));
        assert_eq!(headers.parsed::<CSeq>(), Some(CSeq { number: 7, method: Method::Invite }));
        let routes: Vec<String> = headers.parsed_all::<RecordRoute>().iter().map(ToString::to_string).collect();
        assert_eq!(routes, ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]);
        let session = headers.parsed::<SessionId>().unwrap();
        assert_eq!(session.local, "ab30317f1a784dc48ff824d0d3715d86");
        assert_eq!(session.to_string(), "ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000");
        assert_eq!(headers.typed::<RSeq>(), Some(Err(BadHeader("RSeq 0"))));
        assert_eq!(headers.typed::<RAck>(), None);
        headers.set_typed(&CSeq { number: 8, method: Method::Bye });
        assert_eq!(headers.get_all("CSeq").collect::<Vec<_>>(), ["8 BYE"]);
    }

    #[test]
    fn session_ids_are_32_hex_digits() {
        assert!(SessionId::parse("ab30317f1a784dc48ff824d0d3715d8").is_err());
        assert!(SessionId::parse("zb30317f1a784dc48ff824d0d3715d86").is_err());
        assert!(SessionId::parse("ab30317f1a784dc48ff824d0d3715d86;remote").is_err());
        // The UUID alone, for correlation, whatever the parameters.
        assert_eq!(
            SessionId::local_of("AB30317F1A784DC48FF824D0D3715D86;remote").as_deref(),
            Ok("ab30317f1a784dc48ff824d0d3715d86")
        );
        assert!(SessionId::local_of("ab30317f;remote=00000000000000000000000000000000").is_err());
        let id = SessionId::parse("ab30317f1a784dc48ff824d0d3715d86 ; foo=bar").unwrap();
        assert_eq!((id.remote, id.params.get("foo")), (None, Some(Some("bar"))));
        let fresh = SessionId::unanswered("0123456789abcdef0123456789abcdef".into());
        assert_eq!(SessionId::parse(&fresh.to_string()), Ok(fresh));
    }

    #[test]
    fn via_with_whitespace_everywhere() {
        let via = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((via.transport.as_str(), via.host.as_str(), via.branch()), ("UDP", "192.0.2.2", Some("390skdjuw")));
        let via = Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8").unwrap();
        assert!(via.has_rfc3261_branch());
        let via = Via::parse("SIP/2.0/UDP [2001:db8::1]:5070;rport;received=192.0.2.1").unwrap();
        assert_eq!((via.host.as_str(), via.port), ("2001:db8::1", Some(5070)));
        assert_eq!(via.params.get("rport"), Some(None));
        for bad in
            ["SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/2.0 host", "SIP/3.0/UDP h", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP"]
        {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let from =
            NameAddr::parse("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8").unwrap();
        assert_eq!(from.tag(), Some("98asjd8"));
        let to = NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(to.tag(), Some("1918181833n"));
        assert_eq!(to.to_string(), "<sip:vivekg@chair-dnrc.example.com>;tag=1918181833n", "written in brackets");
        let lws = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(lws.display_name.as_deref(), Some("caller"));
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:user@example.com",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rack_rseq_and_session_timer_headers() {
        let rack = RAck::parse(" 776656  1 INVITE ").unwrap();
        assert_eq!((rack.rseq, rack.cseq, rack.method.clone()), (776656, 1, Method::Invite));
        assert_eq!(rack.to_string(), "776656 1 INVITE");
        for bad in ["", "1 INVITE", "1 2 INVITE x", "a 1 INVITE", "1 2 IN<VITE", "4294967296 1 INVITE"] {
            assert!(RAck::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rseq(" 42 "), Ok(42));
        assert!(parse_rseq("0").is_err() && parse_rseq("-1").is_err() && parse_rseq("x").is_err());
        let expires = SessionExpires::parse("1800 ; refresher = UAS;x=1").unwrap();
        assert_eq!(expires, SessionExpires { seconds: 1800, refresher: Some(Refresher::Uas) });
        assert_eq!(expires.to_string(), "1800;refresher=uas");
        assert_eq!(SessionExpires::parse("90").unwrap().refresher, None);
        for bad in ["", "0", "abc", "90;refresher=both", "-5"] {
            assert!(SessionExpires::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_min_se("120;x"), Ok(120));
        let mut headers = Headers::new();
        headers.push("Supported", "timer, 100REL");
        headers.push("k", "path");
        assert!(lists_option(&headers, "Supported", "100rel") && lists_option(&headers, "Supported", "path"));
        assert!(!lists_option(&headers, "Require", "100rel"));
    }

    #[test]
    fn cseq_limits() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().number, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
    }
}
