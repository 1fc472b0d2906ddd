//! The self-care web page under `/me`, on the HTTP API's listener: a subscriber logs in with
//! number and voicemail PIN (or, for a first login, a one-time PIN sent by SMS through the
//! operator's SmsService), sees and changes forwarding, do-not-disturb and voicemail, plays and
//! deletes messages, uploads greetings, and sets a PIN. Server-rendered HTML and plain forms:
//! no script, no external font or style, usable on a phone-sized screen.
//!
//! A session is a random cookie (`HttpOnly`, `SameSite=Strict`: no other site can post a form
//! with it) whose SHA-256 the store keeps for [`SESSION_LIFETIME`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use tracing::{info, warn};

use domain::types::Msisdn;
use registrar::sms::{SmsClient, Text};
use store::MessageState;

use crate::call::CallRouter;
use crate::html::{cookie, escape, page, set_cookie};
use crate::leases::duration_millis;
use crate::mailbox::api::{random_hex, store_greeting, token_hash, ApiError};
use crate::mailbox::greeting::GreetingKind;
use crate::mailbox::{pin, Mailboxes, PinCheck};
use crate::settings::{ForwardTarget, SubscriberSettings};

/// The session cookie.
const SESSION_COOKIE: &str = "ringer_session";
/// How long a session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How long a PIN sent by SMS opens the page.
const LOGIN_PIN_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The shortest time between two PINs sent to one number.
const LOGIN_PIN_INTERVAL: Duration = Duration::from_secs(60);
/// The largest greeting upload (as the API's).
const MAX_UPLOAD: usize = 16 * 1024 * 1024;

/// How one-time PINs reach subscribers: the operator's SmsService, with the approved sender.
#[derive(Debug, Clone)]
pub struct PinSms {
    /// The client.
    pub sms: SmsClient,
    /// The sender shown (`voicemail.notification.sms_from`).
    pub from: String,
}

#[derive(Clone)]
struct SelfCare {
    mailboxes: Mailboxes,
    router: Arc<CallRouter>,
    sms: Option<PinSms>,
}

/// The page's routes over `mailboxes`; `router` tells which numbers are subscribers here (only
/// they are sent a PIN); without `sms`, first logins need a PIN set by phone or the CLI.
pub fn router(mailboxes: Mailboxes, router: Arc<CallRouter>, sms: Option<PinSms>) -> Router {
    Router::new()
        .route("/me", get(home))
        .route("/me/login", post(login))
        .route("/me/send-pin", post(send_pin))
        .route("/me/logout", post(logout))
        .route("/me/settings", post(save_settings))
        .route("/me/pin", post(set_pin))
        .route("/me/messages/{id}/audio", get(message_audio))
        .route("/me/messages/{id}/delete", post(delete_message))
        .route("/me/greetings", post(upload_greeting))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(SelfCare { mailboxes, router, sms })
}

fn login_form(notice: &str) -> String {
    format!(
        "{notice}<form method=post action=/me/login>\
         <label>Mobile number <input type=tel id=number name=number required placeholder=+4799990001></label>\
         <label>PIN <input type=password id=pin name=pin inputmode=numeric required></label>\
         <button id=login>Log in</button></form>\
         <h2>First time?</h2><form method=post action=/me/send-pin>\
         <label>Mobile number <input type=tel id=sms-number name=number required></label>\
         <button id=send-pin>Send me a PIN by SMS</button></form>"
    )
}

/// The session's subscriber, if the request carries a live session cookie.
async fn session(care: &SelfCare, headers: &HeaderMap) -> Option<Msisdn> {
    let token = cookie(headers, SESSION_COOKIE)?;
    let subscriber = match care.mailboxes.store().session(&token_hash(&token), store::now_millis()).await {
        Ok(subscriber) => subscriber?,
        Err(error) => {
            warn!(%error, "self-care: sessions not readable");
            return None;
        }
    };
    Msisdn::parse(&subscriber).ok()
}

fn log_in_again() -> Response {
    Redirect::to("/me").into_response()
}

/// A number as typed: `+` optional, spaces and dashes ignored.
fn typed_number(text: &str) -> Option<Msisdn> {
    let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    let international = if digits.starts_with('+') { digits } else { format!("+{digits}") };
    Msisdn::parse(&international).ok()
}

/// What `GET /me?done=...` says was done.
#[derive(Debug, Deserialize)]
struct Done {
    done: Option<String>,
}

