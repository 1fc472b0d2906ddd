//! URIs in SIP messages: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), and any other
//! scheme kept opaque (so a UAS can answer 416 rather than 400).

use std::fmt;

use super::grammar::{find_byte, split_host_port, split_once_byte, Params};

/// A URI that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URI: {0}")]
pub struct BadUri(pub &'static str);

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:+4799990000;phone-context=...`.
    Tel {
        /// The number, as written (visual separators kept).
        number: String,
        /// Parameters.
        params: Params,
    },
    /// Any other scheme, kept as written.
    Other {
        /// The scheme, lower-cased.
        scheme: String,
        /// Everything after the colon.
        rest: String,
    },
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:`.
    pub secure: bool,
    /// The user part, escapes kept as written.
    pub user: Option<String>,
    /// The password (deprecated, kept to round-trip).
    pub password: Option<String>,
    /// The host (IPv6 without brackets).
    pub host: String,
    /// The port.
    pub port: Option<u16>,
    /// URI parameters (`transport`, `user`, `lr`…).
    pub params: Params,
    /// The headers part after `?`, as written.
    pub headers: Option<String>,
}

/// Bytes a URI never holds unescaped: whitespace, controls, angle brackets and double quotes
/// (a table: every byte of every URI read is looked up).
const NOT_IN_URI: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'<' | b'>' | b'"');
        byte += 1;
    }
    table
};

impl Uri {
    /// Parses a URI as found in a Request-URI or between angle brackets.
    pub fn parse(text: &str) -> Result<Self, BadUri> {
        // RFC 3986 §2: angle brackets and double quotes never appear unescaped in a URI (they
        // delimit it in name-addr), so a URI written back in brackets stays one URI.
        if text.is_empty() || text.bytes().any(|b| NOT_IN_URI[usize::from(b)]) {
            return Err(BadUri("empty, or with whitespace, control characters, angle brackets or quotes"));
        }
        let (scheme, rest) = split_once_byte(text, b':').ok_or(BadUri("no scheme"))?;
        let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(BadUri("bad scheme"));
        }
        // Compared without case and lower-cased only when kept: most URIs are sip: ones.
        let is = |name: &str| scheme.eq_ignore_ascii_case(name);
        if is("sip") || is("sips") {
            SipUri::parse(is("sips"), rest).map(Uri::Sip)
        } else if is("tel") {
            let end = find_byte(rest, b';').unwrap_or(rest.len());
            let number = &rest[..end];
            let valid =
                !number.is_empty() && number.bytes().all(|b| b.is_ascii_hexdigit() || b"+-.()*#pPwW".contains(&b));
            if !valid {
                return Err(BadUri("bad tel number"));
            }
            let params = Params::parse(&rest[end..]).map_err(|_| BadUri("bad tel parameters"))?;
            Ok(Uri::Tel { number: number.to_owned(), params })
        } else if rest.is_empty() {
            Err(BadUri("empty after scheme"))
        } else {
            Ok(Uri::Other { scheme: scheme.to_ascii_lowercase(), rest: rest.to_owned() })
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(sip) if sip.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel { .. } => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The SIP URI inside, if it is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(sip) => Some(sip),
            _ => None,
        }
    }
}

impl SipUri {
    fn parse(secure: bool, text: &str) -> Result<Self, BadUri> {
        // The user part may hold ';', '?' and '/' (user-unreserved), so it ends at the '@'.
        let (userinfo, hostpart) = match find_byte(text, b'@') {
            Some(at) => (Some(&text[..at]), &text[at + 1..]),
            None => (None, text),
        };
        let (user, password) = match userinfo {
            Some(info) => {
                let (user, password) = match split_once_byte(info, b':') {
                    Some((user, password)) => (user, Some(password.to_owned())),
                    None => (info, None),
                };
                if user.is_empty() || !valid_escapes(user) {
                    return Err(BadUri("bad user part"));
                }
                (Some(user.to_owned()), password)
            }
            None => (None, None),
        };
        let (before_headers, headers) = match split_once_byte(hostpart, b'?') {
            Some((before, headers)) => (before, Some(headers.to_owned())),
            None => (hostpart, None),
        };
        let host_end = find_byte(before_headers, b';').unwrap_or(before_headers.len());
        let (host, port) = split_host_port(&before_headers[..host_end]).ok_or(BadUri("bad host or port"))?;
        let params = Params::parse(&before_headers[host_end..]).map_err(|_| BadUri("bad URI parameters"))?;
        Ok(Self { secure, user, password, host: host.to_owned(), port, params, headers })
    }

    /// The `user=phone` parameter is set.
    pub fn is_phone(&self) -> bool {
        self.params.get("user").flatten().is_some_and(|v| v.eq_ignore_ascii_case("phone"))
    }
}

/// `%` must be followed by two hex digits.
fn valid_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                write!(f, ":{password}")?;
            }
            f.write_str("@")?;
        }
        super::grammar::write_host_port(f, &self.host, self.port)?;
        write!(f, "{}", self.params)?;
        if let Some(headers) = &self.headers {
            write!(f, "?{headers}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(sip) => sip.fmt(f),
            Uri::Tel { number, params } => write!(f, "tel:{number}{params}"),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris() {
        let uri = Uri::parse("sip:+0047112334455@core.example.com:5061;user=phone;transport=tls").unwrap();
        let sip = uri.as_sip().unwrap();
        assert_eq!(
            (sip.user.as_deref(), sip.host.as_str(), sip.port),
            (Some("+0047112334455"), "core.example.com", Some(5061))
        );
        assert!(sip.is_phone());
        assert_eq!(uri.to_string(), "sip:+0047112334455@core.example.com:5061;user=phone;transport=tls");
        let odd = Uri::parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        assert_eq!(odd.as_sip().unwrap().host, "example.com");
        assert!(Uri::parse("sip:user@example.com?Route=%3Csip:example.com%3E")
            .unwrap()
            .as_sip()
            .unwrap()
            .headers
            .is_some());
        assert!(Uri::parse("sips:[::1]:5061").is_ok());
        for bad in [
            "sip:",
            "<sip:user@example.com>",
            "sip:user@example.com; lr",
            "sip:user@exa mple.com",
            "sip:%zz@h",
            "sip:u@h:port",
            "sip:u@h\t",
            "sip:u\u{7f}@h",
            "sip:\"u\"@h",
            "sip:u@h;x=>",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tel_and_other_schemes() {
        let tel = Uri::parse("tel:+0047112334455;phone-context=example.com").unwrap();
        assert!(matches!(&tel, Uri::Tel { number, .. } if number == "+0047112334455"));
        assert_eq!(Uri::parse("soap.beep://192.0.2.103:3002").unwrap().scheme(), "soap.beep");
        assert_eq!(Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap().scheme(), "nobodyknowsthisscheme");
    }
}
