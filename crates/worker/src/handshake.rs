//! Why a TLS connection to the brokers failed, in words that name the setting to fix.
//!
//! librdkafka reports a failed TLS handshake only as a log line and an error event (the request
//! that needed the connection then fails with a bare "transport failure"), in OpenSSL's words:
//! `SSL handshake failed: ... certificate verify failed: broker certificate could not be
//! verified ...`, `... sslv3 alert bad certificate ...`. [`TlsFailure::classify`] recognises the
//! cases an operator can fix, and [`TlsFailure::message`] says which `kafka.security` setting
//! (and file) is at fault:
//!
//! | librdkafka says | cause | setting named |
//! |---|---|---|
//! | `certificate verify failed` | the brokers' certificate is not signed by the CA given, expired, or not for this host | `ssl_ca_location` |
//! | an alert `bad certificate`, `certificate unknown`, `certificate expired`, `certificate revoked`, `unsupported certificate` | the broker refused the client certificate | `ssl_certificate_location` |
//! | an alert `certificate required`, or `handshake failure` with no client certificate | the broker requires a client certificate, none is set | `ssl_certificate_location` / `ssl_key_location` |
//! | `wrong version number`, `packet length too long`, `record layer failure` | nothing speaks TLS there | `protocol` / `bootstrap_servers` |
//!
//! Anything else that mentions TLS is reported as a handshake failure with librdkafka's words.
//! The messages carry file paths and addresses only: librdkafka's reason holds no secret.

use crate::security::SecuritySettings;

/// A TLS failure reported by librdkafka, sorted by what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The client could not verify the brokers' certificate.
    BrokerNotTrusted(String),
    /// The broker refused the client's certificate.
    ClientRefused(String),
    /// The broker asked for a client certificate and none is configured.
    ClientCertificateRequired(String),
    /// The other end does not speak TLS.
    NotTls(String),
    /// Another handshake failure.
    Other(String),
}

impl TlsFailure {
    /// Sorts a librdkafka log line or error reason; `None` when it is not about TLS.
    pub fn classify(reason: &str, security: &SecuritySettings) -> Option<TlsFailure> {
        let r = reason.to_ascii_lowercase();
        let tls = r.contains("ssl") || r.contains("tls") || r.contains("certificate");
        if !tls {
            return None;
        }
        let reason = reason.to_string();
        let has_client_cert = security.ssl_certificate_location.is_some();
        let refused = [
            "alert bad certificate",
            "alert certificate unknown",
            "alert certificate expired",
            "alert certificate revoked",
            "alert unsupported certificate",
        ];
        Some(if r.contains("certificate verify failed") {
            TlsFailure::BrokerNotTrusted(reason)
        } else if r.contains("certificate required")
            || (!has_client_cert
                && (r.contains("alert handshake failure") || refused.iter().any(|a| r.contains(a))))
        {
            TlsFailure::ClientCertificateRequired(reason)
        } else if refused.iter().any(|a| r.contains(a)) {
            TlsFailure::ClientRefused(reason)
        } else if r.contains("wrong version number")
            || r.contains("packet length too long")
            || r.contains("record layer failure")
            || r.contains("unknown protocol")
        {
            TlsFailure::NotTls(reason)
        } else if r.contains("handshake") || r.contains("alert") || r.contains("certificate") {
            TlsFailure::Other(reason)
        } else {
            return None;
        })
    }

