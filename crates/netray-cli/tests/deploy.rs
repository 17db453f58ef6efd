//! deploy/kubernetes/daemonset.yaml is safe by default: it ships no token (no Secret with a
//! placeholder), and the daemon its ConfigMap configures parses and listens on the node's
//! loopback with a token file (which the daemon fills with a random token at start).

#[test]
fn the_daemonset_ships_no_token_and_listens_on_the_node_loopback() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let manifest = std::fs::read_to_string(format!("{root}/deploy/kubernetes/daemonset.yaml")).unwrap();
    assert!(!manifest.contains("kind: Secret") && !manifest.contains("stringData"), "a token in the manifest");
    // The ConfigMap's daemon.toml: the lines indented under `daemon.toml: |`.
    let toml: String = manifest
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("daemon.toml: |"))
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    let cfg = netray_daemon::config::Config::parse(&toml).unwrap_or_else(|e| panic!("{e:#}\n{toml}"));
    let listen: std::net::SocketAddr = cfg.listen.as_deref().expect("listen").parse().unwrap();
    assert!(listen.ip().is_loopback(), "the DaemonSet's daemon listens on {listen}");
    assert!(cfg.token_file.is_some());
}
