//! Scalers: what applies a decision to the world, built from a `scalers:` entry.
//!
//! * `webhook`: POSTs the [`ScalingDecision`] as JSON, with `webhook-id` and
//!   `webhook-timestamp`, and `webhook-signature` when a secret is configured (the Standard
//!   Webhooks scheme of the webhook notifier, computed here with the same key the config
//!   decodes: this crate may not depend on `telltale-notify`). It cannot tell the current
//!   replica count.
//! * `ray_serve`: Ray Serve's REST API on the dashboard. `GET /api/serve/applications/`
//!   gives every application's details; the deployment's `target_num_replicas` is the
//!   current count. `PUT /api/serve/applications/` is declarative and takes *every*
//!   application (those left out are deleted), so the PUT body is the running config as
//!   Ray reports it (`deployed_app_config` of each application, and the proxy, HTTP and
//!   gRPC options) with only the deployment's `num_replicas` changed. Refused, with the
//!   reason: an application deployed from Python (`serve.run`, no `deployed_app_config`:
//!   the PUT would delete it), and a deployment with an `autoscaling_config` (Ray's own
//!   autoscaler decides its replicas; Ray refuses `num_replicas` beside it).
//!
//! Every request has the scaler's timeout; errors name the scaler, never a secret.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use reqwest::Url;
use serde_json::{Value, json};
use sha2::Sha256;

use telltale_config::scalers::{ScalerConfig, ScalerKind};
use telltale_model::ScalingDecision;

/// Why a scaler could not read or apply.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    /// The request failed or timed out, or the answer was not what was expected.
    #[error("scaler `{scaler}`: {message}")]
    Failed {
        /// The scaler's name.
        scaler: String,
        /// What went wrong.
        message: String,
    },
}

/// A built scaler: its name and what it talks to.
#[derive(Debug, Clone)]
pub struct Scaler {
    name: String,
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Webhook {
        key: Option<Vec<u8>>,
    },
    RayServe {
        application: String,
        deployment: String,
    },
}

impl std::fmt::Debug for Kind {
    // The key never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Webhook { key } => write!(f, "Webhook {{ signed: {} }}", key.is_some()),
            Kind::RayServe {
                application,
                deployment,
            } => write!(f, "RayServe {{ {application}/{deployment} }}"),
        }
    }
}

impl Scaler {
    /// Builds a scaler from a config entry the config's check accepted (an `Err` names
    /// the scaler and is what that check would have said).
    pub fn build(cfg: &ScalerConfig) -> Result<Scaler, ScalerError> {
        let fail = |message: String| ScalerError::Failed {
            scaler: cfg.name.clone(),
            message,
        };
        let url = cfg.endpoint().map_err(fail)?;
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout.get())
            .connect_timeout(cfg.timeout.get())
            // The dashboard and the receiver are named in the config; no proxy decides.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(format!("cannot build an HTTP client: {e}")))?;
        let kind = match cfg.kind {
            ScalerKind::Webhook => Kind::Webhook {
                key: cfg.signing_key().map_err(fail)?,
            },
            ScalerKind::RayServe => Kind::RayServe {
                application: cfg.application().to_string(),
                deployment: cfg
                    .deployment
                    .clone()
                    .ok_or_else(|| fail("a `ray_serve` scaler needs `deployment`".into()))?,
            },
        };
        Ok(Scaler {
            name: cfg.name.clone(),
            client,
            url,
            timeout: cfg.timeout.get(),
            kind,
        })
    }

    /// The scaler's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn fail(&self, message: impl Into<String>) -> ScalerError {
        ScalerError::Failed {
            scaler: self.name.clone(),
            message: message.into(),
        }
    }

    /// The target's replica count as the scaler sees it; `None` when it cannot tell
    /// (webhooks).
    pub async fn current(&self) -> Result<Option<u32>, ScalerError> {
        match &self.kind {
            Kind::Webhook { .. } => Ok(None),
            Kind::RayServe {
                application,
                deployment,
            } => {
                let details = self.ray_details().await?;
                let dep =
                    ray_deployment(&details, application, deployment).map_err(|m| self.fail(m))?;
                ray_replicas(dep).map(Some).ok_or_else(|| {
                    self.fail(format!(
                        "Ray reports no `target_num_replicas` for deployment `{deployment}`"
                    ))
                })
            }
        }
    }

    /// Applies `decision`.
    pub async fn apply(&self, decision: &ScalingDecision) -> Result<(), ScalerError> {
        match &self.kind {
            Kind::Webhook { key } => self.post(decision, key.as_deref()).await,
            Kind::RayServe {
                application,
                deployment,
            } => {
                let details = self.ray_details().await?;
                let body = ray_put_body(&details, application, deployment, decision.desired)
                    .map_err(|m| self.fail(m))?;
                let url = self.ray_url()?;
                let resp = self.client.put(url).json(&body).send().await.map_err(|e| {
                    self.fail(format!(
                        "PUT {}: {}",
                        shown(&self.url),
                        error_text(&e, self.timeout)
                    ))
                })?;
                let status = resp.status();
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(self.fail(format!(
                        "Ray refused the new config ({status}): {}",
                        cut(&text, 400)
                    )));
                }
                Ok(())
            }
        }
    }

    async fn post(
        &self,
        decision: &ScalingDecision,
        key: Option<&[u8]>,
    ) -> Result<(), ScalerError> {
        let body = serde_json::to_vec(decision)
            .map_err(|e| self.fail(format!("cannot encode the decision: {e}")))?;
        // One id per decision: a receiver that sees a retry of the same one can dedupe.
        let id = format!(
            "scale_{}_{}_{}",
            decision.rule, decision.target, decision.time_ms
        );
        let timestamp = decision.time_ms.div_euclid(1000).to_string();
        let mut req = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &timestamp);
        if let Some(key) = key {
            req = req.header("webhook-signature", sign(key, &id, &timestamp, &body));
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.fail(format!("POST: {}", error_text(&e, self.timeout))))?;
        if !resp.status().is_success() {
            return Err(self.fail(format!("the receiver answered {}", resp.status())));
        }
        Ok(())
    }

    fn ray_url(&self) -> Result<Url, ScalerError> {
        self.url
            .join("/api/serve/applications/")
            .map_err(|e| self.fail(format!("bad dashboard URL: {e}")))
    }

    async fn ray_details(&self) -> Result<Value, ScalerError> {
        let url = self.ray_url()?;
        let resp = self.client.get(url).send().await.map_err(|e| {
            self.fail(format!(
                "GET {}: {}",
                shown(&self.url),
                error_text(&e, self.timeout)
            ))
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(self.fail(format!(
                "Ray answered {status} to GET /api/serve/applications/: {}",
                cut(&text, 400)
            )));
        }
        resp.json::<Value>()
            .await
            .map_err(|e| self.fail(format!("Ray's answer is not JSON: {e}")))
    }
}

