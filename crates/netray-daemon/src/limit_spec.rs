//! A rate limit as the API and the state file write it:
//! `{"cidr": "10.0.0.0/8", "rate": "100/s", "burst": 200, "per_source": true,
//! "proto": "udp", "port": 53, "syn": false, "ban": "60s", "dir": "in"}`;
//! only cidr and rate are required.

use std::time::Duration;

use netray_firewall::{limit::LimitError, Limit, LimitArgs};
use serde::{Deserialize, Serialize};

use crate::config::short;

pub const LIMIT_EXAMPLE: &str = r#"{"cidr": "10.0.0.0/8", "rate": "100/s", "burst": 200, "per_source": true, "ban": "60s"}"#;

/// Longest string accepted in each text field.
const FIELD_MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub cidr: String,
    pub rate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_source: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub syn: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl LimitSpec {
    /// A limit from a POST body, or what is wrong with it (naming the field).
    pub fn from_json(v: &serde_json::Value) -> Result<LimitSpec, String> {
        const FIELDS: [&str; 9] = ["cidr", "rate", "burst", "per_source", "proto", "port", "syn", "ban", "dir"];
        if let Some(k) = v.as_object().and_then(|o| o.keys().find(|k| !FIELDS.contains(&k.as_str()))) {
            return Err(format!("unknown field '{}': a limit has {}", short(k), FIELDS.join(", ")));
        }
        let spec: LimitSpec = serde_json::from_value(v.clone()).map_err(|e| short(&e.to_string()).to_string())?;
        for (name, value) in [("cidr", Some(&spec.cidr)), ("rate", Some(&spec.rate)), ("proto", spec.proto.as_ref()),
            ("ban", spec.ban.as_ref()), ("dir", spec.dir.as_ref())]
        {
            if value.is_some_and(|v| v.len() > FIELD_MAX_LEN) {
                return Err(format!("field '{name}': longer than {FIELD_MAX_LEN} characters"));
            }
        }
        Ok(spec)
    }

    /// The limit, checked as `netray limit add` checks it.
    pub fn to_limit(&self) -> Result<Limit, LimitError> {
        Limit::parse(&LimitArgs {
            cidr: &self.cidr,
            rate: &self.rate,
            burst: self.burst,
            per_source: self.per_source,
            proto: self.proto.as_deref(),
            port: self.port,
            syn: self.syn,
            ban: self.ban.as_deref(),
            dir: self.dir.as_deref(),
        })
    }

    pub fn from_limit(l: &Limit) -> LimitSpec {
        LimitSpec {
            cidr: l.net.to_string(),
            rate: l.rate.to_string(),
            burst: Some(l.burst),
            per_source: l.per_source,
            // --syn implies tcp: stored as given, so it reads back equal.
            proto: if l.syn { None } else { l.proto.map(|p| p.to_string()) },
            port: l.port,
            syn: l.syn,
            ban: l.ban.map(|b: Duration| format!("{}ms", b.as_millis())),
            dir: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_round_trips_through_its_spec() {
        let v: serde_json::Value = serde_json::from_str(LIMIT_EXAMPLE).unwrap();
        let l = LimitSpec::from_json(&v).unwrap().to_limit().unwrap();
        assert_eq!(LimitSpec::from_limit(&l).to_limit().unwrap(), l);
        let syn = LimitSpec { syn: true, ..LimitSpec::from_limit(&l) }.to_limit().unwrap();
        assert_eq!(LimitSpec::from_limit(&syn).to_limit().unwrap(), syn);
        let bad = serde_json::json!({"cidr": "10.0.0.0/8", "rate": "1/s", "colour": "red"});
        assert!(LimitSpec::from_json(&bad).unwrap_err().contains("unknown field"));
    }
}
