//! What a notifier would send, shown without sending it ([`Notifier::preview`]): for
//! `telltale notify preview`, so that an operator sees the request a receiver will get
//! before wiring it up.
//!
//! A preview never shows a secret: the webhook's signing secret is not in it (the signature
//! it made is), configured headers that usually carry credentials have their values
//! hidden, and a URL's path and query (where chat services put their tokens) are replaced
//! by `…`.
//!
//! [`Notifier::preview`]: crate::Notifier::preview

use std::fmt;

use reqwest::Url;

/// What one notifier would send for one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    /// An HTTP request (webhook).
    Request(RequestPreview),
    /// A line written to standard output (console).
    Line(String),
    /// The kind cannot describe what it sends (the trait's default).
    Unavailable {
        /// The notifier's kind, for the message.
        kind: &'static str,
    },
}

/// An HTTP request as it would be sent, secrets left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPreview {
    /// `POST`.
    pub method: String,
    /// The URL with its path and query hidden when it has any ([`shown_url`]).
    pub url: String,
    /// Header names and values, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body; JSON pretty-printed.
    pub body: String,
}

impl fmt::Display for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preview::Request(r) => {
                writeln!(f, "{} {}", r.method, r.url)?;
                for (name, value) in &r.headers {
                    writeln!(f, "{name}: {value}")?;
                }
                writeln!(f)?;
                write!(f, "{}", r.body)
            }
            Preview::Line(line) => write!(f, "{line}"),
            Preview::Unavailable { kind } => {
                write!(f, "(a {kind} notifier cannot show what it would send)")
            }
        }
    }
}

/// `scheme://host:port/` when the URL has no path or query; otherwise
/// `scheme://host:port/… (path hidden)`, since a path or query may carry a token. A user
/// name and password in the URL are never shown.
pub fn shown_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let origin = match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let bare = matches!(url.path(), "" | "/") && url.query().is_none();
    if bare {
        format!("{origin}/")
    } else {
        format!("{origin}/… (path hidden)")
    }
}

/// Whether a configured header's value usually is a credential (then a preview hides it).
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth", "token", "secret", "key", "password", "cookie", "session",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// JSON bytes pretty-printed; anything else as text.
pub(crate) fn pretty_body(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hide_path_and_query_and_credentials() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            shown_url(&u("http://127.0.0.1:9000")),
            "http://127.0.0.1:9000/"
        );
        // The default port is spelled out so the reader sees where it goes.
        assert_eq!(
            shown_url(&u("https://hooks.example/")),
            "https://hooks.example:443/"
        );
        assert_eq!(
            shown_url(&u("https://user:pw@hooks.example/services/T0KEN")),
            "https://hooks.example:443/… (path hidden)"
        );
        assert_eq!(
            shown_url(&u("http://h:8080/?key=SECRET")),
            "http://h:8080/… (path hidden)"
        );
    }

    #[test]
    fn credential_headers_are_recognised() {
        for name in ["Authorization", "x-api-key", "X-Auth-Token", "cookie"] {
            assert!(is_credential_header(name), "{name}");
        }
        for name in ["x-team", "content-type", "webhook-signature"] {
            assert!(!is_credential_header(name), "{name}");
        }
    }
}
