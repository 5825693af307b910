//! A **stub** of the Confluent Schema Registry REST API, in the test process. It is not a
//! registry: it implements only what driftwatch and the tests call, the way the Confluent
//! documentation describes it — `POST /subjects/{subject}/versions` (register; ids handed out
//! from 1 upwards, the same schema text gets the same id), `GET /schemas/ids/{id}` (404 with
//! error code 40403 for an unknown id) and `GET /subjects` — and it can be stopped (the port
//! closes: connection refused) and started again on the same port.
//!
//! tests/schema_registry_real.rs runs against the real registry of scripts/schema-registry;
//! this stub also counts the requests it answers, so a test can check what driftwatch caches.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Registry {
    /// Schema text by id.
    schemas: BTreeMap<u32, String>,
    /// Subject → ids of its versions.
    subjects: BTreeMap<String, Vec<u32>>,
}

/// The stub: its address, its contents, and the task serving it while it runs.
pub struct RegistryStub {
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    server: Option<JoinHandle<()>>,
    /// `GET /schemas/ids/{id}` requests answered.
    pub schema_requests: Arc<AtomicU64>,
}

impl RegistryStub {
    /// Starts the stub on a free loopback port.
    pub async fn start() -> RegistryStub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let addr = listener.local_addr().expect("stub address");
        let mut stub = RegistryStub {
            addr,
            registry: Arc::default(),
            server: None,
            schema_requests: Arc::default(),
        };
        stub.serve(listener);
        stub
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let registry = self.registry.clone();
        let requests = self.schema_requests.clone();
        self.server = Some(tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(answer(conn, registry.clone(), requests.clone()));
            }
        }));
    }

    /// Stops listening: connections are refused until [`RegistryStub::restart`].
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind stub on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Registers `schema` under `subject` over HTTP, as a producer's serializer does, and
    /// returns the id the stub handed out.
    pub async fn register(&self, subject: &str, schema: &str) -> u32 {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let request = format!(
            "POST /subjects/{subject}/versions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let mut s = TcpStream::connect(self.addr).await.expect("connect stub");
        s.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.expect("read");
        let json = answer.split("\r\n\r\n").nth(1).expect("body");
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        v["id"].as_u64().expect("id") as u32
    }
}

impl Drop for RegistryStub {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(mut conn: TcpStream, registry: Arc<Mutex<Registry>>, requests: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body) = loop {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            break (head, buf[end + 4..end + 4 + length].to_vec());
        }
    };
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (status, json) = {
        let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
        match (method, segments.as_slice()) {
            ("GET", ["schemas", "ids", id]) => {
                requests.fetch_add(1, Ordering::Relaxed);
                match id.parse::<u32>().ok().and_then(|id| r.schemas.get(&id)) {
                    Some(text) => (200, serde_json::json!({ "schema": text })),
                    None => (
                        404,
                        serde_json::json!({"error_code": 40403, "message": "Schema not found"}),
                    ),
                }
            }
            ("GET", ["subjects"]) => (
                200,
                serde_json::json!(r.subjects.keys().collect::<Vec<_>>()),
            ),
            ("POST", ["subjects", subject, "versions"]) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                match v["schema"].as_str() {
                    Some(text) => {
                        let existing = r
                            .schemas
                            .iter()
                            .find(|(_, t)| t.as_str() == text)
                            .map(|(id, _)| *id);
                        let id = existing.unwrap_or_else(|| {
                            let id = r.schemas.keys().last().map_or(1, |l| l + 1);
                            r.schemas.insert(id, text.to_owned());
                            id
                        });
                        let versions = r.subjects.entry((*subject).to_owned()).or_default();
                        if !versions.contains(&id) {
                            versions.push(id);
                        }
                        (200, serde_json::json!({ "id": id }))
                    }
                    None => (
                        422,
                        serde_json::json!({"error_code": 42201, "message": "Invalid schema"}),
                    ),
                }
            }
            _ => (
                404,
                serde_json::json!({"error_code": 404, "message": "HTTP 404 Not Found"}),
            ),
        }
    };
    let body = json.to_string();
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes()).await;
    let _ = conn.shutdown().await;
}
