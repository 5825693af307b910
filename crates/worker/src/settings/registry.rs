//! `[schema_registry]`: where the writer schemas of framed payloads come from.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::WorkerError;
use crate::security::Secret;

/// A Confluent-compatible Schema Registry (Confluent's, or Apicurio's `/apis/ccompat/v7`).
/// Without `url` (the default) a framed payload whose schema id is unknown is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistrySettings {
    /// Base URL, `http://` or `https://`, with any path prefix (`…/apis/ccompat/v7`); schema
    /// `id` is read from `<url>/schemas/ids/<id>`. Default empty: no registry.
    pub url: String,
    /// Basic-auth user name; needs `password`.
    pub username: Option<String>,
    /// Basic-auth password (or `DRIFTWATCH__SCHEMA_REGISTRY__PASSWORD`); never logged.
    pub password: Option<Secret>,
    /// PEM file of the CA certificates that sign the registry's certificate (`https://` only).
    /// Default: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Longest one request may take (connect, TLS, answer). Default `5s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest wait between two tries while the registry does not answer (the wait doubles
    /// from 200 ms up to this). Records of the id wait meanwhile; none is skipped. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Most writer schemas kept per input (decoders are built once per id), and most ids
    /// remembered as absent. Beyond that the oldest is dropped and fetched again if it comes
    /// back. Default 1000.
    pub cache_capacity: usize,
}

impl Default for SchemaRegistrySettings {
    fn default() -> Self {
        SchemaRegistrySettings {
            url: String::new(),
            username: None,
            password: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(10),
            cache_capacity: 1000,
        }
    }
}

/// The shortest wait between two tries.
pub const MIN_BACKOFF: Duration = Duration::from_millis(200);

impl SchemaRegistrySettings {
    /// Whether a registry is configured.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Checks the settings (called when the configuration is loaded).
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |m: String| Err(WorkerError::Config(format!("schema_registry: {m}")));
        if !self.enabled() {
            if self.username.is_some() || self.password.is_some() || self.ca_file.is_some() {
                return bad("username, password or ca_file set without url".into());
            }
            return Ok(());
        }
        let url = self.url.trim();
        let uri: hyper::Uri = match url.parse() {
            Ok(u) => u,
            Err(e) => return bad(format!("url `{url}` is not a URL: {e}")),
        };
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return bad(format!("url `{url}` must start with http:// or https://")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return bad(format!("url `{url}` has no host"));
        }
        if uri.query().is_some() {
            return bad(format!("url `{url}` must not have a query"));
        }
        if self.username.is_some() != self.password.is_some() {
            return bad("set both username and password, or neither".into());
        }
        if let Some(ca) = &self.ca_file {
            if uri.scheme_str() != Some("https") {
                return bad("ca_file is set but url is not https://".into());
            }
            if let Err(e) = std::fs::metadata(ca).and_then(|_| std::fs::read(ca).map(|_| ())) {
                return bad(format!("ca_file {} cannot be read: {e}", ca.display()));
            }
        }
        if self.timeout.is_zero() {
            return bad("timeout must be above zero".into());
        }
        if self.max_backoff < MIN_BACKOFF {
            return bad(format!("max_backoff must be at least {MIN_BACKOFF:?}"));
        }
        if self.cache_capacity == 0 {
            return bad("cache_capacity must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> SchemaRegistrySettings {
        SchemaRegistrySettings {
            url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn off_by_default_and_urls_are_checked() {
        let off = SchemaRegistrySettings::default();
        assert!(!off.enabled());
        off.validate().unwrap();
        with_url("http://127.0.0.1:8081").validate().unwrap();
        with_url("https://r.example/apis/ccompat/v7")
            .validate()
            .unwrap();
        for bad in ["ftp://r", "r:8081", "http://", "http://r?x=1", "not a url"] {
            let err = with_url(bad).validate().unwrap_err().to_string();
            assert!(err.contains("schema_registry"), "{bad}: {err}");
        }
    }

    #[test]
    fn credentials_ca_and_limits_are_checked() {
        let mut s = with_url("http://r:8081");
        s.username = Some("u".into());
        assert!(s.validate().unwrap_err().to_string().contains("both"));
        s.password = Some(Secret::new("p"));
        s.validate().unwrap();
        s.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(s.validate().unwrap_err().to_string().contains("https"));
        s.url = "https://r:8081".into();
        assert!(s.validate().unwrap_err().to_string().contains("ca_file"));
        s.ca_file = None;
        s.timeout = Duration::ZERO;
        assert!(s.validate().is_err());
        s.timeout = Duration::from_secs(1);
        s.cache_capacity = 0;
        assert!(s.validate().is_err());
        let orphan = SchemaRegistrySettings {
            username: Some("u".into()),
            ..Default::default()
        };
        assert!(orphan.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_refused_and_durations_are_human() {
        let s: SchemaRegistrySettings = serde_json::from_str(
            r#"{"url": "http://r:8081", "timeout": "2s", "max_backoff": "1m"}"#,
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(s.max_backoff, Duration::from_secs(60));
        assert!(serde_json::from_str::<SchemaRegistrySettings>(r#"{"uri": "http://r"}"#).is_err());
    }
}
