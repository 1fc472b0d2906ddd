//! The TAS's [`SessionHandler`]: each INVITE from the core is classified (prefix, direction,
//! subscriber), checked against the subscriber's route type, and handed to the behaviour
//! engine in a task of its own. The last calls are kept as [`CallRecord`]s.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tracing::{info, warn, Instrument};

use crate::config::{CallsConfig, FeatureCodesConfig, ServeConfig};
use domain::types::{Msisdn, Prefix, RouteType, ServiceCode};
use sip::dialog::{DialogId, OfferAnswer};
use sip::ua::{PendingInvite, SessionHandler};

use crate::feature_codes;
use crate::mailbox::greeting::Absence;
use crate::mailbox::menu::Login;
use crate::mailbox::Mailboxes;

use super::action::{Action, App, Behaviour};
use super::answer::{AppRunning, CallInfo, EndedBy, MediaSettings};
use super::behaviour::{DiversionLimit, Engine, Outcome};
use super::records::RecordWriter;
use super::routing::{asserted_caller, caller_number, Direction, RoutedSubscriber, RoutingError, RoutingTable};
use super::stats::CallStats;
use crate::leases::millis;
use media::plain::PortRange;
use sip::message::StatusCode;
use store::CallRecordRow;

/// What happened to one call, as `ringer demo` and the tests read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Call-ID of leg 2.
    pub call_id: String,
    /// The Request-URI of leg 2, as received.
    pub request_uri: String,
    /// The subscriber and direction, when the call matched one.
    pub subscriber: Option<(Msisdn, Direction)>,
    /// The prefix found in the Request-URI.
    pub prefix: Option<Prefix>,
    /// The subscriber's route type.
    pub route_type: Option<RouteType>,
    /// The caller's number, when the request tells it.
    pub caller: Option<Msisdn>,
    /// The number called, prefix removed.
    pub callee: Option<Msisdn>,
    /// When leg 2's INVITE arrived.
    pub invite_at: SystemTime,
    /// What was done.
    pub outcome: Outcome,
}

/// A call record's id: 32 hex digits, the milliseconds since the Unix epoch of `written_at` in
/// the first 12 and 80 random bits after them. Ids written later sort later, so each insert
/// lands at the end of the table's primary-key index: with wholly random ids every row of a
/// batch touched a page of its own there, and perf put the SQLite writer's page writes,
/// reads and checkpoints at a third of a refused call's CPU.
fn record_id(written_at: SystemTime) -> String {
    let millis = written_at.duration_since(SystemTime::UNIX_EPOCH).map(|since| since.as_millis()).unwrap_or(0);
    let random = rand::random::<u128>() >> 48;
    format!("{:012x}{random:020x}", millis & 0xffff_ffff_ffff)
}

