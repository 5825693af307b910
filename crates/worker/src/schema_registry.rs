//! The HTTP side of the schema registry, with basic auth and TLS, one connection per request:
//! `GET <url>/schemas/ids/{id}` (a schema is fetched once per id, then cached by the join
//! stage) and `POST <url>/subjects/{subject}/versions` (the monitor registers the schemas of
//! its framed outputs at start). What an answer means is decided without I/O in
//! [`driftwatch_codec::registry`] and [`driftwatch_codec::registration`].

use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use driftwatch_codec::registration::{
    interpret_registration, registration_body, versions_path, Registration,
};
use driftwatch_codec::registry::{interpret, schema_path, Lookup};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::settings::SchemaRegistrySettings;

/// Largest answer read (a schema's JSON).
const MAX_BODY_BYTES: usize = 4 << 20;

/// Why a request to the registry failed. Every one is retryable: the registry (or the way to
/// it) may come back.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("schema registry settings: {0}")]
    Settings(String),
    #[error("schema registry {url}: {message}")]
    Request { url: String, message: String },
    #[error("schema registry {url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

impl RegistryError {
    /// Whether trying again may help (settings errors are found at start-up, not retried).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, RegistryError::Settings(_))
    }
}

/// A client of one registry.
#[derive(Clone)]
pub struct RegistryClient {
    /// The base URL without a trailing `/`.
    base: String,
    /// Its path without a trailing `/` (requests are sent in origin form).
    prefix: String,
    host: String,
    port: u16,
    tls: Option<SslConnector>,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl RegistryClient {
    /// A client for validated settings (`SchemaRegistrySettings::validate`).
    pub fn new(s: &SchemaRegistrySettings) -> Result<Self, RegistryError> {
        let bad = |m: String| RegistryError::Settings(m);
        let base = s.url.trim().trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|e| bad(format!("url: {e}")))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| bad("url has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut b = SslConnector::builder(SslMethod::tls_client())
                .map_err(|e| bad(format!("TLS: {e}")))?;
            if let Some(ca) = &s.ca_file {
                b.set_ca_file(ca)
                    .map_err(|e| bad(format!("ca_file {}: {e}", ca.display())))?;
            }
            Some(b.build())
        } else {
            None
        };
        let authorization = match (&s.username, &s.password) {
            (Some(u), Some(p)) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", p.expose()));
                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|e| bad(format!("username/password: {e}")))?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        Ok(RegistryClient {
            base,
            prefix,
            host,
            port,
            tls,
            authorization,
            timeout: s.timeout,
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Fetches writer schema `id` and reads the answer; a request that fails is
    /// [`Lookup::Retry`].
    pub async fn schema(&self, id: u32) -> Lookup {
        match self.get(&schema_path(id)).await {
            Ok((status, body)) => interpret(id, status, &body),
            Err(e) => Lookup::Retry(e.to_string()),
        }
    }

    /// Registers the Avro schema `schema_text` under `subject` and returns the answer's
    /// meaning; a request that fails is [`Registration::Retry`].
    pub async fn register(&self, subject: &str, schema_text: &str) -> Registration {
        let body = registration_body(schema_text);
        match self
            .send(Method::POST, &versions_path(subject), Bytes::from(body))
            .await
        {
            Ok((status, answer)) => interpret_registration(subject, status, &answer),
            Err(e) => Registration::Retry(e.to_string()),
        }
    }

    /// [`register`](Self::register), asked again after retryable failures (waits doubling
    /// from 200 ms up to `max_backoff`, each failure logged) until it is registered or
    /// refused; the error names the subject and the registry's reason.
    pub async fn register_until_done(
        &self,
        subject: &str,
        schema_text: &str,
        max_backoff: Duration,
    ) -> Result<u32, RegistryError> {
        let mut wait = crate::settings::MIN_BACKOFF;
        loop {
            match self.register(subject, schema_text).await {
                Registration::Registered(id) => return Ok(id),
                Registration::Refused(reason) => {
                    return Err(RegistryError::Request {
                        url: self.base.clone(),
                        message: reason,
                    })
                }
                Registration::Retry(reason) => {
                    tracing::warn!(registry = %self.base, subject, %reason, retry_in = ?wait,
                        "schema registration failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(max_backoff);
                }
            }
        }
    }

    /// Whether the registry answers (`GET /subjects` with status 200).
    pub async fn check(&self) -> Result<(), RegistryError> {
        let (status, body) = self.get("/subjects").await?;
        if status == 200 {
            return Ok(());
        }
        Err(RegistryError::Request {
            url: self.base.clone(),
            message: format!(
                "GET /subjects answered HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        })
    }

    /// `GET <base><path>`: status and body, within the timeout.
    pub async fn get(&self, path: &str) -> Result<(u16, Bytes), RegistryError> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    /// `<method> <base><path>` with `body` (sent as the registry's JSON when not empty):
    /// status and answer, within the timeout.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), RegistryError> {
        match tokio::time::timeout(self.timeout, self.send_unbounded(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(RegistryError::Timeout {
                url: self.base.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn send_unbounded(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), RegistryError> {
        let fail = |m: String| RegistryError::Request {
            url: self.base.clone(),
            message: m,
        };
        let target = format!("{}{path}", self.prefix);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some(tls) => {
                let ssl = tls
                    .configure()
                    .and_then(|c| c.into_ssl(&self.host))
                    .map_err(|e| fail(format!("TLS: {e}")))?;
                let mut stream = tokio_openssl::SslStream::new(ssl, tcp)
                    .map_err(|e| fail(format!("TLS: {e}")))?;
                Pin::new(&mut stream)
                    .connect()
                    .await
                    .map_err(|e| fail(format!("TLS handshake: {e}")))?;
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        let connection = tokio::spawn(conn);
        let host = if matches!(self.port, 80 | 443) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut request = Request::builder()
            .method(method)
            .uri(target.as_str())
            .header(HOST, host)
            .header(
                ACCEPT,
                "application/vnd.schemaregistry.v1+json, application/json",
            )
            .header(
                USER_AGENT,
                concat!("driftwatch/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/vnd.schemaregistry.v1+json");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| fail(format!("request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the answer: {e}")))?
            .to_bytes();
        connection.abort();
        Ok((status, body))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::security::Secret;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one connection: returns the request's head, answers `answer`.
    async fn serve_once(listener: TcpListener, answer: &'static str) -> String {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(answer.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        String::from_utf8(head).unwrap()
    }

    fn settings(url: String) -> SchemaRegistrySettings {
        SchemaRegistrySettings {
            url,
            username: Some("reader".into()),
            password: Some(Secret::new("s3cret")),
            timeout: Duration::from_millis(500),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn fetches_a_schema_by_id_with_basic_auth_under_the_url_prefix() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_once(
            listener,
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{\"error_code\":40403,\"message\":\"Schema not found\"}\n",
        ));
        let client =
            RegistryClient::new(&settings(format!("http://{addr}/apis/ccompat/v7/"))).unwrap();
        let lookup = client.schema(12).await;
        let head = server.await.unwrap();
        assert!(
            head.starts_with("GET /apis/ccompat/v7/schemas/ids/12 HTTP/1.1\r\n"),
            "{head}"
        );
        // base64("reader:s3cret")
        assert!(
            head.contains("authorization: Basic cmVhZGVyOnMzY3JldA=="),
            "{head}"
        );
        let Lookup::Absent(e) = lookup else {
            panic!("40403 is absent: {lookup:?}");
        };
        assert!(e.to_string().contains("40403"), "{e}");
    }

    #[tokio::test]
    async fn registers_a_schema_under_its_subject() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_once(
            listener,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{\"id\":3}",
        ));
        let client =
            RegistryClient::new(&settings(format!("http://{addr}/apis/ccompat/v7"))).unwrap();
        let answer = client.register("t-value", "\"string\"").await;
        let head = server.await.unwrap();
        assert!(
            head.starts_with("POST /apis/ccompat/v7/subjects/t-value/versions HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains("content-type: application/vnd.schemaregistry.v1+json"),
            "{head}"
        );
        assert_eq!(answer, Registration::Registered(3));
    }

    #[tokio::test]
    async fn a_registry_that_is_down_or_silent_is_retried() {
        // Nothing listens: connection refused.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = RegistryClient::new(&settings(format!("http://{addr}"))).unwrap();
        assert!(matches!(client.schema(1).await, Lookup::Retry(_)));
        assert!(client.check().await.unwrap_err().is_retryable());
        // Accepts but never answers: the timeout.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let client = RegistryClient::new(&settings(format!("http://{addr}"))).unwrap();
        let Lookup::Retry(reason) = client.schema(1).await else {
            panic!("a silent registry is retried");
        };
        assert!(reason.contains("no answer within"), "{reason}");
        drop(silent);
    }
}
