//! The grammar pieces of RFC 3261 §25 that headers and URIs share: tokens, quoted strings,
//! comma-separated lists, `;name=value` parameters and `host[:port]`.

use std::fmt;

/// A header value that does not follow its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadHeader(pub &'static str);

/// `token` characters (RFC 3261 §25.1).
pub fn is_token_char(byte: u8) -> bool {
    TOKEN_CHARS[usize::from(byte)]
}

/// [`is_token_char`] by table: it is asked of every byte of every header name and parameter.
const TOKEN_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        byte += 1;
    }
    table
};

/// Where the ASCII `byte` first appears in `text` (a char boundary, as no UTF-8 sequence holds
/// an ASCII byte). memchr instead of `str::find(char)`, whose char searcher cost more to set up
/// than the search itself in these short texts: a tenth of a call's instructions went there.
pub(crate) fn find_byte(text: &str, byte: u8) -> Option<usize> {
    debug_assert!(byte.is_ascii());
    memchr::memchr(byte, text.as_bytes())
}

/// `text` split at the first ASCII `byte`, which neither part keeps.
pub(crate) fn split_once_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = find_byte(text, byte)?;
    Some((&text[..at], &text[at + 1..]))
}

/// The pieces of `text` between ASCII `byte`s, as `str::split` gives them (a last piece,
/// perhaps empty, after the last separator).
pub(crate) fn split_byte(text: &str, byte: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match find_byte(text, byte) {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Whether `text` is a non-empty token.
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token_char)
}

/// Splits a list header value at top-level commas (not inside quotes or angle brackets).
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    // Most values hold one element (every Via, From, To and Contact of a plain call): without
    // a comma there is nothing to split, and no list to allocate.
    if find_byte(value, b',').is_none() {
        return ListParts::One(Some(value.trim()));
    }
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped, mut angle) = (0, false, false, false);
    for (index, byte) in value.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                parts.push(value[start..index].trim());
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    ListParts::Many(parts.into_iter())
}

/// The elements [`split_list`] found.
enum ListParts<'a> {
    One(Option<&'a str>),
    Many(std::vec::IntoIter<&'a str>),
}

impl<'a> Iterator for ListParts<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            ListParts::One(part) => part.take(),
            ListParts::Many(parts) => parts.next(),
        }
    }
}

/// Reads a quoted string at the start of `text` (which starts with `"`); returns its content
/// (escapes kept) and the rest after the closing quote.
pub fn quoted_string(text: &str) -> Result<(&str, &str), BadHeader> {
    let bytes = text.as_bytes();
    let mut index = 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return Ok((&text[1..index], &text[index + 1..])),
            _ => index += 1,
        }
    }
    Err(BadHeader("unbalanced quotes"))
}

/// A `;name=value` parameter list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Option<String>)>);

/// A parameter's name and value (none for a flag), as slices of the text it was read from.
pub(crate) type Param<'a> = (&'a str, Option<&'a str>);

/// The `;name=value` parameters of `text` one by one, as slices of it (a quoted value with its
/// quotes), without allocating. The grammar of [`Params::parse`], which collects them; an
/// error is the walk's last item.
pub(crate) fn params_in(text: &str) -> impl Iterator<Item = Result<Param<'_>, BadHeader>> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest.take()?.trim_start();
        if text.is_empty() {
            return None;
        }
        let param = next_param(text);
        if let Ok((_, after)) = &param {
            rest = Some(after);
        }
        Some(param.map(|(param, _)| param))
    })
}

/// The first parameter of `text` (which starts with its `;`), and what follows it.
fn next_param(text: &str) -> Result<(Param<'_>, &str), BadHeader> {
    let text = text.strip_prefix(';').ok_or(BadHeader("expected ';' before a parameter"))?.trim_start();
    let name_end = text.bytes().position(|b| !is_token_char(b)).unwrap_or(text.len());
    let name = &text[..name_end];
    if name.is_empty() {
        return Err(BadHeader("empty parameter"));
    }
    let text = text[name_end..].trim_start();
    let Some(rest) = text.strip_prefix('=') else { return Ok(((name, None), text)) };
    let rest = rest.trim_start();
    if rest.starts_with('"') {
        let (content, after) = quoted_string(rest)?;
        // The value keeps its quotes: the content and the two quotes around it.
        return Ok(((name, Some(&rest[..content.len() + 2])), after));
    }
    let end = rest.find(|c: char| c == ';' || c.is_whitespace()).unwrap_or(rest.len());
    let value = &rest[..end];
    let valid = !value.is_empty() && value.bytes().all(|b| is_token_char(b) || b":[]".contains(&b));
    if !valid {
        return Err(BadHeader("bad parameter value"));
    }
    Ok(((name, Some(value)), &rest[end..]))
}

impl Params {
    /// Parses `;a=b;c` (the text after the main value; leading whitespace allowed).
    pub fn parse(text: &str) -> Result<Self, BadHeader> {
        let mut params = Vec::new();
        for param in params_in(text) {
            let (name, value) = param?;
            params.push((name.to_owned(), value.map(str::to_owned)));
        }
        Ok(Self(params))
    }

    /// The value of `name` (case-insensitive); `Some(None)` for a flag parameter.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Sets `name`, replacing an earlier value.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.0 {
            match value {
                Some(value) => write!(f, ";{name}={value}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

/// Writes `host[:port]`, an IPv6 host in brackets.
pub fn write_host_port(f: &mut fmt::Formatter<'_>, host: &str, port: Option<u16>) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")?;
    } else {
        f.write_str(host)?;
    }
    match port {
        Some(port) => write!(f, ":{port}"),
        None => Ok(()),
    }
}

/// Splits `host[:port]` (IPv6 in brackets); checks the host's characters.
pub fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = split_once_byte(inner, b']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match split_once_byte(text, b':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let host_ok = text.starts_with('[')
        || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.trim().parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The byte searches find what `str`'s char searches find, in text with multi-byte
        /// characters around the separators.
        #[test]
        fn byte_searches_agree_with_str(
            text in "[a-z;:@ \n\u{e9}\u{20ac}\u{1f600}]{0,40}",
            byte in proptest::sample::select(vec![b'\n', b':', b';', b'@', b' ']),
        ) {
            let separator = char::from(byte);
            proptest::prop_assert_eq!(find_byte(&text, byte), text.find(separator));
            proptest::prop_assert_eq!(split_once_byte(&text, byte), text.split_once(separator));
            proptest::prop_assert_eq!(split_byte(&text, byte).collect::<Vec<_>>(), text.split(separator).collect::<Vec<_>>());
        }
    }

    #[test]
    fn token_characters_are_rfc_3261s() {
        for byte in 0..=255u8 {
            let expected = byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte);
            assert_eq!(is_token_char(byte), expected, "byte {byte}");
        }
    }

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        let parts: Vec<_> = split_list("\"a, b\" <sip:x;p=1,2>, <sip:y> ,z").collect();
        assert_eq!(parts, ["\"a, b\" <sip:x;p=1,2>", "<sip:y>", "z"]);
        assert_eq!(split_list("  <sip:a;lr>  ").collect::<Vec<_>>(), ["<sip:a;lr>"]);
        assert_eq!(split_list("").collect::<Vec<_>>(), [""]);
    }
}
