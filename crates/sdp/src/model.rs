//! The typed model of a session description (RFC 4566): every line kept in its order, the
//! lines ringer reads (origin, connection, attributes, media) typed, the others kept as
//! written, so that a description read and written again is the same description.

use std::fmt;
use std::net::IpAddr;

use crate::candidate::Candidate;

/// A session description that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SDP: {0}")]
pub struct SdpError(pub String);

/// `o=`: who made the description, its session id and version (RFC 4566 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user name (`-` when none).
    pub username: String,
    /// The session id (digits, possibly beyond 64 bits, so kept as written).
    pub session_id: String,
    /// The session version, raised whenever the description changes (RFC 3264 §8).
    pub session_version: String,
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The originator's address.
    pub address: String,
}

/// `c=`: where media goes (RFC 4566 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address, as written (`/ttl` of multicast included).
    pub address: String,
}

impl Connection {
    /// A connection to `ip`, of the family it is.
    pub fn to_ip(ip: IpAddr) -> Self {
        let addr_type = if ip.is_ipv6() { "IP6" } else { "IP4" };
        Self { net_type: "IN".into(), addr_type: addr_type.into(), address: ip.to_string() }
    }

    /// The address without a TTL or count, when it is an IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }
}

/// `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The name.
    pub name: String,
    /// The value; `None` for a flag (`a=rtcp-mux`).
    pub value: Option<String>,
}

impl Attribute {
    /// `a=name:value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: Some(value.into()) }
    }

    /// `a=name`.
    pub fn flag(name: impl Into<String>) -> Self {
        Self { name: name.into(), value: None }
    }

    /// Whether the attribute is `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// For attributes that start with a payload type (`rtpmap`, `fmtp`, `rtcp-fb`): that
    /// payload type, or `*`.
    pub fn payload_type(&self) -> Option<&str> {
        self.value.as_deref()?.split_whitespace().next()
    }
}

/// One line of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `o=`.
    Origin(Origin),
    /// `c=`.
    Connection(Connection),
    /// `a=`.
    Attribute(Attribute),
    /// Any other line (`v=`, `s=`, `t=`, `b=`...), kept as written.
    Other {
        /// The line's type letter.
        kind: char,
        /// What follows the `=`.
        value: String,
    },
}

/// One media section: its `m=` line and the lines under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`...
    pub kind: String,
    /// The port (0: declined, RFC 3264 §6).
    pub port: u16,
    /// The number of ports, when written `port/count`.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `UDP/TLS/RTP/SAVPF`...
    pub proto: String,
    /// The formats (payload types for RTP), in order of preference.
    pub formats: Vec<String>,
    /// The lines under the `m=` line, in order.
    pub lines: Vec<Line>,
}

/// A session description: the session-level lines, then the media sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionDescription {
    /// The lines before the first `m=`, in order (`v=` first).
    pub lines: Vec<Line>,
    /// The media sections, in order.
    pub media: Vec<MediaDescription>,
}

fn origin(value: &str) -> Option<Origin> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [username, session_id, session_version, net_type, addr_type, address] = fields.as_slice() else {
        return None;
    };
    Some(Origin {
        username: (*username).into(),
        session_id: (*session_id).into(),
        session_version: (*session_version).into(),
        net_type: (*net_type).into(),
        addr_type: (*addr_type).into(),
        address: (*address).into(),
    })
}

fn connection(value: &str) -> Result<Connection, SdpError> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [net_type, addr_type, address] = fields.as_slice() else {
        return Err(SdpError(format!("c= line {value:?}")));
    };
    let connection =
        Connection { net_type: (*net_type).into(), addr_type: (*addr_type).into(), address: (*address).into() };
    match connection.ip() {
        Some(_) => Ok(connection),
        None => Err(SdpError(format!("c= line {value:?}: not an IP address"))),
    }
}

fn media_line(value: &str) -> Result<MediaDescription, SdpError> {
    let bad = || SdpError(format!("m= line {value:?}"));
    let mut fields = value.split_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(bad());
    };
    let (port, port_count) = match port.split_once('/') {
        Some((port, count)) => (port, Some(count.parse().map_err(|_| bad())?)),
        None => (port, None),
    };
    Ok(MediaDescription {
        kind: kind.to_owned(),
        port: port.parse().map_err(|_| bad())?,
        port_count,
        proto: proto.to_owned(),
        formats: fields.map(str::to_owned).collect(),
        lines: Vec::new(),
    })
}

