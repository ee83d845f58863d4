//! What database protocols share: the client operation histogram
//! (OpenTelemetry database conventions). Databases get CLIENT spans only:
//! the server's side of the same exchange would repeat them.

use super::describe::{DurationMetric, MetricLabel};

pub static OPERATION_DURATION: DurationMetric = DurationMetric {
    server: None,
    client: (
        "db_client_operation_duration_seconds",
        "Duration of database operations made, from the command's first byte written to \
         its reply's last byte read.",
    ),
    // The bounds OpenTelemetry's semantic conventions advise for it.
    buckets: &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0],
    labels: &[
        MetricLabel {
            name: "db_system_name",
            attribute: "db.system.name",
            fold: None,
        },
        // Operation and collection names come from the bytes: bounded per
        // service like routes.
        MetricLabel {
            name: "db_operation_name",
            attribute: "db.operation.name",
            fold: Some(str::to_string),
        },
        MetricLabel {
            name: "db_collection_name",
            attribute: "db.collection.name",
            fold: Some(str::to_string),
        },
        MetricLabel {
            name: "error_type",
            attribute: "error.type",
            fold: None,
        },
    ],
};
