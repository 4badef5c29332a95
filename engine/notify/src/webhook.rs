//! The webhook notifier: POSTs the signed v1 payload (or, with `format: alertmanager`,
//! Alertmanager's v4 body), retrying transient failures.
//!
//! Both formats are signed the same way when a secret is configured and retried the same
//! way; only the body differs.
//!
//! Retried: 5xx, 429, 408, connection errors and timeouts, with exponential backoff
//! (`initial_backoff`, doubling up to `max_backoff`, ±20% jitter so that many senders do not
//! retry in lockstep) or the receiver's `Retry-After` (capped at `max_backoff`). Any other
//! non-2xx answer is a permanent failure: retrying a 400 or 401 only repeats it.
//! The id and body are the same on every attempt (receivers dedupe on `webhook-id`); the
//! timestamp and signature are fresh per attempt so the signature stays within the
//! receiver's replay tolerance.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use reqwest::{StatusCode, Url};

use crate::alertmanager::AlertmanagerMessage;
use crate::notifier::{Delivery, DeliveryFuture, Notifier};
use crate::payload::WebhookPayload;
use crate::preview::{Preview, RequestPreview, is_credential_header, pretty_body, shown_url};
use crate::signing::SigningKey;
use telltale_config::WebhookConfig;
use telltale_config::notifiers::webhook::WebhookFormat;
use telltale_model::Notification;

/// One configured webhook endpoint.
#[derive(Debug, Clone)]
pub struct WebhookNotifier {
    name: String,
    url: Url,
    key: Option<SigningKey>,
    headers: HeaderMap,
    timeout: Duration,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    format: WebhookFormat,
    external_url: String,
    client: reqwest::Client,
}

/// What one attempt ended with.
enum Attempt {
    Ok,
    Retry {
        last: String,
        after: Option<Duration>,
    },
    Permanent {
        last: String,
    },
}

