//! What a TAS is declared to do with a subscriber's calls in one direction, and what the harness
//! saw it do: a call case passes only when the two agree. Without a declaration the report
//! names the outcome instead of passing blindly.

use std::fmt;
use std::str::FromStr;

use domain::types::Msisdn;

/// What the TAS is meant to do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Leg 3 back to the core, to the number called (prefix removed).
    Loop,
    /// Leg 3 to another number (call forwarding).
    Forward(Msisdn),
    /// The TAS answers the call itself (voicemail, announcement...): 2xx, no leg 3.
    Answer,
    /// The TAS refuses the call: this status, or any final status >= 300.
    Reject(Option<u16>),
}

/// A declaration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not loop, answer, reject, reject:CODE or forward:+NUMBER")]
pub struct BadExpectation(pub String);

impl FromStr for Expectation {
    type Err = BadExpectation;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadExpectation(text.to_owned());
        match text.split_once(':') {
            None => match text {
                "loop" => Ok(Expectation::Loop),
                "answer" => Ok(Expectation::Answer),
                "reject" => Ok(Expectation::Reject(None)),
                _ => Err(bad()),
            },
            Some(("reject", code)) => match code.parse::<u16>() {
                Ok(code @ 300..=699) => Ok(Expectation::Reject(Some(code))),
                _ => Err(bad()),
            },
            Some(("forward", number)) => Msisdn::parse(number).map(Expectation::Forward).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Loop => f.write_str("loop"),
            Expectation::Forward(number) => write!(f, "forward:{number}"),
            Expectation::Answer => f.write_str("answer"),
            Expectation::Reject(None) => f.write_str("reject"),
            Expectation::Reject(Some(code)) => write!(f, "reject:{code}"),
        }
    }
}

/// What the TAS did with a call, as the emulated core saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// It sent leg 3 to this number.
    Leg3(Msisdn),
    /// It answered the call itself.
    Answered,
    /// It refused the call with this status (leg 3 may have been tried first).
    Refused(u16),
    /// It had not decided when the core's other branch (the subscriber's phone, a Fork's
    /// callee) answered and the core cancelled it.
    Cancelled,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Leg3(number) => write!(f, "leg 3 to {number}"),
            Observed::Answered => f.write_str("answered by the TAS itself (no leg 3)"),
            Observed::Refused(status) => write!(f, "refused {status}"),
            Observed::Cancelled => f.write_str("cancelled by the core: another branch answered first"),
        }
    }
}

impl Expectation {
    /// Whether `observed` is what was declared; `callee` is the number the call was for.
    pub fn matches(&self, observed: &Observed, callee: &Msisdn) -> bool {
        match (self, observed) {
            (Expectation::Loop, Observed::Leg3(number)) => number == callee,
            (Expectation::Forward(target), Observed::Leg3(number)) => number == target,
            (Expectation::Answer, Observed::Answered) => true,
            (Expectation::Reject(None), Observed::Refused(_)) => true,
            (Expectation::Reject(Some(code)), Observed::Refused(status)) => code == status,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Msisdn {
        Msisdn::parse(text).unwrap()
    }

    #[test]
    fn declarations_parse_and_print_back() {
        for text in ["loop", "answer", "reject", "reject:486", "forward:+4712345678"] {
            assert_eq!(text.parse::<Expectation>().unwrap().to_string(), text);
        }
        for bad in ["", "echo", "reject:200", "reject:busy", "forward:4712", "forward", "loop:1"] {
            assert!(bad.parse::<Expectation>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_declared_outcome_matches() {
        let callee = number("+4712340000");
        let leg3 = Observed::Leg3(callee.clone());
        assert!(Expectation::Loop.matches(&leg3, &callee));
        assert!(!Expectation::Loop.matches(&Observed::Leg3(number("+114712340000")), &callee));
        assert!(!Expectation::Loop.matches(&Observed::Refused(404), &callee));
        assert!(Expectation::Forward(number("+4799")).matches(&Observed::Leg3(number("+4799")), &callee));
        assert!(!Expectation::Forward(number("+4799")).matches(&leg3, &callee));
        assert!(Expectation::Answer.matches(&Observed::Answered, &callee));
        assert!(!Expectation::Answer.matches(&leg3, &callee));
        assert!(Expectation::Reject(None).matches(&Observed::Refused(603), &callee));
        assert!(Expectation::Reject(Some(486)).matches(&Observed::Refused(486), &callee));
        assert!(!Expectation::Reject(Some(486)).matches(&Observed::Refused(404), &callee));
    }
}
