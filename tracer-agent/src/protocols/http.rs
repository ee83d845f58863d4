//! HTTP semantics, the same over HTTP/1.x and HTTP/2: methods, targets,
//! routes, what never leaves the node (credentials in queries), and the
//! request-duration histograms.

use std::{fmt::Write as _, net::SocketAddr};

use super::describe::{
    AttributeValue, Attributes, DurationMetric, MetricLabel, SpanKind, SpanStatus, Text,
};

/// HTTP methods kept as they are; others are reported as `_OTHER` with the
/// original in `http.request.method_original` (OTel semantic conventions).
pub const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Query parameters whose values are credentials: never leave the node.
const SECRET_QUERY_KEYS: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "auth",
    "awsaccesskeyid",
    "client_secret",
    "code",
    "key",
    "password",
    "passwd",
    "secret",
    "session",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
    "x-goog-signature",
];

/// OpenTelemetry's `http.server.request.duration` and
/// `http.client.request.duration`, by method, route and status.
pub static REQUEST_DURATION: DurationMetric = DurationMetric {
    server: Some((
        "http_server_request_duration_seconds",
        "Duration of HTTP requests served, from the request's first byte read to the \
         response's last byte written.",
    )),
    client: (
        "http_client_request_duration_seconds",
        "Duration of HTTP requests made, from the request's first byte written to the \
         response's last byte read.",
    ),
    // The bounds OpenTelemetry's semantic conventions advise for these two.
    buckets: &[
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ],
    labels: &[
        MetricLabel {
            name: "http_request_method",
            attribute: "http.request.method",
            fold: None,
        },
        MetricLabel {
            name: "http_route",
            attribute: "url.path",
            fold: Some(route),
        },
        MetricLabel {
            name: "http_response_status_code",
            attribute: "http.response.status_code",
            fold: None,
        },
    ],
};

/// Path and query of an origin-form target; an absolute-form target (to a
/// proxy) gives its path.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .map(|rest| rest.find('/').map_or("/", |i| &rest[i..]))
        .unwrap_or(target);
    let target = target.split('#').next().unwrap_or(target);
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// `host[:port]` of a Host header (IPv6 literals in brackets).
pub fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((ip, after)) = rest.split_once(']')
    {
        return (ip, after.strip_prefix(':'));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, Some(port)),
        _ => (host, None),
    }
}

/// The query with the values of credential-like parameters replaced.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(key) => format!("{key}=REDACTED"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_QUERY_KEYS.contains(&key.as_str())
        || key.ends_with("_token")
        || key.ends_with("password")
        || key.ends_with("secret")
}

/// A low-cardinality route from a path: segments that look like ids
/// (numbers, hex, UUIDs, long tokens) become `{id}`.
pub fn route(path: &str) -> String {
    let mut out = String::with_capacity(path.len().max(1));
    push_route(&mut out, path);
    out
}

/// Appends `route(path)` to `out`.
pub fn push_route(out: &mut String, path: &str) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if looks_like_id(segment) {
            "{id}"
        } else {
            segment
        });
    }
}

fn looks_like_id(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    let hex_or_dash = segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    digits == segment.len()
        || (hex_or_dash && segment.len() >= 8 && digits > 0)
        || (segment.len() >= 20 && digits * 3 >= segment.len())
}

/// An HTTP exchange as every HTTP version reports it: what its span says
/// (`http_span_name`, `describe_http`).
pub struct HttpExchange<'a> {
    /// As sent.
    pub method: &'a str,
    pub target: &'a str,
    /// `Host`, or HTTP/2's `:authority`.
    pub authority: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub scheme: &'static str,
    /// `network.protocol.version`.
    pub version: &'static str,
    /// `None`: no response came; `no_response` says why (`error.type`,
    /// message). Unless `status_unknown`: a response came whose status
    /// could not be read (HTTP/2 with its HPACK table known in part).
    pub status: Option<i64>,
    pub no_response: (&'static str, &'static str),
    pub status_unknown: bool,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
}

/// The method as the conventions name it: one of the known ones, or `_OTHER`.
pub fn known_method(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .copied()
        .find(|known| *known == method)
        .unwrap_or("_OTHER")
}