impl SessionDescription {
    /// Parses `text` (CRLF or LF line ends). Every line must be `<letter>=<value>`; a malformed
    /// `m=` or `c=` line, or a `c=` that is not an IP address, is an error; an `o=` that does
    /// not have its six fields is kept as written.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut description = SessionDescription { lines: Vec::new(), media: Vec::new() };
        for raw in text.lines() {
            let raw = raw.trim_end();
            if raw.is_empty() {
                continue;
            }
            let mut chars = raw.chars();
            let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
                return Err(SdpError(format!("line {raw:?} is not <type>=<value>")));
            };
            let value = &raw[kind.len_utf8() + 1..];
            let line = match kind {
                'm' => {
                    description.media.push(media_line(value)?);
                    continue;
                }
                'c' => Line::Connection(connection(value)?),
                'a' => Line::Attribute(match value.split_once(':') {
                    Some((name, value)) => Attribute::new(name, value),
                    None => Attribute::flag(value),
                }),
                'o' => match origin(value) {
                    Some(origin) => Line::Origin(origin),
                    None => Line::Other { kind, value: value.to_owned() },
                },
                _ => Line::Other { kind, value: value.to_owned() },
            };
            match description.media.last_mut() {
                Some(media) => media.lines.push(line),
                None => description.lines.push(line),
            }
        }
        Ok(description)
    }

    /// The session-level `c=` address.
    pub fn connection(&self) -> Option<IpAddr> {
        connection_of(&self.lines)
    }

    /// The `o=` line.
    pub fn origin(&self) -> Option<&Origin> {
        self.lines.iter().find_map(|line| match line {
            Line::Origin(origin) => Some(origin),
            _ => None,
        })
    }

    /// The session-level attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        attributes_of(&self.lines)
    }

    /// The first session-level attribute `name` (`Some("")` for a flag).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute_of(&self.lines, name)
    }

    /// Keeps the session-level attributes `keep` accepts.
    pub fn retain_attributes(&mut self, keep: impl FnMut(&Attribute) -> bool) {
        retain_attributes_of(&mut self.lines, keep);
    }

    /// Adds a session-level attribute after the others.
    pub fn push_attribute(&mut self, attribute: Attribute) {
        self.lines.push(Line::Attribute(attribute));
    }

    /// The first audio section that is not declined.
    pub fn audio(&self) -> Option<&MediaDescription> {
        self.media.iter().find(|media| media.kind == "audio" && media.port != 0)
    }

    /// As [`SessionDescription::audio`], to change it.
    pub fn audio_mut(&mut self) -> Option<&mut MediaDescription> {
        self.media.iter_mut().find(|media| media.kind == "audio" && media.port != 0)
    }

    /// Every line, session-level first, then each media section's (not the `m=` lines).
    pub fn lines_mut(&mut self) -> impl Iterator<Item = &mut Line> {
        self.lines.iter_mut().chain(self.media.iter_mut().flat_map(|media| media.lines.iter_mut()))
    }

    /// Every attribute, session-level first, then each media section's.
    pub fn all_attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.attributes().chain(self.media.iter().flat_map(MediaDescription::attributes))
    }

    /// Every `c=` line, session-level and in the media sections.
    pub fn connections_mut(&mut self) -> impl Iterator<Item = &mut Connection> {
        self.lines_mut().filter_map(|line| match line {
            Line::Connection(connection) => Some(connection),
            _ => None,
        })
    }
}

fn connection_of(lines: &[Line]) -> Option<IpAddr> {
    lines.iter().find_map(|line| match line {
        Line::Connection(connection) => connection.ip(),
        _ => None,
    })
}

fn attributes_of(lines: &[Line]) -> impl Iterator<Item = &Attribute> {
    lines.iter().filter_map(|line| match line {
        Line::Attribute(attribute) => Some(attribute),
        _ => None,
    })
}

fn attribute_of<'a>(lines: &'a [Line], name: &str) -> Option<&'a str> {
    attributes_of(lines).find(|attribute| attribute.is(name)).map(|attribute| attribute.value.as_deref().unwrap_or(""))
}

fn retain_attributes_of(lines: &mut Vec<Line>, mut keep: impl FnMut(&Attribute) -> bool) {
    lines.retain(|line| match line {
        Line::Attribute(attribute) => keep(attribute),
        _ => true,
    });
}

impl MediaDescription {
    /// This stream declined in an answer: port 0 and only its first format (RFC 3264 §6).
    pub fn declined(&self) -> MediaDescription {
        MediaDescription {
            kind: self.kind.clone(),
            port: 0,
            port_count: None,
            proto: self.proto.clone(),
            formats: vec![self.formats.first().cloned().unwrap_or_else(|| "0".into())],
            lines: Vec::new(),
        }
    }