impl CallRecord {
    /// The record as the store keeps it, for a call that ended at `ended_at`.
    fn row(&self, instance: &str, ended_at: SystemTime) -> CallRecordRow {
        let text = |value: Option<&str>| value.map(str::to_owned);
        CallRecordRow {
            record_id: record_id(ended_at),
            instance: instance.to_owned(),
            call_id: self.call_id.clone(),
            leg3_call_ids: self.outcome.leg3_call_ids.clone(),
            request_uri: self.request_uri.clone(),
            subscriber: text(self.subscriber.as_ref().map(|(number, _)| number.as_str())),
            direction: self.subscriber.as_ref().map(|(_, direction)| direction.to_string()),
            route_type: text(self.route_type.map(RouteType::name)),
            prefix: text(self.prefix.as_ref().map(Prefix::as_str)),
            caller: text(self.caller.as_ref().map(Msisdn::as_str)),
            callee: text(self.callee.as_ref().map(Msisdn::as_str)),
            actions: self.outcome.actions.clone(),
            diversion_reason: self.outcome.diversion.map(|cause| cause.diversion_reason().to_owned()),
            final_status: self.outcome.status.map(StatusCode::as_u16),
            invite_at: millis(self.invite_at),
            answered_at: self.outcome.answered_at.map(millis),
            ended_at: millis(ended_at),
            ended_by: Some(self.ended_by().name().to_owned()),
            codec: self.outcome.codec.clone(),
            reception: self.outcome.reception.map(|reception| store::Reception {
                packets_received: reception.received,
                packets_lost: reception.lost,
                jitter_us: u64::try_from(reception.jitter.as_micros()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Who ended the call: as recorded, else the caller for a cancelled call and the TAS for
    /// any other refusal.
    fn ended_by(&self) -> EndedBy {
        match (self.outcome.ended_by, self.outcome.status) {
            (Some(ended_by), _) => ended_by,
            (None, Some(StatusCode::REQUEST_TERMINATED)) => EndedBy::Caller,
            (None, _) => EndedBy::Tas,
        }
    }
}

/// How many calls [`CallRouter::records`] keeps.
const RECORDS_KEPT: usize = 1000;

struct Routes {
    /// The subscribers, each with its behaviour per direction; equal behaviours share one
    /// allocation (most subscribers have the few their route types default to).
    table: RoutingTable<Behaviours>,
    calls: CallsConfig,
    feature_codes: FeatureCodesConfig,
}

/// A subscriber's behaviour for the calls it makes and for those it receives.
#[derive(Debug, Default)]
struct Behaviours {
    originating: Option<Arc<Behaviour>>,
    terminating: Option<Arc<Behaviour>>,
}

impl Behaviours {
    fn get(&self, direction: Direction) -> Option<&Arc<Behaviour>> {
        match direction {
            Direction::Originating => self.originating.as_ref(),
            Direction::Terminating => self.terminating.as_ref(),
        }
    }
}

impl Routes {
    fn from_config(config: &ServeConfig) -> Self {
        let mut shared: Vec<Arc<Behaviour>> = Vec::new();
        let mut share = |behaviour: Option<Behaviour>| {
            let behaviour = behaviour?;
            Some(match shared.iter().find(|known| ***known == behaviour) {
                Some(known) => known.clone(),
                None if shared.len() < SHARED_BEHAVIOURS => {
                    let behaviour = Arc::new(behaviour);
                    shared.push(behaviour.clone());
                    behaviour
                }
                None => Arc::new(behaviour),
            })
        };
        let table = RoutingTable::new(config.subscribers.iter().map(|s| {
            let behaviours = Behaviours {
                originating: share(s.behaviour(Direction::Originating)),
                terminating: share(s.behaviour(Direction::Terminating)),
            };
            let routed = RoutedSubscriber {
                msisdn: s.phone_number.clone(),
                route_type: s.route_type,
                mo_prefix: s.mo_prefix.clone(),
                mt_prefix: s.mt_prefix.clone(),
            };
            (routed, behaviours)
        }));
        Self { table, calls: config.calls.clone(), feature_codes: config.feature_codes.clone() }
    }
}

/// How many distinct behaviours are looked for among those seen (beyond, each is its own).
const SHARED_BEHAVIOURS: usize = 64;

/// Routes the core's INVITEs to the subscribers' behaviours.
pub struct CallRouter {
    routes: RwLock<Arc<Routes>>,
    stats: Arc<CallStats>,
    engine: Arc<Engine>,
    media: MediaSettings,
    records: Mutex<VecDeque<CallRecord>>,
    /// Where finished calls are recorded beside the in-memory list, when there is a store.
    writer: Option<RecordWriter>,
    /// Calls handled in tasks whose records are not written yet.
    in_progress: Arc<std::sync::atomic::AtomicUsize>,
}

/// One call counted in [`CallRouter::calls_in_progress`] while it lives.
struct CallInProgress(Arc<std::sync::atomic::AtomicUsize>);

impl CallInProgress {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for CallInProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Why the router could not start: a file its media needs.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A greeting or announcement file cannot be played.
    #[error(transparent)]
    Audio(#[from] media::apps::AudioFileError),
    /// The voicemail folder cannot be created or opened.
    #[error("voicemail.dir {}: {source}", dir.display())]
    Mailbox {
        /// The folder.
        dir: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl CallRouter {
    /// A router for the subscribers and call settings of `config`, recording each call
    /// through `writer` when given, serving `mailboxes` when given; fails when a greeting or
    /// announcement file cannot be read or the spool cannot be opened.
    pub fn new(
        config: &ServeConfig,
        writer: Option<RecordWriter>,
        mailboxes: Option<Mailboxes>,
    ) -> Result<Self, RouterError> {
        let load = |file: &Option<std::path::PathBuf>| match file {
            Some(path) => media::apps::load_audio(path).map(Arc::new),
            None => Ok(Arc::new(media::apps::default_greeting())),
        };
        let mailbox = media::mailbox::Mailbox::open(&config.voicemail.dir)
            .map_err(|source| RouterError::Mailbox { dir: config.voicemail.dir.clone(), source })?;
        match mailbox.recover() {
            Ok(recovered) if !recovered.is_empty() => {
                warn!(
                    count = recovered.len(),
                    "voicemail messages cut short by the last stop were recovered, marked partial"
                )
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "could not look for partial voicemail messages"),
        }
        let voicemail = media::apps::VoicemailSettings {
            mailbox,
            greeting: load(&config.voicemail.greeting)?,
            max_length: config.voicemail.max_length,
            silence: config.voicemail.silence,
        };
        let announcement = load(&config.announcement.file)?;
        let media = MediaSettings {
            advertise: config.sip.media_address,
            ports: PortRange {
                bind: config.media.bind_address,
                // Validated with the config; the default range otherwise.
                ports: config.media.port_range().unwrap_or(20000..=29999),
            },
            timeout: config.media.timeout,
            codecs: config.media.codecs.clone(),
            voicemail,
            announcement,
            mailboxes,
        };
        let stats = Arc::new(CallStats::default());
        Ok(Self {
            routes: RwLock::new(Arc::new(Routes::from_config(config))),
            engine: Arc::new(Engine::new(config.sip.core_uri.as_deref(), media.clone(), stats.clone())),
            stats,
            media,
            records: Mutex::new(VecDeque::new()),
            writer,
            in_progress: Arc::default(),
        })
    }

    /// What relaying adds to call setup.
    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    /// Takes the subscribers and behaviours of a reloaded config; calls under way keep theirs.
    pub fn reload(&self, config: &ServeConfig) {
        *self.routes.write() = Arc::new(Routes::from_config(config));
    }

    /// Whether `number` is a subscriber of this TAS.
    pub fn serves(&self, number: &Msisdn) -> bool {
        self.routes().table.route_type(number).is_some()
    }

    /// The most recent calls, oldest first.
    pub fn records(&self) -> Vec<CallRecord> {
        self.records.lock().iter().cloned().collect()
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes.read().clone()
    }
}

impl CallRouter {
    /// Whether the call is for the mailbox menu, and who logs in. A subscriber calling the
    /// access number or their own number (the originating leg), or any caller of the access
    /// number as a subscriber of its own (the terminating leg), reaches the menu. It opens
    /// without a PIN only for the mailbox of the caller the network asserts
    /// (P-Asserted-Identity, which the core sets and a caller cannot: From proves nothing),
    /// when that caller is a subscriber here; otherwise it asks for number and PIN.
    /// Only with mailboxes in a store.
    fn menu_login(&self, routes: &Routes, info: &CallInfo, asserted: Option<&Msisdn>) -> Option<Login> {
        let mailboxes = self.media.mailboxes.as_ref()?;
        let access = mailboxes.settings().access_number.as_ref();
        let subscriber = info.subscriber.as_ref()?;
        let to_menu = match info.direction? {
            Direction::Originating => {
                info.callee.as_ref().is_some_and(|callee| Some(callee) == access || callee == subscriber)
            }
            Direction::Terminating => Some(subscriber) == access,
        };
        if !to_menu {
            return None;
        }
        Some(match asserted {
            Some(caller) if routes.table.route_type(caller).is_some() => Login::Owner(caller.clone()),
            _ => Login::Ask,
        })
    }
}

/// `ringer_calls_total`: each call once, by direction, route type, what was done first (its
/// first word: `loop`, `forward`, `answer`, `reject`, `announce`, `feature`) and the final
/// status class; labels from small fixed sets, never a number.
fn count_call(record: &CallRecord) {
    let direction = match record.subscriber.as_ref().map(|(_, direction)| *direction) {
        Some(Direction::Originating) => "mo",
        Some(Direction::Terminating) => "mt",
        None => "none",
    };
    let route_type = record.route_type.map(RouteType::name).unwrap_or("none");
    let action = match record.outcome.actions.first().and_then(|action| action.split_whitespace().next()) {
        Some("loop") => "loop",
        Some("forward") => "forward",
        Some("answer") => "answer",
        Some("reject") => "reject",
        Some("announce") => "announce",
        Some("feature") => "feature",
        Some(_) => "other",
        None => "none",
    };
    let outcome = match record.outcome.status.map(|status| status.as_u16() / 100) {
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        Some(6) => "6xx",
        _ => "none",
    };
    metrics::counter!("ringer_calls_total", "direction" => direction, "route_type" => route_type,
        "action" => action, "outcome" => outcome)
    .increment(1);
}

fn record_of(invite: &PendingInvite, caller: Option<Msisdn>) -> CallRecord {
    CallRecord {
        call_id: invite.essentials().call_id.clone(),
        request_uri: invite.request().uri.to_string(),
        subscriber: None,
        prefix: None,
        route_type: None,
        caller,
        callee: None,
        invite_at: SystemTime::now() - invite.received_at().elapsed(),
        outcome: Outcome::default(),
    }
}

impl CallRouter {
    /// Keeps `record` in the recent list; stores it once `app` (what answered it) is done.
    async fn keep(&self, mut record: CallRecord, app: AppRunning) {
        self.remember(record.clone());
        if let Some(ended) = app.finished().await {
            record.outcome.app_ended(ended);
        }
        self.ended(&record);
    }

    /// A call has ended: its duration counted, its record written.
    fn ended(&self, record: &CallRecord) {
        let ended_at = SystemTime::now();
        if let Some(answered_at) = record.outcome.answered_at {
            let duration = ended_at.duration_since(answered_at).unwrap_or_default();
            metrics::histogram!("ringer_call_duration_seconds").record(duration.as_secs_f64());
        }
        if let Some(writer) = &self.writer {
            writer.write(record.row(writer.instance(), ended_at));
        }
    }

    /// Runs one call's handling (ending with its record) in a task of its own, in a `call`
    /// span naming it, counted in [`CallRouter::calls_in_progress`] until it is done.
    ///
    /// Boxed by the caller: a call's future (behaviours, apps) is large, and each move of it
    /// (into this function, into the span's wrapper, into the task) would copy it whole.
    fn spawn_call(self: &Arc<Self>, call_id: &str, call: std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        let span = tracing::info_span!("call", call_id = %call_id);
        let counted = CallInProgress::new(&self.in_progress);
        tokio::spawn(
            async move {
                call.await;
                drop(counted);
            }
            .instrument(span),
        );
    }

    /// Calls being handled whose records are not written yet.
    pub fn calls_in_progress(&self) -> usize {
        self.in_progress.load(std::sync::atomic::Ordering::Acquire)
    }

    fn remember(&self, record: CallRecord) {
        count_call(&record);
        if let Some(answered_at) = record.outcome.answered_at {
            let setup = answered_at.duration_since(record.invite_at).unwrap_or_default();
            metrics::histogram!("ringer_call_setup_seconds").record(setup.as_secs_f64());
        }
        let mut records = self.records.lock();
        if records.len() == RECORDS_KEPT {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// Answers without a subscriber (unknown number, unexpected direction) with `action`,
    /// which config validation keeps to reject or answer.
    fn refuse(self: &Arc<Self>, invite: PendingInvite, action: &Action, mut record: CallRecord) {
        let engine = self.engine.clone();
        if let Action::Reject { status, reason } = action {
            // At once, without a task: refusals are the cheapest answer under load.
            invite.reject(*status, Some(reason), None);
            record.outcome = Outcome { actions: vec![action.to_string()], status: Some(*status), ..Outcome::default() };
            // Written first, then moved into the recent list: no copy of the record.
            self.ended(&record);
            self.remember(record);
            return;
        }
        let router = self.clone();
        let action = action.clone();
        let call_id = record.call_id.clone();
        self.spawn_call(
            &call_id,
            Box::pin(async move {
                let (outcome, app) = engine.settle(invite, &action, &CallInfo::default()).await;
                record.outcome = outcome;
                router.keep(record, app).await;
            }),
        );
    }
}

impl CallRouter {
    /// A service code `subscriber` dialled: the settings changed (or read), then the call
    /// answered to say how they stand, and hung up. Without a store, 503.
    fn feature_code(
        self: &Arc<Self>,
        invite: PendingInvite,
        mut record: CallRecord,
        subscriber: Msisdn,
        code: ServiceCode,
        codes: &FeatureCodesConfig,
    ) {
        record.subscriber = Some((subscriber.clone(), Direction::Originating));
        let Some(mailboxes) = self.media.mailboxes.clone() else {
            let action = Action::Reject { status: StatusCode::SERVICE_UNAVAILABLE, reason: "No Store".into() };
            warn!(call_id = %record.call_id, %subscriber, %code, "feature codes need a store (store.url)");
            return self.refuse(invite, &action, record);
        };
        let request = codes.read(&code);
        let engine = self.engine.clone();
        let router = self.clone();
        let call_id = record.call_id.clone();
        self.spawn_call(
            &call_id,
            Box::pin(async move {
                let done = match &request {
                    Ok(request) => feature_codes::perform(&mailboxes, &subscriber, request).await,
                    Err(refusal) => Err(refusal.clone()),
                };
                let (result, spoken) = match done {
                    Ok(spoken) => ("done".to_owned(), spoken),
                    Err(refusal) => (format!("refused: {refusal}"), feature_codes::refusal_spoken(&refusal)),
                };
                info!(call_id = %record.call_id, %subscriber, %code, ?request, result, "feature code");
                let info = CallInfo {
                    subscriber: Some(subscriber),
                    direction: Some(Direction::Originating),
                    caller: record.caller.clone(),
                    spoken,
                    ..CallInfo::default()
                };
                let (mut outcome, app) = engine.settle(invite, &Action::Answer(App::FeatureCode), &info).await;
                outcome.actions.insert(0, format!("feature code {code} ({result})"));
                record.outcome = outcome;
                router.keep(record, app).await;
            }),
        );
    }
}

/// The router as the UA's handler: it needs an `Arc` of itself to hand calls to tasks.
pub struct RouterHandler(pub Arc<CallRouter>);

impl SessionHandler for RouterHandler {
    fn on_invite(&self, invite: PendingInvite) {
        let router = &self.0;
        let routes = router.routes();
        let asserted = asserted_caller(&invite.request().headers);
        let caller = caller_number(asserted.as_ref(), &invite.essentials().from);
        let mut record = record_of(&invite, caller.clone());
        let call_id = record.call_id.clone();
        // A code changes the subscriber's settings: only the caller the network asserts may
        // (From is the caller's to write, and would forward anyone's calls anywhere).
        if routes.feature_codes.enabled {
            if let Some((subscriber, code)) = routes.table.service_code(&invite.request().uri, asserted.as_ref()) {
                return router.feature_code(invite, record, subscriber, code, &routes.feature_codes);
            }
        }
        let classified = match routes.table.classify(&invite.request().uri, caller.as_ref()) {
            Ok(classified) => classified,
            Err(error) => {
                let action = routes.calls.unknown_number.clone();
                match &error {
                    RoutingError::NoNumber(_) | RoutingError::UnknownNumber(_) => {
                        info!(%call_id, request_uri = %record.request_uri, %error, %action, "call for no subscriber of this TAS")
                    }
                }
                router.refuse(invite, &action, record);
                return;
            }
        };
        record.subscriber = Some((classified.subscriber.clone(), classified.direction));
        record.prefix = classified.prefix.clone();
        record.callee = Some(classified.callee.clone());
        record.route_type = routes.table.route_type(&classified.subscriber);
        let request = invite.request();
        let info = CallInfo {
            subscriber: Some(classified.subscriber.clone()),
            direction: Some(classified.direction),
            caller: caller.clone(),
            callee: Some(classified.callee.clone()),
            absence: Absence::of_request(&request.uri, &request.headers, &classified.subscriber).unwrap_or_default(),
            login: Login::Ask,
            spoken: Vec::new(),
        };
        if let Some(login) = router.menu_login(&routes, &info, asserted.as_ref()) {
            info!(%call_id, subscriber = %classified.subscriber, direction = %classified.direction, ?login, "mailbox menu");
            let info = CallInfo { login, ..info };
            let engine = router.engine.clone();
            let router = router.clone();
            let call_id = record.call_id.clone();
            self.0.spawn_call(
                &call_id,
                Box::pin(async move {
                    let (outcome, app) = engine.settle(invite, &Action::Answer(App::VoicemailMain), &info).await;
                    record.outcome = outcome;
                    router.keep(record, app).await;
                }),
            );
            return;
        }
        let Some(behaviour) =
            routes.table.attached(&classified.subscriber).and_then(|b| b.get(classified.direction)).cloned()
        else {
            let action = routes.calls.unexpected.clone();
            let route_type = routes.table.route_type(&classified.subscriber).map(|r| r.name()).unwrap_or("unknown");
            warn!(%call_id, subscriber = %classified.subscriber, direction = %classified.direction, route_type, %action,
                "the subscriber's route type does not bring such calls");
            router.refuse(invite, &action, record);
            return;
        };
        let engine = router.engine.clone();
        info!(%call_id, subscriber = %classified.subscriber, direction = %classified.direction,
            prefix = classified.prefix.as_ref().map(Prefix::as_str).unwrap_or("-"), action = %behaviour.action, "call");
        let router = router.clone();
        let call_id = record.call_id.clone();
        self.0.spawn_call(
            &call_id,
            Box::pin(async move {
                let mut limit = DiversionLimit {
                    max: routes.calls.max_diversions,
                    instead: routes.calls.on_diversion_limit.clone(),
                };
                // What the subscriber set for themselves goes over the configured behaviour (and
                // over what the hop limit falls back to: no voicemail when they switched it off).
                let settings = router.media.mailboxes.as_ref().map(Mailboxes::subscriber_settings);
                let behaviour = match (settings, classified.direction) {
                    (Some(settings), Direction::Terminating) => match settings.load(&classified.subscriber).await {
                        Some(settings) => {
                            limit.instead = settings.allowed(limit.instead);
                            Arc::new(settings.apply(&behaviour))
                        }
                        None => behaviour,
                    },
                    _ => behaviour,
                };
                let (outcome, app) = engine.run(invite, &info, &classified.callee, &behaviour, &limit).await;
                record.outcome = outcome;
                info!(call_id = %record.call_id, outcome = %record.outcome, "call done");
                router.keep(record, app).await;
            }),
        );
    }

    fn on_offer(&self, _dialog: &DialogId, offer: &Bytes) -> OfferAnswer {
        let session = rand::random::<u32>() as u64;
        let offer = sdp::SessionDescription::parse(&String::from_utf8_lossy(offer)).ok();
        match offer.and_then(|offer| sdp::decline_all(&offer, session, self.0.media.advertise)) {
            Some(answer) => OfferAnswer::Accept(Bytes::from(answer.to_string())),
            None => OfferAnswer::NotAcceptable("no usable SDP offer".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn record_ids_sort_in_the_order_they_were_written_and_differ_within_a_millisecond() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_750_000_123);
        let first = record_id(at);
        let same_millisecond = record_id(at);
        let later = record_id(at + Duration::from_millis(1));
        for id in [&first, &same_millisecond, &later] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|byte| byte.is_ascii_hexdigit()), "{id}");
        }
        assert!(first.starts_with(&format!("{:012x}", 1_764_750_000_123u64)), "{first}");
        assert_ne!(first, same_millisecond);
        assert!(later > first && later > same_millisecond, "{first} {same_millisecond} {later}");
    }
}