/// `GET /me`: the subscriber's page, or the login form.
async fn home(State(care): State<SelfCare>, headers: HeaderMap, Query(done): Query<Done>) -> Response {
    match session(&care, &headers).await {
        Some(owner) => {
            dashboard(&care, &owner, StatusCode::OK, done.done.as_deref().map(done_notice).unwrap_or_default()).await
        }
        None => page(StatusCode::OK, "Log in", &login_form("")),
    }
}

fn done_notice(what: &str) -> String {
    let text = match what {
        "settings" => "Settings saved.",
        "greeting" => "Greeting saved.",
        "deleted" => "Message deleted.",
        "pin" => "PIN changed.",
        "first" => "Logged in with the PIN sent by SMS. Please set your own PIN below.",
        _ => return String::new(),
    };
    format!("<p class=done id=notice>{text}</p>")
}

/// The form values of the settings, as shown.
fn target_value(target: &Option<ForwardTarget>) -> String {
    target.as_ref().map(ToString::to_string).unwrap_or_default()
}

async fn dashboard(care: &SelfCare, owner: &Msisdn, status: StatusCode, notice: String) -> Response {
    let store = care.mailboxes.store();
    let settings = SubscriberSettings::read(store, owner).await.unwrap_or_else(|error| {
        warn!(subscriber = %owner, %error, "self-care: settings not readable");
        SubscriberSettings::default()
    });
    let messages =
        care.mailboxes.playlist(owner).await.map(|(new, saved)| new.into_iter().chain(saved).collect::<Vec<_>>());
    let messages = match messages {
        Ok(messages) if messages.is_empty() => "<p id=no-messages>No messages.</p>".to_owned(),
        Ok(messages) => {
            let items: String = messages
                .iter()
                .map(|message| {
                    let id = escape(&message.id);
                    format!(
                        "<li class=message>{state} from <b>{caller}</b>, {at}, {seconds} s\
                         <audio controls preload=none src=\"/me/messages/{id}/audio\"></audio>\
                         <form method=post action=\"/me/messages/{id}/delete\"><button>Delete</button></form></li>",
                        state = if message.state == MessageState::New { "New" } else { "Heard" },
                        caller = escape(message.caller.as_deref().unwrap_or("an unknown caller")),
                        at = escape(&message.recorded_at),
                        seconds = message.duration_ms / 1000,
                    )
                })
                .collect();
            format!("<ul id=messages>{items}</ul>")
        }
        Err(error) => {
            warn!(subscriber = %owner, %error, "self-care: messages not readable");
            "<p class=error>Messages cannot be shown now.</p>".to_owned()
        }
    };
    let checked = |on: bool| if on { " checked" } else { "" };
    let forward = |id: &str, label: &str, target: &Option<ForwardTarget>| {
        format!(
            "<label>{label} <input type=text id={id} name={id} value=\"{}\" placeholder=\"a number, or voicemail\"></label>",
            escape(&target_value(target))
        )
    };
    let body = format!(
        "{notice}<p>Logged in as <b id=owner>{owner}</b>.</p><form method=post action=/me/logout><button id=logout>Log out</button></form>\
         <h2>Calls</h2><form method=post action=/me/settings>{always}{busy}{no_answer}\
         <label>No answer within (seconds, 5–120) <input type=text id=no_answer_seconds name=no_answer_seconds inputmode=numeric value=\"{seconds}\"></label>\
         {unreachable}<label><input type=checkbox id=do_not_disturb name=do_not_disturb{dnd}> Do not disturb</label>\
         <label><input type=checkbox id=voicemail name=voicemail{voicemail}> Voicemail</label>\
         <button id=save-settings>Save</button></form>\
         <h2>Messages</h2>{messages}\
         <h2>Greetings</h2><form method=post action=/me/greetings enctype=multipart/form-data>\
         <label>Greeting <select id=kind name=kind><option value=unavailable>When I do not answer</option>\
         <option value=busy>When I am busy</option><option value=temporary>Temporary (over both)</option>\
         <option value=name>My name</option></select></label>\
         <label>Recording (WAV or Ogg/Opus) <input type=file id=greeting name=audio accept=\"audio/wav,audio/ogg,.wav,.ogg,.opus\" required></label>\
         <button id=upload>Upload</button></form>\
         <h2>PIN</h2><form method=post action=/me/pin>\
         <label>New PIN (4 to 8 digits) <input type=password id=new-pin name=pin inputmode=numeric required></label>\
         <button id=set-pin>Set PIN</button></form>",
        always = forward("forward_always", "Forward every call to", &settings.forward_always),
        busy = forward("forward_busy", "When I am busy, forward to", &settings.forward_busy),
        no_answer = forward("forward_no_answer", "When I do not answer, forward to", &settings.forward_no_answer),
        unreachable = forward("forward_unreachable", "When my phone is off, forward to", &settings.forward_unreachable),
        seconds = settings.no_answer_seconds.map(|s| s.to_string()).unwrap_or_default(),
        dnd = checked(settings.do_not_disturb),
        voicemail = checked(settings.voicemail != Some(false)),
    );
    page(status, "My calls and voicemail", &body)
}

