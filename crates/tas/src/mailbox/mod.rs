//! Voicemail as its owner uses it: greetings per mailbox chosen by why the call came, the
//! quota, the DTMF menu the owner calls in to, PINs with a lockout, retention, and the HTTP API
//! for apps. Messages, greetings, PINs and API tokens live in the store, so every instance
//! sharing it serves every mailbox. It knows the media (an [`media::channel::AudioChannel`])
//! and the store, not the call around them.

pub mod api;
pub mod greeting;
pub mod menu;
pub mod pin;
pub mod prompts;

/// `ringer_voicemail_messages_total{event}`: a message `left` (stored), `played` (by phone,
/// or its audio fetched over HTTP) or `deleted` (by phone, the API or the self-care page).
pub(crate) fn count_message(event: &'static str) {
    metrics::counter!("ringer_voicemail_messages_total", "event" => event).increment(1);
}

/// Counts a message's audio fetched over HTTP as played once per listening: a browser's
/// further range requests for the same audio (seeking, buffering) are not counted again.
pub(crate) fn count_fetched(headers: &axum::http::HeaderMap) {
    let range = headers.get(axum::http::header::RANGE).and_then(|value| value.to_str().ok());
    if range.is_none_or(|range| range.trim().starts_with("bytes=0-")) {
        count_message("played");
    }
}

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use domain::types::Msisdn;
use media::apps::AudioFileError;
use store::{MessageState, Store, StoreError, VoicemailRow};

use self::greeting::{Absence, GreetingKind};
use self::prompts::Prompts;
use crate::config::{StoreConfig, VoicemailConfig};
use crate::leases::duration_millis;
use crate::settings::SettingsCache;

/// What a PIN entered for a mailbox came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// The mailbox's PIN: failed logins are forgotten.
    Accepted,
    /// A wrong PIN, counted.
    Wrong,
    /// Locked after too many wrong PINs (by this one, or before).
    Locked,
    /// The mailbox has no PIN (no login but the owner's own phone, or a PIN sent by SMS).
    NoPin,
}

/// What a mailbox allows and how long it keeps things.
#[derive(Debug, Clone)]
pub struct MailboxSettings {
    /// Messages kept per mailbox (new, heard and saved); a full mailbox takes no more.
    pub max_messages: u32,
    /// Wrong PINs in a row before the mailbox locks.
    pub pin_attempts: u32,
    /// How long it stays locked.
    pub pin_lockout: Duration,
    /// Heard and saved messages are removed this long after they were last changed.
    pub keep_saved: Duration,
    /// Deleted messages are removed for good this long after deletion.
    pub keep_deleted: Duration,
    /// The number owners (and others, with a PIN) call to reach the menu.
    pub access_number: Option<Msisdn>,
    /// The wait for a key before a menu is said again.
    pub key_timeout: Duration,
    /// The longest greeting recorded by phone.
    pub max_greeting: Duration,
    /// This long without speech ends a greeting recorded by phone.
    pub silence: Duration,
}

impl MailboxSettings {
    /// The settings of `[voicemail]`.
    pub fn from_config(config: &VoicemailConfig) -> Self {
        Self {
            max_messages: config.max_messages,
            pin_attempts: config.pin_attempts,
            pin_lockout: config.pin_lockout,
            keep_saved: config.keep_saved,
            keep_deleted: config.keep_deleted,
            access_number: config.access_number.clone(),
            key_timeout: Duration::from_secs(8),
            max_greeting: Duration::from_secs(60),
            silence: config.silence,
        }
    }
}

/// Why the mailboxes could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// A configured greeting or prompt does not decode.
    #[error(transparent)]
    Audio(#[from] AudioFileError),
}

