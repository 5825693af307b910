//! How driftwatch authenticates to the brokers and encrypts the connection.
//!
//! [`SecuritySettings`] is the `[kafka.security]` section of the configuration. It names the
//! librdkafka security protocol (`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`), the SASL
//! mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) with user name and password, and the
//! TLS files (CA bundle, client certificate and key).
//!
//! Design:
//! - **Secrets never reach a log.** Passwords are held in [`Secret`], whose `Debug`, `Display`
//!   and `Serialize` all print `***`; the only way to the clear text is [`Secret::expose`],
//!   called where the value is handed to librdkafka (which itself redacts it in its own logs).
//!   Errors name the setting or the file, never the value.
//! - **Passwords may live in files** (`sasl_password_file`, `ssl_key_password_file`), the usual
//!   shape of Kubernetes/Docker secrets. The file is read when the configuration is loaded, so
//!   an unreadable file stops the process at start-up with an error naming the file, and again
//!   when a client is created (a rotated secret is picked up by new clients). One trailing
//!   newline is stripped, since `echo pw > file` adds one.
//! - **Cross-field rules are checked when the configuration is loaded** ([`SecuritySettings::validate`]):
//!   a SASL protocol needs a mechanism, a user name and exactly one password source; SASL or TLS
//!   settings under a protocol that does not use them are refused rather than silently ignored.
//! - The default is `plaintext`, what a local development broker speaks.

use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string: prints as `***` in `Debug`, `Display` and when serialized.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text, for handing to the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    // Serializing settings (e.g. to print the effective configuration) must not leak either.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No authentication, no encryption.
    #[default]
    Plaintext,
    /// TLS, optionally with a client certificate.
    Ssl,
    /// SASL authentication over an unencrypted connection.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka property value.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether the connection is encrypted with TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// librdkafka's `sasl.mechanisms` (the ones driftwatch supports without Kerberos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// User name and password sent as is: only over TLS outside a test set-up.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka property value.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Why the security settings cannot be used. Messages name settings and files, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// A cross-field rule is broken.
    #[error("kafka.security: {0}")]
    Invalid(String),
    /// A secret file could not be read.
    #[error("kafka.security.{setting}: cannot read {}: {reason}", path.display())]
    UnreadableFile {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The `[kafka.security]` section. Every field is optional; the default is `plaintext`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required by the `sasl_*` protocols.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name; required by the `sasl_*` protocols.
    pub sasl_username: Option<String>,
    /// SASL password inline (prefer `sasl_password_file` or the environment variable
    /// `DRIFTWATCH__KAFKA__SECURITY__SASL_PASSWORD`). Never logged.
    pub sasl_password: Option<Secret>,
    /// File holding the SASL password (one trailing newline is ignored).
    pub sasl_password_file: Option<PathBuf>,
    /// CA bundle (PEM) to verify the brokers' certificates; default: the system's CAs.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate (PEM), for brokers that require mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of an encrypted private key, inline. Never logged.
    pub ssl_key_password: Option<Secret>,
    /// File holding the private key's password.
    pub ssl_key_password_file: Option<PathBuf>,
}

impl SecuritySettings {
    /// SASL settings with an inline password.
    pub fn sasl(
        protocol: SecurityProtocol,
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: Secret,
    ) -> Self {
        SecuritySettings {
            protocol,
            sasl_mechanism: Some(mechanism),
            sasl_username: Some(username.into()),
            sasl_password: Some(password),
            ..SecuritySettings::default()
        }
    }

