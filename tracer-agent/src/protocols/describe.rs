//! What a protocol says about one exchange, in the words spans are made
//! of: a name, attributes (OpenTelemetry semantic conventions), a status,
//! and the metric its duration feeds. The span builder, the exporters and
//! the metrics read these and nothing protocol-specific.

use std::{fmt, net::SocketAddr, ops::Deref, sync::Arc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttributeValue {
    Str(Text),
    Int(i64),
}

/// Attribute text: a constant (a method, a scheme), text many spans share
/// (an address), or the span's own, so a span allocates only for what is
/// its own.
#[derive(Clone, Debug)]
pub enum Text {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &**self == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &**self == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        **self == **other
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Owned(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Error(String),
}

/// One exchange as its protocol describes it (what the parser kept of its
/// request and response).
pub trait Describe: Send + Sync + fmt::Debug {
    /// The protocol the exchange was in.
    fn protocol(&self) -> &'static ProtocolFacts;
    /// A low-cardinality span name: `GET /users/{id}`, `SELECT orders`.
    fn span_name(&self) -> String;
    /// The server's name as the client addressed it (an HTTP `Host`), when
    /// the exchange says; else the span names the server by its address.
    fn server_name(&self) -> Option<&str> {
        None
    }
    /// Adds the protocol's attributes and says the span's status. The
    /// connection's own attributes (`server.*`, `client.*`,
    /// `network.peer.*`) are the span builder's; `server` is the server's
    /// end of the connection.
    fn describe(
        &self,
        kind: SpanKind,
        server: SocketAddr,
        attributes: &mut Attributes,
    ) -> SpanStatus;
}

pub type Attributes = Vec<(&'static str, AttributeValue)>;

/// What the stages after the span builder know of a protocol.
#[derive(Debug)]
pub struct ProtocolFacts {
    pub name: &'static str,
    /// The attribute a one-line summary shows as an exchange's outcome.
    pub outcome_attribute: &'static str,
    /// The histogram each exchange's duration is added to, if any.
    pub duration_metric: Option<&'static DurationMetric>,
}

/// Each protocol's facts are one static value: the same protocol is the
/// same address.
impl PartialEq for ProtocolFacts {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for ProtocolFacts {}

/// A duration histogram (Prometheus), one per span kind, labelled by the
/// service and by span attributes. Protocols with the same semantics
/// (HTTP/1 and HTTP/2) share one.
#[derive(Debug)]
pub struct DurationMetric {
    /// Name and help of the SERVER spans' histogram (none: the protocol
    /// makes CLIENT spans only) and the CLIENT ones'.
    pub server: Option<(&'static str, &'static str)>,
    pub client: (&'static str, &'static str),
    /// Bucket bounds, in seconds.
    pub buckets: &'static [f64],
    pub labels: &'static [MetricLabel],
}

/// A label and the span attribute its value is read from.
#[derive(Debug)]
pub struct MetricLabel {
    pub name: &'static str,
    pub attribute: &'static str,
    /// Folds values into few (paths into routes); a folded label is also
    /// bounded per service, so that unbounded values cannot grow the
    /// series without end.
    pub fold: Option<fn(&str) -> String>,
}
