//! Reading what a running `ringer serve` shows over HTTP: status pages and the Prometheus
//! exposition of `/metrics`.

use std::time::{Duration, Instant};

/// The value of the sample `name{labels}` (labels in any order; all of `labels` must match),
/// summed over the matching lines; 0 when there is none.
pub(crate) fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(key, wanted)| label_text.split(',').any(|pair| pair.trim() == format!("{key}=\"{wanted}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// `GET url`: the status and the body (status 0 and the error when there is no answer).
pub(crate) async fn get(url: &str) -> (u16, String) {
    // reqwest's TLS needs the process's one crypto provider, even for plain http.
    ringer::tls::install_crypto_provider();
    match reqwest::get(url).await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(error) => (0, error.to_string()),
    }
}

/// Asks `url` until it answers `status` (15 s at most, else fails with `what`); its body.
pub(crate) async fn until_status(url: &str, status: u16, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (got, body) = get(url).await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {url} answered {got}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
