//! What a subscriber sets for themselves: the settings API driven by curl (every setting, every
//! validation error, tokens), and a forward set through it changing where the next call
//! through the emulated core goes (History-Info and Diversion on the way), until it is cleared.

mod common;

use std::time::Duration;

use common::curl::{api_on_store, curl, token_for, Body};
use common::lab::{final_of, handset, subscriber, Lab};
use ringer::config::core::HandsetMode;
use ringer::sip::uac::Progress;

const OWNER: &str = "+4799990501";
const COLLEAGUE: &str = "+4799990502";

#[tokio::test]
async fn settings_are_read_changed_and_checked_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (database, http, serving) = api_on_store(dir.path(), ringer::tas::settings::api::router).await;
    let mine = token_for(&database, Some(OWNER)).await;
    let theirs = token_for(&database, Some(COLLEAGUE)).await;
    let path = format!("/api/v1/subscribers/{OWNER}/settings");

    assert_eq!(curl(http, &mine, "GET", &path, None).await, (200, "{\"do_not_disturb\":false}".into()));
    let every = r#"{"forward_busy":"voicemail","forward_no_answer":"+4799990502","no_answer_seconds":15,"forward_unreachable":"+4799990503","do_not_disturb":true,"voicemail":true}"#;
    assert_eq!(curl(http, &mine, "PUT", &path, Some(Body::Json(every))).await.0, 204);
    let (status, body) = curl(http, &mine, "GET", &path, None).await;
    let read: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let sent: serde_json::Value = serde_json::from_str(every).expect("JSON");
    assert_eq!((status, read), (200, sent), "what was set reads back");
    let always = r#"{"forward_always":"+4799990502"}"#;
    assert_eq!(curl(http, &mine, "PUT", &path, Some(Body::Json(always))).await.0, 204, "a PUT replaces all");
    let (_, body) = curl(http, &mine, "GET", &path, None).await;
    assert_eq!(body, r#"{"forward_always":"+4799990502","do_not_disturb":false}"#);

    // Each refusal is a 400 that says what is wrong; nothing changes.
    let refused = [
        (r#"{"forward_always":"+4799990501"}"#, "cannot forward to their own number"),
        (r#"{"no_answer_seconds":3}"#, "not within 5 to 120"),
        (r#"{"no_answer_seconds":121}"#, "not within 5 to 120"),
        (r#"{"forward_busy":"12345"}"#, "neither \\\"voicemail\\\" nor an E.164 number"),
        (r#"{"forward_busy":"voicemail","voicemail":false}"#, "voicemail is switched off"),
        (r#"{"call_waiting":true}"#, "unknown field"),
        ("not json", "expected"),
    ];
    for (sent, expected) in refused {
        let (status, body) = curl(http, &mine, "PUT", &path, Some(Body::Json(sent))).await;
        assert_eq!(status, 400, "{sent}: {body}");
        assert!(body.contains(expected), "{sent}: {body} should say {expected}");
    }
    let (_, body) = curl(http, &mine, "GET", &path, None).await;
    assert!(body.contains("+4799990502"), "unchanged by the refusals: {body}");
    // Another subscriber's token, or none.
    assert_eq!(curl(http, &theirs, "GET", &path, None).await.0, 403);
    assert_eq!(curl(http, &theirs, "PUT", &path, Some(Body::Json("{}"))).await.0, 403);
    assert_eq!(curl(http, "rgr_nobody", "GET", &path, None).await.0, 401);
    serving.abort();
}

/// The handset that got the last INVITE, and the History-Info and Diversion it carried.
fn last_reached(lab: &Lab) -> (String, Vec<String>, Vec<String>) {
    let received = lab.sbc().handsets().received();
    let last = received.last().expect("a handset was called");
    (last.request_uri.clone(), last.history_info.clone(), last.diversion.clone())
}

async fn answered(lab: &Lab) {
    let mut call = lab.call("+4711111111", OWNER);
    let Progress::Answered(dialog, _) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
}

#[tokio::test]
async fn a_forward_set_through_the_api_changes_where_the_next_call_goes() {
    let store = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/ringer.db", store.path().display());
    let lab = Lab::start_adjusted(
        &[subscriber(OWNER, "loop-mt", "", "51", "", "\"loop\"")],
        vec![handset(OWNER, HandsetMode::Answer), handset(COLLEAGUE, HandsetMode::Answer)],
        Vec::new(),
        |config| config.mailbox_store = Some(url),
    )
    .await;
    let lab_mailboxes = lab.mailboxes.as_ref().expect("mailboxes");
    let token = token_for(lab_mailboxes.mailboxes.store(), Some(OWNER)).await;
    let path = format!("/api/v1/subscribers/{OWNER}/settings");

    answered(&lab).await;
    assert!(last_reached(&lab).0.starts_with(&format!("sip:{OWNER}@")), "as configured: the owner's phone");

    let always = format!(r#"{{"forward_always":"{COLLEAGUE}"}}"#);
    assert_eq!(curl(lab_mailboxes.http, &token, "PUT", &path, Some(Body::Json(&always))).await.0, 204);
    answered(&lab).await;
    let (uri, history, diversion) = last_reached(&lab);
    assert!(uri.starts_with(&format!("sip:{COLLEAGUE}@")), "forwarded: {uri}");
    assert!(history.iter().any(|entry| entry.contains("cause=302")), "History-Info: {history:?}");
    assert!(diversion.iter().any(|entry| entry.contains(OWNER) && entry.contains("unconditional")), "{diversion:?}");

    // Do-not-disturb with busy calls to the colleague: forwarded as busy, not unconditionally.
    let busy = format!(r#"{{"do_not_disturb":true,"forward_busy":"{COLLEAGUE}"}}"#);
    assert_eq!(curl(lab_mailboxes.http, &token, "PUT", &path, Some(Body::Json(&busy))).await.0, 204);
    answered(&lab).await;
    let (uri, history, diversion) = last_reached(&lab);
    assert!(uri.starts_with(&format!("sip:{COLLEAGUE}@")), "forwarded: {uri}");
    assert!(history.iter().any(|entry| entry.contains("cause=486")), "History-Info: {history:?}");
    assert!(diversion.iter().any(|entry| entry.contains("user-busy")), "{diversion:?}");

    assert_eq!(curl(lab_mailboxes.http, &token, "PUT", &path, Some(Body::Json("{}"))).await.0, 204);
    answered(&lab).await;
    assert!(last_reached(&lab).0.starts_with(&format!("sip:{OWNER}@")), "cleared: the owner's phone again");
    assert!(common::poll_until(Duration::from_secs(5), || lab.live_state() == 0).await, "{}", lab.leftovers());
}
