//! The menu's spoken prompts: shipped in English (made by `scripts/make-prompts` with espeak-ng
//! and built into the binary), each replaceable by the operator's own recording in
//! `voicemail.prompts_dir/<language>/<name>.wav` (or `.opus`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use media::apps::{decode_audio, AudioFileError};
use tracing::info;

/// The shipped prompts, by name, as WAV (8 kHz, 16-bit, mono).
const SHIPPED: &[(&str, &[u8])] = &[
    ("and", include_bytes!("../../prompts/en/and.wav")),
    ("deleted", include_bytes!("../../prompts/en/deleted.wav")),
    ("enter-mailbox", include_bytes!("../../prompts/en/enter-mailbox.wav")),
    ("enter-pin", include_bytes!("../../prompts/en/enter-pin.wav")),
    ("goodbye", include_bytes!("../../prompts/en/goodbye.wav")),
    ("greeting-saved", include_bytes!("../../prompts/en/greeting-saved.wav")),
    ("invalid", include_bytes!("../../prompts/en/invalid.wav")),
    ("locked", include_bytes!("../../prompts/en/locked.wav")),
    ("login-incorrect", include_bytes!("../../prompts/en/login-incorrect.wav")),
    ("mailbox-full", include_bytes!("../../prompts/en/mailbox-full.wav")),
    ("main-menu", include_bytes!("../../prompts/en/main-menu.wav")),
    ("message-from", include_bytes!("../../prompts/en/message-from.wav")),
    ("message-menu", include_bytes!("../../prompts/en/message-menu.wav")),
    ("new-messages", include_bytes!("../../prompts/en/new-messages.wav")),
    ("new-pin", include_bytes!("../../prompts/en/new-pin.wav")),
    ("no-more-messages", include_bytes!("../../prompts/en/no-more-messages.wav")),
    ("options-menu", include_bytes!("../../prompts/en/options-menu.wav")),
    ("pin-again", include_bytes!("../../prompts/en/pin-again.wav")),
    ("pin-changed", include_bytes!("../../prompts/en/pin-changed.wav")),
    ("pin-mismatch", include_bytes!("../../prompts/en/pin-mismatch.wav")),
    ("received-at", include_bytes!("../../prompts/en/received-at.wav")),
    ("record-after-tone", include_bytes!("../../prompts/en/record-after-tone.wav")),
    ("review-recording", include_bytes!("../../prompts/en/review-recording.wav")),
    ("saved-messages", include_bytes!("../../prompts/en/saved-messages.wav")),
    ("saved", include_bytes!("../../prompts/en/saved.wav")),
    ("temporary-removed", include_bytes!("../../prompts/en/temporary-removed.wav")),
    ("unknown-caller", include_bytes!("../../prompts/en/unknown-caller.wav")),
    ("utc", include_bytes!("../../prompts/en/utc.wav")),
    ("you-have", include_bytes!("../../prompts/en/you-have.wav")),
    ("forward-always-on", include_bytes!("../../prompts/en/forward-always-on.wav")),
    ("forward-always-off", include_bytes!("../../prompts/en/forward-always-off.wav")),
    ("forward-busy-on", include_bytes!("../../prompts/en/forward-busy-on.wav")),
    ("forward-busy-off", include_bytes!("../../prompts/en/forward-busy-off.wav")),
    ("forward-no-answer-on", include_bytes!("../../prompts/en/forward-no-answer-on.wav")),
    ("forward-no-answer-off", include_bytes!("../../prompts/en/forward-no-answer-off.wav")),
    ("forward-unreachable-on", include_bytes!("../../prompts/en/forward-unreachable-on.wav")),
    ("forward-unreachable-off", include_bytes!("../../prompts/en/forward-unreachable-off.wav")),
    ("do-not-disturb-on", include_bytes!("../../prompts/en/do-not-disturb-on.wav")),
    ("do-not-disturb-off", include_bytes!("../../prompts/en/do-not-disturb-off.wav")),
    ("your-voicemail", include_bytes!("../../prompts/en/your-voicemail.wav")),
    ("code-unknown", include_bytes!("../../prompts/en/code-unknown.wav")),
    ("code-refused", include_bytes!("../../prompts/en/code-refused.wav")),
    ("code-unavailable", include_bytes!("../../prompts/en/code-unavailable.wav")),
    ("number-0", include_bytes!("../../prompts/en/number-0.wav")),
    ("number-1", include_bytes!("../../prompts/en/number-1.wav")),
    ("number-2", include_bytes!("../../prompts/en/number-2.wav")),
    ("number-3", include_bytes!("../../prompts/en/number-3.wav")),
    ("number-4", include_bytes!("../../prompts/en/number-4.wav")),
    ("number-5", include_bytes!("../../prompts/en/number-5.wav")),
    ("number-6", include_bytes!("../../prompts/en/number-6.wav")),
    ("number-7", include_bytes!("../../prompts/en/number-7.wav")),
    ("number-8", include_bytes!("../../prompts/en/number-8.wav")),
    ("number-9", include_bytes!("../../prompts/en/number-9.wav")),
    ("number-10", include_bytes!("../../prompts/en/number-10.wav")),
    ("number-11", include_bytes!("../../prompts/en/number-11.wav")),
    ("number-12", include_bytes!("../../prompts/en/number-12.wav")),
    ("number-13", include_bytes!("../../prompts/en/number-13.wav")),
    ("number-14", include_bytes!("../../prompts/en/number-14.wav")),
    ("number-15", include_bytes!("../../prompts/en/number-15.wav")),
    ("number-16", include_bytes!("../../prompts/en/number-16.wav")),
    ("number-17", include_bytes!("../../prompts/en/number-17.wav")),
    ("number-18", include_bytes!("../../prompts/en/number-18.wav")),
    ("number-19", include_bytes!("../../prompts/en/number-19.wav")),
    ("number-20", include_bytes!("../../prompts/en/number-20.wav")),
    ("number-21", include_bytes!("../../prompts/en/number-21.wav")),
    ("number-22", include_bytes!("../../prompts/en/number-22.wav")),
    ("number-23", include_bytes!("../../prompts/en/number-23.wav")),
    ("number-24", include_bytes!("../../prompts/en/number-24.wav")),
    ("number-25", include_bytes!("../../prompts/en/number-25.wav")),
    ("number-26", include_bytes!("../../prompts/en/number-26.wav")),
    ("number-27", include_bytes!("../../prompts/en/number-27.wav")),
    ("number-28", include_bytes!("../../prompts/en/number-28.wav")),
    ("number-29", include_bytes!("../../prompts/en/number-29.wav")),
    ("number-30", include_bytes!("../../prompts/en/number-30.wav")),
    ("number-31", include_bytes!("../../prompts/en/number-31.wav")),
    ("number-32", include_bytes!("../../prompts/en/number-32.wav")),
    ("number-33", include_bytes!("../../prompts/en/number-33.wav")),
    ("number-34", include_bytes!("../../prompts/en/number-34.wav")),
    ("number-35", include_bytes!("../../prompts/en/number-35.wav")),
    ("number-36", include_bytes!("../../prompts/en/number-36.wav")),
    ("number-37", include_bytes!("../../prompts/en/number-37.wav")),
    ("number-38", include_bytes!("../../prompts/en/number-38.wav")),
    ("number-39", include_bytes!("../../prompts/en/number-39.wav")),
    ("number-40", include_bytes!("../../prompts/en/number-40.wav")),
    ("number-41", include_bytes!("../../prompts/en/number-41.wav")),
    ("number-42", include_bytes!("../../prompts/en/number-42.wav")),
    ("number-43", include_bytes!("../../prompts/en/number-43.wav")),
    ("number-44", include_bytes!("../../prompts/en/number-44.wav")),
    ("number-45", include_bytes!("../../prompts/en/number-45.wav")),
    ("number-46", include_bytes!("../../prompts/en/number-46.wav")),
    ("number-47", include_bytes!("../../prompts/en/number-47.wav")),
    ("number-48", include_bytes!("../../prompts/en/number-48.wav")),
    ("number-49", include_bytes!("../../prompts/en/number-49.wav")),
    ("number-50", include_bytes!("../../prompts/en/number-50.wav")),
    ("number-51", include_bytes!("../../prompts/en/number-51.wav")),
    ("number-52", include_bytes!("../../prompts/en/number-52.wav")),
    ("number-53", include_bytes!("../../prompts/en/number-53.wav")),
    ("number-54", include_bytes!("../../prompts/en/number-54.wav")),
    ("number-55", include_bytes!("../../prompts/en/number-55.wav")),
    ("number-56", include_bytes!("../../prompts/en/number-56.wav")),
    ("number-57", include_bytes!("../../prompts/en/number-57.wav")),
    ("number-58", include_bytes!("../../prompts/en/number-58.wav")),
    ("number-59", include_bytes!("../../prompts/en/number-59.wav")),
];

