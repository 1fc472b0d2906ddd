//! ICE candidates (RFC 8839 §5.1), the value of an `a=candidate` attribute.

use std::fmt;
use std::net::IpAddr;

/// One `a=candidate` value: `foundation component transport priority address port typ type ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The foundation.
    pub foundation: String,
    /// The component: 1 for RTP, 2 for RTCP.
    pub component: u16,
    /// `udp`, `tcp`...
    pub transport: String,
    /// The priority.
    pub priority: u32,
    /// The connection address (an IP address, or an mDNS name browsers use).
    pub address: String,
    /// The port.
    pub port: u16,
    /// `host`, `srflx`, `prflx`, `relay`.
    pub kind: String,
    /// What follows the type (`raddr`, `rport`, `generation`...), as written.
    pub extensions: Vec<String>,
}

/// A candidate that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed candidate: {0:?}")]
pub struct BadCandidate(pub String);

impl Candidate {
    /// Parses an `a=candidate` value.
    pub fn parse(value: &str) -> Result<Self, BadCandidate> {
        let bad = || BadCandidate(value.to_owned());
        let fields: Vec<&str> = value.split_whitespace().collect();
        let [foundation, component, transport, priority, address, port, typ, kind, extensions @ ..] = fields.as_slice()
        else {
            return Err(bad());
        };
        if *typ != "typ" {
            return Err(bad());
        }
        Ok(Self {
            foundation: (*foundation).to_owned(),
            component: component.parse().map_err(|_| bad())?,
            transport: (*transport).to_owned(),
            priority: priority.parse().map_err(|_| bad())?,
            address: (*address).to_owned(),
            port: port.parse().map_err(|_| bad())?,
            kind: (*kind).to_owned(),
            extensions: extensions.iter().map(|field| (*field).to_owned()).collect(),
        })
    }

    /// The address, when it is an IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} typ {}",
            self.foundation, self.component, self.transport, self.priority, self.address, self.port, self.kind
        )?;
        for extension in &self.extensions {
            write!(f, " {extension}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_read_and_write_back() {
        let text = "2130706431 1 udp 2130706431 192.0.2.7 50000 typ host generation 0";
        let candidate = Candidate::parse(text).unwrap();
        assert_eq!((candidate.component, candidate.port, candidate.kind.as_str()), (1, 50000, "host"));
        assert_eq!(candidate.ip(), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(candidate.to_string(), text);
        for bad in ["", "1 1 udp 1 192.0.2.7 5000 host", "1 x udp 1 a 5000 typ host", "1 1 udp 1 a 99999 typ host"] {
            assert!(Candidate::parse(bad).is_err(), "{bad}");
        }
    }
}
