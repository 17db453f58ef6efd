//! The daemon's TOML configuration (see docs/daemon.example.toml). Command
//! line options override the file; everything has a default.

use std::{net::SocketAddr, path::{Path, PathBuf}};

use anyhow::{bail, Context};
use netray_core::AttachMode;
use netray_firewall::Rule;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netray";
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
pub const DEFAULT_SSE_QUEUE: usize = 1024;

/// An interface as declared (config file, state file or API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    pub name: String,
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "auto".into()
}

impl InterfaceSpec {
    pub fn validate(&self) -> Result<AttachMode, String> {
        if self.name.is_empty() || self.name.len() > 15 || self.name.contains(['/', '\0', ' ']) {
            return Err(format!("'{}' is not a valid interface name (1-15 characters, no '/' or spaces)", self.name));
        }
        self.mode.parse::<AttachMode>()
    }
}

/// A rule as declared: `{"cidr": "10.0.0.0/8", "proto": "udp", "port": 53, "dir": "in"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl RuleSpec {
    pub fn to_rule(&self) -> Result<Rule, netray_firewall::RuleError> {
        Rule::parse(&self.cidr, self.proto.as_deref(), self.port, self.dir.as_deref())
    }

    pub fn from_rule(r: &Rule) -> RuleSpec {
        RuleSpec {
            cidr: r.net.to_string(),
            proto: r.proto.map(|p| p.to_string()),
            port: r.port,
            dir: Some(r.dir.to_string()),
        }
    }
}

/// Flow accounting on the daemon's interfaces (served at /v1/flows).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Flows listed by /v1/flows when the request names no limit.
    #[serde(default = "default_top")]
    pub top: usize,
}

fn yes() -> bool {
    true
}
fn default_top() -> usize {
    20
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig { enabled: true, top: default_top() }
    }
}

/// What /metrics reports beyond the totals: `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Rules with their own series: the ones with the most hits; the others
    /// are summed under `rule_id="other"` (0: none).
    #[serde(default = "default_top_rules")]
    pub top_rules: usize,
    /// Also give rules without a hit a series (up to `top_rules` in all).
    #[serde(default)]
    pub zero_hit_rules: bool,
    /// Per-flow series for this many flows per interface (0: none).
    #[serde(default)]
    pub top_flows: usize,
}

fn default_top_rules() -> usize {
    netray_flows::metrics::DEFAULT_TOP_RULES
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { top_rules: default_top_rules(), zero_hit_rules: false, top_flows: 0 }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub pin_dir: Option<PathBuf>,
    /// Largest request body accepted (bytes); larger ones get 413.
    pub body_limit: Option<usize>,
    /// Events queued per SSE client before newer ones are dropped (and counted).
    pub sse_queue: Option<usize>,
    #[serde(default)]
    pub flows: FlowsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<InterfaceSpec>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(l) = &self.listen {
            l.parse::<SocketAddr>().with_context(|| format!("listen = '{l}' is not an address:port such as {DEFAULT_LISTEN}"))?;
        }
        for i in &self.interfaces {
            if let Err(e) = i.validate() {
                bail!("[[interface]] {}: {e}", i.name);
            }
        }
        for r in &self.rules {
            if let Err(e) = r.to_rule() {
                bail!("[[rule]] {}: {e}", r.cidr);
            }
        }
        if self.body_limit == Some(0) || self.sse_queue == Some(0) {
            bail!("body_limit and sse_queue must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../docs/daemon.example.toml");
        let cfg = Config::parse(text).unwrap();
        assert_eq!(cfg.listen.as_deref(), Some(DEFAULT_LISTEN));
        assert!(!cfg.rules.is_empty());
        assert!(!cfg.interfaces.is_empty());
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let e = Config::parse("[[rule]]\ncidr = \"10.0.0.1/8\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("did you mean 10.0.0.0/8"), "{e:#}");
        let e = Config::parse("[[interface]]\nname = \"eth0\"\nmode = \"fast\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown XDP mode"), "{e:#}");
        assert!(Config::parse("lisen = \"x\"").is_err());
        assert!(Config::parse("listen = \"nowhere\"").is_err());
    }
}