/// Recordings only the operator provides (none shipped): the system's greetings in the
/// prompts' language, before `voicemail.greeting` / `busy_greeting` and the chime.
const OPERATOR_ONLY: [&str; 2] = ["greeting-unavailable", "greeting-busy"];

/// The menu's prompts, decoded once at start.
#[derive(Debug, Clone, Default)]
pub struct Prompts {
    audio: HashMap<&'static str, Arc<Vec<i16>>>,
}

/// `<dir>/<language>/<name>.wav` or `.opus`, when the operator provides it.
fn operator_file(dir: Option<&Path>, language: &str, name: &str) -> Option<std::path::PathBuf> {
    let folder = dir?.join(language);
    ["wav", "opus"].iter().map(|ext| folder.join(format!("{name}.{ext}"))).find(|path| path.is_file())
}

impl Prompts {
    /// The shipped prompts, each replaced by `<dir>/<language>/<name>.wav` (or `.opus`) where
    /// the operator provides one. A provided file that does not decode is an error naming it.
    pub fn load(dir: Option<&Path>, language: &str) -> Result<Self, AudioFileError> {
        let mut audio = HashMap::new();
        let mut replaced = 0;
        for name in OPERATOR_ONLY {
            if let Some(path) = operator_file(dir, language, name) {
                audio.insert(name, Arc::new(media::apps::load_audio(&path)?));
            }
        }
        for (name, shipped) in SHIPPED {
            let samples = match operator_file(dir, language, name) {
                Some(path) => {
                    replaced += 1;
                    media::apps::load_audio(&path)?
                }
                None => decode_audio(shipped, Path::new(name))?,
            };
            audio.insert(*name, Arc::new(samples));
        }
        if dir.is_some() {
            info!(
                language,
                replaced,
                of = SHIPPED.len(),
                "voicemail prompts: the operator's own where provided, shipped English otherwise"
            );
        }
        Ok(Self { audio })
    }

