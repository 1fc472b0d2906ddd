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
