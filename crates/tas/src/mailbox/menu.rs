//! The menu an owner calls in to (VoiceMailMain): login (none for the owner's own phone,
//! mailbox number and PIN from any other, with a lockout), the count of new and saved
//! messages, then by DTMF:
//!
//! - main menu: `1` listen, `0` mailbox options, `#` hang up;
//! - each message (envelope: from whom and when, then the audio; keys work during both):
//!   `5` replay, `7` delete, `9` save, `6` next, `4` previous, `*` back to the main menu;
//! - options: `1` record the unavailable greeting, `2` the busy one, `3` your name, `4` a
//!   temporary one (over both while set), `5` remove the temporary one, `6` change the PIN,
//!   `*` back. Recording: speak after the tone, `#` to stop; then `1` keep it, `2` listen,
//!   `3` record again.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use domain::types::Msisdn;
use media::apps::AppEnd;
use media::channel::{AudioChannel, Heard, Incoming};
use store::{MessageState, VoicemailRow};

use super::greeting::GreetingKind;
use super::{pin, Mailboxes, PinCheck};

/// Who the caller is to the menu.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Login {
    /// The owner, calling from their own phone: no PIN.
    Owner(Msisdn),
    /// Anyone: the menu asks for the mailbox number and its PIN.
    #[default]
    Ask,
}

/// Times a menu is said without an answer before the call ends.
const REPEATS: usize = 3;
/// Logins tried in one call before it ends (the lockout counts across calls).
const LOGINS_PER_CALL: usize = 3;

/// Runs the menu on `channel` until the caller hangs up or leaves with `#`.
pub async fn run(channel: &mut AudioChannel, mailboxes: &Mailboxes, login: Login, stop: &CancellationToken) -> AppEnd {
    let mut menu = Menu { channel, mailboxes, stop };
    let owner = match login {
        Login::Owner(owner) => Some(owner),
        Login::Ask => menu.login().await,
    };
    if let Some(owner) = owner {
        info!(subscriber = %owner, "mailbox menu: logged in");
        menu.main(&owner).await;
    }
    if stop.is_cancelled() {
        return AppEnd::CallerLeft;
    }
    menu.say(&["goodbye"]).await;
    AppEnd::Done
}

struct Menu<'a> {
    channel: &'a mut AudioChannel,
    mailboxes: &'a Mailboxes,
    stop: &'a CancellationToken,
}

/// Where a message's keys lead.
enum AfterMessage {
    Next,
    Previous,
    Replay,
    /// Saved or deleted by its key (deleted ones leave the list).
    Changed(MessageState),
    /// Gone meanwhile (deleted through the API or another call).
    Gone,
    MainMenu,
    Leave,
}

