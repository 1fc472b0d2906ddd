//! What a subscriber sets for themselves over the configured behaviours: call forwarding
//! (always, on busy, on no answer with its time, when unreachable; each to a number or to
//! voicemail), do-not-disturb, voicemail on or off. Kept in the store as JSON; read by the
//! calls the core brings for the subscriber at most once per freshness interval
//! ([`SettingsCache`]); read and changed through the HTTP API
//! (`/api/v1/subscribers/{number}/settings`, the voicemail API's tokens: [`api`]).

pub mod api;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::warn;

use domain::types::Msisdn;
use sip::message::StatusCode;
use store::{Store, StoreError};

use crate::call::action::{Action, App, Behaviour, ForwardCause};

/// Where a forward sends the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// Another number (through the core, with History-Info and Diversion).
    Number(Msisdn),
    /// The subscriber's own mailbox.
    Voicemail,
}

impl ForwardTarget {
    fn action(&self) -> Action {
        match self {
            ForwardTarget::Number(number) => Action::Forward(number.clone()),
            ForwardTarget::Voicemail => Action::Answer(App::Voicemail),
        }
    }
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardTarget::Number(number) => f.write_str(number.as_str()),
            ForwardTarget::Voicemail => f.write_str("voicemail"),
        }
    }
}

impl FromStr for ForwardTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "voicemail" => Ok(ForwardTarget::Voicemail),
            number => Msisdn::parse(number)
                .map(ForwardTarget::Number)
                .map_err(|error| format!("{number:?} is neither \"voicemail\" nor an E.164 number: {error}")),
        }
    }
}

impl Serialize for ForwardTarget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ForwardTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a subscriber's settings could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What is stored is not settings this version reads.
    #[error("stored settings unreadable: {0}")]
    Unreadable(#[from] serde_json::Error),
}

/// The longest a call waits for its subscriber's settings.
const LOAD_WITHIN: Duration = Duration::from_millis(300);

/// The shortest and longest no-answer time a subscriber may set, in seconds.
const NO_ANSWER_SECONDS: std::ops::RangeInclusive<u32> = 5..=120;

/// A subscriber's own settings; each unset one leaves the configured behaviour alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscriberSettings {
    /// Every call forwarded at once (CFU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_always: Option<ForwardTarget>,
    /// Forwarded when the subscriber is busy (CFB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_busy: Option<ForwardTarget>,
    /// Forwarded when the subscriber does not answer (CFNR) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_no_answer: Option<ForwardTarget>,
    /// ... within this many seconds (5 to 120).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_answer_seconds: Option<u32>,
    /// Forwarded when the subscriber cannot be reached (CFNRc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_unreachable: Option<ForwardTarget>,
    /// Calls refused as busy (or sent where busy calls go).
    pub do_not_disturb: bool,
    /// `false`: no voicemail for this subscriber (calls it would take are refused with 480).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voicemail: Option<bool>,
}

impl SubscriberSettings {
    /// Why these settings cannot be `owner`'s, if they cannot.
    pub fn check(&self, owner: &Msisdn) -> Result<(), String> {
        let forwards = [
            ("forward_always", &self.forward_always),
            ("forward_busy", &self.forward_busy),
            ("forward_no_answer", &self.forward_no_answer),
            ("forward_unreachable", &self.forward_unreachable),
        ];
        for (key, target) in forwards {
            if target.as_ref() == Some(&ForwardTarget::Number(owner.clone())) {
                return Err(format!("{key}: a subscriber cannot forward to their own number"));
            }
            if target == &Some(ForwardTarget::Voicemail) && self.voicemail == Some(false) {
                return Err(format!("{key}: voicemail is switched off"));
            }
        }
        if let Some(seconds) = self.no_answer_seconds {
            if !NO_ANSWER_SECONDS.contains(&seconds) {
                return Err(format!("no_answer_seconds: {seconds} is not within 5 to 120"));
            }
        }
        Ok(())
    }