/// `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`: Standard Webhooks.
fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts a key of any length; `new_from_slice` fails on none.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// What went wrong with a request, without its URL: a URL may carry a token (in its
/// path, query or user info), and errors are logged.
fn error_text(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", timeout.as_secs_f64());
    }
    // `without_url` needs the error by value; rebuild the text from its parts instead.
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), &shown(url));
    }
    if e.is_connect() {
        format!("cannot connect ({text})")
    } else {
        text
    }
}

/// A URL as logs may show it: scheme, host and port only.
fn shown(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => format!("{}://", url.scheme()),
    }
}

fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The details of `deployment` in `application`, from `GET /api/serve/applications/`.
fn ray_deployment<'a>(
    details: &'a Value,
    application: &str,
    deployment: &str,
) -> Result<&'a Value, String> {
    let apps = details
        .get("applications")
        .and_then(Value::as_object)
        .ok_or("Ray reports no Serve applications (is Serve running?)")?;
    let app = apps.get(application).ok_or_else(|| {
        let names: Vec<&str> = apps.keys().map(String::as_str).collect();
        format!(
            "Ray has no Serve application `{application}` (it has: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )
    })?;
    app.get("deployments")
        .and_then(|d| d.get(deployment))
        .ok_or_else(|| format!("application `{application}` has no deployment `{deployment}`"))
}

