//! Typed readings of header values: lists, parameters, quoted strings, Via, name-addr
//! (From/To/Contact/Route), CSeq. Each parser is strict to RFC 3261 §25 where a looser reading
//! could misroute a message, and tolerant of linear whitespace wherever the grammar allows it.

use std::fmt;

use super::grammar::{is_token, quoted_string, split_host_port, write_host_port, BadHeader, Params};
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
        let end = rest.find(';').unwrap_or(rest.len());
        let sent_by = rest[..end].trim();
        let (host, port) = split_host_port(sent_by).ok_or(bad)?;
        let params = Params::parse(&rest[end..]).map_err(|_| BadHeader("bad Via parameters"))?;
        Ok(Self { transport: protocol[2].to_ascii_uppercase(), host: host.to_owned(), port, params })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
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
        } else if let Some(open) = text.find('<') {
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
            let close = inner.find('>').ok_or(BadHeader("missing '>'"))?;
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
        let end = rest.find(';').unwrap_or(rest.len());
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
        .and_then(|value| NameAddr::parse(value).ok())
        .and_then(|addr| addr.tag().map(str::to_owned))
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

#[cfg(test)]
mod tests {
    use super::*;

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