    /// What a call to the subscriber gets: `configured` with these settings over it.
    pub fn apply(&self, configured: &Behaviour) -> Behaviour {
        let busy = self.forward_busy.as_ref().map(ForwardTarget::action);
        let mut behaviour = if self.do_not_disturb {
            // Busy by choice: a forward says `user-busy` (cause 486), voicemail greets busy.
            let action = busy.clone().unwrap_or_else(|| Action::reject(StatusCode::BUSY_HERE));
            Behaviour { cause: Some(ForwardCause::Busy), ..Behaviour::plain(action) }
        } else if let Some(always) = &self.forward_always {
            Behaviour::plain(always.action())
        } else {
            let mut behaviour = configured.clone();
            let overrides = [
                (&mut behaviour.on_busy, busy),
                (&mut behaviour.on_no_answer, self.forward_no_answer.as_ref().map(ForwardTarget::action)),
                (&mut behaviour.on_unreachable, self.forward_unreachable.as_ref().map(ForwardTarget::action)),
            ];
            for (slot, set) in overrides {
                if set.is_some() {
                    *slot = set;
                }
            }
            if let Some(seconds) = self.no_answer_seconds {
                behaviour.no_answer_after = Duration::from_secs(u64::from(seconds));
            }
            behaviour
        };
        let slots = [&mut behaviour.on_busy, &mut behaviour.on_no_answer, &mut behaviour.on_unreachable];
        for action in std::iter::once(&mut behaviour.action).chain(slots.into_iter().flatten()) {
            *action = self.allowed(action.clone());
        }
        behaviour
    }

    /// `action` as these settings allow it: voicemail switched off refuses, with 480, a call
    /// voicemail would take; anything else stands (the hop limit's fallback goes through here
    /// too, never through the forwards).
    pub fn allowed(&self, action: Action) -> Action {
        match action {
            Action::Answer(App::Voicemail) if self.voicemail == Some(false) => {
                Action::reject(StatusCode::TEMPORARILY_UNAVAILABLE)
            }
            action => action,
        }
    }

    /// `subscriber`'s settings as stored (the defaults when none are).
    pub async fn read(store: &Store, subscriber: &Msisdn) -> Result<Self, SettingsError> {
        Ok(match store.subscriber_settings(subscriber.as_str()).await? {
            Some(json) => serde_json::from_str(&json)?,
            None => Self::default(),
        })
    }
}

/// Subscribers' settings as calls read them, kept for a while so that a busy subscriber costs
/// no database read per call: a change saved through [`SettingsCache::save`] applies to the next
/// call at once, one made by another instance (or by hand in the database) within `fresh_for`
/// (`store.poll_interval`, as changed subscribers do).
#[derive(Debug, Clone)]
pub struct SettingsCache {
    store: Store,
    kept: Arc<Mutex<Kept>>,
    fresh_for: Duration,
}

#[derive(Debug, Default)]
struct Kept {
    /// Counted up by every save: a read that began before it must not put back what it read.
    saves: u64,
    by_subscriber: HashMap<Msisdn, KeptSettings>,
    /// Reads kept since the stale entries were last dropped.
    kept_since_sweep: usize,
}

#[derive(Debug)]
struct KeptSettings {
    /// `None`: nothing set, the configured behaviour (most subscribers; nothing to allocate).
    settings: Option<Arc<SubscriberSettings>>,
    read_at: Instant,
}

/// How many reads are kept between two sweeps of the stale entries (the map never holds more
/// than the subscribers called within `fresh_for`, plus this many).
const SWEEP_EVERY: usize = 4096;

impl SettingsCache {
    /// An empty cache of `store`'s settings, each read again after `fresh_for`.
    pub fn new(store: Store, fresh_for: Duration) -> Self {
        Self { store, kept: Arc::default(), fresh_for }
    }