/// Starts a session for `owner`: the cookie, and to `/me?done=<done>`.
async fn start_session(care: &SelfCare, owner: &Msisdn, done: &str) -> Response {
    let Ok(token) = random_hex(32) else {
        return page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "<p class=error>No random source; try again.</p>");
    };
    let now = store::now_millis();
    // Sessions past their time go as new ones come (an empty hash names none).
    if let Err(error) = care.mailboxes.store().end_session("", now).await {
        warn!(%error, "self-care: expired sessions not removed");
    }
    let expires = now.saturating_add(duration_millis(SESSION_LIFETIME));
    if let Err(error) = care.mailboxes.store().put_session(&token_hash(&token), owner.as_str(), expires).await {
        warn!(%error, "self-care: session not stored");
        return page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "<p class=error>Please try again later.</p>");
    }
    info!(subscriber = %owner, "self-care: logged in");
    let location = if done.is_empty() { "/me".to_owned() } else { format!("/me?done={done}") };
    let mut response = Redirect::to(&location).into_response();
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/me; Max-Age={}; HttpOnly; SameSite=Strict",
        SESSION_LIFETIME.as_secs()
    );
    set_cookie(&mut response, &cookie);
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    number: String,
    pin: String,
}

/// `POST /me/login`: the mailbox PIN, or the one-time PIN sent by SMS when none is set.
async fn login(State(care): State<SelfCare>, Form(form): Form<LoginForm>) -> Response {
    let refused =
        |status, text: &str| page(status, "Log in", &login_form(&format!("<p class=error id=error>{text}</p>")));
    // A number no longer served here (removed, consent withdrawn) has no page.
    let Some(owner) = typed_number(&form.number).filter(|owner| care.router.serves(owner)) else {
        return refused(StatusCode::UNAUTHORIZED, "Login incorrect.");
    };
    let entered = form.pin.trim().to_owned();
    match care.mailboxes.check_pin(&owner, entered.clone()).await {
        Ok(PinCheck::Accepted) => start_session(&care, &owner, "").await,
        Ok(PinCheck::Wrong) => refused(StatusCode::UNAUTHORIZED, "Login incorrect."),
        Ok(PinCheck::Locked) => {
            refused(StatusCode::FORBIDDEN, "This mailbox is locked after too many wrong PINs. Try again later.")
        }
        Ok(PinCheck::NoPin) => match one_time_pin(&care, &owner, entered).await {
            Ok(true) => start_session(&care, &owner, "first").await,
            Ok(false) => refused(StatusCode::UNAUTHORIZED, "Login incorrect."),
            Err(error) => {
                warn!(%error, "self-care: one-time PIN not checked");
                refused(StatusCode::SERVICE_UNAVAILABLE, "Please try again later.")
            }
        },
        Err(error) => {
            warn!(%error, "self-care: PIN not checked");
            refused(StatusCode::SERVICE_UNAVAILABLE, "Please try again later.")
        }
    }
}

/// Whether `entered` is `owner`'s live one-time PIN. Each is good for one try, taken
/// atomically (logins at once get one try between them): a wrong one spends it, and a new
/// one can be sent a minute after the last.
async fn one_time_pin(care: &SelfCare, owner: &Msisdn, entered: String) -> Result<bool, store::StoreError> {
    let store = care.mailboxes.store();
    let Some(row) = store.login_pin(owner.as_str()).await? else { return Ok(false) };
    if row.pin_hash.is_empty() || row.expires_ms <= store::now_millis() {
        return Ok(false);
    }
    if !store.spend_login_pin(owner.as_str(), &row.pin_hash).await? {
        return Ok(false);
    }
    let hash = row.pin_hash;
    Ok(tokio::task::spawn_blocking(move || pin::verify(&entered, &hash)).await.unwrap_or(false))
}

