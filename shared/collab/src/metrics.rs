//! Metrics in CloudWatch's embedded metric format (EMF): one JSON object per line on stdout,
//! which Lambda ships to CloudWatch Logs and CloudWatch turns into metrics, with no API call
//! and no wait on the request's path (issue 17).
//!
//! Every metric is in the namespace [`NAMESPACE`] with the dimensions `Function` (api,
//! integrate, realtime) and `Replica`. Nothing is written until [`init`] names the function,
//! so tests and tools stay quiet.
//!
//! | metric | unit | from |
//! |---|---|---|
//! | `EditLatency` | Milliseconds | an `edits` or `ops` request, from the use-case's start to its answer |
//! | `OpsApplied` | Count | ops applied by a request or an integrated message |
//! | `OpsWaiting` | Count | ops of a request left waiting for their causes |
//! | `CacheHits`, `CacheMisses` | Count | a write found the document cached (a tail refresh at most), or loaded it |
//! | `PublishFailures` | Count | an SNS publish that failed (the outbox keeps the row) |
//! | `PushFailures` | Count | a post to a WebSocket connection that failed (not `Gone`) |
//! | `OutboxBacklog`, `OutboxOldestAgeSeconds`, `OutboxParked` | Count, Seconds, Count | after each sweep |
//! | `IntegrateLagMilliseconds` | Milliseconds | now minus the SNS publish time of an integrated message |
//! | `ForgedMessages`, `DroppedMessages` | Count | integrate's report |

use std::sync::OnceLock;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "collab";

static TARGET: OnceLock<(String, u16)> = OnceLock::new();

/// A metric's unit, as CloudWatch names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Starts writing metrics for `function` of `replica` (call once, in `main`).
pub fn init(function: &str, replica: u16) {
    let _ = TARGET.set((function.to_owned(), replica));
}

/// The EMF line for `values` of `function` on `replica` at `timestamp_ms`.
pub fn emf_line(
    function: &str,
    replica: u16,
    timestamp_ms: i64,
    values: &[(&str, f64, Unit)],
) -> String {
    let metrics: Vec<serde_json::Value> = values
        .iter()
        .map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit.name()}))
        .collect();
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function", "Replica"]],
                "Metrics": metrics,
            }],
        },
        "Function": function,
        "Replica": replica.to_string(),
    });
    for (name, value, _) in values {
        line[*name] = serde_json::json!(value);
    }
    line.to_string()
}

/// Writes `values` as one EMF line, if [`init`] ran.
pub fn emit(values: &[(&str, f64, Unit)]) {
    if values.is_empty() {
        return;
    }
    if let Some((function, replica)) = TARGET.get() {
        let now = chrono::Utc::now().timestamp_millis();
        println!("{}", emf_line(function, *replica, now, values));
    }
}

/// Writes one count.
pub fn count(name: &str, n: usize) {
    emit(&[(name, n as f64, Unit::Count)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_each_value_with_its_unit_and_dimensions() {
        let line = emf_line(
            "api",
            2,
            1_795_694_400_000,
            &[
                ("EditLatency", 12.5, Unit::Milliseconds),
                ("OpsApplied", 3.0, Unit::Count),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "collab");
        assert_eq!(
            m["Dimensions"][0],
            serde_json::json!(["Function", "Replica"])
        );
        assert_eq!(m["Metrics"][0]["Name"], "EditLatency");
        assert_eq!(m["Metrics"][0]["Unit"], "Milliseconds");
        assert_eq!(m["Metrics"][1]["Unit"], "Count");
        assert_eq!(v["EditLatency"], 12.5);
        assert_eq!(v["OpsApplied"], 3.0);
        assert_eq!(
            (v["Function"].as_str(), v["Replica"].as_str()),
            (Some("api"), Some("2"))
        );
        assert_eq!(v["_aws"]["Timestamp"], 1_795_694_400_000i64);
        assert!(!line.contains('\n'), "one line");
    }
}
