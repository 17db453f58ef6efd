//! The daemon's TOML configuration (see docs/daemon.example.toml). Command
//! line options override the file; everything has a default.

use std::{net::SocketAddr, path::{Path, PathBuf}};

use anyhow::{bail, Context};
use netray_core::AttachMode;
use netray_firewall::{Action, Rule, RuleOptions, Ttl};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netray";
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
pub const DEFAULT_SSE_QUEUE: usize = 1024;

/// Bounds of what the API accepts, stated in its OpenAPI document too.
pub mod bounds {
    /// Longest `cidr` (an IPv6 address in its longest spelling, with /128).
    pub const CIDR_MAX_LEN: usize = 49;
    /// Longest `proto` ("icmpv6").
    pub const PROTO_MAX_LEN: usize = 6;
    /// Longest interface name, in bytes (the kernel's IFNAMSIZ less its NUL).
    pub const IFNAME_MAX_LEN: usize = 15;
    /// Lowest and highest `port`.
    pub const PORT_MIN: u64 = 1;
    pub const PORT_MAX: u64 = 65535;
    /// XDP modes an interface can be attached in (drv and skb are iproute2's
    /// names for native and generic).
    pub const MODES: [&str; 5] = ["auto", "native", "generic", "drv", "skb"];
    /// Directions of a rule.
    pub const DIRS: [&str; 3] = ["in", "out", "both"];
    /// Longest `ttl` ("1year 11months 4weeks 6days 23h 59m 59s" and a little more).
    pub const TTL_MAX_LEN: usize = 64;
}

/// A field of a request (or of the config file) that is not valid: the
/// message names the field, e.g. `field 'port': 70000 is out of range 1-65535`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// Not a JSON object where one was expected.
    NotAnObject { got: &'static str, example: &'static str },
    UnknownField { given: String, expected: &'static str },
    Missing(&'static str),
    Invalid { field: &'static str, problem: String },
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecError::NotAnObject { got, example } => write!(f, "expected an object such as {example}, got {got}"),
            SpecError::UnknownField { given, expected } => write!(f, "unknown field '{given}' (expected {expected})"),
            SpecError::Missing(field) => write!(f, "field '{field}' is required"),
            SpecError::Invalid { field, problem } => write!(f, "field '{field}': {problem}"),
        }
    }
}

impl std::error::Error for SpecError {}

impl From<SpecError> for String {
    fn from(e: SpecError) -> String {
        e.to_string()
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid { field, problem: problem.into() }
}

/// What kind of JSON value this is, for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The object's fields, refusing any that is not `expected`.
fn fields<'a>(v: &'a Value, expected: &[&str], expected_text: &'static str, example: &'static str)
    -> Result<&'a Map<String, Value>, SpecError> {
    let obj = v.as_object().ok_or(SpecError::NotAnObject { got: json_kind(v), example })?;
    if let Some(k) = obj.keys().find(|k| !expected.contains(&k.as_str())) {
        return Err(SpecError::UnknownField { given: short(k), expected: expected_text });
    }
    Ok(obj)
}

