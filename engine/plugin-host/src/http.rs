//! The `http` capability: HTTP GET to the `host:port` pairs of a plugin's `grants.http`.
//!
//! * **Grant check before any connection.** The URL must be `http` or `https` and its host
//!   and port (the scheme's default when absent) must match a grant exactly as written:
//!   `localhost:9100` does not grant `127.0.0.1:9100`. Nothing is resolved or connected for
//!   an ungranted URL.
//! * **Redirects** are followed (at most [`MAX_REDIRECTS`]) only to granted pairs: the
//!   client's redirect policy applies the same check to every hop.
//! * **Bounded.** The request runs under the calling plugin's remaining call deadline (so a
//!   slow server fails the request, not the engine), and the body is read in chunks and
//!   refused once it passes `limits.max_http_body`.
//! * **No proxy.** Proxy environment variables are ignored: a proxy would make the host
//!   connect somewhere the grant does not name.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Url, redirect};

use super::bindings::http;
use super::error::format_bytes;
use super::instance::StoreState;

/// The most redirects one request follows.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// The most request headers a plugin may set on one request.
const MAX_REQUEST_HEADERS: usize = 64;

/// One granted `host:port` pair, normalised (lower case, IPv6 without brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpGrant {
    host: String,
    port: u16,
}

impl HttpGrant {
    /// Parses a grant as written in the config: `127.0.0.1:9100`, `localhost:8000`,
    /// `[::1]:9090`. The error says how to write it.
    pub(crate) fn parse(grant: &str) -> Result<HttpGrant, String> {
        let how = "write each `grants.http` entry as `HOST:PORT`, e.g. `127.0.0.1:9100` or \
                   `localhost:8000` (no scheme, no path)";
        if grant.contains("://") || grant.contains('/') {
            return Err(format!("`{grant}` is not a `HOST:PORT` pair: {how}"));
        }
        let Some((host, port)) = grant.rsplit_once(':') else {
            return Err(format!("`{grant}` has no port: {how}"));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{grant}` has an invalid port `{port}`: {how}"))?;
        let host = normalise_host(host);
        if host.is_empty() || host.contains(['[', ']']) {
            return Err(format!("`{grant}` has an invalid host: {how}"));
        }
        Ok(HttpGrant { host, port })
    }
}

/// Lower case, IPv6 brackets removed: the form grants and URLs are compared in.
fn normalise_host(host: &str) -> String {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_ascii_lowercase()
}

/// Checks `url` against `grants`; the error names the pair and the grant to add.
fn check_url(instance: &str, grants: &[HttpGrant], url: &Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "`{url}`: only http and https URLs may be fetched, not `{other}:`"
            ));
        }
    }
    let Some(host) = url.host_str() else {
        return Err(format!("`{url}` has no host"));
    };
    let Some(port) = url.port_or_known_default() else {
        return Err(format!("`{url}` has no port"));
    };
    let host = normalise_host(host);
    if grants.iter().any(|g| g.host == host && g.port == port) {
        return Ok(());
    }
    let pair = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Err(format!(
        "`{pair}` is not granted to plugin `{instance}`; to allow it, add it to the entry: \
         `grants: {{ http: [\"{pair}\"] }}`"
    ))
}

/// One instance's HTTP client: its grants, its redirect policy and its body cap.
#[derive(Debug)]
pub(crate) struct HttpClient {
    instance: String,
    grants: Arc<Vec<HttpGrant>>,
    client: Client,
    max_body: u64,
}

impl HttpClient {
    /// A client for `instance` allowed to reach `grants` (as written in the config). The
    /// error names the grant that cannot be parsed.
    pub(crate) fn new(instance: &str, grants: &[String], max_body: u64) -> Result<Self, String> {
        let grants = Arc::new(
            grants
                .iter()
                .map(|g| HttpGrant::parse(g))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let policy = {
            let grants = Arc::clone(&grants);
            let instance = instance.to_string();
            redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    let message = format!("more than {MAX_REDIRECTS} redirects");
                    return attempt.error(message);
                }
                match check_url(&instance, &grants, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(message) => attempt.error(format!("redirect refused: {message}")),
                }
            })
        };
        let client = Client::builder()
            .redirect(policy)
            .no_proxy()
            .user_agent(format!(
                "telltale/{} (plugin {instance})",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {e}"))?;
        Ok(HttpClient {
            instance: instance.to_string(),
            grants,
            client,
            max_body,
        })
    }

    /// `http.get`: fetches `url` within `timeout`. Every failure is a message for the
    /// plugin (it decides whether that fails its call).
    pub(crate) async fn get(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<http::Response, String> {
        let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
        check_url(&self.instance, &self.grants, &parsed)?;
        let headers = request_headers(headers)?;
        if timeout.is_zero() {
            return Err(format!("GET {url}: the call's deadline has already passed"));
        }
        let fetch =
            async {
                let mut response = self
                    .client
                    .get(parsed)
                    .headers(headers)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url} failed: {}", error_chain(&e)))?;
                let too_big = || {
                    format!(
                        "GET {url}: the response body is larger than limits.max_http_body = {}",
                        format_bytes(self.max_body)
                    )
                };
                if response.content_length().is_some_and(|n| n > self.max_body) {
                    return Err(too_big());
                }
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| {
                    format!("GET {url}: reading the body failed: {}", error_chain(&e))
                })? {
                    if (body.len() + chunk.len()) as u64 > self.max_body {
                        return Err(too_big());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(http::Response {
                    status,
                    headers,
                    body,
                })
            };
        // reqwest's timeout covers connecting and the body; this one also covers the name
        // lookup, so the host call never outlives the plugin's deadline.
        tokio::time::timeout(timeout, fetch)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "GET {url}: no complete response within the {} left of the call's deadline",
                    humantime::format_duration(Duration::from_millis(timeout.as_millis() as u64))
                ))
            })
    }
}