impl WebhookNotifier {
    /// Builds the notifier and its HTTP client. `name` is the notifier's name, used in logs.
    ///
    /// The settings are expected to have passed the config's check, which refuses every
    /// value this reads through `WebhookConfig` (URL, secret, headers, a zero timeout or
    /// attempt count) with its position; those are still errors here, never panics. What only
    /// fails now is the HTTP client's construction (its TLS backend).
    pub fn new(name: &str, cfg: &WebhookConfig) -> Result<WebhookNotifier, String> {
        let url = cfg.endpoint()?;
        let key = match cfg.signing_key() {
            Ok(Some(bytes)) => {
                Some(SigningKey::from_bytes(bytes).map_err(|e| format!("webhook secret: {e}"))?)
            }
            Ok(None) => None,
            Err(e) => return Err(format!("webhook secret: {e}")),
        };
        let mut headers = cfg.extra_headers().map_err(|p| p.message)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("telltale/", env!("CARGO_PKG_VERSION"))),
        );
        let client = reqwest::Client::builder()
            // A redirect could carry signed alerts to another host; receivers must give the
            // final URL.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.timeout.get())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(WebhookNotifier {
            name: name.to_string(),
            url,
            key,
            headers,
            timeout: cfg.timeout.get(),
            max_attempts: cfg.max_attempts,
            initial_backoff: cfg.initial_backoff.get(),
            max_backoff: cfg.max_backoff.get(),
            format: cfg.format,
            external_url: cfg.external_url.clone(),
            client,
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The body of one notification in the configured format.
    pub fn body(&self, n: &Notification) -> Vec<u8> {
        match self.format {
            WebhookFormat::Telltale => WebhookPayload::from_notification(n).to_json(),
            WebhookFormat::Alertmanager => {
                AlertmanagerMessage::from_notification(n, &self.name, &self.external_url).to_json()
            }
        }
    }

    /// Delivers one notification, retrying as described in the module docs. Logs the
    /// outcome of failures; never panics. Cancel-safe: dropping the future abandons the
    /// delivery (the notification then stays undone in the dispatcher's outbox).
    pub async fn deliver(&self, n: &Notification) -> Delivery {
        let body = self.body(n);
        let mut backoff = self.initial_backoff;
        let mut attempts = 0;
        let mut last = String::new();
        while attempts < self.max_attempts {
            attempts += 1;
            match self.attempt(&n.id, &body).await {
                Attempt::Ok => {
                    tracing::debug!(notifier = %self.name, id = %n.id, attempts, "webhook delivered");
                    return Delivery::Delivered { attempts };
                }
                Attempt::Permanent { last } => {
                    tracing::error!(
                        notifier = %self.name,
                        alert = %n.alert.rule,
                        fingerprint = %n.alert.fingerprint,
                        id = %n.id,
                        last = %last,
                        "webhook rejected the notification; not retrying (fix the receiver or the config)"
                    );
                    return Delivery::Failed { attempts, last };
                }
                Attempt::Retry { last: l, after } => {
                    last = l;
                    if attempts >= self.max_attempts {
                        break;
                    }
                    let delay = match after {
                        Some(d) => d.min(self.max_backoff),
                        None => jitter(backoff).min(self.max_backoff),
                    };
                    tracing::warn!(
                        notifier = %self.name,
                        alert = %n.alert.rule,
                        id = %n.id,
                        attempt = attempts,
                        last = %last,
                        retry_in = ?delay,
                        "webhook attempt failed; will retry"
                    );
                    tokio::time::sleep(delay).await;
                    backoff = backoff.saturating_mul(2).min(self.max_backoff);
                }
            }
        }
        tracing::error!(
            notifier = %self.name,
            alert = %n.alert.rule,
            fingerprint = %n.alert.fingerprint,
            id = %n.id,
            attempts,
            last = %last,
            "webhook delivery failed; giving up"
        );
        Delivery::Failed { attempts, last }
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Attempt {
        let timestamp = unix_now();
        let mut req = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            req = req.header("webhook-signature", key.sign(id, timestamp, body));
        }
        let resp = match req.body(body.to_vec()).send().await {
            Ok(r) => r,
            Err(e) => {
                // Logged: the URL may carry a token (chat services put it in the path).
                let e = e.without_url();
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                return Attempt::Retry {
                    last: format!("{kind}: {}", error_chain(&e)),
                    after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Ok;
        }
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // A little of the body helps whoever reads the log; bounded, and a slow or broken
        // body must not turn a clear status into a confusing error.
        let text = tokio::time::timeout(Duration::from_secs(1), resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        let last = if snippet.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", snippet.trim())
        };
        if retryable(status) {
            Attempt::Retry { last, after }
        } else if status.is_redirection() {
            Attempt::Permanent {
                last: format!("{last} (redirects are not followed; configure the final URL)"),
            }
        } else {
            Attempt::Permanent { last }
        }
    }
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliveryFuture<'a> {
        Box::pin(WebhookNotifier::deliver(self, n))
    }

    /// The first attempt's request: the headers [`attempt`](WebhookNotifier::deliver)
    /// sets, signed now, with credential-like configured headers hidden.
    fn preview(&self, n: &Notification) -> Preview {
        let body = self.body(n);
        let timestamp = unix_now();
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_credential_header(name.as_str()) {
                    "<hidden>".to_string()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_string(), shown)
            })
            .collect();
        headers.push(("webhook-id".into(), n.id.clone()));
        headers.push(("webhook-timestamp".into(), timestamp.to_string()));
        if let Some(key) = &self.key {
            headers.push((
                "webhook-signature".into(),
                key.sign(&n.id, timestamp, &body),
            ));
        }
        Preview::Request(RequestPreview {
            method: "POST".into(),
            url: shown_url(&self.url),
            headers,
            body: pretty_body(&body),
        })
    }
}

/// Seconds since the Unix epoch, for `webhook-timestamp` (0 on a clock before 1970).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether a status is worth retrying: the receiver is overloaded, timing out, or broken
/// for now.
fn retryable(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT
}

/// ±20% so that many senders that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..=1.2))
}