impl Menu<'_> {
    /// Says `prompts` in a row; a key pressed meanwhile stops them.
    async fn say(&mut self, prompts: &[&str]) -> Heard {
        let audio: Vec<Arc<Vec<i16>>> = prompts.iter().map(|name| self.mailboxes.prompts().get(name)).collect();
        self.play(&audio).await
    }

    async fn play(&mut self, audio: &[Arc<Vec<i16>>]) -> Heard {
        let joined: Vec<i16> = audio.iter().flat_map(|part| part.iter().copied()).collect();
        self.channel.play_listening(&joined, self.stop).await
    }

    /// Says `prompt` and waits for one key, saying it again (up to [`REPEATS`] times) when
    /// none comes; `None` when the caller leaves or never answers.
    async fn choose(&mut self, prompt: &[&str]) -> Option<char> {
        for _ in 0..REPEATS {
            if let Some(key) = self.say(prompt).await.pressed()? {
                return Some(key);
            }
            let timeout = self.mailboxes.settings().key_timeout;
            if let Some(key) = self.channel.read_key(timeout, self.stop).await.pressed()? {
                return Some(key);
            }
        }
        None
    }

    /// Says `prompt`, then reads digits up to `#`; a key `pressed` already (over the prompt
    /// before) starts the digits without the prompt.
    async fn entry(&mut self, prompt: &str, most: usize, mut pressed: Option<char>) -> Option<String> {
        for _ in 0..REPEATS {
            let first = match pressed.take() {
                Some(key) => Some(key),
                None => self.say(&[prompt]).await.pressed()?,
            };
            let timeout = self.mailboxes.settings().key_timeout;
            // One more than the longest valid entry: the `#` after a full-length one is read
            // with it, not left over for the next menu (a longer entry is refused as invalid).
            match self.channel.read_digits(first, most + 1, timeout, self.stop).await {
                Some(digits) if !digits.is_empty() => return Some(digits),
                Some(_) => {}
                None if self.stop.is_cancelled() => return None,
                None => {}
            }
        }
        None
    }

    /// Mailbox number and PIN, checked against the store's hash, with the lockout.
    async fn login(&mut self) -> Option<Msisdn> {
        // A key over "login incorrect" starts the next mailbox number.
        let mut pressed = None;
        for _ in 0..LOGINS_PER_CALL {
            let number = self.entry("enter-mailbox", 15, pressed.take()).await?;
            let entered = self.entry("enter-pin", 8, None).await?;
            let Ok(owner) = Msisdn::parse(&format!("+{number}")) else {
                pressed = self.tell("login-incorrect").await?;
                continue;
            };
            match self.mailboxes.check_pin(&owner, entered).await {
                Ok(PinCheck::Accepted) => return Some(owner),
                // No PIN set: no login from other phones, and the same answer as a wrong PIN.
                Ok(PinCheck::Wrong | PinCheck::NoPin) => pressed = self.tell("login-incorrect").await?,
                Ok(PinCheck::Locked) => {
                    self.say(&["locked"]).await;
                    return None;
                }
                Err(error) => {
                    warn!(%error, "mailbox login: the store failed");
                    return None;
                }
            }
        }
        None
    }

    /// Says `prompt` (a confirmation, an error); `None` when the caller left, else the key
    /// pressed over it, which the next menu takes as its choice.
    async fn tell(&mut self, prompt: &str) -> Option<Option<char>> {
        self.say(&[prompt]).await.pressed()
    }

    /// The count of messages, then the main menu until the caller leaves.
    async fn main(&mut self, owner: &Msisdn) {
        let (new, saved) = match self.mailboxes.playlist(owner).await {
            Ok((new, saved)) => (new.len() as u64, saved.len() as u64),
            Err(error) => {
                warn!(%error, "mailbox menu: the store cannot be read");
                return;
            }
        };
        let prompts = self.mailboxes.prompts();
        let mut summary = vec![prompts.get("you-have")];
        summary.extend(prompts.number(new));
        summary.push(prompts.get("new-messages"));
        summary.push(prompts.get("and"));
        summary.extend(prompts.number(saved));
        summary.push(prompts.get("saved-messages"));
        let Some(mut pressed) = self.play(&summary).await.pressed() else { return };
        loop {
            let key = match pressed.take() {
                Some(key) => key,
                None => match self.choose(&["main-menu"]).await {
                    Some(key) => key,
                    None => return,
                },
            };
            match key {
                '1' => {
                    if !self.listen(owner).await {
                        return;
                    }
                }
                '0' => {
                    if !self.options(owner).await {
                        return;
                    }
                }
                '#' => return,
                _ => match self.tell("invalid").await {
                    Some(next) => pressed = next,
                    None => return,
                },
            }
        }
    }

    /// Plays the new messages, then the others; `false` when the caller is leaving.
    async fn listen(&mut self, owner: &Msisdn) -> bool {
        let mut messages: Vec<VoicemailRow> = match self.mailboxes.playlist(owner).await {
            Ok((new, saved)) => new.into_iter().chain(saved).collect(),
            Err(error) => {
                warn!(%error, "mailbox menu: the store cannot be read");
                return false;
            }
        };
        let mut index = 0;
        while let Some(message) = messages.get(index).cloned() {
            match self.message(owner, &message).await {
                AfterMessage::Next => index += 1,
                AfterMessage::Previous => index = index.saturating_sub(1),
                AfterMessage::Replay => {}
                AfterMessage::Changed(MessageState::Deleted) | AfterMessage::Gone => {
                    messages.remove(index);
                }
                AfterMessage::Changed(state) => {
                    if let Some(kept) = messages.get_mut(index) {
                        kept.state = state;
                    }
                    index += 1;
                }
                AfterMessage::MainMenu => return true,
                AfterMessage::Leave => return false,
            }
        }
        self.say(&["no-more-messages"]).await != Heard::Stopped
    }

    /// One message: envelope, audio (heard once it played or a key cut it short), then its
    /// menu.
    async fn message(&mut self, owner: &Msisdn, message: &VoicemailRow) -> AfterMessage {
        let store = self.mailboxes.store().clone();
        let audio = match self.mailboxes.message_audio(owner, &message.id).await {
            Ok(Some(audio)) => audio,
            // Deleted meanwhile (by the API, another call) or unreadable.
            Ok(None) => return AfterMessage::Gone,
            Err(error) => {
                warn!(%error, "mailbox menu: the store cannot be read");
                return AfterMessage::Leave;
            }
        };
        let Some(mut pressed) = self.play(&self.envelope(message)).await.pressed() else {
            return AfterMessage::Leave;
        };
        if pressed.is_none() {
            let Some(cut_short) = self.channel.play_listening(&audio, self.stop).await.pressed() else {
                return AfterMessage::Leave;
            };
            pressed = cut_short;
            super::count_message("played");
            if message.state == MessageState::New {
                if let Err(error) = store.mark_voicemail_heard(owner.as_str(), &message.id).await {
                    warn!(%error, id = %message.id, "not marked heard");
                }
            }
        }
        loop {
            let key = match pressed.take() {
                Some(key) => key,
                None => match self.choose(&["message-menu"]).await {
                    Some(key) => key,
                    None => return AfterMessage::Leave,
                },
            };
            let (state, said) = match key {
                '5' => return AfterMessage::Replay,
                '6' => return AfterMessage::Next,
                '4' => return AfterMessage::Previous,
                '*' => return AfterMessage::MainMenu,
                '#' => return AfterMessage::Leave,
                '7' => (MessageState::Deleted, "deleted"),
                '9' => (MessageState::Saved, "saved"),
                _ => match self.tell("invalid").await {
                    Some(next) => {
                        pressed = next;
                        continue;
                    }
                    None => return AfterMessage::Leave,
                },
            };
            match store.set_voicemail_state(owner.as_str(), &message.id, state).await {
                Ok(true) => {
                    if state == MessageState::Deleted {
                        super::count_message("deleted");
                    }
                    info!(subscriber = %owner, id = %message.id, %state, "by phone")
                }
                Ok(false) => return AfterMessage::Gone,
                Err(error) => warn!(%error, id = %message.id, "message state not changed"),
            }
            return match self.say(&[said]).await {
                Heard::Stopped => AfterMessage::Leave,
                _ => AfterMessage::Changed(state),
            };
        }
    }

    /// "Message from <digits> received at <H> <M> UTC".
    fn envelope(&self, message: &VoicemailRow) -> Vec<Arc<Vec<i16>>> {
        let prompts = self.mailboxes.prompts();
        let mut said = vec![prompts.get("message-from")];
        match &message.caller {
            Some(caller) if caller.chars().any(|c| c.is_ascii_digit()) => said.extend(prompts.digits(caller)),
            _ => said.push(prompts.get("unknown-caller")),
        }
        // recorded_at is RFC 3339 in UTC: 2026-12-01T04:05:00Z.
        let field = |range: std::ops::Range<usize>| message.recorded_at.get(range).and_then(|t| t.parse::<u64>().ok());
        if let (Some(hour), Some(minute)) = (field(11..13), field(14..16)) {
            said.push(prompts.get("received-at"));
            said.extend(prompts.number(hour));
            said.extend(prompts.number(minute));
            said.push(prompts.get("utc"));
        }
        said
    }

    /// The mailbox options; `false` when the caller is leaving.
    async fn options(&mut self, owner: &Msisdn) -> bool {
        let mut pressed = None;
        loop {
            let key = match pressed.take() {
                Some(key) => key,
                None => match self.choose(&["options-menu"]).await {
                    Some(key) => key,
                    None => return false,
                },
            };
            let kind = match key {
                '1' => GreetingKind::Unavailable,
                '2' => GreetingKind::Busy,
                '3' => GreetingKind::Name,
                '4' => GreetingKind::Temporary,
                '*' => return true,
                '#' => return false,
                other => {
                    let next = match other {
                        '5' => {
                            let store = self.mailboxes.store();
                            let temporary = GreetingKind::Temporary.as_str();
                            if let Err(error) = store.delete_greeting(owner.as_str(), temporary).await {
                                warn!(%error, "temporary greeting not removed");
                            }
                            self.tell("temporary-removed").await
                        }
                        '6' => self.change_pin(owner).await,
                        _ => self.tell("invalid").await,
                    };
                    let Some(next) = next else { return false };
                    pressed = next;
                    continue;
                }
            };
            let Some(next) = self.record_greeting(owner, kind).await else { return false };
            pressed = next;
        }
    }

    /// Records a greeting: tone, speech until `#` or silence, then keep, listen or again.
    /// `None` when the caller left, else the key pressed over the last prompt.
    async fn record_greeting(&mut self, owner: &Msisdn, kind: GreetingKind) -> Option<Option<char>> {
        loop {
            if self.say(&["record-after-tone"]).await == Heard::Stopped
                || !self.channel.play(&media::apps::beep(), self.stop).await
            {
                return None;
            }
            self.channel.discard_pending();
            let recorded = self.record().await?;
            if recorded.is_empty() {
                // Nothing said: a silent greeting would greet nobody.
                self.tell("invalid").await?;
                continue;
            }
            loop {
                match self.choose(&["review-recording"]).await? {
                    '1' => {
                        let said = match self.mailboxes.set_greeting(owner, kind, &recorded).await {
                            Ok(()) => "greeting-saved",
                            Err(error) => {
                                warn!(%error, %kind, "greeting not stored");
                                "invalid"
                            }
                        };
                        return self.tell(said).await;
                    }
                    '2' => {
                        if !self.channel.play(&recorded, self.stop).await {
                            return None;
                        }
                    }
                    '3' => break,
                    _ => {
                        self.tell("invalid").await?;
                    }
                }
            }
        }
    }

    /// Speech until `#`, silence or the longest greeting, without the silence at its end
    /// (empty when nothing was said); `None` when the caller left.
    async fn record(&mut self) -> Option<Vec<i16>> {
        let settings = self.mailboxes.settings().clone();
        let most = (settings.max_greeting.as_millis() as usize) * 8;
        let mut samples = Vec::new();
        let mut silence = media::apps::SilenceClock::default();
        while samples.len() < most {
            let incoming = tokio::select! {
                () = self.stop.cancelled() => return None,
                incoming = self.channel.recv(settings.silence) => incoming,
            };
            match incoming {
                None | Some(Incoming::Dtmf('#')) => break,
                Some(Incoming::Dtmf(_)) => {}
                Some(Incoming::Audio(frame)) => {
                    let silent_for = silence.after(&frame);
                    samples.extend(frame);
                    if silent_for >= settings.silence {
                        break;
                    }
                }
            }
        }
        // The silence that ended it (or came before `#`) is no part of the greeting.
        let spoken =
            samples.chunks(160).rposition(|frame| !media::apps::is_silent(frame)).map_or(0, |last| (last + 1) * 160);
        samples.truncate(spoken);
        Some(samples)
    }

    /// A new PIN, entered twice; `None` when the caller is leaving, else the key pressed
    /// over the confirmation.
    async fn change_pin(&mut self, owner: &Msisdn) -> Option<Option<char>> {
        let first = self.entry("new-pin", 8, None).await?;
        let again = self.entry("pin-again", 8, None).await?;
        let hashed = match first == again {
            true => tokio::task::spawn_blocking(move || pin::hash(&first)).await.ok(),
            false => None,
        };
        let said = match hashed {
            Some(Ok(hash)) => match self.mailboxes.store().set_pin_hash(owner.as_str(), &hash).await {
                Ok(()) => {
                    info!(subscriber = %owner, "PIN changed by phone");
                    "pin-changed"
                }
                Err(error) => {
                    warn!(%error, "PIN not stored");
                    "invalid"
                }
            },
            _ => "pin-mismatch",
        };
        self.tell(said).await
    }
}
