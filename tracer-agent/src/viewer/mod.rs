//! The agent's HTTP endpoint: the built-in trace viewer (`/`, one embedded
//! page that works offline), its JSON API, and Prometheus' `/metrics`.
//!
//! | path | what |
//! |---|---|
//! | `/` | the viewer page |
//! | `/metrics` | Prometheus text format |
//! | `/api/traces?service=&min_duration_ms=&errors=true&limit=` | recent traces, newest first |
//! | `/api/traces/{trace_id}` | one trace's spans, and its critical path |
//! | `/api/bottlenecks?window_s=&quantile=&errors=&service=&operation=` | where critical-path time goes and errors start, ranked |
//! | `/api/services` | each service's request and error rates |
//! | `/api/dependencies` | calls between services (the service map) |
//! | `/api/store` | the trace store's size and limits |
//!
//! `/metrics` may be served on an address of its own, apart from the viewer
//! (`--viewer-addr`); the viewer and its API may require a token and be
//! served over TLS (`access.rs`), `/metrics` never requires the token.

pub mod access;
pub mod bottlenecks;
pub mod critical_path;
pub mod store;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use bottlenecks::BottleneckQuery;
use store::{TraceFilter, TraceStore, parse_trace_id};

const PAGE: &str = include_str!("index.html");
/// Traces listed when the request names no limit, and the most it may ask.
const DEFAULT_LIST: usize = 100;
const MAX_LIST: usize = 1000;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    store: Arc<TraceStore>,
}

/// Which of the endpoint's parts one address serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parts {
    MetricsAndViewer,
    Metrics,
    Viewer,
}

/// The routes of `parts`; the viewer's behind `access`'s token if it has one.
pub fn router(
    parts: Parts,
    metrics: Arc<Metrics>,
    store: Arc<TraceStore>,
    access: &access::Access,
) -> Router {
    let shared = Shared { metrics, store };
    let metrics_routes = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(shared.clone());
    let viewer_routes = access.guard(
        Router::new()
            .route("/", get(page))
            .route("/api/traces", get(traces))
            .route("/api/traces/{trace_id}", get(trace))
            .route("/api/bottlenecks", get(bottlenecks))
            .route("/api/services", get(services))
            .route("/api/dependencies", get(dependencies))
            .route("/api/store", get(store_usage))
            .with_state(shared),
    );
    match parts {
        Parts::MetricsAndViewer => metrics_routes.merge(viewer_routes),
        Parts::Metrics => metrics_routes,
        Parts::Viewer => viewer_routes,
    }
}

/// Serves `app` on `listener` (over TLS when `access` has a certificate)
/// until the task is dropped.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<access::TlsConfig>) {
    let result = match tls {
        None => axum::serve(listener, app).await,
        Some(tls) => access::serve_tls(listener, app, tls).await,
    };
    if let Err(e) = result {
        tracing::warn!("the metrics and viewer endpoint stopped: {e}");
    }
}

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

async fn metrics_text(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        shared.metrics.render(),
    )
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    service: Option<String>,
    min_duration_ms: Option<String>,
    errors: Option<String>,
    limit: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn store_off() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the trace store is off (--viewer-max-traces or --viewer-max-mib is 0)",
    )
}

async fn traces(State(shared): State<Shared>, Query(query): Query<ListQuery>) -> Response {
    if !shared.store.enabled() {
        return store_off();
    }
    let min_duration_ms = match query.min_duration_ms.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match text.parse::<f64>() {
            Ok(ms) if ms.is_finite() && ms >= 0.0 => Some(ms),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("min_duration_ms={text:?} is not a number of milliseconds"),
                );
            }
        },
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_LIST,
        Some(text) => match text.parse::<usize>() {
            Ok(n) => n.min(MAX_LIST),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("limit={text:?} is not a count"),
                );
            }
        },
    };
    let filter = TraceFilter {
        service: query.service.filter(|s| !s.is_empty()),
        min_duration_ms,
        errors_only: matches!(query.errors.as_deref(), Some("true" | "1")),
        limit,
    };
    Json(shared.store.traces(&filter)).into_response()
}

#[derive(Debug, Deserialize)]
struct BottleneckParams {
    window_s: Option<String>,
    quantile: Option<String>,
    errors: Option<String>,
    service: Option<String>,
    operation: Option<String>,
}

/// Seconds of traces a bottleneck query looks at unless told.
const DEFAULT_WINDOW_S: f64 = 300.0;

async fn bottlenecks(
    State(shared): State<Shared>,
    Query(params): Query<BottleneckParams>,
) -> Response {
    if !shared.store.enabled() {
        return store_off();
    }
    let window_s = match number(
        "window_s",
        params.window_s.as_deref(),
        DEFAULT_WINDOW_S,
        |v| v > 0.0,
    ) {
        Ok(v) => v,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let quantile = match number("quantile", params.quantile.as_deref(), 0.0, |v| {
        (0.0..=1.0).contains(&v)
    }) {
        Ok(v) => v,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let query = BottleneckQuery {
        quantile,
        errors_only: matches!(params.errors.as_deref(), Some("true" | "1")),
        entry_service: params.service.filter(|s| !s.is_empty()),
        entry_operation: params.operation.filter(|s| !s.is_empty()),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let window_ns = (window_s * 1e9) as u64;
    Json(shared.store.bottlenecks(window_ns, now, &query)).into_response()
}

/// A query parameter's number: `default` when absent, an error message when
/// not a number or not `valid`.
fn number(
    name: &str,
    text: Option<&str>,
    default: f64,
    valid: fn(f64) -> bool,
) -> Result<f64, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && valid(*v))
            .ok_or_else(|| format!("{name}={t:?} is out of range")),
    }
}

async fn trace(State(shared): State<Shared>, Path(trace_id): Path<String>) -> Response {
    if !shared.store.enabled() {
        return store_off();
    }
    let Some(id) = parse_trace_id(&trace_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{trace_id:?} is not a trace id (32 hex digits)"),
        );
    };
    match shared.store.trace(&id) {
        Some(view) => Json(view).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no trace {trace_id} in the store (evicted, or never seen)"),
        ),
    }
}

async fn services(State(shared): State<Shared>) -> Response {
    if !shared.store.enabled() {
        return store_off();
    }
    Json(shared.store.services()).into_response()
}

async fn dependencies(State(shared): State<Shared>) -> Response {
    if !shared.store.enabled() {
        return store_off();
    }
    Json(shared.store.dependencies()).into_response()
}

async fn store_usage(State(shared): State<Shared>) -> Response {
    Json(shared.store.usage()).into_response()
}