/// `Retry-After` as delay-seconds or an HTTP date (IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, and the obsolete RFC 850 and asctime forms RFC 9110
/// asks recipients to accept); a date in the past means "now".
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::verify;
    use crate::testutil::{Receiver, Reply, dead_url, notification};
    use std::collections::BTreeMap;
    use std::time::Instant;
    use telltale_config::HumanDuration;
    use telltale_model::AlertStatus;

    const SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";

    pub(crate) fn config(url: &str) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: Some(SECRET.into()),
            headers: BTreeMap::from([("x-team".into(), "ops".into())]),
            timeout: HumanDuration(Duration::from_millis(500)),
            max_attempts: 3,
            initial_backoff: HumanDuration(Duration::from_millis(50)),
            max_backoff: HumanDuration(Duration::from_millis(200)),
            format: WebhookFormat::Telltale,
            external_url: String::new(),
        }
    }

    fn ok() -> Reply {
        Reply::Status(200, vec![])
    }

    #[tokio::test]
    async fn retries_5xx_with_same_id_and_fresh_valid_signatures() {
        let rx = Receiver::start(
            vec![Reply::Status(500, vec![]), Reply::Status(503, vec![])],
            ok(),
        )
        .await;
        let w = WebhookNotifier::new("ops", &config(&rx.url)).unwrap();
        let n = notification("id-500", 97.2, AlertStatus::Firing);
        let got = tokio::time::timeout(Duration::from_secs(10), w.deliver(&n))
            .await
            .unwrap();
        assert_eq!(got, Delivery::Delivered { attempts: 3 });
        let reqs = rx.received();
        assert_eq!(reqs.len(), 3);
        for r in &reqs {
            assert_eq!(r.headers["webhook-id"], "id-500");
            assert_eq!(r.headers["content-type"], "application/json");
            assert_eq!(r.headers["x-team"], "ops");
            assert_eq!(
                r.headers["user-agent"],
                concat!("telltale/", env!("CARGO_PKG_VERSION"))
            );
            verify(SECRET, &r.headers, &r.body).unwrap();
            assert_eq!(r.body, reqs[0].body, "same body on every attempt");
            let p: WebhookPayload = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(p.id, "id-500");
        }
        // A signature is bound to its own timestamp: moving it breaks verification.
        let mut tampered = reqs[0].headers.clone();
        let ts: i64 = tampered["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        tampered.insert("webhook-timestamp", (ts + 1).to_string().parse().unwrap());
        assert!(verify(SECRET, &tampered, &reqs[0].body).is_err());
        // Backoff: ~50ms then ~100ms (±20%).
        let gap1 = reqs[1].at - reqs[0].at;
        let gap2 = reqs[2].at - reqs[1].at;
        assert!(gap1 >= Duration::from_millis(40), "{gap1:?}");
        assert!(gap2 >= Duration::from_millis(80), "{gap2:?}");
    }

    #[tokio::test]
    async fn honours_retry_after_on_429() {
        let rx = Receiver::start(
            vec![Reply::Status(429, vec![("retry-after", "1".into())])],
            ok(),
        )
        .await;
        let mut cfg = config(&rx.url);
        cfg.max_backoff = HumanDuration(Duration::from_secs(5));
        let w = WebhookNotifier::new("ops", &cfg).unwrap();
        let n = notification("id-429", 1.0, AlertStatus::Firing);
        let got = tokio::time::timeout(Duration::from_secs(10), w.deliver(&n))
            .await
            .unwrap();
        assert_eq!(got, Delivery::Delivered { attempts: 2 });
        let reqs = rx.received();
        let gap = reqs[1].at - reqs[0].at;
        assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
        assert!(gap < Duration::from_secs(3), "waited {gap:?}");
    }

    #[tokio::test]
    async fn retry_after_is_capped_by_max_backoff() {
        let rx = Receiver::start(
            vec![Reply::Status(503, vec![("retry-after", "3600".into())])],
            ok(),
        )
        .await;
        let w = WebhookNotifier::new("ops", &config(&rx.url)).unwrap();
        let n = notification("id-cap", 1.0, AlertStatus::Firing);
        let got = tokio::time::timeout(Duration::from_secs(5), w.deliver(&n))
            .await
            .unwrap();
        assert_eq!(got, Delivery::Delivered { attempts: 2 });
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let rx = Receiver::start(vec![Reply::Status(400, vec![])], ok()).await;
        let w = WebhookNotifier::new("ops", &config(&rx.url)).unwrap();
        let n = notification("id-400", 1.0, AlertStatus::Firing);
        let got = tokio::time::timeout(Duration::from_secs(5), w.deliver(&n))
            .await
            .unwrap();
        match got {
            Delivery::Failed { attempts: 1, last } => assert!(last.contains("400"), "{last}"),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.received().len(), 1);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let rx = Receiver::start(
            vec![Reply::Status(
                307,
                vec![("location", "http://127.0.0.1:1/elsewhere".into())],
            )],
            ok(),
        )
        .await;
        let w = WebhookNotifier::new("ops", &config(&rx.url)).unwrap();
        let got = w
            .deliver(&notification("id-307", 1.0, AlertStatus::Firing))
            .await;
        assert!(
            matches!(got, Delivery::Failed { attempts: 1, .. }),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out_and_gives_up() {
        let rx = Receiver::start(vec![], Reply::Hang).await;
        let mut cfg = config(&rx.url);
        cfg.timeout = HumanDuration(Duration::from_millis(200));
        let w = WebhookNotifier::new("ops", &cfg).unwrap();
        let start = Instant::now();
        let n = notification("id-hang", 1.0, AlertStatus::Firing);
        let got = tokio::time::timeout(Duration::from_secs(5), w.deliver(&n))
            .await
            .unwrap();
        let took = start.elapsed();
        match got {
            Delivery::Failed { attempts: 3, last } => assert!(last.contains("timed out"), "{last}"),
            other => panic!("{other:?}"),
        }
        // 3 × 200ms timeouts + ~50ms + ~100ms backoff.
        assert!(took >= Duration::from_millis(600), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(rx.received().len(), 3);
    }

    #[tokio::test]
    async fn connection_refused_is_retried() {
        let (dead, _guard) = dead_url();
        let w = WebhookNotifier::new("ops", &config(&dead)).unwrap();
        let got = w
            .deliver(&notification("id-dead", 1.0, AlertStatus::Firing))
            .await;
        match got {
            Delivery::Failed { attempts: 3, last } => assert!(last.contains("connect"), "{last}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failure_is_told_without_the_url_a_token_may_be_in() {
        let (dead, _guard) = dead_url();
        let url = dead.replace("/hook", "/services/T0KEN-SECRET?key=QUERY-SECRET");
        let w = WebhookNotifier::new("ops", &config(&url)).unwrap();
        match w
            .deliver(&notification("id-t", 1.0, AlertStatus::Firing))
            .await
        {
            Delivery::Failed { last, .. } => {
                assert!(last.contains("connect"), "{last}");
                assert!(!last.contains("SECRET"), "{last}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unsigned_without_a_secret() {
        let rx = Receiver::start(vec![], ok()).await;
        let mut cfg = config(&rx.url);
        cfg.secret = None;
        let w = WebhookNotifier::new("ops", &cfg).unwrap();
        w.deliver(&notification("id-u", 1.0, AlertStatus::Firing))
            .await;
        let r = &rx.received()[0];
        assert!(r.headers.get("webhook-signature").is_none());
        assert_eq!(r.headers["webhook-id"], "id-u");
        assert!(r.headers.get("webhook-timestamp").is_some());
    }

    /// The Python verification snippet in docs/webhooks.md accepts a real request and
    /// rejects a tampered one. Skipped (with a note) where `python3` is not installed.
    #[tokio::test]
    async fn the_documented_python_snippet_verifies_a_real_request() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/webhooks.md"),
        )
        .unwrap();
        let snippet = doc
            .split("```python\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/webhooks.md has a ```python block");
        let rx = Receiver::start(vec![], ok()).await;
        let w = WebhookNotifier::new("ops", &config(&rx.url)).unwrap();
        w.deliver(&notification("id-py", 97.2, AlertStatus::Firing))
            .await;
        let r = rx.received().remove(0);
        let dir = tempfile::tempdir().unwrap();
        let headers: BTreeMap<&str, &str> =
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
                .into_iter()
                .map(|k| (k, r.headers[k].to_str().unwrap()))
                .collect();
        std::fs::write(
            dir.path().join("headers.json"),
            serde_json::to_vec(&headers).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("body"), &r.body).unwrap();
        let mut tampered = r.body.clone();
        tampered.push(b' ');
        std::fs::write(dir.path().join("tampered"), &tampered).unwrap();
        let script = format!(
            "{snippet}\nimport json, sys\nh = json.load(open('headers.json'))\n\
             print(verify('{SECRET}', h, open('body', 'rb').read()), \
             verify('{SECRET}', h, open('tampered', 'rb').read()))\n"
        );
        let out = match std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("python3 not available ({e}); skipping the snippet check");
                return;
            }
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True False");
    }

    #[test]
    fn preview_shows_the_signed_request_without_secrets() {
        let mut cfg = config("http://127.0.0.1:9/services/T0KEN?key=QUERY");
        cfg.headers
            .insert("authorization".into(), "Bearer BEARER-TOKEN".into());
        let w = WebhookNotifier::new("ops", &cfg).unwrap();
        let n = notification("id-p", 97.2, AlertStatus::Firing);
        let Preview::Request(r) = Notifier::preview(&w, &n) else {
            panic!("a webhook previews a request");
        };
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "http://127.0.0.1:9/… (path hidden)");
        let h: BTreeMap<&str, &str> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(h["x-team"], "ops");
        assert_eq!(h["authorization"], "<hidden>");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["webhook-id"], "id-p");
        // The shown signature is the one a receiver would verify: rebuild the request from
        // the preview and check it with the secret, as a receiver does.
        let mut headers = HeaderMap::new();
        for k in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            headers.insert(k, h[k].parse().unwrap());
        }
        verify(SECRET, &headers, &w.body(&n)).unwrap();
        // The body is the v1 payload, pretty-printed (one field per line).
        let p: WebhookPayload = serde_json::from_str(&r.body).unwrap();
        assert_eq!(p.id, "id-p");
        assert!(r.body.contains("\n  \"id\": \"id-p\""), "{}", r.body);
        let text = Preview::Request(r).to_string();
        for secret in ["T0KEN", "QUERY", "BEARER-TOKEN", SECRET, "c2VjcmV0"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn preview_of_the_alertmanager_format() {
        let mut cfg = config("http://127.0.0.1:9093");
        cfg.format = WebhookFormat::Alertmanager;
        cfg.secret = None;
        let w = WebhookNotifier::new("am", &cfg).unwrap();
        let n = notification("id-am", 97.2, AlertStatus::Firing);
        let Preview::Request(r) = Notifier::preview(&w, &n) else {
            panic!("a webhook previews a request");
        };
        // No path: nothing to hide.
        assert_eq!(r.url, "http://127.0.0.1:9093/");
        assert!(!r.headers.iter().any(|(k, _)| k == "webhook-signature"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&w.body(&n)).unwrap();
        assert_eq!(v, sent);
        assert_eq!(v["version"], "4");
        assert_eq!(v["alerts"][0]["labels"]["alertname"], "high_cpu");
    }

    #[test]
    fn retry_after_parses() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        // The obsolete forms HTTP/1.1 recipients must accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:47 1994", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 CET", now),
            None
        );
        assert_eq!(
            parse_retry_after("Sun, 31 Feb 1994 08:49:47 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn jitter_stays_within_20_percent() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!((800..=1200).contains(&d.as_millis()), "{d:?}");
        }
    }
}
