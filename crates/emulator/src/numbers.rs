//! How the emulated core reads numbers from SIP: the E.164 number a Request-URI addresses and
//! the caller's asserted number. Written apart from the TAS's own routing (`tas::call`): the
//! core decides direction and prefix, and the conformance harness judges a TAS's leg 3 with
//! these functions, so a mistake in the TAS's reading must not be shared by its judge.

use domain::types::{Msisdn, ServiceCode};
use sip::message::grammar::split_list;
use sip::message::header::NameAddr;
use sip::message::{Headers, Uri};

/// The global number (`+` and digits) a URI addresses: a `tel:` URI's number, or the user part
/// of a `sip:`/`sips:` URI before its parameters; the visual separators of RFC 3966 §5.1.1
/// (`-`, `.`, `(`, `)`) are dropped. `None` for anything else (a name, a local number).
pub fn addressed_number(uri: &Uri) -> Option<Msisdn> {
    let written = dialled(uri)?;
    let mut number = String::with_capacity(written.len());
    for (index, character) in written.char_indices() {
        match character {
            '+' if index == 0 => number.push('+'),
            '0'..='9' => number.push(character),
            '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if !number.starts_with('+') {
        return None;
    }
    Msisdn::parse(&number).ok()
}

/// The service code a URI addresses (`sip:*72+4799990002@core`, `sip:*%2372%23@core`,
/// `tel:*73`): the user part before its parameters, or the `tel:` number, `#` unescaped.
pub fn dialled_code(uri: &Uri) -> Option<ServiceCode> {
    ServiceCode::from_escaped(dialled(uri)?).ok()
}

/// What a URI carries as dialled: a `tel:` URI's number, or the user part of a `sip:`/`sips:`
/// URI before its parameters.
fn dialled(uri: &Uri) -> Option<&str> {
    match uri {
        Uri::Tel { number, .. } => Some(number),
        Uri::Sip(sip) => {
            let user = sip.user.as_deref()?;
            Some(user.find(';').map_or(user, |end| &user[..end]))
        }
        Uri::Other { .. } => None,
    }
}

/// What a caller dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Called {
    /// A number.
    Number(Msisdn),
    /// A supplementary-service code (`*72+4799990002`), for the caller's own TAS.
    Code(ServiceCode),
}

impl Called {
    /// What follows the `+` (and the prefix) in leg 2's user part: the number's digits, or the
    /// code with `#` escaped.
    pub(crate) fn user_part(&self) -> String {
        match self {
            Called::Number(number) => number.digits().to_owned(),
            Called::Code(code) => code.escaped(),
        }
    }
}

impl std::fmt::Display for Called {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Called::Number(number) => number.fmt(f),
            Called::Code(code) => code.fmt(f),
        }
    }
}

impl PartialEq<Msisdn> for Called {
    fn eq(&self, number: &Msisdn) -> bool {
        matches!(self, Called::Number(called) if called == number)
    }
}

impl From<&Msisdn> for Called {
    fn from(number: &Msisdn) -> Self {
        Called::Number(number.clone())
    }
}

impl From<&ServiceCode> for Called {
    fn from(code: &ServiceCode) -> Self {
        Called::Code(code.clone())
    }
}

/// The caller as the core knows it: the first P-Asserted-Identity with a global number, else
/// the From URI's number.
pub fn caller(headers: &Headers, from: &NameAddr) -> Option<Msisdn> {
    headers
        .get_all("P-Asserted-Identity")
        .flat_map(split_list)
        .filter_map(|identity| NameAddr::parse(identity).ok())
        .find_map(|identity| addressed_number(&identity.uri))
        .or_else(|| addressed_number(&from.uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(uri: &str) -> Option<String> {
        addressed_number(&Uri::parse(uri).unwrap()).map(|number| number.as_str().to_owned())
    }

    #[test]
    fn numbers_in_every_form_the_core_meets() {
        assert_eq!(number("sip:+4799990001@core.example;user=phone").as_deref(), Some("+4799990001"));
        assert_eq!(number("sips:+4799990001;npdi@core.example").as_deref(), Some("+4799990001"));
        assert_eq!(number("tel:+47-9999-0001;phone-context=x").as_deref(), Some("+4799990001"));
        assert_eq!(number("tel:+47(999)9.0001").as_deref(), Some("+4799990001"));
        for none in
            ["sip:alice@core.example", "sip:4799990001@core.example", "tel:+47abc", "sip:core.example", "tel:4+799"]
        {
            assert_eq!(number(none), None, "{none}");
        }
    }

    #[test]
    fn service_codes_in_sip_and_tel_forms() {
        let code = |uri: &str| dialled_code(&Uri::parse(uri).unwrap()).map(|code| code.as_str().to_owned());
        assert_eq!(code("sip:*72+4799990002@core.example;user=phone").as_deref(), Some("*72+4799990002"));
        assert_eq!(code("sip:*%2372%23@core.example").as_deref(), Some("*#72#"));
        assert_eq!(code("tel:*73;phone-context=core.example").as_deref(), Some("*73"));
        for none in ["sip:+4799990002@core.example", "sip:alice@core.example", "sip:*72x@core.example"] {
            assert_eq!(code(none), None, "{none}");
        }
    }

    #[test]
    fn the_asserted_identity_comes_before_from() {
        let mut headers = Headers::new();
        headers.push("P-Asserted-Identity", "\"Anon\" <sip:anonymous@anonymous.invalid>, <tel:+4711111111>");
        let from = NameAddr::parse("<sip:+4722222222@core.example>;tag=1").unwrap();
        assert_eq!(caller(&headers, &from).map(|n| n.as_str().to_owned()).as_deref(), Some("+4711111111"));
        assert_eq!(caller(&Headers::new(), &from).map(|n| n.as_str().to_owned()).as_deref(), Some("+4722222222"));
    }
}