/// The plugin's request headers, checked: valid names and values, at most
/// [`MAX_REQUEST_HEADERS`], and no `host` (the grant names the host).
fn request_headers(headers: Vec<(String, String)>) -> Result<HeaderMap, String> {
    if headers.len() > MAX_REQUEST_HEADERS {
        return Err(format!(
            "{} request headers; at most {MAX_REQUEST_HEADERS} are allowed",
            headers.len()
        ));
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        if header == reqwest::header::HOST {
            return Err("the `host` header cannot be set: it is the URL's host".to_string());
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of header `{name}` is not valid"))?;
        map.append(header, value);
    }
    Ok(map)
}

/// An error with its causes (reqwest's own message omits them: "error sending request").
fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

impl http::Host for StoreState {
    async fn get(
        &mut self,
        url: String,
        headers: Vec<(String, String)>,
    ) -> Result<http::Response, String> {
        let Some(client) = self.caps.http.as_ref() else {
            // Components without the grant are refused at load time; this is a safety net.
            return Err(format!(
                "plugin `{}` has no `http` grant; add `grants: {{ http: [\"HOST:PORT\"] }}` \
                 to its entry",
                self.caps.instance
            ));
        };
        let timeout = self.deadline.remaining();
        client.get(&url, headers, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_explain_mistakes() {
        assert_eq!(
            HttpGrant::parse("LocalHost:8000").unwrap(),
            HttpGrant {
                host: "localhost".into(),
                port: 8000
            }
        );
        assert_eq!(HttpGrant::parse("[::1]:9090").unwrap().host, "::1");
        for bad in ["http://x:1", "x", "x:port", ":80", "x:1/metrics", "x:70000"] {
            let err = HttpGrant::parse(bad).unwrap_err();
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
    }

    #[test]
    fn urls_must_match_a_grant_exactly() {
        let grants = vec![
            HttpGrant::parse("127.0.0.1:9100").unwrap(),
            HttpGrant::parse("example.com:443").unwrap(),
            HttpGrant::parse("[::1]:80").unwrap(),
        ];
        let ok = |u: &str| check_url("p", &grants, &Url::parse(u).unwrap());
        ok("http://127.0.0.1:9100/metrics").unwrap();
        ok("https://EXAMPLE.com/x").unwrap();
        ok("http://[::1]/").unwrap();
        let err = ok("http://localhost:9100/").unwrap_err();
        assert_eq!(
            err,
            "`localhost:9100` is not granted to plugin `p`; to allow it, add it to the entry: \
             `grants: { http: [\"localhost:9100\"] }`"
        );
        assert!(ok("http://example.com/").is_err(), "port 80 is not 443");
        assert!(
            ok("ftp://127.0.0.1:9100/")
                .unwrap_err()
                .contains("only http and https")
        );
        assert!(ok("http://[::1]:81/").unwrap_err().contains("`[::1]:81`"));
    }

    #[test]
    fn request_headers_are_checked() {
        assert!(request_headers(vec![("accept".into(), "text/plain".into())]).is_ok());
        assert!(request_headers(vec![("Host".into(), "x".into())]).is_err());
        assert!(request_headers(vec![("bad name".into(), "x".into())]).is_err());
        assert!(request_headers(vec![("a".into(), "x\ny".into())]).is_err());
    }
}