/// The deployment's replica count as Ray targets it.
fn ray_replicas(dep: &Value) -> Option<u32> {
    dep.get("target_num_replicas")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

/// The body of `PUT /api/serve/applications/`: the running config with the deployment's
/// `num_replicas` set to `replicas`.
fn ray_put_body(
    details: &Value,
    application: &str,
    deployment: &str,
    replicas: u32,
) -> Result<Value, String> {
    let dep = ray_deployment(details, application, deployment)?;
    if dep
        .get("deployment_config")
        .and_then(|c| c.get("autoscaling_config"))
        .is_some_and(|a| !a.is_null())
    {
        return Err(format!(
            "deployment `{deployment}` has an autoscaling_config: Ray's own autoscaler sets its replicas and refuses num_replicas; remove autoscaling_config from the deployment or this scaler"
        ));
    }
    let apps = details
        .get("applications")
        .and_then(Value::as_object)
        .ok_or("Ray reports no Serve applications")?;
    let mut configs = Vec::with_capacity(apps.len());
    for (name, app) in apps {
        let Some(mut config) = app
            .get("deployed_app_config")
            .filter(|c| c.is_object())
            .cloned()
        else {
            return Err(format!(
                "application `{name}` was not deployed from a config (serve.run from Python?): \
                 a PUT of the config would delete it; deploy it with `serve deploy` or the REST API"
            ));
        };
        if name == application {
            set_replicas(&mut config, deployment, replicas);
        }
        configs.push(config);
    }
    let mut body = json!({ "applications": configs });
    for key in [
        "proxy_location",
        "http_options",
        "grpc_options",
        "target_capacity",
    ] {
        if let Some(v) = details.get(key).filter(|v| !v.is_null()) {
            body[key] = v.clone();
        }
    }
    Ok(body)
}

/// Sets `num_replicas` of `deployment` in an application config, adding the deployment's
/// entry when the config lists none for it (its options then come from its code).
fn set_replicas(config: &mut Value, deployment: &str, replicas: u32) {
    let deployments = match config.get_mut("deployments") {
        Some(Value::Array(list)) => list,
        _ => {
            config["deployments"] = json!([]);
            match config.get_mut("deployments") {
                Some(Value::Array(list)) => list,
                _ => return,
            }
        }
    };
    match deployments
        .iter_mut()
        .find(|d| d.get("name").and_then(Value::as_str) == Some(deployment))
    {
        Some(d) => d["num_replicas"] = json!(replicas),
        None => deployments.push(json!({ "name": deployment, "num_replicas": replicas })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Ray 2.60's `GET /api/serve/applications/`, trimmed to what matters.
    fn details(autoscaled: bool) -> Value {
        json!({
            "proxy_location": "EveryNode",
            "http_options": { "host": "127.0.0.1", "port": 8000 },
            "grpc_options": { "port": 9000, "grpc_servicer_functions": [] },
            "target_capacity": null,
            "applications": {
                "default": {
                    "deployed_app_config": {
                        "name": "default",
                        "route_prefix": "/",
                        "import_path": "app:app",
                        "deployments": [{ "name": "Other", "num_replicas": 3 }]
                    },
                    "deployments": {
                        "Slow": {
                            "target_num_replicas": 1,
                            "deployment_config": {
                                "num_replicas": 1,
                                "autoscaling_config": if autoscaled { json!({ "min_replicas": 1 }) } else { Value::Null }
                            }
                        }
                    }
                },
                "other": {
                    "deployed_app_config": { "name": "other", "import_path": "o:app" },
                    "deployments": {}
                }
            }
        })
    }

    #[test]
    fn put_body_changes_only_the_deployments_replicas() {
        let d = details(false);
        assert_eq!(
            ray_replicas(ray_deployment(&d, "default", "Slow").unwrap()),
            Some(1)
        );
        let body = ray_put_body(&d, "default", "Slow", 4).unwrap();
        assert_eq!(
            body,
            json!({
                "proxy_location": "EveryNode",
                "http_options": { "host": "127.0.0.1", "port": 8000 },
                "grpc_options": { "port": 9000, "grpc_servicer_functions": [] },
                "applications": [
                    {
                        "name": "default",
                        "route_prefix": "/",
                        "import_path": "app:app",
                        "deployments": [
                            { "name": "Other", "num_replicas": 3 },
                            { "name": "Slow", "num_replicas": 4 }
                        ]
                    },
                    { "name": "other", "import_path": "o:app" }
                ]
            })
        );
    }

    #[test]
    fn put_body_is_refused_where_it_would_do_harm() {
        let e = ray_put_body(&details(true), "default", "Slow", 4).unwrap_err();
        assert!(e.contains("autoscaling_config"), "{e}");
        let mut d = details(false);
        d["applications"]["other"]["deployed_app_config"] = Value::Null;
        let e = ray_put_body(&d, "default", "Slow", 4).unwrap_err();
        assert!(
            e.contains("application `other` was not deployed from a config"),
            "{e}"
        );
        let e = ray_put_body(&d, "nope", "Slow", 4).unwrap_err();
        assert!(
            e.contains("no Serve application `nope` (it has: default, other)"),
            "{e}"
        );
        let e = ray_put_body(&details(false), "default", "Fast", 4).unwrap_err();
        assert!(e.contains("has no deployment `Fast`"), "{e}");
    }

    #[test]
    fn signature_is_standard_webhooks() {
        // The Standard Webhooks reference vector (standard-webhooks/libraries, test
        // "test_sign"): key whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id msg_p5jXN8AQM9LWM0D4loKWxJek,
        // timestamp 1614265330, body {"test": 2432232314}.
        let key = B64
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[tokio::test]
    async fn a_failed_request_names_the_host_but_never_the_urls_token() {
        // A closed port: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let cfg = ScalerConfig {
            name: "hook".into(),
            kind: ScalerKind::Webhook,
            url: Some(format!(
                "http://user:pw@127.0.0.1:{port}/hooks/T0KEN-SECRET?key=QUERY-SECRET"
            )),
            secret: None,
            application: None,
            deployment: None,
            timeout: telltale_config::HumanDuration(Duration::from_secs(2)),
        };
        let scaler = Scaler::build(&cfg).expect("build");
        let decision = ScalingDecision {
            rule: "r".into(),
            target: "hook".into(),
            current: 1,
            desired: 2,
            proposed: 2,
            reason: "test".into(),
            inputs: Default::default(),
            time_ms: 0,
        };
        let e = scaler.apply(&decision).await.expect_err("nothing listens");
        let text = e.to_string();
        assert!(text.contains("127.0.0.1"), "{text}");
        for secret in ["T0KEN-SECRET", "QUERY-SECRET", "pw@"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
