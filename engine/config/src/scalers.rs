//! `scalers:`: what applies the decisions of scaling rules (a rule names one by its
//! `RULE.scaling.target`).
//!
//! ```yaml
//! scalers:
//!   - name: feature_extractor
//!     kind: ray_serve                 # Ray's REST API on the dashboard
//!     url: http://127.0.0.1:8265      # the default
//!     application: default            # the default
//!     deployment: FeatureExtractor
//!   - name: batch_workers
//!     kind: webhook                   # POSTs each decision as JSON
//!     url: https://ops.example.com/scale
//!     secret: ${SCALE_SECRET}         # optional: Standard Webhooks signature
//! ```
//!
//! One flat struct for both kinds (a handful of keys), so serde_yaml keeps the position of
//! every key; the check below refuses the keys that do not belong to the entry's kind.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Url;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::notifiers::webhook::decode_secret;
use crate::{HumanDuration, Seg};

/// One scaler: a unique name and how it applies a decision.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalerConfig {
    /// A unique name, given by scaling rules as their `target`.
    pub name: String,
    /// How decisions are applied.
    pub kind: ScalerKind,
    /// `webhook`: where to POST (required). `ray_serve`: the Ray dashboard's address
    /// (default `http://127.0.0.1:8265`).
    #[serde(default)]
    pub url: Option<String>,
    /// `webhook` only: a signing secret (Standard Webhooks, as the webhook notifier's).
    /// Without one, requests are unsigned.
    #[serde(default)]
    pub secret: Option<String>,
    /// `ray_serve` only: the Serve application (default `default`, Ray's own default).
    #[serde(default)]
    pub application: Option<String>,
    /// `ray_serve` only: the deployment whose `num_replicas` is set (required).
    #[serde(default)]
    pub deployment: Option<String>,
    /// The longest one request may take (each of Ray's GET and PUT).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

/// What a scaler does with a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScalerKind {
    /// POST the decision as JSON to `url`.
    Webhook,
    /// Set the deployment's `num_replicas` through Ray Serve's REST API
    /// (`PUT /api/serve/applications/`).
    RayServe,
}

impl ScalerKind {
    /// The name written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalerKind::Webhook => "webhook",
            ScalerKind::RayServe => "ray_serve",
        }
    }
}

/// The Ray dashboard's address when `url` is not given (`ray start --head`'s default).
pub const RAY_DASHBOARD_DEFAULT: &str = "http://127.0.0.1:8265";
/// Ray Serve's name of an application deployed without one.
pub const RAY_DEFAULT_APPLICATION: &str = "default";

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl ScalerConfig {
    /// The URL: `url`, or Ray's default dashboard for `ray_serve`; an http(s) URL with a
    /// host.
    pub fn endpoint(&self) -> Result<Url, String> {
        let text = match (&self.url, self.kind) {
            (Some(u), _) => u.as_str(),
            (None, ScalerKind::RayServe) => RAY_DASHBOARD_DEFAULT,
            (None, ScalerKind::Webhook) => return Err("a webhook scaler needs a `url`".into()),
        };
        match Url::parse(text) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => Err(format!(
                "scaler url scheme `{}` is not http or https",
                u.scheme()
            )),
            Ok(u) if u.host().is_none() => Err(format!("scaler url `{text}` has no host")),
            Ok(u) => Ok(u),
            Err(e) => Err(format!("scaler url `{text}` is not a valid URL: {e}")),
        }
    }

    /// The signing key's bytes (`webhook` with a `secret`), else `None`.
    pub fn signing_key(&self) -> Result<Option<Vec<u8>>, String> {
        self.secret
            .as_deref()
            .map(|s| decode_secret(s).map_err(|e| e.to_string()))
            .transpose()
    }

    /// The Serve application (`ray_serve`).
    pub fn application(&self) -> &str {
        self.application
            .as_deref()
            .unwrap_or(RAY_DEFAULT_APPLICATION)
    }
}