/// A string field of at most `max` bytes; `None` when absent (or null, if `nullable`).
fn string_field(obj: &Map<String, Value>, field: &'static str, max: usize, nullable: bool)
    -> Result<Option<String>, SpecError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) if nullable => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(invalid(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > max => Err(invalid(field, format!("longer than {max} bytes"))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(invalid(field, format!("expected a string, got {}", json_kind(v)))),
    }
}

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

pub const INTERFACE_EXAMPLE: &str = r#"{"name": "eth1", "mode": "auto"}"#;

impl InterfaceSpec {
    /// An interface from the API's JSON; every problem names its field.
    pub fn from_json(v: &Value) -> Result<InterfaceSpec, SpecError> {
        let obj = fields(v, &["name", "mode"], "name, mode", INTERFACE_EXAMPLE)?;
        let name = string_field(obj, "name", usize::MAX, false)?.ok_or(SpecError::Missing("name"))?;
        let mode = string_field(obj, "mode", usize::MAX, false)?.unwrap_or_else(default_mode);
        let spec = InterfaceSpec { name, mode };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the name as the kernel would (dev_valid_name) and the mode.
    pub fn validate(&self) -> Result<AttachMode, SpecError> {
        check_ifname(&self.name).map_err(|problem| invalid("name", problem))?;
        if !bounds::MODES.contains(&self.mode.as_str()) {
            return Err(invalid("mode", format!("unknown XDP mode '{}': use auto, native or generic", short(&self.mode))));
        }
        self.mode.parse::<AttachMode>().map_err(|e| invalid("mode", e))
    }
}

/// Whether the kernel would accept this as an interface name (what is wrong if not).
pub fn check_ifname(name: &str) -> Result<(), String> {
    let max = bounds::IFNAME_MAX_LEN;
    if name.is_empty() || name.len() > max {
        return Err(format!("'{}' is not a valid interface name: 1-{max} bytes", short(name)));
    }
    if name == "." || name == ".." || name.chars().any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace()) {
        return Err(format!("'{}' is not a valid interface name: no '/', ':', spaces, '.' or '..'", short(name)));
    }
    Ok(())
}

/// A value quoted in a message, shortened when long.
pub fn short(s: &str) -> String {
    if s.chars().count() > 40 { format!("{}...", s.chars().take(40).collect::<String>()) } else { s.to_string() }
}

/// A rule as declared: `{"cidr": "10.0.0.0/8", "proto": "udp", "port": 53, "dir": "in"}`,
/// optionally with `"ttl": "10m"` (it expires that long after it is added)
/// and `"action"`: "deny" (the default), "audit" (it counts and lets pass;
/// `"audit": true`, the older form, says the same) or "allow".
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// What `action` may say.
const ACTIONS: [&str; 3] = ["deny", "audit", "allow"];

pub const RULE_EXAMPLE: &str = r#"{"cidr": "10.0.0.0/8", "proto": "udp", "port": 53, "dir": "in"}"#;

impl RuleSpec {
    /// A rule from the API's JSON, its fields' types and bounds checked
    /// (`rule()` checks their values); every problem names its field.
    /// `proto`, `port` and `dir` may be null, meaning absent.
    pub fn from_json(v: &Value) -> Result<RuleSpec, SpecError> {
        use bounds::*;
        let obj = fields(
            v,
            &["cidr", "proto", "port", "dir", "ttl", "audit", "action"],
            "cidr, proto, port, dir, ttl, audit, action",
            RULE_EXAMPLE,
        )?;
        let cidr = string_field(obj, "cidr", CIDR_MAX_LEN, false)?.ok_or(SpecError::Missing("cidr"))?;
        let proto = string_field(obj, "proto", PROTO_MAX_LEN, true)?;
        let port = match obj.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(p) if (PORT_MIN..=PORT_MAX).contains(&p) => Some(p as u16),
                _ if n.is_f64() => return Err(invalid("port", format!("{n} is not an integer ({PORT_MIN}-{PORT_MAX})"))),
                _ => return Err(invalid("port", format!("{n} is out of range {PORT_MIN}-{PORT_MAX}"))),
            },
            Some(v) => return Err(invalid("port", format!("expected an integer {PORT_MIN}-{PORT_MAX}, got {}", json_kind(v)))),
        };
        let dir = match obj.get("dir") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if DIRS.contains(&d.as_str()) => Some(d.clone()),
            Some(Value::String(d)) => return Err(invalid("dir", format!("'{}' is not one of in, out, both", short(d)))),
            Some(v) => return Err(invalid("dir", format!("expected one of in, out, both, got {}", json_kind(v)))),
        };
        let ttl = string_field(obj, "ttl", TTL_MAX_LEN, true)?;
        let audit = match obj.get("audit") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(invalid("audit", format!("expected true or false, got {}", json_kind(v)))),
        };
        let action = match obj.get("action") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) if ACTIONS.contains(&a.as_str()) => Some(a.clone()),
            Some(Value::String(a)) => return Err(invalid("action", format!("'{}' is not one of deny, audit, allow", short(a)))),
            Some(v) => return Err(invalid("action", format!("expected one of deny, audit, allow, got {}", json_kind(v)))),
        };
        if audit && action.as_deref().is_some_and(|a| a != "audit") {
            return Err(invalid("audit", format!("true contradicts action '{}': give one of them", action.unwrap_or_default())));
        }
        Ok(RuleSpec { cidr, proto, port, dir, ttl, audit, action })
    }

    /// What the rule does and until when, or what is wrong naming the field.
    pub fn options(&self) -> Result<RuleOptions, SpecError> {
        let ttl = self.ttl.as_deref().map(str::parse::<Ttl>).transpose().map_err(|e| invalid("ttl", e.to_string()))?;
        let action = match self.action.as_deref() {
            Some("allow") => Action::Allow,
            Some("audit") => Action::Audit,
            _ if self.audit => Action::Audit,
            _ => Action::Deny,
        };
        Ok(RuleOptions { action, ttl: ttl.map(|t| t.0) })
    }

    /// The rule with its options (`rule()` and `options()`).
    pub fn rule_with_options(&self) -> Result<(Rule, RuleOptions), SpecError> {
        Ok((self.rule()?, self.options()?))
    }

    /// A rule from the daemon's state file. Before ICMPv6 had its own name an
    /// IPv6 rule's protocol was stored as `icmp`; read so, it means icmpv6.
    pub fn stored_rule_with_options(&self) -> Result<(Rule, RuleOptions), SpecError> {
        if self.proto.as_deref() == Some("icmp") && self.cidr.contains(':') {
            return RuleSpec { proto: Some("icmpv6".into()), ..self.clone() }.rule_with_options();
        }
        self.rule_with_options()
    }

    pub fn to_rule(&self) -> Result<Rule, netray_firewall::RuleError> {
        let rule = Rule::parse(&self.cidr, self.proto.as_deref(), self.port, self.dir.as_deref())?;
        Ok(if self.action.as_deref() == Some("allow") { rule.allowing() } else { rule })
    }

    /// The rule, or what is wrong with it naming the field.
    pub fn rule(&self) -> Result<Rule, SpecError> {
        use netray_firewall::RuleError as E;
        self.to_rule().map_err(|e| match e {
            E::BadCidr(_) | E::HostBits { .. } => invalid("cidr", e.to_string()),
            E::BadProto(p) => invalid("proto", format!("unknown protocol '{}': use tcp, udp, sctp, icmp, icmpv6 or a protocol number 1-255", short(&p))),
            E::PortWithoutPorts(p) => {
                invalid("port", format!("protocol {p} has no ports: give proto tcp, udp or sctp, or no proto (all three)"))
            }
            E::ProtoFamily { .. } => invalid("proto", e.to_string()),
            E::PortZero => invalid("port", format!("0 is out of range {}-{}", bounds::PORT_MIN, bounds::PORT_MAX)),
            E::BadDir(d) => invalid("dir", format!("unknown direction '{}': use in (received packets, by source), out (sent packets, by destination) or both", short(&d))),
            // Never from to_rule (options() parses the TTL); matched for completeness.
            E::BadTtl(_) | E::TtlInPast(_) | E::TtlZero(_) => invalid("ttl", e.to_string()),
        })
    }

    pub fn from_rule(r: &Rule) -> RuleSpec {
        RuleSpec {
            cidr: r.net.to_string(),
            proto: r.proto.map(|p| p.to_string()),
            port: r.port,
            dir: Some(r.dir.to_string()),
            ttl: None,
            audit: false,
            action: r.allow.then(|| "allow".to_string()),
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

/// IPFIX export of the flows of the daemon's interfaces: `[ipfix]`. No
/// collector, no export.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfixConfig {
    /// HOST:PORT of the collector (e.g. "127.0.0.1:4739").
    pub collector: Option<String>,
    /// "udp" (the default) or "tcp".
    pub transport: Option<String>,
    /// A long-lived flow's counts are exported this often ("60s").
    pub active_timeout: Option<String>,
    /// A flow is exported once idle this long ("15s").
    pub idle_timeout: Option<String>,
    pub observation_domain_id: Option<u32>,
    /// UDP: the template set is sent again this often ("30s").
    pub template_refresh: Option<String>,
}

impl IpfixConfig {
    /// The exporter's settings; None without a collector.
    pub fn export_config(&self) -> anyhow::Result<Option<netray_ipfix::ExportConfig>> {
        let Some(collector) = &self.collector else { return Ok(None) };
        let mut c = netray_ipfix::ExportConfig::new(collector);
        if let Some(t) = &self.transport {
            c.transport = t.parse().map_err(|e: String| anyhow::anyhow!("[ipfix] transport: {e}"))?;
        }
        let duration = |field: &str, v: &Option<String>, default: std::time::Duration| match v {
            None => Ok(default),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => Ok(d),
                _ => bail!("[ipfix] {field} = '{text}' is not a duration above 0 such as 60s, 500ms or 2m"),
            },
        };
        c.timeouts.active = duration("active_timeout", &self.active_timeout, c.timeouts.active)?;
        c.timeouts.idle = duration("idle_timeout", &self.idle_timeout, c.timeouts.idle)?;
        c.template_refresh = duration("template_refresh", &self.template_refresh, c.template_refresh)?;
        c.domain_id = self.observation_domain_id.unwrap_or(0);
        c.check()?;
        c.resolve().map_err(|e| anyhow::anyhow!("[ipfix] collector: {e}"))?;
        Ok(Some(c))
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
    #[serde(default)]
    pub ipfix: IpfixConfig,
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
            if let Err(e) = r.rule_with_options() {
                bail!("[[rule]] {}: {e}", r.cidr);
            }
        }
        if self.ipfix.export_config()?.is_some() && !self.flows.enabled {
            bail!("[ipfix] exports the flows the daemon counts: set [flows] enabled = true, or remove the collector");
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
        let ipfix = cfg.ipfix.export_config().unwrap().expect("the example exports IPFIX");
        assert_eq!(ipfix.timeouts.active, std::time::Duration::from_secs(60));
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let e = Config::parse("[[rule]]\ncidr = \"10.0.0.1/8\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("did you mean 10.0.0.0/8"), "{e:#}");
        let e = Config::parse("[[interface]]\nname = \"eth0\"\nmode = \"fast\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("unknown XDP mode"), "{e:#}");
        assert!(Config::parse("lisen = \"x\"").is_err());
        assert!(Config::parse("listen = \"nowhere\"").is_err());
        let e = Config::parse("[ipfix]\ncollector = \"127.0.0.1:4739\"\ntransport = \"sctp\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("use udp or tcp"), "{e:#}");
        let e = Config::parse("[ipfix]\ncollector = \"127.0.0.1:4739\"\nidle_timeout = \"0s\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("idle_timeout"), "{e:#}");
        let e = Config::parse("[ipfix]\ncollector = \"nowhere\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("HOST:PORT"), "{e:#}");
        let e = Config::parse("[flows]\nenabled = false\n[ipfix]\ncollector = \"127.0.0.1:4739\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("[flows] enabled"), "{e:#}");
    }

    #[test]
    fn invalid_fields_are_named() {
        let rule = |j: &str| RuleSpec::from_json(&serde_json::from_str(j).unwrap()).and_then(|s| s.rule_with_options().map(|_| s));
        let msg = |j: &str| rule(j).unwrap_err().to_string();
        assert_eq!(msg(r#"{"cidr": "10.0.0.0/8", "port": 70000}"#), "field 'port': 70000 is out of range 1-65535");
        assert_eq!(msg(r#"{"cidr": "10.0.0.0/8", "port": -1}"#), "field 'port': -1 is out of range 1-65535");
        assert_eq!(msg(r#"{"cidr": "10.0.0.0/8", "port": 5.5}"#), "field 'port': 5.5 is not an integer (1-65535)");
        assert_eq!(msg(r#"{"cidr": "10.0.0.0/8", "prot": "udp"}"#), "unknown field 'prot' (expected cidr, proto, port, dir, ttl, audit, action)");
        assert_eq!(msg(r#"{"cidr": "10.0.0.0/8", "action": "permit"}"#), "field 'action': 'permit' is not one of deny, audit, allow");
        assert_eq!(
            msg(r#"{"cidr": "10.0.0.0/8", "audit": true, "action": "allow"}"#),
            "field 'audit': true contradicts action 'allow': give one of them"
        );
        assert_eq!(
            msg(r#"{"cidr": "10.0.0.0/8", "ttl": "-3s"}"#),
            "field 'ttl': --ttl '-3s' is in the past: a TTL counts from now; give a positive duration such as 30s, 10m or 2h"
        );
        assert_eq!(msg(r#"{"cidr": "10.0.0.0/8", "audit": 1}"#), "field 'audit': expected true or false, got a number");
        assert_eq!(msg(r#"{"proto": "udp"}"#), "field 'cidr' is required");
        assert_eq!(msg(r#"{"cidr": null}"#), "field 'cidr': expected a string, got null");
        assert_eq!(msg(r#"{"cidr": ""}"#), "field 'cidr': must not be empty");
        assert!(msg(r#"{"cidr": "10.0.0.1/8"}"#).starts_with("field 'cidr': '10.0.0.1/8' has host bits set"));
        assert!(msg(r#"{"cidr": "::/0", "proto": "nope"}"#).starts_with("field 'proto': unknown protocol 'nope'"));
        assert!(msg(r#"{"cidr": "::/0", "proto": "icmp", "port": 1}"#).starts_with("field 'port': protocol icmp has no ports"));
        assert_eq!(msg(r#"{"cidr": "::/0", "dir": 1}"#), "field 'dir': expected one of in, out, both, got a number");
        assert!(msg("[1]").starts_with("expected an object such as {\"cidr\""));
        let ok = rule(r#"{"cidr": "10.0.0.0/8", "proto": null, "port": null, "dir": null}"#).unwrap();
        assert_eq!((ok.proto, ok.port, ok.dir), (None, None, None));

        let iface = |j: &str| InterfaceSpec::from_json(&serde_json::from_str(j).unwrap()).map_err(|e| e.to_string());
        assert_eq!(iface(r#"{"mode": "auto"}"#).unwrap_err(), "field 'name' is required");
        assert_eq!(iface(r#"{"name": "x", "mod": "auto"}"#).unwrap_err(), "unknown field 'mod' (expected name, mode)");
        assert_eq!(iface(r#"{"name": "x", "mode": null}"#).unwrap_err(), "field 'mode': expected a string, got null");
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb", "sixteen-bytes-xx"] {
            let e = iface(&serde_json::json!({"name": bad}).to_string()).unwrap_err();
            assert!(e.starts_with("field 'name'"), "{bad:?}: {e}");
        }
        assert_eq!(iface(r#"{"name": "eth1"}"#).unwrap(), InterfaceSpec { name: "eth1".into(), mode: "auto".into() });
        assert!(iface(r#"{"name": "eth1", "mode": "skb"}"#).is_ok());
    }
}
