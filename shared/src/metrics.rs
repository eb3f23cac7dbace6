//! CloudWatch metrics in the embedded metric format: one JSON log line per invocation whose
//! counters CloudWatch turns into metrics, with no API call on the request path.

use serde_json::{Map, Value, json};

use crate::usecase::Tally;

/// The namespace every capguard metric is published under.
pub const NAMESPACE: &str = "capguard";

/// Writes `tally` to standard output as an EMF line of `function` (nothing when nothing was
/// counted): Lambda hands its output to CloudWatch Logs, which publishes the metrics.
pub fn emit(function: &str, tally: &Tally) {
    if let Some(line) = emf_line(function, tally, chrono::Utc::now().timestamp_millis()) {
        println!("{line}");
    }
}

/// The EMF line for `tally`, dimensioned by function; `None` when nothing was counted.
pub fn emf_line(function: &str, tally: &Tally, timestamp_ms: i64) -> Option<String> {
    let counters: Vec<(&str, u64)> = tally.counters().collect();
    if counters.is_empty() {
        return None;
    }
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                // Published by function, and once without dimensions for the alarms and dashboard.
                "Dimensions": [["Function"], []],
                "Metrics": counters.iter().map(|(name, _)| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        }),
    );
    line.insert("Function".into(), Value::from(function));
    for (name, count) in counters {
        line.insert(name.to_owned(), Value::from(count));
    }
    Some(Value::Object(line).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_metrics_of_the_function() {
        let mut tally = Tally::default();
        tally.add("capped");
        tally.add("capped");
        tally.add("sends");
        let line: Value =
            serde_json::from_str(&emf_line("retry-executor", &tally, 1_700_000_000_000).unwrap()).unwrap();
        assert_eq!(line["capped"], 2);
        assert_eq!(line["Function"], "retry-executor");
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Metrics"].as_array().unwrap().len(), 2);
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000_i64);
    }

    #[test]
    fn nothing_counted_writes_nothing() {
        assert_eq!(emf_line("webhook-intake", &Tally::default(), 0), None);
    }
}
