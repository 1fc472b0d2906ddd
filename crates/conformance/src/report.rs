//! Verdicts and the three ways they are reported: a table for people, JUnit XML for CI
//! systems, JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// The TAS did what the spec asks.
    Pass,
    /// It did not: what was expected (with its source), and what arrived.
    Fail {
        /// What the spec page or RFC asks for.
        expected: String,
        /// What arrived (a SIP message excerpt, an error).
        got: String,
    },
    /// Not applicable to this TAS, for a stated reason.
    Skip {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// A failure.
    pub fn fail(expected: impl Into<String>, got: impl Into<String>) -> Self {
        Verdict::Fail { expected: expected.into(), got: got.into() }
    }

    /// A skip.
    pub fn skip(reason: impl Into<String>) -> Self {
        Verdict::Skip { reason: reason.into() }
    }

    /// Whether this verdict lets the run succeed.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Verdict::Fail { .. })
    }

    fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail { .. } => "FAIL",
            Verdict::Skip { .. } => "skip",
        }
    }
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case's name, `group.case` (e.g. `tls.certificate`, `call.loop.mt.sip`).
    pub name: String,
    /// What it checks, in a line.
    pub description: String,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What was observed on the way (also for passes).
    pub evidence: Vec<String>,
    /// For a call, what the TAS did with it (leg 3 to a number, answered, refused with a
    /// status), so that a pass without a declared expectation still says what passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// How long it took.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

/// Every case's result, in the order they ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The TAS under test.
    pub target: String,
    /// The results.
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Whether every case passed or was skipped.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|case| case.verdict.is_ok())
    }

    /// (passed, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Verdict) -> bool| self.cases.iter().filter(|c| f(&c.verdict)).count();
        (
            count(|v| matches!(v, Verdict::Pass)),
            count(|v| matches!(v, Verdict::Fail { .. })),
            count(|v| matches!(v, Verdict::Skip { .. })),
        )
    }

    /// The result of case `name`.
    pub fn case(&self, name: &str) -> Option<&CaseResult> {
        self.cases.iter().find(|case| case.name == name)
    }

    /// The table printed on the terminal: a line per case, failures and skips explained.
    pub fn table(&self) -> String {
        let width = self.cases.iter().map(|case| case.name.len()).max().unwrap_or(4).max(4);
        let mut out = format!("conformance of {}\n\n", self.target);
        for case in &self.cases {
            let _ = writeln!(
                out,
                "{:<width$}  {:<4}  {:>6} ms  {}",
                case.name,
                case.verdict.word(),
                case.duration.as_millis(),
                case.description
            );
            match &case.verdict {
                Verdict::Fail { expected, got } => {
                    let _ = writeln!(out, "{:width$}  expected: {expected}", "");
                    for line in got.lines().take(12) {
                        let _ = writeln!(out, "{:width$}  got:      {line}", "");
                    }
                }
                Verdict::Skip { reason } => {
                    let _ = writeln!(out, "{:width$}  because:  {reason}", "");
                }
                Verdict::Pass => {}
            }
            if let Some(outcome) = &case.outcome {
                let _ = writeln!(out, "{:width$}  outcome:  {outcome}", "");
            }
        }
        let (passed, failed, skipped) = self.counts();
        let _ = writeln!(out, "\n{passed} passed, {failed} failed, {skipped} skipped");
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }

    /// The report as JUnit XML (one test suite, a test case per case).
    pub fn junit(&self) -> String {
        let (_, failed, skipped) = self.counts();
        let total: f64 = self.cases.iter().map(|c| c.duration.as_secs_f64()).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuite name=\"ringer conformance {}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\" time=\"{total:.3}\">",
            xml(&self.target),
            self.cases.len()
        );
        for case in &self.cases {
            let (group, _) = case.name.split_once('.').unwrap_or((&case.name, ""));
            let _ = write!(
                out,
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(group),
                xml(&case.name),
                case.duration.as_secs_f64()
            );
            match &case.verdict {
                Verdict::Pass => out.push_str("/>\n"),
                Verdict::Fail { expected, got } => {
                    let _ = writeln!(
                        out,
                        ">\n    <failure message=\"expected: {}\">{}</failure>\n  </testcase>",
                        xml(expected),
                        xml(got)
                    );
                }
                Verdict::Skip { reason } => {
                    let _ = writeln!(out, ">\n    <skipped message=\"{}\"/>\n  </testcase>", xml(reason));
                }
            }
        }
        out.push_str("</testsuite>\n");
        out
    }
}

/// `text` escaped for XML attributes and content.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no place for most control characters, even escaped.
            c if c.is_control() && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let case = |name: &str, verdict| CaseResult {
            name: name.into(),
            description: "d".into(),
            verdict,
            evidence: vec![],
            outcome: None,
            duration: Duration::from_millis(12),
        };
        Report {
            target: "sips:tas.example.com:5061".into(),
            cases: vec![
                case("tls.certificate", Verdict::Pass),
                case("call.loop.mt", Verdict::fail("leg 3 with Session-ID <x>", "INVITE sip:+47 SIP/2.0\r\nTo: <a&b>")),
                case("media.dtls", Verdict::skip("the TAS answers no call itself")),
            ],
        }
    }

    #[test]
    fn a_failure_makes_the_run_fail_and_skips_do_not() {
        let mut report = report();
        assert!(!report.passed());
        assert_eq!(report.counts(), (1, 1, 1));
        report.cases.remove(1);
        assert!(report.passed());
    }

    #[test]
    fn junit_escapes_and_counts() {
        let junit = report().junit();
        assert!(junit.contains("tests=\"3\" failures=\"1\" skipped=\"1\""), "{junit}");
        assert!(junit.contains("<testcase classname=\"call\" name=\"call.loop.mt\""), "{junit}");
        assert!(junit.contains("To: &lt;a&amp;b&gt;"), "{junit}");
        assert!(junit.contains("<skipped message=\"the TAS answers no call itself\"/>"), "{junit}");
    }

    #[test]
    fn json_and_table_carry_the_verdicts() {
        let json: serde_json::Value = serde_json::from_str(&report().json()).unwrap();
        assert_eq!(json["cases"][1]["verdict"], "fail");
        assert_eq!(json["cases"][1]["expected"], "leg 3 with Session-ID <x>");
        assert_eq!(json["cases"][0]["duration"], 12);
        let table = report().table();
        assert!(table.contains("call.loop.mt     FAIL"), "{table}");
        assert!(table.contains("expected: leg 3 with Session-ID <x>"), "{table}");
        assert!(table.contains("1 passed, 1 failed, 1 skipped"), "{table}");
    }
}
