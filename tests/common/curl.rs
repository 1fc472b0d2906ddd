//! curl (Debian's), an HTTP client nobody here wrote, against ringer's APIs.

use std::net::SocketAddr;

/// What a request sends: a file (`@path`) or JSON text.
pub(crate) enum Body<'a> {
    /// A WAV file.
    Wav(&'a std::path::Path),
    /// JSON text.
    Json(&'a str),
}

/// `curl -X method http://http{path}` with `Authorization: Bearer token`; the status and body.
pub(crate) async fn curl(
    http: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Body<'_>>,
) -> (u16, String) {
    let url = format!("http://{http}{path}");
    let authorization = format!("Authorization: Bearer {token}");
    let mut args = vec!["-sS", "-X", method, "-H", &authorization, "-w", "\n%{http_code}", &url];
    let data;
    match body {
        Some(Body::Wav(file)) => {
            data = format!("@{}", file.display());
            args.extend(["-H", "Content-Type: audio/wav", "--data-binary", &data]);
        }
        Some(Body::Json(text)) => args.extend(["-H", "Content-Type: application/json", "--data-binary", text]),
        None => {}
    }
    let output = match tokio::process::Command::new("curl").args(&args).output().await {
        Ok(output) => output,
        Err(error) => panic!("curl is needed (apt-get install curl): {error}"),
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// A fresh SQLite store in `dir`, and `app` (ringer's API over its mailboxes) serving on a
/// free loopback port until the task is aborted.
pub(crate) async fn api_on_store(
    dir: &std::path::Path,
    app: impl FnOnce(ringer::tas::mailbox::Mailboxes) -> axum::Router,
) -> (ringer::store::Store, SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let database = ringer::store::Store::open(&format!("sqlite://{}/ringer.db", dir.display())).await.expect("store");
    database.migrate().await.expect("migrate");
    let mailboxes = ringer::tas::mailbox::Mailboxes::new(database.clone(), &Default::default()).expect("mailboxes");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = listener.local_addr().expect("address");
    let app = app(mailboxes);
    (database, http, tokio::spawn(async move { axum::serve(listener, app).await }))
}

/// A new API token for `mailbox` (`None`: every mailbox), stored as its hash.
pub(crate) async fn token_for(store: &ringer::store::Store, mailbox: Option<&str>) -> String {
    let (token, hash) = ringer::tas::mailbox::api::new_token().expect("random");
    store.add_token(&hash, mailbox, "test").await.expect("token stored");
    token
}