/// The mailboxes, served from the store.
#[derive(Clone)]
pub struct Mailboxes {
    store: Store,
    settings: Arc<MailboxSettings>,
    prompts: Arc<Prompts>,
    /// The system's unavailable greeting (`voicemail.greeting`, or the shipped chime).
    unavailable: Arc<Vec<i16>>,
    /// The system's busy greeting (`voicemail.busy_greeting`, or the unavailable one).
    busy: Arc<Vec<i16>>,
    /// What subscribers set for themselves, as calls read it.
    subscriber_settings: SettingsCache,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Mailboxes {
    /// The mailboxes of `store` as `[voicemail]` configures them.
    pub fn new(store: Store, config: &VoicemailConfig) -> Result<Self, MailboxError> {
        let load = |file: &Option<std::path::PathBuf>| file.as_deref().map(media::apps::load_audio).transpose();
        let prompts = Prompts::load(config.prompts_dir.as_deref(), &config.language)?;
        // The system's greetings: the configured file, else the operator's recording in the
        // prompts' language, else the shipped chime (busy: else the unavailable one).
        let unavailable = match load(&config.greeting)? {
            Some(samples) => Arc::new(samples),
            None => {
                prompts.provided("greeting-unavailable").unwrap_or_else(|| Arc::new(media::apps::default_greeting()))
            }
        };
        let busy = match load(&config.busy_greeting)? {
            Some(samples) => Arc::new(samples),
            None => prompts.provided("greeting-busy").unwrap_or_else(|| unavailable.clone()),
        };
        Ok(Self {
            // Fresh for the default `store.poll_interval`, unless `with_settings_fresh_for` says
            // otherwise.
            subscriber_settings: SettingsCache::new(store.clone(), StoreConfig::default().poll_interval),
            store,
            settings: Arc::new(MailboxSettings::from_config(config)),
            prompts: Arc::new(prompts),
            unavailable,
            busy,
        })
    }

    /// The store behind them.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// These mailboxes with subscribers' settings changed by another instance applying to
    /// calls within `fresh_for` (`store.poll_interval`).
    pub fn with_settings_fresh_for(mut self, fresh_for: Duration) -> Self {
        self.subscriber_settings = SettingsCache::new(self.store.clone(), fresh_for);
        self
    }

    /// What subscribers set for themselves: read by calls, changed through it.
    pub fn subscriber_settings(&self) -> &SettingsCache {
        &self.subscriber_settings
    }

    /// Their settings.
    pub fn settings(&self) -> &MailboxSettings {
        &self.settings
    }

    /// The menu's prompts.
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    /// What a caller to `owner`'s voicemail hears before the beep, for `absence`: the
    /// temporary greeting while set, else the owner's greeting for the reason, else the
    /// system's (after the owner's recorded name, if any). A store that cannot be read gives
    /// the system's greeting: the caller still leaves a message.
    pub async fn greeting_for(&self, owner: &Msisdn, absence: Absence) -> Arc<Vec<i16>> {
        let own = match absence {
            Absence::Busy => GreetingKind::Busy,
            Absence::Unavailable => GreetingKind::Unavailable,
        };
        for kind in [GreetingKind::Temporary, own] {
            if let Some(greeting) = self.greeting(owner, kind).await {
                return Arc::new(greeting);
            }
        }
        let system = match absence {
            Absence::Busy => &self.busy,
            Absence::Unavailable => &self.unavailable,
        };
        match self.greeting(owner, GreetingKind::Name).await {
            Some(mut name) => {
                name.extend(std::iter::repeat_n(0, 2400));
                name.extend(system.iter());
                Arc::new(name)
            }
            None => system.clone(),
        }
    }

    /// `owner`'s greeting of `kind`, decoded; `None` when not recorded (or unreadable, logged).
    pub async fn greeting(&self, owner: &Msisdn, kind: GreetingKind) -> Option<Vec<i16>> {
        match self.store.greeting(owner.as_str(), kind.as_str()).await {
            Ok(Some(wav)) => match media::apps::decode_audio(&wav, Path::new(kind.as_str())) {
                Ok(samples) => Some(samples),
                Err(error) => {
                    warn!(subscriber = %owner, %kind, %error, "stored greeting does not decode; using the next one");
                    None
                }
            },
            Ok(None) => None,
            Err(error) => {
                warn!(subscriber = %owner, %kind, %error, "greeting not readable from the store");
                None
            }
        }
    }

    /// Stores `samples` (8 kHz) as `owner`'s greeting of `kind`.
    pub async fn set_greeting(&self, owner: &Msisdn, kind: GreetingKind, samples: &[i16]) -> Result<(), StoreError> {
        self.store.put_greeting(owner.as_str(), kind.as_str(), &media::apps::wav_bytes(samples)).await?;
        info!(subscriber = %owner, %kind, seconds = samples.len() / 8000, "greeting recorded");
        Ok(())
    }

    /// Whether `owner`'s mailbox holds its maximum of messages. A store that cannot be read
    /// counts as not full: the message waits in the spool until the store is back.
    pub async fn is_full(&self, owner: &Msisdn) -> bool {
        match self.store.count_voicemails(owner.as_str()).await {
            Ok(count) => count >= u64::from(self.settings.max_messages),
            Err(error) => {
                warn!(subscriber = %owner, %error, "cannot count the mailbox's messages; taking the message");
                false
            }
        }
    }

    /// Checks `entered` against `owner`'s PIN, with the lockout: the attempt counts before the
    /// PIN is checked (logins in parallel share one allowance), and the last allowed wrong one
    /// locks the mailbox for `voicemail.pin_lockout`.
    pub async fn check_pin(&self, owner: &Msisdn, entered: String) -> Result<PinCheck, StoreError> {
        let store = &self.store;
        let state = store.pin_state(owner.as_str()).await?;
        let now = store::now_millis();
        if state.locked_until_ms > now {
            info!(subscriber = %owner, "mailbox login refused: locked");
            return Ok(PinCheck::Locked);
        }
        let Some(hash) = state.pin_hash else { return Ok(PinCheck::NoPin) };
        let attempts = match store.begin_login(owner.as_str(), now).await? {
            Some(attempts) if attempts <= self.settings.pin_attempts => attempts,
            _ => {
                info!(subscriber = %owner, "mailbox login refused: locked");
                return Ok(PinCheck::Locked);
            }
        };
        // PBKDF2 takes tens of milliseconds: off the threads that pace other calls' media.
        let matches = tokio::task::spawn_blocking(move || pin::verify(&entered, &hash)).await.unwrap_or(false);
        if matches {
            // The PIN was right: a count not cleared now is cleared by the next right one.
            if let Err(error) = store.clear_failed_logins(owner.as_str()).await {
                warn!(subscriber = %owner, %error, "failed logins not cleared");
            }
            return Ok(PinCheck::Accepted);
        }
        if attempts >= self.settings.pin_attempts {
            let lockout = self.settings.pin_lockout;
            let lock_until = now.saturating_add(duration_millis(lockout));
            store.lock_mailbox(owner.as_str(), lock_until).await?;
            warn!(subscriber = %owner, ?lockout, "mailbox locked after repeated wrong PINs");
            return Ok(PinCheck::Locked);
        }
        info!(subscriber = %owner, attempts, "mailbox login: wrong PIN");
        Ok(PinCheck::Wrong)
    }

    /// `owner`'s messages to play: new ones, then heard and saved ones, each oldest first.
    pub async fn playlist(&self, owner: &Msisdn) -> Result<(Vec<VoicemailRow>, Vec<VoicemailRow>), StoreError> {
        let all = self.store.voicemails(Some(owner.as_str())).await?;
        Ok(all.into_iter().partition(|row| row.state == MessageState::New))
    }

    /// The audio of message `id` of `owner`, decoded; `None` when gone.
    pub async fn message_audio(&self, owner: &Msisdn, id: &str) -> Result<Option<Vec<i16>>, StoreError> {
        Ok(match self.store.voicemail(id).await? {
            Some((row, wav)) if row.subscriber == owner.as_str() => media::apps::decode_audio(&wav, Path::new(id))
                .map_err(|error| warn!(%id, %error, "message audio does not decode"))
                .ok(),
            _ => None,
        })
    }

    /// Removes messages past their retention, every `interval` until the task is aborted.
    pub fn spawn_retention(self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let now = store::now_millis();
                let before = |age: Duration| now.saturating_sub(duration_millis(age));
                match self
                    .store
                    .purge_voicemails(before(self.settings.keep_saved), before(self.settings.keep_deleted))
                    .await
                {
                    Ok(0) => {}
                    Ok(removed) => info!(removed, "voicemail messages past their retention removed"),
                    Err(error) => warn!(%error, "voicemail retention: the store refused; trying again later"),
                }
            }
        })
    }
}