#[derive(Debug, Deserialize)]
struct NumberForm {
    number: String,
}

/// `POST /me/send-pin`: a one-time PIN by SMS to a subscriber here without a PIN of their own.
/// The page says the same whatever the number, so it tells nobody who is a subscriber.
async fn send_pin(State(care): State<SelfCare>, Form(form): Form<NumberForm>) -> Response {
    let said = |number: &str| {
        page(
            StatusCode::OK,
            "Log in",
            &login_form(&format!(
                "<p class=done id=notice>If {} is served here and has no PIN yet, a PIN is on its way by SMS. \
                 It opens this page once, within ten minutes.</p>",
                escape(number)
            )),
        )
    };
    let Some(sms) = &care.sms else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Log in",
            &login_form(
                "<p class=error id=error>PINs by SMS are not offered here: set one by calling your voicemail.</p>",
            ),
        );
    };
    let Some(owner) = typed_number(&form.number) else { return said(&form.number) };
    // Sent after the answer: a subscriber's PIN taking longer to make than a stranger's
    // nothing would tell who is a subscriber.
    let (care, sms, number) = (care.clone(), sms.clone(), owner.clone());
    tokio::spawn(async move {
        if let Err(error) = send_pin_to(&care, &sms, &number).await {
            warn!(subscriber = %number, %error, "self-care: one-time PIN not sent");
        }
    });
    said(owner.as_str())
}

async fn send_pin_to(care: &SelfCare, sms: &PinSms, owner: &Msisdn) -> Result<(), String> {
    let store = care.mailboxes.store();
    if !care.router.serves(owner) {
        info!(subscriber = %owner, "self-care: PIN asked for a number not served here");
        return Ok(());
    }
    if store.pin_state(owner.as_str()).await.map_err(|e| e.to_string())?.pin_hash.is_some() {
        info!(subscriber = %owner, "self-care: PIN asked for a mailbox that has one; none sent");
        return Ok(());
    }
    let now = store::now_millis();
    if let Some(sent) = store.login_pin(owner.as_str()).await.map_err(|e| e.to_string())? {
        if sent.sent_ms > now - duration_millis(LOGIN_PIN_INTERVAL) {
            info!(subscriber = %owner, "self-care: a PIN was sent less than a minute ago; none sent");
            return Ok(());
        }
    }
    let mut bytes = [0u8; 4];
    SystemRandom::new().fill(&mut bytes).map_err(|_| "no random source".to_owned())?;
    let code = format!("{:06}", u32::from_be_bytes(bytes) % 1_000_000);
    let for_hash = code.clone();
    let hash = tokio::task::spawn_blocking(move || pin::hash(&for_hash))
        .await
        .map_err(|_| "the hasher stopped".to_owned())?
        .map_err(|e| e.to_string())?;
    store
        .put_login_pin(owner.as_str(), &hash, now + duration_millis(LOGIN_PIN_LIFETIME))
        .await
        .map_err(|e| e.to_string())?;
    let text = Text {
        to: owner.clone(),
        from: sms.from.clone(),
        content: format!("Your PIN for the voicemail page is {code}. It works once, within 10 minutes."),
        delivery_deadline: Some(LOGIN_PIN_LIFETIME),
    };
    sms.sms.send(&text).await.map_err(|e| e.to_string())?;
    info!(subscriber = %owner, "self-care: one-time PIN sent by SMS");
    Ok(())
}

/// `POST /me/logout`.
async fn logout(State(care): State<SelfCare>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(name, _)| *name == SESSION_COOKIE)
        })
        .map(|(_, value)| value.to_owned());
    if let Some(token) = token {
        if let Err(error) = care.mailboxes.store().end_session(&token_hash(&token), store::now_millis()).await {
            warn!(%error, "self-care: session not ended");
        }
    }
    let mut response = Redirect::to("/me").into_response();
    set_cookie(&mut response, &format!("{SESSION_COOKIE}=; Path=/me; Max-Age=0"));
    response
}