/// The scalers' part of the config's semantic check. Each problem goes to
/// `report(path, message, hint)`. Returns the scaler names.
pub(crate) fn check<'c>(
    scalers: &'c [ScalerConfig],
    report: &mut dyn FnMut(&[Seg], String, &str),
) -> HashSet<&'c str> {
    let mut names = HashSet::new();
    for (i, s) in scalers.iter().enumerate() {
        let at = |key: &str| [Seg::key("scalers"), Seg::Index(i), Seg::key(key)];
        if !crate::valid_name(&s.name) {
            report(
                &at("name"),
                format!("scaler name `{}` is not valid", s.name),
                "use letters, digits, `-` and `_`; scaling rules name it as `target`",
            );
        } else if !names.insert(s.name.as_str()) {
            report(
                &at("name"),
                format!("the scaler name `{}` is used twice", s.name),
                "scaler names must be unique",
            );
        }
        if let Err(message) = s.endpoint() {
            let hint = match s.kind {
                ScalerKind::Webhook => "write a full URL such as `https://ops.example.com/scale`",
                ScalerKind::RayServe => {
                    "the Ray dashboard's address, e.g. `http://127.0.0.1:8265` (the default)"
                }
            };
            let key = if s.url.is_some() { "url" } else { "kind" };
            report(&at(key), message, hint);
        }
        if s.timeout.get().is_zero() {
            report(
                &at("timeout"),
                "a scaler's timeout must be longer than zero".into(),
                "e.g. `timeout: 10s` (the default)",
            );
        }
        let kind = s.kind.as_str();
        let foreign = |key: &str| format!("`{key}` is not a setting of a `{kind}` scaler");
        match s.kind {
            ScalerKind::Webhook => {
                if let Err(e) = s.signing_key() {
                    report(
                        &at("secret"),
                        format!("scaler secret: {e}"),
                        "a Standard Webhooks secret is `whsec_` followed by base64; \
                         `${NAME}` takes it from the environment",
                    );
                }
                for (key, set) in [
                    ("application", s.application.is_some()),
                    ("deployment", s.deployment.is_some()),
                ] {
                    if set {
                        report(
                            &at(key),
                            foreign(key),
                            "it belongs to `kind: ray_serve`; remove it",
                        );
                    }
                }
            }
            ScalerKind::RayServe => {
                if s.secret.is_some() {
                    report(
                        &at("secret"),
                        foreign("secret"),
                        "Ray's REST API is not signed; remove it",
                    );
                }
                match &s.deployment {
                    Some(d) if !d.trim().is_empty() => {}
                    Some(_) => report(
                        &at("deployment"),
                        "`deployment` must not be empty".into(),
                        "",
                    ),
                    None => report(
                        &at("kind"),
                        "a `ray_serve` scaler needs `deployment`".into(),
                        "name the deployment whose replicas it sets, e.g. \
                         `deployment: FeatureExtractor`",
                    ),
                }
                if s.application
                    .as_deref()
                    .is_some_and(|a| a.trim().is_empty())
                {
                    report(
                        &at("application"),
                        "`application` must not be empty".into(),
                        "remove it to use Ray's `default` application",
                    );
                }
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use crate::tests::err;

    fn parse(src: &str) -> crate::Config {
        crate::parse(src, std::path::Path::new("t.yaml")).expect("parses")
    }

    #[test]
    fn scalers_parse_with_defaults() {
        let c = parse(
            "scalers:\n  - name: fe\n    kind: ray_serve\n    deployment: FeatureExtractor\n  - name: hook\n    kind: webhook\n    url: http://127.0.0.1:9/scale\n    timeout: 2s\n",
        );
        let [ray, hook] = &c.scalers[..] else {
            panic!("two scalers")
        };
        assert_eq!(ray.kind, super::ScalerKind::RayServe);
        assert_eq!(ray.endpoint().unwrap().as_str(), "http://127.0.0.1:8265/");
        assert_eq!(ray.application(), "default");
        assert_eq!(
            hook.endpoint().unwrap().as_str(),
            "http://127.0.0.1:9/scale"
        );
        assert_eq!(hook.timeout.get(), std::time::Duration::from_secs(2));
    }

    #[test]
    fn bad_scalers_are_reported_where_they_are_written() {
        // Positions are of the key a problem is about (column 5: inside `  - `).
        let out = err(
            "scalers:\n  - name: fe\n    kind: ray_serve\n    deployment: X\n  - name: fe\n    kind: webhook\n    url: ftp://x/\n    deployment: Y\n",
        );
        assert!(
            out.contains("t.yaml:5:5: error: the scaler name `fe` is used twice"),
            "{out}"
        );
        assert!(
            out.contains("t.yaml:7:5: error: scaler url scheme `ftp` is not http or https"),
            "{out}"
        );
        assert!(
            out.contains("t.yaml:8:5: error: `deployment` is not a setting of a `webhook` scaler"),
            "{out}"
        );
        let out = err("scalers:\n  - name: fe\n    kind: ray_serve\n");
        assert!(
            out.contains("t.yaml:3:5: error: a `ray_serve` scaler needs `deployment`"),
            "{out}"
        );
        let out = err("scalers:\n  - name: fe\n    kind: webhook\n");
        assert!(out.contains("a webhook scaler needs a `url`"), "{out}");
        let out = err("scalers:\n  - name: fe\n    kind: ray\n    deployment: X\n");
        assert!(out.contains("t.yaml:3:11"), "{out}");
        assert!(out.contains("unknown variant `ray`"), "{out}");
    }
}
