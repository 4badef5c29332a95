//! `kind: webhook`: signed JSON POSTed to a URL, and what makes those settings valid.
//!
//! The body is Telltale's own v1 payload by default; `format: alertmanager` sends
//! Alertmanager's webhook v4 body instead, for receivers written for Alertmanager.
//!
//! The rules live here, beside the settings, and both sides use them: the config's semantic
//! check reports `WebhookConfig::problems` with file:line:column, and the notifier in
//! `telltale-notify` builds its requests from [`WebhookConfig::endpoint`],
//! [`WebhookConfig::signing_key`] and [`WebhookConfig::extra_headers`], so it never sees a
//! value the check refuses and never needs its own copy of the rules.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Problem;
use crate::{HumanDuration, Seg};

/// Webhook notifier settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (http or https).
    pub url: String,
    /// Signing secret (Standard Webhooks: `whsec_` followed by base64). Use
    /// `${ENV_VAR}` to take it from the environment. Without one, requests are unsigned.
    #[serde(default)]
    pub secret: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one attempt.
    #[serde(default = "defaults::timeout")]
    pub timeout: HumanDuration,
    /// Attempts before giving up (the first one included).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time up to `max_backoff`.
    #[serde(default = "defaults::initial_backoff")]
    pub initial_backoff: HumanDuration,
    /// The longest delay between attempts.
    #[serde(default = "defaults::max_backoff")]
    pub max_backoff: HumanDuration,
    /// The body's format: `telltale` (the Telltale v1 payload, the default) or
    /// `alertmanager` (Alertmanager's webhook body, version 4). Signing and retries are the
    /// same for both.
    #[serde(default)]
    pub format: WebhookFormat,
    /// With `format: alertmanager`: the body's `externalURL`, a link back to this Telltale
    /// (for example its UI or API). Empty by default.
    #[serde(default)]
    pub external_url: String,
}

/// What a webhook POSTs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The Telltale v1 payload (`docs/webhook-payload-v1.schema.json`).
    #[default]
    Telltale,
    /// Alertmanager's webhook body, version 4, one alert per body.
    Alertmanager,
}

/// The prefix of a Standard Webhooks secret; the rest is the base64-encoded key.
pub const SECRET_PREFIX: &str = "whsec_";

/// Headers Telltale sets itself; configured extra headers may not replace them.
pub const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
];

/// Why a secret cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// `whsec_` followed by something that is not base64.
    #[error(
        "the part after `whsec_` is not valid base64 ({0}); generate one with `openssl rand -base64 32`"
    )]
    NotBase64(String),
    /// An empty key (nothing after `whsec_`, or an empty string).
    #[error("the secret is empty")]
    Empty,
}

/// The key bytes of a secret: `whsec_<base64>` gives the decoded bytes; any other string is
/// used as raw (UTF-8) key bytes, for receivers that share a plain password.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    let key = match secret.strip_prefix(SECRET_PREFIX) {
        Some(b64) => B64
            .decode(b64.trim())
            .map_err(|e| SecretError::NotBase64(e.to_string()))?,
        None => secret.as_bytes().to_vec(),
    };
    if key.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(key)
}

/// A problem with one configured header: its name as written and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderProblem {
    /// The header's name as written in the config.
    pub name: String,
    /// What is wrong with it.
    pub message: String,
}

/// Where the operator is sent when the URL is unusable.
const URL_HINT: &str = "write a full URL such as `https://example.com/hooks/telltale`";

impl WebhookConfig {
    /// The endpoint: `url` when it is an http(s) URL with a host.
    pub fn endpoint(&self) -> Result<Url, String> {
        match Url::parse(&self.url) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => Err(format!(
                "webhook url scheme `{}` is not http or https",
                u.scheme()
            )),
            Ok(u) if u.host().is_none() => Err(format!("webhook url `{}` has no host", self.url)),
            Ok(u) => Ok(u),
            Err(e) => Err(format!(
                "webhook url `{}` is not a valid URL: {e}",
                self.url
            )),
        }
    }

    /// The signing key's bytes, or `None` when no secret is configured (unsigned requests).
    pub fn signing_key(&self) -> Result<Option<Vec<u8>>, SecretError> {
        self.secret.as_deref().map(decode_secret).transpose()
    }

    /// The configured extra headers as a request header map.
    pub fn extra_headers(&self) -> Result<HeaderMap, HeaderProblem> {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let (name, value) = header(name, value).map_err(|message| HeaderProblem {
                name: name.clone(),
                message,
            })?;
            map.insert(name, value);
        }
        Ok(map)
    }

    /// Everything wrong with these settings that their types cannot express, each with the
    /// key it is about.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Err(message) = self.endpoint() {
            out.push(Problem::new(vec![Seg::key("url")], message, URL_HINT));
        }
        if let Err(e) = self.signing_key() {
            out.push(Problem::new(
                vec![Seg::key("secret")],
                format!("webhook secret: {e}"),
                "a Standard Webhooks secret is `whsec_` followed by base64; \
                 `${NAME}` takes it from the environment",
            ));
        }
        for (name, value) in &self.headers {
            if let Err(message) = header(name, value) {
                out.push(Problem::new(
                    vec![Seg::key("headers"), Seg::key(name)],
                    message,
                    "",
                ));
            }
        }
        if self.timeout.get().is_zero() {
            out.push(Problem::new(
                vec![Seg::key("timeout")],
                "webhook timeout must be longer than zero".into(),
                &format!(
                    "it bounds one attempt; remove it to use the default ({})",
                    defaults::timeout()
                ),
            ));
        }
        if self.max_backoff.get() < self.initial_backoff.get() {
            out.push(Problem::new(
                vec![Seg::key("max_backoff")],
                format!(
                    "max_backoff ({}) is shorter than initial_backoff ({})",
                    self.max_backoff, self.initial_backoff
                ),
                "the wait doubles from initial_backoff up to max_backoff: raise max_backoff \
                 or lower initial_backoff",
            ));
        }
        if !self.external_url.is_empty() {
            if self.format != WebhookFormat::Alertmanager {
                out.push(Problem::new(
                    vec![Seg::key("external_url")],
                    "external_url is only sent with `format: alertmanager`".into(),
                    "add `format: alertmanager`, or remove external_url",
                ));
            } else if !matches!(Url::parse(&self.external_url), Ok(u) if matches!(u.scheme(), "http" | "https"))
            {
                out.push(Problem::new(
                    vec![Seg::key("external_url")],
                    format!("external_url `{}` is not an http(s) URL", self.external_url),
                    "write a full URL such as `https://telltale.example.com`, or remove it \
                     (receivers then get an empty `externalURL`)",
                ));
            }
        }
        if self.max_attempts == 0 {
            out.push(Problem::new(
                vec![Seg::key("max_attempts")],
                "max_attempts must be at least 1".into(),
                "it counts the first attempt too; 1 means no retries",
            ));
        }
        out
    }
}

/// One configured header, checked: a valid name that Telltale does not set itself, and a
/// valid value.
fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&parsed.as_str()) {
        return Err(format!(
            "header `{name}` is set by Telltale itself and cannot be configured"
        ));
    }
    let value = HeaderValue::from_str(value).map_err(|_| {
        format!("the value of header `{name}` is not a valid header value (control characters?)")
    })?;
    Ok((parsed, value))
}

/// Defaults of the webhook settings.
mod defaults {
    use crate::HumanDuration;
    use std::time::Duration;

    pub(super) fn timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub(super) fn max_attempts() -> u32 {
        6
    }
    pub(super) fn initial_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    pub(super) fn max_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
}