/// The settings as the form sent them; `Err` names the field that is wrong.
fn settings_of(form: &HashMap<String, String>) -> Result<SubscriberSettings, String> {
    let text = |key: &str| form.get(key).map(|value| value.trim()).filter(|value| !value.is_empty());
    let target = |key: &str, label: &str| -> Result<Option<ForwardTarget>, String> {
        match text(key) {
            None => Ok(None),
            Some(value) if value.eq_ignore_ascii_case("voicemail") => Ok(Some(ForwardTarget::Voicemail)),
            Some(value) => typed_number(value).map(|number| Some(ForwardTarget::Number(number))).ok_or_else(|| {
                format!("{label}: {value:?} is not a number in international form (+47…) nor \"voicemail\"")
            }),
        }
    };
    let seconds = match text("no_answer_seconds") {
        None => None,
        Some(value) => {
            Some(value.parse::<u32>().map_err(|_| format!("No answer within: {value:?} is not a number of seconds"))?)
        }
    };
    Ok(SubscriberSettings {
        forward_always: target("forward_always", "Forward every call to")?,
        forward_busy: target("forward_busy", "When I am busy")?,
        forward_no_answer: target("forward_no_answer", "When I do not answer")?,
        no_answer_seconds: seconds,
        forward_unreachable: target("forward_unreachable", "When my phone is off")?,
        do_not_disturb: form.contains_key("do_not_disturb"),
        voicemail: (!form.contains_key("voicemail")).then_some(false),
    })
}

/// `POST /me/settings`.
async fn save_settings(
    State(care): State<SelfCare>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(owner) = session(&care, &headers).await else { return log_in_again() };
    let checked = settings_of(&form).and_then(|settings| settings.check(&owner).map(|()| settings));
    let settings = match checked {
        Ok(settings) => settings,
        Err(why) => {
            let notice = format!("<p class=error id=error>Not saved: {}</p>", escape(&why));
            return dashboard(&care, &owner, StatusCode::BAD_REQUEST, notice).await;
        }
    };
    if let Err(error) = care.mailboxes.subscriber_settings().save(&owner, &settings).await {
        warn!(subscriber = %owner, %error, "self-care: settings not saved");
        let notice = "<p class=error id=error>Not saved: please try again later.</p>".to_owned();
        return dashboard(&care, &owner, StatusCode::SERVICE_UNAVAILABLE, notice).await;
    }
    info!(subscriber = %owner, ?settings, "settings changed on the self-care page");
    Redirect::to("/me?done=settings").into_response()
}

#[derive(Debug, Deserialize)]
struct PinForm {
    pin: String,
}

/// `POST /me/pin`: the subscriber's own PIN (the voicemail PIN), replacing a one-time one.
async fn set_pin(State(care): State<SelfCare>, headers: HeaderMap, Form(form): Form<PinForm>) -> Response {
    let Some(owner) = session(&care, &headers).await else { return log_in_again() };
    let entered = form.pin.trim().to_owned();
    if !pin::is_valid(&entered) {
        let notice = "<p class=error id=error>A PIN is 4 to 8 digits.</p>".to_owned();
        return dashboard(&care, &owner, StatusCode::BAD_REQUEST, notice).await;
    }
    let hashed = tokio::task::spawn_blocking(move || pin::hash(&entered)).await;
    let stored = match hashed {
        Ok(Ok(hash)) => care.mailboxes.store().set_pin_hash(owner.as_str(), &hash).await.map_err(|e| e.to_string()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("the hasher stopped".into()),
    };
    if let Err(error) = stored {
        warn!(subscriber = %owner, %error, "self-care: PIN not set");
        let notice = "<p class=error id=error>Not changed: please try again later.</p>".to_owned();
        return dashboard(&care, &owner, StatusCode::SERVICE_UNAVAILABLE, notice).await;
    }
    if let Err(error) = care.mailboxes.store().delete_login_pin(owner.as_str()).await {
        warn!(subscriber = %owner, %error, "self-care: one-time PIN not removed");
    }
    // A new PIN ends the other sessions (someone who knew the old one is out).
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if let Err(error) = care.mailboxes.store().end_other_sessions(owner.as_str(), &token_hash(&token)).await {
            warn!(subscriber = %owner, %error, "self-care: other sessions not ended");
        }
    }
    info!(subscriber = %owner, "PIN changed on the self-care page");
    Redirect::to("/me?done=pin").into_response()
}