    /// The message for the operator: what failed, the setting and file to check, and
    /// librdkafka's own words.
    pub fn message(&self, bootstrap: &str, security: &SecuritySettings) -> String {
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map_or("not set".to_string(), |p| format!("`{}`", p.display()))
        };
        match self {
            TlsFailure::BrokerNotTrusted(r) => format!(
                "TLS handshake with {bootstrap} failed: the broker's certificate could not be \
                 verified with kafka.security.ssl_ca_location ({}; not set means the system's \
                 CAs): it is signed by another CA, expired, or not issued for this host name: {r}",
                path(&security.ssl_ca_location)
            ),
            TlsFailure::ClientRefused(r) => format!(
                "TLS handshake with {bootstrap} failed: the broker refused the client certificate \
                 of kafka.security.ssl_certificate_location ({}): it is expired, or not issued by \
                 a CA the broker trusts: {r}",
                path(&security.ssl_certificate_location)
            ),
            TlsFailure::ClientCertificateRequired(r) => format!(
                "TLS handshake with {bootstrap} failed: the broker requires a client certificate \
                 (mutual TLS): set kafka.security.ssl_certificate_location and ssl_key_location: {r}"
            ),
            TlsFailure::NotTls(r) => format!(
                "TLS handshake with {bootstrap} failed: nothing speaks TLS at this address: check \
                 kafka.security.protocol (`{}`) and kafka.bootstrap_servers: {r}",
                security.protocol.as_str()
            ),
            TlsFailure::Other(r) => format!(
                "TLS handshake with {bootstrap} failed: check the kafka.security.ssl_* settings: {r}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::SecurityProtocol;
    use std::path::PathBuf;

    fn tls(client_cert: bool) -> SecuritySettings {
        SecuritySettings {
            protocol: SecurityProtocol::Ssl,
            ssl_ca_location: Some(PathBuf::from("/etc/ca.pem")),
            ssl_certificate_location: client_cert.then(|| PathBuf::from("/etc/client.pem")),
            ssl_key_location: client_cert.then(|| PathBuf::from("/etc/client-key.pem")),
            ..SecuritySettings::default()
        }
    }

    #[test]
    fn an_unverifiable_broker_certificate_names_the_ca_setting_and_file() {
        let r = "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL \
                 routines::certificate verify failed: broker certificate could not be verified, \
                 verify that ssl.ca.location is correctly configured";
        let f = TlsFailure::classify(r, &tls(false)).unwrap();
        assert!(matches!(f, TlsFailure::BrokerNotTrusted(_)));
        let m = f.message("127.0.0.1:9093", &tls(false));
        assert!(
            m.contains("kafka.security.ssl_ca_location (`/etc/ca.pem`"),
            "{m}"
        );
        assert!(m.contains("certificate verify failed"), "{m}");
    }

    #[test]
    fn a_refused_client_certificate_names_the_certificate_setting() {
        let r = "SSL handshake failed: error:0A000416:SSL routines::sslv3 alert certificate \
                 unknown: SSL alert number 46";
        let f = TlsFailure::classify(r, &tls(true)).unwrap();
        assert!(matches!(f, TlsFailure::ClientRefused(_)));
        let m = f.message("b:1", &tls(true));
        assert!(
            m.contains("ssl_certificate_location (`/etc/client.pem`)"),
            "{m}"
        );
        // Without a client certificate the same alert means one is required.
        let f = TlsFailure::classify(r, &tls(false)).unwrap();
        assert!(matches!(f, TlsFailure::ClientCertificateRequired(_)));
        let r =
            "SSL transport error: error:0A00045C:SSL routines::tlsv13 alert certificate required";
        assert!(matches!(
            TlsFailure::classify(r, &tls(false)),
            Some(TlsFailure::ClientCertificateRequired(_))
        ));
    }

    #[test]
    fn plaintext_on_the_other_end_says_so() {
        let r = "SSL handshake failed: error:0A00010B:SSL routines::wrong version number";
        let f = TlsFailure::classify(r, &tls(false)).unwrap();
        assert!(f
            .message("b:1", &tls(false))
            .contains("nothing speaks TLS at this address"));
    }

    #[test]
    fn other_errors_are_not_tls_failures() {
        assert_eq!(
            TlsFailure::classify(
                "Connect to ipv4#127.0.0.1:1 failed: Connection refused",
                &tls(false)
            ),
            None
        );
        assert_eq!(
            TlsFailure::classify(
                "SASL authentication error: Authentication failed",
                &tls(false)
            ),
            None
        );
    }
}