    /// `subscriber`'s settings for a call; the defaults (the configured behaviour) when unset,
    /// or when the store cannot be read in time or holds what this version cannot read
    /// (logged, and read again on the next call): a slow database delays no call by more than
    /// [`LOAD_WITHIN`].
    pub async fn load(&self, subscriber: &Msisdn) -> Option<Arc<SubscriberSettings>> {
        let saves = {
            let kept = self.kept.lock();
            if let Some(entry) = kept.by_subscriber.get(subscriber) {
                if entry.read_at.elapsed() < self.fresh_for {
                    return entry.settings.clone();
                }
            }
            kept.saves
        };
        let read_at = Instant::now();
        let settings = match tokio::time::timeout(LOAD_WITHIN, SubscriberSettings::read(&self.store, subscriber)).await
        {
            Ok(Ok(settings)) => (settings != SubscriberSettings::default()).then(|| Arc::new(settings)),
            Ok(Err(error)) => {
                warn!(%subscriber, %error, "settings not readable: the configured behaviour applies");
                return None;
            }
            Err(_) => {
                warn!(%subscriber, "settings not read in time: the configured behaviour applies");
                return None;
            }
        };
        let mut kept = self.kept.lock();
        if kept.saves == saves {
            kept.by_subscriber.insert(subscriber.clone(), KeptSettings { settings: settings.clone(), read_at });
            kept.kept_since_sweep += 1;
            if kept.kept_since_sweep >= SWEEP_EVERY {
                let fresh_for = self.fresh_for;
                kept.by_subscriber.retain(|_, entry| entry.read_at.elapsed() < fresh_for);
                kept.kept_since_sweep = 0;
            }
        }
        settings
    }