/// `GET /me/messages/{id}/audio`: WAV, for the page's audio player.
async fn message_audio(State(care): State<SelfCare>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(owner) = session(&care, &headers).await else { return StatusCode::UNAUTHORIZED.into_response() };
    match care.mailboxes.store().voicemail(&id).await {
        Ok(Some((row, wav))) if row.subscriber == owner.as_str() => {
            crate::mailbox::count_fetched(&headers);
            if let Err(error) = care.mailboxes.store().mark_voicemail_heard(owner.as_str(), &id).await {
                warn!(%error, "self-care: message not marked heard");
            }
            ([(header::CONTENT_TYPE, "audio/wav"), (header::CACHE_CONTROL, "private, no-store")], wav).into_response()
        }
        Ok(_) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            warn!(%error, "self-care: message not readable");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// `POST /me/messages/{id}/delete`.
async fn delete_message(State(care): State<SelfCare>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(owner) = session(&care, &headers).await else { return log_in_again() };
    match care.mailboxes.store().set_voicemail_state(owner.as_str(), &id, MessageState::Deleted).await {
        Ok(deleted) => {
            if deleted {
                crate::mailbox::count_message("deleted");
            }
            Redirect::to("/me?done=deleted").into_response()
        }
        Err(error) => {
            warn!(%error, "self-care: message not deleted");
            let notice = "<p class=error id=error>Not deleted: please try again later.</p>".to_owned();
            dashboard(&care, &owner, StatusCode::SERVICE_UNAVAILABLE, notice).await
        }
    }
}

/// `POST /me/greetings` (multipart: `kind`, `audio`).
async fn upload_greeting(State(care): State<SelfCare>, headers: HeaderMap, mut form: Multipart) -> Response {
    let Some(owner) = session(&care, &headers).await else { return log_in_again() };
    let mut kind = None;
    let mut audio = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let Ok(bytes) = field.bytes().await else { break };
                match name.as_str() {
                    "kind" => {
                        kind = std::str::from_utf8(&bytes).ok().and_then(|text| text.parse::<GreetingKind>().ok())
                    }
                    "audio" => audio = Some(bytes),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(error) => {
                let notice = format!("<p class=error id=error>Not uploaded: {}</p>", escape(&error.body_text()));
                return dashboard(&care, &owner, StatusCode::BAD_REQUEST, notice).await;
            }
        }
    }
    let (Some(kind), Some(audio)) = (kind, audio) else {
        let notice = "<p class=error id=error>Not uploaded: choose a greeting and a file.</p>".to_owned();
        return dashboard(&care, &owner, StatusCode::BAD_REQUEST, notice).await;
    };
    match store_greeting(&care.mailboxes, &owner, kind, audio).await {
        Ok(()) => {
            info!(subscriber = %owner, %kind, "greeting uploaded on the self-care page");
            Redirect::to("/me?done=greeting").into_response()
        }
        Err(ApiError::BadRequest(why)) => {
            let notice = format!("<p class=error id=error>Not uploaded: {}</p>", escape(&why));
            dashboard(&care, &owner, StatusCode::BAD_REQUEST, notice).await
        }
        Err(error) => {
            warn!(subscriber = %owner, ?error, "self-care: greeting not stored");
            let notice = "<p class=error id=error>Not uploaded: please try again later.</p>".to_owned();
            dashboard(&care, &owner, StatusCode::SERVICE_UNAVAILABLE, notice).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_settings_form_is_read_as_the_api_reads_json() {
        let settings = settings_of(&form(&[
            ("forward_always", " +47 9999 0002 "),
            ("forward_busy", "Voicemail"),
            ("no_answer_seconds", "20"),
            ("voicemail", "on"),
        ]))
        .unwrap();
        assert_eq!(settings.forward_always, Some(ForwardTarget::Number(Msisdn::parse("+4799990002").unwrap())));
        assert_eq!(settings.forward_busy, Some(ForwardTarget::Voicemail));
        assert_eq!((settings.no_answer_seconds, settings.do_not_disturb, settings.voicemail), (Some(20), false, None));
        let off = settings_of(&form(&[("do_not_disturb", "on")])).unwrap();
        assert_eq!((off.do_not_disturb, off.voicemail), (true, Some(false)), "an unticked box is off");
        assert!(settings_of(&form(&[("forward_always", "my colleague")]))
            .unwrap_err()
            .starts_with("Forward every call to"));
        assert!(settings_of(&form(&[("no_answer_seconds", "soon")])).unwrap_err().starts_with("No answer within"));
    }
}
