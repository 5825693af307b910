//! The one rule that decides whether the tests have the real schema registry of
//! `scripts/schema-registry` (Apicurio Registry's Confluent-compatible API), and where it is —
//! the same rule as the broker's ([`crate::broker`]):
//!
//! 1. `DRIFTWATCH_TEST_SCHEMA_REGISTRY` (exported by `scripts/test` once the registry is up):
//!    that URL, taken as given.
//! 2. Otherwise the `url` file of the registry's state directory (`DRIFTWATCH_SR_DIR`, default
//!    `.schema-registry`), written by `scripts/schema-registry start`, provided it answers.
//! 3. Otherwise there is none: under CI the test fails, elsewhere it is skipped loudly.
//!
//! [`register`] is what a producer's serializer does before its first record: `POST
//! <url>/subjects/{subject}/versions`, and the id the registry hands out goes in the frame.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::on_ci;

/// The environment variable `scripts/test` exports the registry's URL in.
pub const SCHEMA_REGISTRY_ENV: &str = "DRIFTWATCH_TEST_SCHEMA_REGISTRY";

/// The registry's state directory, as `scripts/schema-registry` and `scripts/test` use it.
pub fn state_dir() -> PathBuf {
    match std::env::var("DRIFTWATCH_SR_DIR") {
        Ok(d) if !d.trim().is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".schema-registry"),
    }
}

/// `host:port` and the path prefix of an `http://` URL.
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.trim().strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    (!authority.is_empty()).then(|| (authority.to_string(), path.trim_end_matches('/').into()))
}

fn answers(url: &str) -> bool {
    split_url(url).is_some_and(|(authority, _)| {
        std::net::ToSocketAddrs::to_socket_addrs(authority.as_str())
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok()
            })
    })
}

/// The real registry's URL by the rule of the module docs; `None` when there is none.
pub fn test_schema_registry() -> Option<String> {
    if let Ok(u) = std::env::var(SCHEMA_REGISTRY_ENV) {
        if !u.trim().is_empty() {
            return Some(u.trim().to_string());
        }
    }
    let from_file = std::fs::read_to_string(state_dir().join("url")).ok()?;
    let u = from_file.trim();
    (!u.is_empty() && answers(u)).then(|| u.to_string())
}

/// The registry's URL. Without one: under CI, panics (the test fails); elsewhere says loudly
/// that the test is skipped and returns `None`.
pub fn require_schema_registry() -> Option<String> {
    if let Some(u) = test_schema_registry() {
        return Some(u);
    }
    let missing = format!(
        "{} needs the schema registry of scripts/schema-registry, and there is none: \
         {SCHEMA_REGISTRY_ENV} is unset and {} names none that answers (run scripts/test, or \
         scripts/schema-registry start)",
        std::thread::current().name().unwrap_or("this test"),
        state_dir().join("url").display()
    );
    if on_ci() {
        panic!("CI: {missing}");
    }
    // Straight to stderr: `eprintln!` would be captured and hidden for a passing test.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {missing}\n");
    None
}

/// The environment variable `scripts/test` exports the registry's HTTPS URL in.
pub const SCHEMA_REGISTRY_TLS_ENV: &str = "DRIFTWATCH_TEST_SCHEMA_REGISTRY_TLS";

/// The same registry over HTTPS (`scripts/schema-registry tls-url`), with the test CA that
/// signed its certificate and a CA that signed nothing: `(https url, ca.pem, other-ca.pem)`.
/// Found by the rule of the module docs (the environment, then `tls-url` in the state
/// directory); without it, under CI the test fails, elsewhere it is skipped loudly.
pub fn require_schema_registry_tls() -> Option<(String, PathBuf, PathBuf)> {
    let tls = state_dir().join("tls");
    let url = std::env::var(SCHEMA_REGISTRY_TLS_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| std::fs::read_to_string(state_dir().join("tls-url")).ok())
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty() && tls.join("ca.pem").is_file());
    if let Some(u) = url {
        return Some((u, tls.join("ca.pem"), tls.join("other-ca.pem")));
    }
    let missing = format!(
        "{} needs the HTTPS port of scripts/schema-registry, and there is none: \
         {SCHEMA_REGISTRY_TLS_ENV} is unset and {} names none (run scripts/test, or \
         scripts/schema-registry start)",
        std::thread::current().name().unwrap_or("this test"),
        state_dir().join("tls-url").display()
    );
    if on_ci() {
        panic!("CI: {missing}");
    }
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {missing}\n");
    None
}

/// Sends `method <url><path>` (with a JSON `body` when given) and returns the JSON object of
/// the answer. Panics, naming `what`, when there is none.
async fn call(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    what: &str,
) -> serde_json::Value {
    let (authority, prefix) = split_url(url).unwrap_or_else(|| panic!("not an http URL: {url}"));
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {prefix}{path} HTTP/1.1\r\nhost: {authority}\r\n\
         content-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(&authority)
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    s.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("read");
    // The JSON object of the body, whether it came with a length or in one chunk.
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| Some(&body[body.find('{')?..=body.rfind('}')?]))
        .unwrap_or_else(|| panic!("{what}: no JSON in {answer:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{what}: {e}: {json}"))
}

/// Registers `schema` (Avro) under `subject` as a serializer does and returns the id the
/// registry hands out. Panics, with the registry's answer, unless it gives one.
pub async fn register(url: &str, subject: &str, schema: &str) -> u32 {
    let body = serde_json::json!({ "schemaType": "AVRO", "schema": schema }).to_string();
    let what = format!("register {subject}");
    let v = call(
        url,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(&body),
        &what,
    )
    .await;
    v["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .unwrap_or_else(|| panic!("{what}: no id in {v}"))
}

/// The schema text the registry serves for `id` (`GET /schemas/ids/{id}`), as a
/// registry-aware deserializer fetches it.
pub async fn schema_by_id(url: &str, id: u32) -> String {
    let what = format!("schema id {id}");
    let v = call(url, "GET", &format!("/schemas/ids/{id}"), None, &what).await;
    v["schema"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no schema in {v}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path_prefix() {
        assert_eq!(
            split_url("http://127.0.0.1:8081/apis/ccompat/v7/"),
            Some(("127.0.0.1:8081".into(), "/apis/ccompat/v7".into()))
        );
        assert_eq!(split_url("http://h:1"), Some(("h:1".into(), String::new())));
        assert_eq!(split_url("https://h:1"), None);
        assert!(!answers("http://127.0.0.1:1"));
    }
}
