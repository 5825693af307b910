//! The worker's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, and the console (`/`,
//! `/api/models`, [`crate::console`]) when one is given.
//!
//! Design:
//! - The server knows only a function that returns a [`WorkerStatus`]; the stage decides how
//!   to produce one (a lock and a copy of its counters). A scrape therefore never blocks the
//!   stage for longer than that copy, and the server can be tested with a closure.
//! - `/healthz` answers 200 as long as the process serves requests: a liveness probe that fails
//!   only when the process is wedged, so Kubernetes does not restart a worker that is merely
//!   rebalancing.
//! - `/readyz` answers 200 only when the consumer has partitions, their state is restored and the
//!   producer delivers; otherwise 503 with a JSON body naming the conditions that are false, so
//!   `kubectl describe` and a `curl` say why.
//! - Graceful: the server stops accepting when `shutdown` resolves and finishes open requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::console::{ConsoleSource, ConsoleView};
use crate::prometheus::{render, RenderOptions, WorkerStatus, CONTENT_TYPE};

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound (in use, no permission).
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("metrics server: {0}")]
    Serve(#[from] std::io::Error),
}

type Source = Arc<dyn Fn() -> WorkerStatus + Send + Sync>;

#[derive(Clone)]
struct AppState {
    source: Source,
    options: RenderOptions,
}

/// A bound, not yet running, metrics server. Binding first lets a caller learn the port
/// (bind to port 0 in tests) and fail fast at start-up when the port is taken.
pub struct MetricsServer {
    listener: TcpListener,
    options: RenderOptions,
    console: Option<ConsoleSource>,
}

impl MetricsServer {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(MetricsServer {
            listener,
            options: RenderOptions::default(),
            console: None,
        })
    }

    /// Uses `options` to render `/metrics` (e.g. another cardinality cap).
    pub fn with_options(mut self, options: RenderOptions) -> Self {
        self.options = options;
        self
    }

    /// Also serves the console (`/`, `/api/models`) from `source`.
    pub fn with_console<F>(mut self, source: F) -> Self
    where
        F: Fn() -> ConsoleView + Send + Sync + 'static,
    {
        self.console = Some(Arc::new(source));
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, HttpError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves.
    pub async fn run<F, S>(self, source: F, shutdown: S) -> Result<(), HttpError>
    where
        F: Fn() -> WorkerStatus + Send + Sync + 'static,
        S: Future<Output = ()> + Send + 'static,
    {
        let state = AppState {
            source: Arc::new(source),
            options: self.options,
        };
        let mut app = router(state);
        if let Some(console) = self.console {
            app = app.merge(crate::console::router(console));
        }
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// Binds `bind` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve<F, S>(bind: SocketAddr, source: F, shutdown: S) -> Result<(), HttpError>
where
    F: Fn() -> WorkerStatus + Send + Sync + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    MetricsServer::bind(bind).await?.run(source, shutdown).await
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = (state.source)();
    match render(&snapshot, &state.options) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!("{e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let status = (state.source)();
    let r = status.readiness;
    let not_ready: Vec<&str> = r
        .conditions()
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| *name)
        .collect();
    let body = serde_json::json!({
        "ready": not_ready.is_empty(),
        "assigned": r.assigned,
        "restored": r.restored,
        "producing": r.producing,
        "schema_registry": r.schema_registry,
        "not_ready": not_ready,
        // Why the registry condition fails (a fetch that keeps failing), if it does.
        "schema_registry_error": status.schema_registry_error,
        // Detail, not a condition: input records off their key's murmur2 partition, per topic.
        "misrouted": status.misrouted,
        // Detail, not a condition: a worker behind its input is still ready (it catches up).
        "lag": lag_detail(&status.consumer_lag),
    });
    let status = if r.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Consumer lag for `/readyz`: the total, the largest partition's, and per topic.
fn lag_detail(lag: &std::collections::BTreeMap<(String, i32), i64>) -> serde_json::Value {
    let mut per_topic = std::collections::BTreeMap::<&str, i64>::new();
    for ((topic, _), v) in lag {
        *per_topic.entry(topic.as_str()).or_default() += (*v).max(0);
    }
    serde_json::json!({
        "total": per_topic.values().sum::<i64>(),
        "max_partition": lag.values().copied().max().unwrap_or(0).max(0),
        "topics": per_topic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::Readiness;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.1 GET; returns (status, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8(buf).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    #[tokio::test]
    async fn endpoints_answer_over_a_real_socket() {
        let readiness = Arc::new(Mutex::new(Readiness {
            assigned: true,
            restored: false,
            producing: true,
            schema_registry: true,
        }));
        let r = readiness.clone();
        let source = move || {
            let mut s = crate::prometheus::tests::sample_status();
            s.readiness = *r.lock().unwrap();
            s
        };
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(source, async {
            let _ = stop_rx.await;
        }));

        let (status, body) = get(addr, "/healthz").await;
        assert_eq!(status, 200);
        assert_eq!(body.trim(), "ok");

        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["restored"], false);
        assert_eq!(json["not_ready"], serde_json::json!(["restored"]));
        let gt = &json["misrouted"]["ground-truth"];
        assert_eq!(gt["misrouted"], 300);
        assert_eq!(gt["likely_partitioner"], "consistent_random");
        assert_eq!(gt["alert"], true);
        assert_eq!(json["lag"]["total"], 49, "{body}");
        assert_eq!(json["lag"]["max_partition"], 42);
        assert_eq!(json["lag"]["topics"]["ground-truth"], 7);

        readiness.lock().unwrap().restored = true;
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 200, "{body}");

        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let (samples, _) = crate::prometheus::tests::parse(&body);
        let ready: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "driftwatch_ready")
            .collect();
        assert_eq!(ready.len(), 4);
        assert!(ready.iter().all(|s| s.value == 1.0), "{body}");
        assert!(samples
            .iter()
            .any(|s| s.name == "driftwatch_join_inputs_total"));

        let (status, _) = get(addr, "/nope").await;
        assert_eq!(status, 404);

        stop_tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_taken_port_is_reported_with_the_address() {
        let first = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = first.local_addr().unwrap();
        let err = match MetricsServer::bind(addr).await {
            Ok(_) => panic!("second bind of {addr} succeeded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&addr.to_string()), "{err}");
    }
}