    /// The prompt `name` (silence for a name not shipped: a typo in ringer, not the operator's).
    pub fn get(&self, name: &str) -> Arc<Vec<i16>> {
        self.audio.get(name).cloned().unwrap_or_default()
    }

    /// An operator-only recording (`greeting-unavailable`, `greeting-busy`), when provided.
    pub fn provided(&self, name: &str) -> Option<Arc<Vec<i16>>> {
        OPERATOR_ONLY.contains(&name).then(|| self.audio.get(name).cloned()).flatten()
    }

    /// `n` spoken: one word up to 59, digit by digit above.
    pub fn number(&self, n: u64) -> Vec<Arc<Vec<i16>>> {
        if n < 60 {
            return vec![self.get(&format!("number-{n}"))];
        }
        self.digits(&n.to_string())
    }

    /// Each digit of `text` spoken (anything else skipped).
    pub fn digits(&self, text: &str) -> Vec<Arc<Vec<i16>>> {
        text.chars().filter_map(|c| c.to_digit(10)).map(|d| self.get(&format!("number-{d}"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_prompt_decodes_and_speaks() {
        let prompts = Prompts::load(None, "en").unwrap();
        for (name, _) in SHIPPED {
            let audio = prompts.get(name);
            // At least 0.2 s, and not silence.
            assert!(audio.len() > 1600 && audio.iter().any(|s| s.unsigned_abs() > 3000), "{name}");
        }
        assert_eq!(prompts.number(123).len(), 3);
        assert_eq!(prompts.digits("+47 99").len(), 4);
    }

    #[test]
    fn an_operator_prompt_replaces_the_shipped_one_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("nb")).unwrap();
        let tone = media::apps::tone(700.0, 500, 9000.0);
        media::apps::write_wav(&dir.path().join("nb/goodbye.wav"), &tone).unwrap();
        media::apps::write_wav(&dir.path().join("nb/greeting-busy.wav"), &tone).unwrap();
        let prompts = Prompts::load(Some(dir.path()), "nb").unwrap();
        assert_eq!(*prompts.get("goodbye"), tone);
        assert_eq!(prompts.provided("greeting-busy").as_deref(), Some(&tone));
        assert_eq!(prompts.provided("greeting-unavailable"), None, "not provided, not shipped");
        assert_eq!(prompts.provided("goodbye"), None, "a menu prompt is no greeting");
        assert!(prompts.get("and").len() > 1600, "the others stay shipped");
        std::fs::write(dir.path().join("nb/and.wav"), b"not audio").unwrap();
        let error = Prompts::load(Some(dir.path()), "nb").unwrap_err().to_string();
        assert!(error.contains("and.wav"), "{error}");
    }
}