    /// Cross-field rules, and that every secret file named can be read.
    pub fn validate(&self) -> Result<(), SecurityError> {
        let bad = |m: String| Err(SecurityError::Invalid(m));
        let protocol = self.protocol.as_str();
        if self.protocol.uses_sasl() {
            if self.sasl_mechanism.is_none() {
                return bad(format!(
                    "protocol `{protocol}` needs sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                ));
            }
            if self
                .sasl_username
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
            {
                return bad(format!("protocol `{protocol}` needs sasl_username"));
            }
            match (&self.sasl_password, &self.sasl_password_file) {
                (None, None) => {
                    return bad(format!(
                        "protocol `{protocol}` needs sasl_password or sasl_password_file"
                    ))
                }
                (Some(_), Some(_)) => {
                    return bad(
                        "set only one of sasl_password and sasl_password_file, not both".into(),
                    )
                }
                _ => {}
            }
        } else {
            let set: Vec<&str> = [
                ("sasl_mechanism", self.sasl_mechanism.is_some()),
                ("sasl_username", self.sasl_username.is_some()),
                ("sasl_password", self.sasl_password.is_some()),
                ("sasl_password_file", self.sasl_password_file.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, is_set)| is_set.then_some(name))
            .collect();
            if !set.is_empty() {
                return bad(format!(
                    "{} set but protocol `{protocol}` does not use SASL: set protocol to sasl_ssl (or sasl_plaintext)",
                    set.join(", ")
                ));
            }
        }
        let tls_set: Vec<&str> = [
            ("ssl_ca_location", self.ssl_ca_location.is_some()),
            (
                "ssl_certificate_location",
                self.ssl_certificate_location.is_some(),
            ),
            ("ssl_key_location", self.ssl_key_location.is_some()),
            ("ssl_key_password", self.ssl_key_password.is_some()),
            (
                "ssl_key_password_file",
                self.ssl_key_password_file.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, is_set)| is_set.then_some(name))
        .collect();
        if !self.protocol.uses_tls() && !tls_set.is_empty() {
            return bad(format!(
                "{} set but protocol `{protocol}` does not use TLS: set protocol to ssl or sasl_ssl",
                tls_set.join(", ")
            ));
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return bad(
                "ssl_certificate_location and ssl_key_location go together: set both or neither"
                    .into(),
            );
        }
        if self.ssl_key_password.is_some() && self.ssl_key_password_file.is_some() {
            return bad(
                "set only one of ssl_key_password and ssl_key_password_file, not both".into(),
            );
        }
        if (self.ssl_key_password.is_some() || self.ssl_key_password_file.is_some())
            && self.ssl_key_location.is_none()
        {
            return bad("a key password is set but ssl_key_location is not".into());
        }
        self.sasl_password()?;
        self.ssl_key_password()?;
        Ok(())
    }

    /// The SASL password, inline or read from `sasl_password_file`.
    pub fn sasl_password(&self) -> Result<Option<Secret>, SecurityError> {
        secret_from(
            &self.sasl_password,
            self.sasl_password_file.as_deref(),
            "sasl_password_file",
        )
    }

    /// The private key's password, inline or read from `ssl_key_password_file`.
    pub fn ssl_key_password(&self) -> Result<Option<Secret>, SecurityError> {
        secret_from(
            &self.ssl_key_password,
            self.ssl_key_password_file.as_deref(),
            "ssl_key_password_file",
        )
    }

    /// Sets the librdkafka properties these settings describe on `config`.
    ///
    /// Fails only when a secret file cannot be read (it could when the configuration was
    /// loaded: it was removed since).
    pub fn apply(&self, config: &mut ClientConfig) -> Result<(), SecurityError> {
        config.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_sasl() {
            if let Some(m) = self.sasl_mechanism {
                config.set("sasl.mechanisms", m.as_str());
            }
            if let Some(u) = &self.sasl_username {
                config.set("sasl.username", u);
            }
            if let Some(p) = self.sasl_password()? {
                config.set("sasl.password", p.expose());
            }
        }
        if self.protocol.uses_tls() {
            let paths = [
                ("ssl.ca.location", &self.ssl_ca_location),
                ("ssl.certificate.location", &self.ssl_certificate_location),
                ("ssl.key.location", &self.ssl_key_location),
            ];
            for (key, path) in paths {
                if let Some(p) = path {
                    config.set(key, p.to_string_lossy());
                }
            }
            if let Some(p) = self.ssl_key_password()? {
                config.set("ssl.key.password", p.expose());
            }
        }
        Ok(())
    }
}

fn secret_from(
    inline: &Option<Secret>,
    file: Option<&Path>,
    setting: &'static str,
) -> Result<Option<Secret>, SecurityError> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| SecurityError::UnreadableFile {
        setting,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(SecurityError::UnreadableFile {
            setting,
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    Ok(Some(Secret::new(value)))
}

/// Deserializes [`SecuritySettings`] and validates them, so a bad section (or an unreadable
/// secret file) is reported when the configuration is loaded.
pub fn deserialize_validated<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<SecuritySettings, D::Error> {
    let s = SecuritySettings::deserialize(d)?;
    s.validate().map_err(serde::de::Error::custom)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SecuritySettings, String> {
        #[derive(Deserialize)]
        struct Wrap {
            #[serde(deserialize_with = "deserialize_validated")]
            security: SecuritySettings,
        }
        serde_json::from_str::<Wrap>(&format!(r#"{{"security": {json}}}"#))
            .map(|w| w.security)
            .map_err(|e| e.to_string())
    }

    fn temp_file(name: &str, content: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("driftwatch-sec-{}-{name}", std::process::id()));
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn default_is_plaintext_and_sets_only_the_protocol() {
        let s = parse("{}").unwrap();
        assert_eq!(s, SecuritySettings::default());
        let mut c = ClientConfig::new();
        s.apply(&mut c).unwrap();
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("sasl.mechanisms"), None);
        assert_eq!(c.get("sasl.password"), None);
    }

    #[test]
    fn secret_is_masked_in_debug_display_and_serialization() {
        let s = SecuritySettings::sasl(
            SecurityProtocol::SaslSsl,
            SaslMechanism::ScramSha512,
            "alice",
            Secret::new("hunter2-very-secret"),
        );
        let debug = format!("{s:?}");
        let json = serde_json::to_string(&s).unwrap();
        let display = format!("{}", Secret::new("hunter2-very-secret"));
        for text in [&debug, &json, &display] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        assert!(debug.contains("alice"));
    }

    #[test]
    fn sasl_settings_become_librdkafka_properties() {
        let s = parse(
            r#"{"protocol": "sasl_plaintext", "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "bob", "sasl_password": "pw"}"#,
        )
        .unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-256"));
        assert_eq!(c.get("sasl.username"), Some("bob"));
        assert_eq!(c.get("sasl.password"), Some("pw"));
        assert_eq!(c.get("ssl.ca.location"), None);
    }

    #[test]
    fn password_file_is_read_and_its_trailing_newline_dropped() {
        let f = temp_file("pw", "s3cret\n");
        let s = parse(&format!(
            r#"{{"protocol": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                 "sasl_password_file": {:?}, "ssl_ca_location": "/etc/ca.pem"}}"#,
            f.display().to_string()
        ))
        .unwrap();
        let mut c = ClientConfig::new();
        s.apply(&mut c).unwrap();
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn unreadable_password_file_is_named_in_the_error() {
        let e = parse(
            r#"{"protocol": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                "sasl_password_file": "/nonexistent/driftwatch/pw"}"#,
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/driftwatch/pw"), "{e}");
        assert!(e.contains("sasl_password_file"), "{e}");
    }

    #[test]
    fn cross_field_rules_name_what_to_change() {
        let cases = [
            (
                r#"{"protocol": "sasl_ssl", "sasl_username": "u", "sasl_password": "p"}"#,
                "needs sasl_mechanism",
            ),
            (
                r#"{"protocol": "sasl_ssl", "sasl_mechanism": "PLAIN", "sasl_password": "p"}"#,
                "needs sasl_username",
            ),
            (
                r#"{"protocol": "sasl_plaintext", "sasl_mechanism": "PLAIN", "sasl_username": "u"}"#,
                "needs sasl_password or sasl_password_file",
            ),
            (
                r#"{"protocol": "sasl_plaintext", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                    "sasl_password": "p", "sasl_password_file": "/x"}"#,
                "only one of sasl_password and sasl_password_file",
            ),
            (r#"{"sasl_username": "u"}"#, "does not use SASL"),
            (
                r#"{"protocol": "sasl_plaintext", "sasl_mechanism": "PLAIN", "sasl_username": "u",
                    "sasl_password": "p", "ssl_ca_location": "/ca.pem"}"#,
                "does not use TLS",
            ),
            (
                r#"{"protocol": "ssl", "ssl_certificate_location": "/c.pem"}"#,
                "go together",
            ),
            (
                r#"{"protocol": "ssl", "ssl_key_password": "k"}"#,
                "ssl_key_location is not",
            ),
        ];
        for (json, expected) in cases {
            let e = parse(json).unwrap_err();
            assert!(e.contains(expected), "{json}: {e}");
            assert!(!e.contains("\"p\""), "secret value in error: {e}");
        }
    }

    #[test]
    fn unknown_fields_and_mechanisms_are_refused() {
        let e = parse(r#"{"sasl_mechanisms": "PLAIN"}"#).unwrap_err();
        assert!(e.contains("unknown field `sasl_mechanisms`"), "{e}");
        let e = parse(
            r#"{"protocol": "sasl_ssl", "sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p"}"#,
        )
        .unwrap_err();
        assert!(e.contains("GSSAPI"), "{e}");
    }
}