    /// Keeps `settings` as `subscriber`'s (checked by the caller); the next call reads them
    /// again.
    pub async fn save(&self, subscriber: &Msisdn, settings: &SubscriberSettings) -> Result<(), SettingsError> {
        let json = serde_json::to_string(settings)?;
        let saved = self.store.put_subscriber_settings(subscriber.as_str(), &json).await;
        // Forgotten whether or not the write went through: it may have, with the answer lost.
        let mut kept = self.kept.lock();
        kept.saves += 1;
        kept.by_subscriber.remove(subscriber);
        Ok(saved?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Msisdn {
        Msisdn::parse(text).unwrap()
    }

    fn configured() -> Behaviour {
        Behaviour { on_busy: Some(Action::Answer(App::Voicemail)), ..Behaviour::plain(Action::Loop) }
    }

    #[test]
    fn unset_settings_leave_the_configured_behaviour() {
        assert_eq!(SubscriberSettings::default().apply(&configured()), configured());
    }

    #[test]
    fn forwards_replace_the_conditions_and_always_replaces_all() {
        let settings = SubscriberSettings {
            forward_busy: Some(ForwardTarget::Number(number("+4799990002"))),
            forward_no_answer: Some(ForwardTarget::Voicemail),
            no_answer_seconds: Some(12),
            ..Default::default()
        };
        let applied = settings.apply(&configured());
        assert_eq!(applied.action, Action::Loop);
        assert_eq!(applied.on_busy, Some(Action::Forward(number("+4799990002"))));
        assert_eq!(applied.on_no_answer, Some(Action::Answer(App::Voicemail)));
        assert_eq!(applied.no_answer_after, Duration::from_secs(12));
        let always = SubscriberSettings { forward_always: Some(ForwardTarget::Voicemail), ..settings };
        assert_eq!(always.apply(&configured()), Behaviour::plain(Action::Answer(App::Voicemail)));
    }

    #[test]
    fn do_not_disturb_is_busy_and_voicemail_off_refuses_what_it_would_take() {
        let dnd = SubscriberSettings { do_not_disturb: true, ..Default::default() };
        assert_eq!(dnd.apply(&configured()).action, Action::reject(StatusCode::BUSY_HERE));
        assert_eq!(dnd.apply(&configured()).cause, Some(ForwardCause::Busy));
        let to_voicemail = SubscriberSettings { forward_busy: Some(ForwardTarget::Voicemail), ..dnd };
        assert_eq!(to_voicemail.apply(&configured()).action, Action::Answer(App::Voicemail));
        let off = SubscriberSettings { voicemail: Some(false), ..Default::default() };
        let applied = off.apply(&configured());
        assert_eq!(applied.on_busy, Some(Action::reject(StatusCode::TEMPORARILY_UNAVAILABLE)));
        assert_eq!(applied.action, Action::Loop);
    }

    #[test]
    fn only_switching_voicemail_off_changes_a_fallback_action() {
        let voicemail = Action::Answer(App::Voicemail);
        let forwarding = SubscriberSettings {
            forward_always: Some(ForwardTarget::Number(number("+4799990002"))),
            do_not_disturb: true,
            ..Default::default()
        };
        assert_eq!(forwarding.allowed(voicemail.clone()), voicemail, "no forward becomes the fallback");
        let off = SubscriberSettings { voicemail: Some(false), ..forwarding };
        assert_eq!(off.allowed(voicemail), Action::reject(StatusCode::TEMPORARILY_UNAVAILABLE));
        assert_eq!(off.allowed(Action::Loop), Action::Loop);
    }

    #[test]
    fn targets_read_and_write_as_text() {
        let settings: SubscriberSettings =
            serde_json::from_str(r#"{"forward_busy":"voicemail","forward_always":"+4799990002"}"#).unwrap();
        assert_eq!(settings.forward_busy, Some(ForwardTarget::Voicemail));
        assert_eq!(
            serde_json::to_string(&settings).unwrap(),
            r#"{"forward_always":"+4799990002","forward_busy":"voicemail","do_not_disturb":false}"#
        );
        assert!(serde_json::from_str::<SubscriberSettings>(r#"{"forward_busy":"4799"}"#).is_err());
    }

    #[tokio::test]
    async fn calls_read_settings_once_per_freshness_and_a_save_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/ringer.db", dir.path().display())).await.unwrap();
        store.migrate().await.unwrap();
        let owner = number("+4799990001");
        let fresh_for = Duration::from_millis(400);
        let cache = SettingsCache::new(store.clone(), fresh_for);
        assert_eq!(cache.load(&owner).await, None, "nothing set: the configured behaviour");

        // Another instance (or a hand in the database) sets do-not-disturb: calls here go on
        // with what was read until it is no longer fresh.
        let started = Instant::now();
        store.put_subscriber_settings(owner.as_str(), r#"{"do_not_disturb":true}"#).await.unwrap();
        let kept = cache.load(&owner).await;
        if started.elapsed() < fresh_for {
            assert_eq!(kept, None, "read again before its time");
        }
        tokio::time::sleep(fresh_for).await;
        let dnd = SubscriberSettings { do_not_disturb: true, ..Default::default() };
        assert_eq!(cache.load(&owner).await.as_deref(), Some(&dnd), "not read again once stale");

        // A save through the cache applies to the very next call.
        let forward = SubscriberSettings { forward_always: Some(ForwardTarget::Voicemail), ..Default::default() };
        cache.save(&owner, &forward).await.unwrap();
        assert_eq!(cache.load(&owner).await.as_deref(), Some(&forward), "the save not seen at once");
        assert_eq!(SubscriberSettings::read(&store, &owner).await.unwrap(), forward);
        assert_eq!(cache.kept.lock().by_subscriber.len(), 1);

        // Unreadable settings (a newer version's) leave the configured behaviour, and are not
        // kept: the next call reads again.
        store.put_subscriber_settings(owner.as_str(), r#"{"ring_twice":true}"#).await.unwrap();
        tokio::time::sleep(fresh_for).await;
        assert_eq!(cache.load(&owner).await, None);
        store.put_subscriber_settings(owner.as_str(), r#"{"do_not_disturb":true}"#).await.unwrap();
        assert_eq!(cache.load(&owner).await.as_deref(), Some(&dnd), "an unreadable read was kept");
    }
}
