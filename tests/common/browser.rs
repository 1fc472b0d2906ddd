//! Headless Chromium (Debian's `chromium`) driven over W3C WebDriver by Debian's
//! `chromium-driver`: pages are opened, filled in and clicked as a subscriber would, and
//! screenshots kept under `target/test-output/` for a human to look at.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::sipp::tool;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; chromedriver (and with it Chromium) ends when this is dropped.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A headless Chromium with a fresh profile, or `None` outside CI when it is not installed.
    pub(crate) async fn start() -> Option<Browser> {
        ringer::tls::install_crypto_provider();
        let chromium = tool(&["chromium"], "chromium")?;
        let driver_path = tool(&["chromedriver"], "chromium-driver")?;
        let port = super::free_port().port();
        let driver = tokio::process::Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok();
            if let Some(response) = ready {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == json!(true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=412,915".to_owned(),
            "--autoplay-policy=no-user-gesture-required".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("session request")
            .json()
            .await
            .expect("session JSON");
        let session = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}"));
        let session = format!("{base}/session/{session}");
        Some(Browser { http, session, _driver: driver, _profile: profile })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body).await.unwrap_or_else(|error| panic!("{error}"))
    }

    /// A WebDriver command; `Err` with WebDriver's error (a stale element, say).
    async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.expect("WebDriver request").json().await.expect("WebDriver JSON");
        match answer["value"]["error"].as_str() {
            Some(error) => Err(format!("WebDriver {path}: {error}: {}", answer["value"]["message"])),
            None => Ok(answer["value"].clone()),
        }
    }

    /// Opens `url` and waits for it to load.
    pub(crate) async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    /// The address the browser is at.
    pub(crate) async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The page's text.
    pub(crate) async fn text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(body) = self.find("body").await {
                let text = self.try_command(reqwest::Method::GET, &format!("/element/{body}/text"), None).await;
                if let Ok(text) = text {
                    return text.as_str().unwrap_or_default().to_owned();
                }
            }
            assert!(Instant::now() < deadline, "no page text within 10 s at {}", self.url().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css`, if any.
    pub(crate) async fn find(&self, css: &str) -> Option<String> {
        let mut request = self.http.post(format!("{}/element", self.session));
        request = request.json(&json!({ "using": "css selector", "value": css }));
        let answer: Value = request.send().await.expect("WebDriver request").json().await.expect("WebDriver JSON");
        answer["value"][ELEMENT].as_str().map(str::to_owned)
    }

    /// Clicks the element matching `css` (a link or a form's button) and waits for the page it
    /// leads to: a click may come back before the navigation it starts is over, and a machine
    /// under load would then read the page before.
    pub(crate) async fn click(&self, css: &str) {
        let before = self.find("body").await;
        let element = self.find(css).await.unwrap_or_else(|| panic!("no {css} on the page"));
        self.command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
        let ready = json!({ "script": "return document.readyState", "args": [] });
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let body = self.find("body").await;
            if body.is_some() && body != before {
                let state = self.try_command(reqwest::Method::POST, "/execute/sync", Some(ready.clone())).await;
                if state.is_ok_and(|state| state == json!("complete")) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "clicking {css} led to no new page within 15 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the element matching `css`.
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await.unwrap_or_else(|| panic!("no {css} on the page"));
        self.command(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({ "text": text }))).await;
    }

    /// Runs `script` in the page (W3C "execute async": its last argument is the callback
    /// that hands back the result).
    pub(crate) async fn execute_async(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "/execute/async", Some(json!({ "script": script, "args": [] }))).await
    }

    /// Saves a PNG of the page as `target/test-output/<name>.png`.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output");
        std::fs::create_dir_all(&dir).expect("output dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("screenshot written");
        path
    }
}
