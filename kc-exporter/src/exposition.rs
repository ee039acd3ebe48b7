//! Metric families as built for one scrape, and their OpenMetrics text through
//! `prometheus_client`'s encoder.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of OpenMetrics text ([`Format::OpenMetrics`]).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus's classic text format ([`Format::Text`]).
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0: what Prometheus asks for first.
    OpenMetrics,
    /// Prometheus's text format 0.0.4: for anything that does not ask for OpenMetrics
    /// (curl, `promtool check metrics`, older scrapers).
    Text,
}

impl Format {
    /// The format an HTTP `Accept` header asks for (as client_golang's exporters choose).
    pub fn accepted(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => TEXT,
        }
    }
}

pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A count since the exporter started (never going backwards).
    Counter(u64),
    Gauge(f64),
    /// Counts per bucket, each bucket `(upper bound, count in it)`, the last bound
    /// `f64::INFINITY`. The kernel keeps no sum of what it bucketed: `_sum` is NaN (unknown),
    /// never an estimate.
    Histogram(Vec<(f64, u64)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: Value,
}

/// One metric family: its name (for a counter, without `_total`), help and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: impl Into<String>, help: impl Into<String>) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            samples: Vec::new(),
        }
    }

    pub fn with(mut self, labels: &[(&str, &str)], value: Value) -> Family {
        self.push(labels, value);
        self
    }

    pub fn push(&mut self, labels: &[(&str, &str)], value: Value) {
        self.samples.push(Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
    }

    fn metric_type(&self) -> MetricType {
        match self.samples.first().map(|s| &s.value) {
            Some(Value::Counter(_)) => MetricType::Counter,
            Some(Value::Histogram(_)) => MetricType::Histogram,
            _ => MetricType::Gauge,
        }
    }
}

/// A histogram sample for the encoder.
#[derive(Debug)]
struct Buckets<'a>(&'a [(f64, u64)]);

impl EncodeMetric for Buckets<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let count = self.0.iter().map(|(_, c)| c).sum();
        // The encoder writes `+Inf` for a bound of f64::MAX.
        let buckets: Vec<(f64, u64)> = self
            .0
            .iter()
            .map(|&(le, c)| (if le.is_infinite() { f64::MAX } else { le }, c))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(f64::NAN, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.0.iter().filter(|f| !f.samples.is_empty()) {
            let mut family = encoder.encode_descriptor(&f.name, &f.help, None, f.metric_type())?;
            // A lone sample without labels is written bare (`name 1`, not `name{} 1`).
            if let [s] = &f.samples[..] {
                if s.labels.is_empty() {
                    encode_value(&s.value, family)?;
                    continue;
                }
            }
            for s in &f.samples {
                encode_value(&s.value, family.encode_family(&s.labels)?)?;
            }
        }
        Ok(())
    }
}

fn encode_value(value: &Value, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
    match value {
        Value::Counter(v) => ConstCounter::new(*v).encode(encoder),
        Value::Gauge(v) => ConstGauge::new(*v).encode(encoder),
        Value::Histogram(b) => Buckets(b).encode(encoder),
    }
}

/// The families as text of `format`. A family without samples is left out: an unobserved
/// figure is absent, never 0.
pub fn encode(families: Vec<Family>, format: Format) -> String {
    let counters: Vec<String> = families
        .iter()
        .filter(|f| matches!(f.metric_type(), MetricType::Counter) && !f.samples.is_empty())
        .map(|f| f.name.clone())
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(families)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    match format {
        Format::OpenMetrics => text,
        Format::Text => classic(&text, &counters),
    }
}

/// OpenMetrics text (as `prometheus_client` writes it: no `_created`, no units) in the classic
/// format: the two differ there only in that a counter's HELP and TYPE name its samples'
/// name (`_total` included), and in the `# EOF` line.
fn classic(openmetrics: &str, counters: &[String]) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.iter().any(|c| c == name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{p}{name}{total} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        vec![
            Family::new("kc_vfs_read", "Reads.").with(&[], Value::Counter(7)),
            Family::new("kc_vfs_read_by_process", "Reads per process.")
                .with(&[("pid", "12"), ("comm", "dd")], Value::Counter(3))
                .with(&[("comm", "other")], Value::Counter(4)),
            Family::new("kc_unobserved", "Nothing observed."),
            Family::new("kc_exporter_scrape_duration_seconds", "Time.")
                .with(&[], Value::Gauge(0.25)),
            Family::new("kc_schedlat_latency_seconds", "Latency.").with(
                &[("id", "0")],
                Value::Histogram(vec![(0.000002, 1), (0.000004, 2), (f64::INFINITY, 3)]),
            ),
        ]
    }

    #[test]
    fn counters_gauges_and_histograms_encode_as_openmetrics() {
        let text = encode(families(), Format::OpenMetrics);
        for line in [
            "# TYPE kc_vfs_read counter",
            "kc_vfs_read_total 7",
            "kc_vfs_read_by_process_total{pid=\"12\",comm=\"dd\"} 3",
            "kc_vfs_read_by_process_total{comm=\"other\"} 4",
            "kc_exporter_scrape_duration_seconds 0.25",
            "# TYPE kc_schedlat_latency_seconds histogram",
            "kc_schedlat_latency_seconds_sum{id=\"0\"} NaN",
            "kc_schedlat_latency_seconds_count{id=\"0\"} 6",
            "kc_schedlat_latency_seconds_bucket{le=\"0.000002\",id=\"0\"} 1",
            "kc_schedlat_latency_seconds_bucket{le=\"0.000004\",id=\"0\"} 3",
            "kc_schedlat_latency_seconds_bucket{le=\"+Inf\",id=\"0\"} 6",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        assert!(!text.contains("kc_unobserved"), "{text}");
    }

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let text = encode(families(), Format::Text);
        for line in [
            "# HELP kc_vfs_read_total Reads.",
            "# TYPE kc_vfs_read_total counter",
            "kc_vfs_read_total 7",
            "# TYPE kc_vfs_read_by_process_total counter",
            "# TYPE kc_schedlat_latency_seconds histogram",
            "# TYPE kc_exporter_scrape_duration_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(
            Format::accepted(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::accepted(Some("*/*")), Format::Text);
        assert_eq!(Format::accepted(None), Format::Text);
    }
}
