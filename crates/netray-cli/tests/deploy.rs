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

/// Every manifest in deploy/kubernetes passes kubernetes-validate (pinned by setup/deps.sh, strict:
/// unknown fields are errors) against the Kubernetes schema; the same manifest with a field of the
/// wrong type is refused, so a pass means the schema was applied.
#[test]
fn the_manifests_are_valid_kubernetes_and_a_broken_one_is_refused() {
    const VERSION: &str = "1.37.0";
    let validator = std::env::var("NETRAY_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| format!("/var/cache/netray/kubernetes-validate-{VERSION}/bin/kubernetes-validate"));
    let validate = |file: &std::path::Path| {
        std::process::Command::new(&validator)
            .args(["--strict", "--no-warn"])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("{validator}: {e}: setup/deps.sh (make deps) installs kubernetes-validate=={VERSION}"))
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let out = validate(&path);
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{} is not valid Kubernetes:\n{text}", path.display());
            assert!(text.contains("passed"), "{}: {text}", path.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no manifest in {dir}");

    let manifest = std::fs::read_to_string(format!("{dir}/daemonset.yaml")).unwrap();
    let broken = manifest.replace("hostNetwork: true", "hostNetwork: \"yes\"");
    assert_ne!(broken, manifest);
    let file = std::env::temp_dir().join(format!("netray-broken-daemonset-{}.yaml", std::process::id()));
    std::fs::write(&file, broken).unwrap();
    let out = validate(&file);
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success(), "kubernetes-validate accepted hostNetwork: \"yes\"");
}
