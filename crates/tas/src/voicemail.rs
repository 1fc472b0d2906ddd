//! Voicemail into the store: messages are recorded into the local spool folder (the media
//! crate's crash-safe mailbox), then moved into the database whole, so that every instance
//! lists and plays them. A message leaves the spool only once the database has it; one the
//! database refuses stays and is tried again; one cut short by a crash is recovered, marked
//! partial, at the next start, and moved like the others.

use std::time::Duration;

use tracing::{info, warn};

use crate::config::NotificationConfig;
use crate::webhook::{Webhook, WebhookError};
use domain::types::Msisdn;
use media::mailbox::{Mailbox, MessageMeta};
use registrar::auth::secret_from_env;
use registrar::sms::{Retry, SmsClient, Text};
use store::{Store, StoreError, VoicemailRow};

/// Why a sweep of the spool stopped.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The spool folder could not be read or cleaned up.
    #[error("voicemail spool: {0}")]
    Spool(#[from] std::io::Error),
    /// The database refused the message.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A spool task failed.
    #[error("voicemail spool task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Moves finished messages from one spool into the store.
#[derive(Clone)]
pub struct Archiver {
    spool: Mailbox,
    store: Store,
    instance: String,
    notifier: Option<Notifier>,
}

impl Archiver {
    /// Moves messages from `spool` into `store`, naming `instance` as where they were recorded.
    pub fn new(spool: Mailbox, store: Store, instance: &str) -> Self {
        Self { spool, store, instance: instance.to_owned(), notifier: None }
    }

    /// Tells each message's owner through `notifier` once the message is stored.
    pub fn notifying(self, notifier: Notifier) -> Self {
        Self { notifier: Some(notifier), ..self }
    }

    /// Recovers messages cut short by a crash (marked partial). Only when no recording is
    /// under way: at start, or from the command line.
    pub async fn recover(&self) -> Result<Vec<MessageMeta>, ArchiveError> {
        let spool = self.spool.clone();
        Ok(tokio::task::spawn_blocking(move || spool.recover()).await??)
    }

    /// Moves every finished message into the store; how many. A message that cannot be
    /// moved stays in the spool, logged, and does not hold back the others; the first such
    /// error is returned once the rest are moved.
    pub async fn sweep(&self) -> Result<usize, ArchiveError> {
        let spool = self.spool.clone();
        let finished = tokio::task::spawn_blocking(move || spool.list(None)).await??;
        let mut moved = 0;
        let mut failed = None;
        for meta in finished {
            match self.move_one(&meta).await {
                Ok(true) => moved += 1,
                Ok(false) => {}
                Err(error) => {
                    warn!(id = %meta.id, %error, "voicemail message stays in the spool for now");
                    failed.get_or_insert(error);
                }
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(moved),
        }
    }

    /// Moves one message; `false` when it is not finished yet.
    async fn move_one(&self, meta: &MessageMeta) -> Result<bool, ArchiveError> {
        let path = self.spool.audio(&meta.id)?;
        let audio = match tokio::fs::read(&path).await {
            Ok(audio) => audio,
            // Its metadata is written just before the audio's final rename: next sweep.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        if !self.store.add_voicemail(&row_of(meta, &self.instance), &audio).await? {
            info!(id = %meta.id, "voicemail message already in the database (moved before a restart)");
        } else {
            crate::mailbox::count_message("left");
            if let Some(notifier) = &self.notifier {
                notifier.notify(meta);
            }
        }
        let spool = self.spool.clone();
        let id = meta.id.clone();
        tokio::task::spawn_blocking(move || spool.delete(&id)).await??;
        info!(id = %meta.id, subscriber = %meta.subscriber, partial = meta.partial, "voicemail message stored");
        Ok(true)
    }

    /// Sweeps every `interval` until the task is aborted; failures are logged and retried.
    pub fn spawn(self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.sweep().await {
                    warn!(%error, "voicemail messages wait in the spool; retrying");
                }
            }
        })
    }
}

