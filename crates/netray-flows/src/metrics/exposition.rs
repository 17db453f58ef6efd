//! What a scrape read ([`Scrape`]), and how it is written for the client:
//! the classic Prometheus text format 0.0.4 or OpenMetrics 1.0.0, chosen from
//! the request's `Accept` header ([`Format::negotiate`]). Both `netray top
//! --metrics` and the daemon's `/metrics` answer through this module.
//!
//! Both formats are written by prometheus-client (0.26 added the 0.0.4
//! encoder: counters' HELP and TYPE name the `_total` sample, no `# EOF`, no
//! `# UNIT`), from one collector holding what was read: reading the kernel's
//! maps and /proc happens before encoding, so a read that fails is known
//! before anything is written, and reported by
//! `netray_scrape_collector_success` instead of as zeros.

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

/// Label names and values of one series.
pub type Labels = Vec<(&'static str, String)>;

/// One sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Named without `_total`: the encoders add it to the samples (and, in
    /// the 0.0.4 format, to HELP and TYPE).
    Counter,
    Gauge,
}

/// One metric family as read.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub series: Vec<(Labels, Value)>,
}

/// Everything one scrape read, and which of its sources could not be read.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    families: Vec<Family>,
    /// Per source ("interfaces", "rules", "process", ...): the first error, if any.
    sources: Vec<(&'static str, Option<String>)>,
}

/// The name of the family that says which sources were read.
pub const SUCCESS_FAMILY: &str = "netray_scrape_collector_success";

impl Scrape {
    /// Adds a family; one without series is left out.
    pub fn push(&mut self, name: &'static str, help: &'static str, kind: Kind, series: Vec<(Labels, Value)>) {
        debug_assert!(!name.ends_with("_total"), "{name}: counters are named without _total");
        debug_assert!(self.families.iter().all(|f| f.name != name), "{name} twice");
        // OpenMetrics wants `"` escaped in HELP, which prometheus-client's
        // encoder does not do: help texts hold none of `"`, `\`, newline.
        debug_assert!(!help.contains(['"', '\\', '\n']), "{name}: help {help:?}");
        if !series.is_empty() {
            self.families.push(Family { name, help, kind, series });
        }
    }

    pub fn counter<V: Into<Value>>(&mut self, name: &'static str, help: &'static str, series: Vec<(Labels, V)>) {
        self.push(name, help, Kind::Counter, series.into_iter().map(|(l, v)| (l, v.into())).collect());
    }

    pub fn gauge<V: Into<Value>>(&mut self, name: &'static str, help: &'static str, series: Vec<(Labels, V)>) {
        self.push(name, help, Kind::Gauge, series.into_iter().map(|(l, v)| (l, v.into())).collect());
    }

    /// Records that `source` was read (`Ok`) or not; a source that fails
    /// once in a scrape stays failed, with its first error.
    pub fn source(&mut self, source: &'static str, result: Result<(), String>) {
        let err = result.err();
        match self.sources.iter_mut().find(|(s, _)| *s == source) {
            Some((_, e)) => {
                if e.is_none() {
                    *e = err;
                }
            }
            None => self.sources.push((source, err)),
        }
    }

    /// The sources that could not be read, with their errors.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.sources.iter().filter_map(|(s, e)| Some((*s, e.as_deref()?)))
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The scrape in `format`.
    pub fn encode(self, format: Format) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        match format {
            Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        }
        Ok(out)
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let success = Family {
            name: SUCCESS_FAMILY,
            help: "1 if the source was read whole, 0 if a read failed: its series are then left out \
                   (never reported as zeros)",
            kind: Kind::Gauge,
            series: self
                .sources
                .iter()
                .map(|(s, e)| (vec![("collector", s.to_string())], Value::Int(e.is_none() as u64)))
                .collect(),
        };
        for f in self.families.iter().chain((!success.series.is_empty()).then_some(&success)) {
            let ty = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut m = enc.encode_descriptor(f.name, f.help, None, ty)?;
            for (labels, v) in &f.series {
                let e = m.encode_family(labels)?;
                match (f.kind, *v) {
                    (Kind::Counter, Value::Int(v)) => ConstCounter::new(v).encode(e)?,
                    (Kind::Counter, Value::Float(v)) => ConstCounter::new(v).encode(e)?,
                    (Kind::Gauge, Value::Int(v)) => match i64::try_from(v) {
                        Ok(v) => ConstGauge::new(v).encode(e)?,
                        Err(_) => ConstGauge::new(v as f64).encode(e)?,
                    },
                    (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(e)?,
                }
            }
        }
        Ok(())
    }
}

/// The exposition format of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The classic Prometheus text format, version 0.0.4: what Prometheus,
    /// promtool and most tools read.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format to answer a request with this `Accept` header: OpenMetrics
    /// when the header names `application/openmetrics-text` with a quality at
    /// least that of `text/plain` (or of a wildcard covering it), else the
    /// 0.0.4 text — also when there is no header, or it accepts neither.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)))
                .unwrap_or(0.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_accept_header() {
        use Format::*;
        let cases = [
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("text/plain;version=0.0.4"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            (Some("Application/OpenMetrics-Text; version=1.0.0"), OpenMetrics),
            (Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.9"), Text),
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text;q=nonsense"), Text),
            (Some("text/plain, application/openmetrics-text"), OpenMetrics),
            // What Prometheus 2.x sends.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OpenMetrics,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert_eq!(Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(OpenMetrics.content_type(), "application/openmetrics-text; version=1.0.0; charset=utf-8");
    }

    fn sample() -> Scrape {
        let mut s = Scrape::default();
        s.counter("x_packets", "Packets seen by x", vec![(vec![("if", "a\"b".to_string())], 3u64)]);
        s.gauge("x_up", "1 while x is up", vec![(Vec::new(), 1u64)]);
        s.counter("x_cpu_seconds", "CPU time", vec![(Vec::new(), 1.5f64)]);
        s.gauge::<u64>("x_empty", "Never shown", Vec::new());
        s.source("a", Ok(()));
        s.source("b", Err("boom".into()));
        s.source("b", Ok(()));
        s
    }

    /// The whole output of both encoders: what a client sees.
    #[test]
    fn both_formats_whole() {
        let s = sample();
        assert_eq!(s.errors().collect::<Vec<_>>(), [("b", "boom")]);
        assert_eq!(
            s.clone().encode(Format::Text).unwrap(),
            "# HELP x_packets_total Packets seen by x\n\
             # TYPE x_packets_total counter\n\
             x_packets_total{if=\"a\\\"b\"} 3\n\
             # HELP x_up 1 while x is up\n\
             # TYPE x_up gauge\n\
             x_up 1\n\
             # HELP x_cpu_seconds_total CPU time\n\
             # TYPE x_cpu_seconds_total counter\n\
             x_cpu_seconds_total 1.5\n\
             # HELP netray_scrape_collector_success 1 if the source was read whole, 0 if a read failed: its series are then left out (never reported as zeros)\n\
             # TYPE netray_scrape_collector_success gauge\n\
             netray_scrape_collector_success{collector=\"a\"} 1\n\
             netray_scrape_collector_success{collector=\"b\"} 0\n"
        );
        let om = s.encode(Format::OpenMetrics).unwrap();
        assert!(om.starts_with("# HELP x_packets Packets"), "{om}");
        assert!(om.contains("# TYPE x_packets counter\nx_packets_total{if=\"a\\\"b\"} 3\n"), "{om}");
        assert!(om.ends_with("netray_scrape_collector_success{collector=\"b\"} 0\n# EOF\n"), "{om}");
    }
}