/// `METHOD route`, the conventions' span name.
pub fn http_span_name(method: &str, target: &str) -> String {
    let method = known_method(method);
    let (path, _) = split_target(target);
    let mut name = String::with_capacity(method.len() + 1 + path.len().max(1));
    name.push_str(method);
    name.push(' ');
    push_route(&mut name, path);
    name
}

/// The OpenTelemetry HTTP attributes of `exchange`, and its span's status:
/// an error from 500 for a server, from 400 for a client.
pub fn describe_http(
    exchange: &HttpExchange,
    kind: SpanKind,
    server: SocketAddr,
    attributes: &mut Attributes,
) -> SpanStatus {
    let mut attr = |key: &'static str, value: AttributeValue| attributes.push((key, value));
    let method = known_method(exchange.method);
    let (path, query) = split_target(exchange.target);
    attr("http.request.method", fixed(method));
    if method == "_OTHER" {
        attr("http.request.method_original", owned(exchange.method));
    }
    attr("url.path", owned(path));
    let query = query.map(redact_query);
    if let Some(query) = &query {
        attr("url.query", owned(query));
    }
    attr("url.scheme", fixed(exchange.scheme));
    attr("network.protocol.version", fixed(exchange.version));
    if kind == SpanKind::Client {
        // Written in one string: this is on every client span's path.
        let mut full = String::with_capacity(
            exchange.scheme.len()
                + exchange.authority.map_or(48, str::len)
                + exchange.target.len()
                + 8,
        );
        full.push_str(exchange.scheme);
        full.push_str("://");
        match exchange.authority {
            Some(authority) => full.push_str(authority),
            None => {
                let _ = write!(full, "{server}");
            }
        }
        full.push_str(path);
        if let Some(query) = &query {
            full.push('?');
            full.push_str(query);
        }
        attr("url.full", AttributeValue::Str(full.into()));
    }
    if let Some(agent) = exchange.user_agent {
        attr("user_agent.original", owned(agent));
    }
    if exchange.request_body_bytes > 0 {
        let size = AttributeValue::Int(exchange.request_body_bytes as i64);
        attr("http.request.body.size", size);
    }
    let Some(status) = exchange.status else {
        if exchange.status_unknown {
            return SpanStatus::Unset;
        }
        let (error_type, message) = exchange.no_response;
        attr("error.type", fixed(error_type));
        return SpanStatus::Error(message.into());
    };
    attr("http.response.status_code", AttributeValue::Int(status));
    if exchange.response_body_bytes > 0 {
        let size = AttributeValue::Int(exchange.response_body_bytes as i64);
        attr("http.response.body.size", size);
    }
    let error_from = match kind {
        SpanKind::Server => 500,
        SpanKind::Client => 400,
    };
    if status >= error_from {
        attr("error.type", AttributeValue::Str(status.to_string().into()));
        SpanStatus::Error(String::new())
    } else {
        SpanStatus::Unset
    }
}

/// A string attribute copied from the bytes.
pub fn owned(value: &str) -> AttributeValue {
    AttributeValue::Str(value.to_string().into())
}

/// A string attribute the code names.
pub fn fixed(value: &'static str) -> AttributeValue {
    AttributeValue::Str(Text::Static(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fold_ids() {
        assert_eq!(route("/"), "/");
        assert_eq!(
            route("/api/v1/orders/123/items"),
            "/api/v1/orders/{id}/items"
        );
        assert_eq!(route("/u/550e8400-e29b-41d4-a716-446655440000"), "/u/{id}");
        assert_eq!(route("/blob/deadbeef01"), "/blob/{id}");
        assert_eq!(route("/static/index.html"), "/static/index.html");
    }

    #[test]
    fn targets_and_hosts() {
        assert_eq!(split_target("/a?b=c"), ("/a", Some("b=c")));
        assert_eq!(split_target("http://h:1/x?y"), ("/x", Some("y")));
        assert_eq!(split_target("http://h"), ("/", None));
        assert_eq!(
            split_host("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_host("[::1]:80"), ("::1", Some("80")));
        assert_eq!(split_host("example.com"), ("example.com", None));
    }
}
