//! The console: one page at `/` of the worker's HTTP server showing every model version this
//! worker monitors — realized accuracy per window, label coverage, label delay, drift state,
//! a chart of accuracy over the latest snapshots with drift and retrain events marked, the
//! per-feature drift table and the recent events with their reasons.
//!
//! Design:
//! - The data model is [`view::ConsoleView`], built by a pure function from the stages' stats
//!   (what the monitor already keeps for `/metrics`, plus a bounded accuracy history and its
//!   detectors' states). `/api/models` serves it as JSON.
//! - The page is a thin view: one HTML file with its CSS and a small hand-written script that
//!   draws tables and an SVG chart from that JSON, embedded in the binary (`include_str!`);
//!   nothing is fetched from elsewhere. The first view is inlined into the page, so it renders
//!   without a request (and a headless `--dump-dom` sees it); the script then polls
//!   `/api/models` every two seconds.
//! - A monitor worker knows only the models of the partials partitions it owns: with several
//!   workers each page shows its own share and says so (which partitions, which group).

pub mod view;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use view::ConsoleView;

/// The page, its style and script; `/*CONSOLE_VIEW*/null` is replaced by the first view.
const PAGE: &str = include_str!("console.html");
const PLACEHOLDER: &str = "/*CONSOLE_VIEW*/null";

/// Produces the current view.
pub type ConsoleSource = Arc<dyn Fn() -> ConsoleView + Send + Sync>;

/// The console's routes: `/` and `/api/models`.
pub fn router(source: ConsoleSource) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/models", get(models))
        .with_state(source)
}

async fn page(State(source): State<ConsoleSource>) -> Response {
    let html = render_page(&source());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn models(State(source): State<ConsoleSource>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        to_json(&source()),
    )
        .into_response()
}

/// The view as JSON; `<` escaped so that it can sit inside a `<script>` element.
fn to_json(v: &ConsoleView) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
        .replace('<', "\\u003c")
}

/// The page with `view` inlined.
pub fn render_page(view: &ConsoleView) -> String {
    PAGE.replacen(PLACEHOLDER, &to_json(view), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_the_view_and_loads_nothing_from_elsewhere() {
        assert!(PAGE.contains(PLACEHOLDER));
        let mut v = view::build(None, None, "");
        v.event_time_ms = 42;
        let html = render_page(&v);
        assert!(!html.contains(PLACEHOLDER));
        assert!(html.contains("\"event_time_ms\":42"));
        for remote in ["http://", "https://", "//cdn", "src=\"/"] {
            assert!(!html.contains(remote), "{remote}");
        }
    }

    #[tokio::test]
    async fn the_metrics_server_serves_the_page_and_its_json() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.unwrap();
            let text = String::from_utf8(buf).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            (head.to_string(), body.to_string())
        }
        let server = crate::http::MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .with_console(|| {
                let mut v = view::build(None, Some(&Default::default()), "grp");
                v.event_time_ms = 7;
                v
            });
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(crate::prometheus::tests::sample_status, async {
            let _ = stopped.await;
        }));
        let (head, body) = get(addr, "/").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("text/html"), "{head}");
        assert!(body.contains("\"monitor_group\":\"grp\""), "{body}");
        let (head, body) = get(addr, "/api/models").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["event_time_ms"], 7);
        assert_eq!(json["models"], serde_json::json!([]));
        let (head, _) = get(addr, "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[test]
    fn script_closing_tags_in_names_cannot_end_the_inline_json() {
        let mut v = view::build(None, None, "");
        v.scope.monitor_group = "</script><b>".into();
        let json = to_json(&v);
        assert!(!json.contains("</script>"));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["scope"]["monitor_group"], "</script><b>");
    }
}