    /// The media-level `c=` address.
    pub fn connection(&self) -> Option<IpAddr> {
        connection_of(&self.lines)
    }

    /// The attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        attributes_of(&self.lines)
    }

    /// The first value of attribute `name` (`Some("")` for a flag).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        attribute_of(&self.lines, name)
    }

    /// Keeps the attributes `keep` accepts.
    pub fn retain_attributes(&mut self, keep: impl FnMut(&Attribute) -> bool) {
        retain_attributes_of(&mut self.lines, keep);
    }

    /// Adds an attribute after the others.
    pub fn push_attribute(&mut self, attribute: Attribute) {
        self.lines.push(Line::Attribute(attribute));
    }

    /// Adds an attribute first, right under the `m=` line.
    pub fn insert_attribute_first(&mut self, attribute: Attribute) {
        self.lines.insert(0, Line::Attribute(attribute));
    }

    /// The encoding name and clock rate of payload type `pt`: from `a=rtpmap`, else the static
    /// table of RFC 3551 for the types ringer knows.
    pub fn rtpmap(&self, pt: u8) -> Option<(String, u32)> {
        let mapped = self.attributes().filter(|attribute| attribute.is("rtpmap")).find_map(|attribute| {
            let (number, encoding) = attribute.value.as_deref()?.split_once(' ')?;
            (number.trim().parse::<u8>().ok()? == pt).then_some(encoding.trim())
        });
        match mapped {
            Some(encoding) => {
                let mut parts = encoding.split('/');
                let name = parts.next()?.to_owned();
                let rate = parts.next()?.parse().ok()?;
                Some((name, rate))
            }
            None => match pt {
                0 => Some(("PCMU".into(), 8000)),
                8 => Some(("PCMA".into(), 8000)),
                _ => None,
            },
        }
    }

    /// The `a=fmtp` parameters of payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes().filter(|attribute| attribute.is("fmtp")).find_map(|attribute| {
            let (number, parameters) = attribute.value.as_deref()?.split_once(' ')?;
            (number.trim().parse::<u8>().ok()? == pt).then_some(parameters.trim())
        })
    }

    /// The offered RTP payload types with a known encoding: (payload type, name, clock rate).
    pub fn codecs(&self) -> Vec<(u8, String, u32)> {
        self.formats
            .iter()
            .filter_map(|format| format.parse::<u8>().ok())
            .filter_map(|pt| self.rtpmap(pt).map(|(name, rate)| (pt, name, rate)))
            .collect()
    }

    /// Plain RTP (RTP/AVP, RTP/AVPF), as desk phones and SIPp offer.
    pub fn is_plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }

    /// The ICE candidates that parse, in order.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.attributes()
            .filter(|attribute| attribute.is("candidate"))
            .filter_map(|attribute| Candidate::parse(attribute.value.as_deref()?).ok())
            .collect()
    }

    /// Offers only the payload types in `keep`, each once, in the order offered; the
    /// `rtpmap`, `fmtp` and `rtcp-fb` attributes of the others go too (`rtcp-fb:*` stays).
    pub fn retain_formats(&mut self, keep: &[u8]) {
        let kept = |format: &str| format.parse::<u8>().is_ok_and(|pt| keep.contains(&pt));
        let mut formats: Vec<String> = Vec::new();
        for format in self.formats.drain(..) {
            if kept(&format) && !formats.contains(&format) {
                formats.push(format);
            }
        }
        self.formats = formats;
        self.retain_attributes(|attribute| {
            let per_format = ["rtpmap", "fmtp", "rtcp-fb"].iter().any(|name| attribute.is(name));
            match (per_format, attribute.payload_type()) {
                (true, Some("*")) | (false, _) => true,
                (true, Some(pt)) => kept(pt),
                (true, None) => false,
            }
        });
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Origin(o) => write!(
                f,
                "o={} {} {} {} {} {}",
                o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
            ),
            Line::Connection(c) => write!(f, "c={} {} {}", c.net_type, c.addr_type, c.address),
            Line::Attribute(Attribute { name, value: Some(value) }) => write!(f, "a={name}:{value}"),
            Line::Attribute(Attribute { name, value: None }) => write!(f, "a={name}"),
            Line::Other { kind, value } => write!(f, "{kind}={value}"),
        }
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.kind, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.proto)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        for line in &self.lines {
            write!(f, "{line}\r\n")?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    /// The wire form: every line ended by CRLF (RFC 4566 §5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            write!(f, "{line}\r\n")?;
        }
        for media in &self.media {
            write!(f, "{media}")?;
        }
        Ok(())
    }
}