/// Why notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The webhook's secret is missing.
    #[error("voicemail.notification.webhook_secret_env: {0}")]
    Secret(#[from] registrar::auth::AuthError),
    /// A webhook URL without a secret to sign with.
    #[error("voicemail.notification.webhook_url needs webhook_secret_env (the signing secret)")]
    NoSecret,
    /// The webhook URL is unusable.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Tells a mailbox's owner that a message is waiting: an SMS through the operator's
/// SmsService, and a signed webhook for apps, each sent in a task of its own (tried again
/// after temporary failures, as configured), so that a slow peer holds back no message.
#[derive(Clone)]
pub struct Notifier {
    sms: Option<SmsClient>,
    webhook: Option<Webhook>,
    config: NotificationConfig,
}

/// How long one webhook request may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl Notifier {
    /// Notifies as `config` says (SMS through `sms` when it names a sender, the webhook when
    /// it names a URL); `None` when it names neither.
    pub fn new(sms: SmsClient, config: &NotificationConfig) -> Result<Option<Self>, NotifyError> {
        let webhook = match (&config.webhook_url, &config.webhook_secret_env) {
            (Some(url), Some(variable)) => Some(Webhook::new(url, &secret_from_env(variable)?, WEBHOOK_TIMEOUT)?),
            (Some(_), None) => return Err(NotifyError::NoSecret),
            (None, _) => None,
        };
        let sms = config.sms_from.is_some().then_some(sms);
        Ok((sms.is_some() || webhook.is_some()).then(|| Self { sms, webhook, config: config.clone() }))
    }

    fn notify(&self, meta: &MessageMeta) {
        let retry = Retry { attempts: self.config.attempts, first_wait: self.config.retry };
        if let Some(webhook) = self.webhook.clone() {
            let event = serde_json::json!({
                "event": "voicemail.message",
                "id": meta.id,
                "subscriber": meta.subscriber,
                "caller": meta.caller,
                "callee": meta.callee,
                "direction": meta.direction,
                "recorded_at": meta.recorded_at,
                "duration_ms": meta.duration_ms,
                "partial": meta.partial,
            });
            tokio::spawn(async move {
                let taken = webhook.post(&event, retry).await;
                count_notification("webhook", if taken { "delivered" } else { "failed" });
            });
        }
        let (Some(client), Some(from)) = (self.sms.clone(), self.config.sms_from.clone()) else { return };
        let Ok(to) = Msisdn::parse(&meta.subscriber) else {
            warn!(subscriber = %meta.subscriber, "voicemail owner has no E.164 number: no SMS");
            return;
        };
        let content = self
            .config
            .sms_text
            .replace("{caller}", meta.caller.as_deref().unwrap_or("an unknown number"))
            .replace("{seconds}", &(meta.duration_ms.div_ceil(1000)).to_string())
            .replace("{time}", &meta.recorded_at);
        let text = Text { to, from, content, delivery_deadline: None };
        let id = meta.id.clone();
        tokio::spawn(async move {
            let delivery = client.deliver(&text, retry).await;
            count_notification("sms", delivery.label());
            info!(%id, to = %text.to, ?delivery, "voicemail notification");
        });
    }
}

/// `ringer_notifications_total{channel,result}`: each new-message notification once, by how it
/// ended (`sms`: `accepted`, `refused`, `failed`; `webhook`: `delivered`, `failed`).
fn count_notification(channel: &'static str, result: &'static str) {
    metrics::counter!("ringer_notifications_total", "channel" => channel, "result" => result).increment(1);
}

/// A spool message's metadata as the store keeps it.
pub fn row_of(meta: &MessageMeta, instance: &str) -> VoicemailRow {
    VoicemailRow {
        id: meta.id.clone(),
        subscriber: meta.subscriber.clone(),
        caller: meta.caller.clone(),
        callee: meta.callee.clone(),
        direction: meta.direction.clone(),
        recorded_at: meta.recorded_at.clone(),
        duration_ms: meta.duration_ms,
        codec: meta.codec.clone(),
        partial: meta.partial,
        instance: instance.to_owned(),
        state: store::MessageState::New,
    }
}
