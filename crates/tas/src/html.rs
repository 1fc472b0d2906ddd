//! What ringer's web pages (sign-up, self-care) share: the page around the content (sized for
//! a phone, no external font, style or script), escaping, and reading a cookie.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// A whole page: `title` as its heading, `body` (HTML, escaped by the caller) under it.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:1em auto;padding:0 1em}}\
         label{{display:block;margin:.6em 0}}input[type=text],input[type=password],input[type=tel]{{width:100%;box-sizing:border-box;padding:.4em}}\
         button{{padding:.5em 1.2em;margin:.3em 0}}audio{{width:100%}}.error{{color:#b00}}.done{{color:#070}}\
         li{{margin:.8em 0}}a.button{{display:inline-block;padding:.8em 1.5em;background:#0a5;color:#fff;\
         text-decoration:none;border-radius:.3em}}</style><h1>{title}</h1>{body}</html>"
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// `text` safe inside HTML text and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Sets the cookie `value` (`name=...; attributes`) on `response`; one that is no header value
/// (ringer writes only ASCII ones) is left out.
pub(crate) fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_cookie_is_found_among_others_and_text_is_escaped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; ringer_signup_state=abc; b=2"));
        assert_eq!(cookie(&headers, "ringer_signup_state").as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "ringer_session"), None);
        assert_eq!(cookie(&HeaderMap::new(), "a"), None);
        assert_eq!(escape("<b a=\"x\">&"), "&lt;b a=&quot;x&quot;&gt;&amp;");
    }
}
