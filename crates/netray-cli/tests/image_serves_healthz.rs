//! The OCI image (Containerfile, setup/image.sh) runs the daemon and it answers /healthz.
//!
//! The test builds the image's runtime stage around the binary under test (`setup/image.sh
//! --prebuilt`: the same toolchain and Debian as `make image`'s build stage, seconds instead of a
//! from-scratch cargo build; the build stage itself is `make image`'s, see docs/deploy.md). Then
//! podman runs it with the DaemonSet's capabilities, the host's bpffs and no network of its own
//! (nothing on the host's network is touched), and /healthz is asked from inside the container:
//! with podman's defaults, else with runc and this machine's limits, each failure printed with
//! podman's exact reason. Where no container runs at all — the image's own Debian base fails too —
//! the test says so. In every case it also checks the image's filesystem by itself: its netray
//! runs in a chroot of the mounted image (--version, then the daemon with the image's default
//! config on a 127.0.0.1 port, answering /healthz with 200).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_string()
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman is missing: setup/deps.sh (make deps) installs podman, buildah and debootstrap")
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// The image built for this test, and what it left on the host: removed on drop, also when the
/// test fails. Fields are dropped in order: the daemon stops before its mounts and pins go.
#[derive(Default)]
struct Cleanup {
    daemon: Option<Child>,
    containers: Vec<String>,
    mounted: Option<String>,
    pins: Vec<PathBuf>,
    state: Option<PathBuf>,
    image: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            // SIGTERM first: the daemon's own shutdown path.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while d.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        for id in self.containers.drain(..) {
            let _ = podman(&["rm", "-f", "-t", "2", &id]);
        }
        if let Some(image) = &self.mounted {
            let _ = podman(&["image", "unmount", image]);
        }
        for dir in self.pins.drain(..).chain(self.state.take()) {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(image) = self.image.take() {
            let _ = podman(&["rmi", "-f", &image]);
        }
    }
}

/// One HTTP/1.0 GET on 127.0.0.1:port: the status line and the body.
fn get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    Ok((head.lines().next().unwrap_or("").to_string(), body.to_string()))
}

#[test]
fn the_image_runs_the_daemon_and_it_answers_healthz() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the image test needs root: run `make test` as root");
    for tool in ["podman", "debootstrap"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        assert!(found.status.success(), "{tool} is missing: setup/deps.sh (make deps) installs podman, buildah and debootstrap");
    }
    let started = Instant::now();
    let bin = std::env::var("NETRAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_netray").to_string());
    let image = format!("localhost/netray-test:{}", unique("image"));
    let mut cleanup = Cleanup::default();

    // The runtime stage around the binary under test, on the cached debootstrap base.
    let build = Command::new("bash")
        .arg(format!("{ROOT}/setup/image.sh"))
        .args(["--prebuilt", &bin, "--tag", &image])
        .output()
        .unwrap();
    cleanup.image = Some(image.clone());
    assert!(build.status.success(), "setup/image.sh --prebuilt failed:\n{}", text(&build));
    let summary = String::from_utf8_lossy(&build.stdout).trim().to_string();
    eprintln!("{summary} [{:.0?}]", started.elapsed());
    let base = summary.rsplit_once("(bases: ").and_then(|(_, b)| b.strip_suffix(')')).expect("the bases' tag").to_string();

    // The image as the DaemonSet describes it.
    let inspect = podman(&["image", "inspect", "--format", "{{json .Config}}", &image]);
    assert!(inspect.status.success(), "{}", text(&inspect));
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/netray"]), "{config}");
    assert_eq!(config["Cmd"], serde_json::json!(["daemon", "--config", "/etc/netray/daemon.toml"]), "{config}");
    for label in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.base.name",
    ] {
        assert!(config["Labels"][label].as_str().is_some_and(|v| !v.is_empty()), "no label {label}: {config}");
    }

    let ran = run_the_container(&image, &base, &mut cleanup);
    // The image's filesystem by itself, also where no container runs.
    let root = mount_image(&image, &mut cleanup);
    daemon_in_a_chroot_answers_healthz(&root, &mut cleanup);
    match ran {
        Some(how) => eprintln!(
            "{image}: /healthz answered 200 in a container ({how}) and in a chroot [{:.0?}]",
            started.elapsed()
        ),
        None => eprintln!(
            "{image}: no container runs on this machine (reasons above); /healthz answered 200 in a chroot of the image [{:.0?}]",
            started.elapsed()
        ),
    }
}

/// Runs the image with the DaemonSet's capabilities, the host's bpffs and no network of its own,
/// and asks /healthz inside: first with podman's defaults, as a node runs it; where that fails,
/// with runc and the file and process limits this machine grants (crun refuses hybrid cgroups,
/// and raising the container's limits above this machine's needs CAP_SYS_RESOURCE). Returns how
/// it ran, or None, after printing podman's exact reasons, when this machine runs no container
/// at all (the image's own Debian base fails with `true` too).
fn run_the_container(image: &str, base: &str, cleanup: &mut Cleanup) -> Option<&'static str> {
    let limit = |resource| {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(resource, &mut l) }, 0);
        l
    };
    let nofile = limit(libc::RLIMIT_NOFILE).rlim_max;
    let nproc = limit(libc::RLIMIT_NPROC).rlim_cur.min(4096);
    let ways: [(&str, Vec<String>); 2] = [
        ("podman's defaults", vec![]),
        (
            "runc, with this machine's limits",
            ["--runtime", "runc", "--ulimit", &format!("nofile={nofile}:{nofile}"), "--ulimit", &format!("nproc={nproc}:{nproc}")]
                .map(String::from)
                .to_vec(),
        ),
    ];
    let mut reasons = Vec::new();
    for (how, options) in &ways {
        let pins = PathBuf::from(format!("/sys/fs/bpf/{}", unique("netray-e2e-image")));
        cleanup.pins.push(pins.clone());
        // Named before it runs: a runtime that fails may leave it created.
        let name = unique("netray-e2e-image");
        cleanup.containers.push(name.clone());
        let mut args: Vec<&str> = vec!["run", "-d", "--name", &name, "--network=none", "--pull=never"];
        args.extend(options.iter().map(String::as_str));
        args.extend(["--cap-drop=ALL", "--cap-add=BPF,NET_ADMIN,SYS_ADMIN,PERFMON,SYS_RESOURCE"]);
        args.extend(["-v", "/sys/fs/bpf:/sys/fs/bpf", image]);
        args.extend(["--pin-dir", pins.to_str().unwrap(), "daemon", "--config", "/etc/netray/daemon.toml"]);
        let run = podman(&args);
        if run.status.success() {
            healthz_in_the_container(&name);
            assert!(pins.exists(), "the daemon in the container pinned nothing in {}", pins.display());
            eprintln!("podman ran {image} with {how}: /healthz answered 200 inside it");
            return Some(how);
        }
        eprintln!("podman cannot run {image} with {how}: {}", text(&run));
        reasons.push(text(&run));
    }
    // Is it the image, or does this machine run no container at all? The base alone tells.
    let mut base_args: Vec<&str> = vec!["run", "--rm", "--network=none", "--pull=never"];
    base_args.extend(ways[1].1.iter().map(String::as_str));
    let base_image = format!("localhost/netray-base:{base}");
    base_args.extend([base_image.as_str(), "true"]);
    let plain = podman(&base_args);
    assert!(!plain.status.success(), "podman runs {base_image} here, but not {image}:\n{}", reasons.join("\n"));
    eprintln!("podman cannot run {base_image} either ({}): this machine runs no container", text(&plain));
    None
}

/// The DaemonSet's probe, inside the container.
fn healthz_in_the_container(id: &str) {
    let probe = "exec 3<>/dev/tcp/127.0.0.1/9810 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = text(&podman(&["exec", id, "/bin/bash", "-c", probe]));
        if t.starts_with("HTTP/1.0 200") || t.starts_with("HTTP/1.1 200") {
            return;
        }
        if Instant::now() > deadline {
            panic!("no 200 from /healthz in the container: {t}\ncontainer log: {}", text(&podman(&["logs", id])));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `podman image mount`: the image's root filesystem (read-only), unmounted by `cleanup`.
fn mount_image(image: &str, cleanup: &mut Cleanup) -> String {
    let mount = podman(&["image", "mount", image]);
    assert!(mount.status.success(), "podman image mount {image}: {}", text(&mount));
    cleanup.mounted = Some(image.to_string());
    let root = String::from_utf8_lossy(&mount.stdout).trim().to_string();
    for file in ["usr/local/bin/netray", "etc/netray/daemon.toml", "usr/share/doc/netray/daemon.example.toml"] {
        assert!(Path::new(&root).join(file).is_file(), "/{file} is not in the image ({root})");
    }
    root
}

/// The image's netray in a chroot: --version, then `netray daemon` with the image's default
/// config on a free 127.0.0.1 port. The chroot's /proc, /sys (with the host's bpffs), /dev and
/// a state directory are mounted in a mount namespace of the daemon's own, so they vanish with it.
fn daemon_in_a_chroot_answers_healthz(root: &str, cleanup: &mut Cleanup) {
    let pins = PathBuf::from(format!("/sys/fs/bpf/{}", unique("netray-e2e-image")));
    cleanup.pins.push(pins.clone());
    let version = Command::new("chroot").args([root, "/usr/local/bin/netray", "--version"]).output().unwrap();
    assert!(version.status.success(), "the image's netray does not run in a chroot of it: {}", text(&version));
    assert!(text(&version).starts_with("netray "), "{}", text(&version));
    eprintln!("chroot {root} netray --version: {}", text(&version));

    let state = std::env::temp_dir().join(unique("netray-image-state"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    cleanup.state = Some(state.clone());
    let script = r#"set -e
R=$1; STATE=$2; PINS=$3
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount --bind "$STATE" "$R/var/lib/netray"
exec chroot "$R" /usr/local/bin/netray --pin-dir "$PINS" daemon --config /etc/netray/daemon.toml --listen 127.0.0.1:0"#;
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", root])
        .arg(&state)
        .arg(&pins)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    cleanup.daemon = Some(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_string) else {
        let d = cleanup.daemon.as_mut().unwrap();
        let _ = d.kill();
        let _ = d.wait();
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        panic!("the image's daemon did not start in the chroot: {line:?}\n{err}");
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::stderr()));

    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        match get(&addr, "/healthz") {
            Ok((status, body)) if status.contains(" 200 ") || Instant::now() > deadline => break (status, body),
            Err(e) if Instant::now() > deadline => panic!("/healthz on {addr}: {e}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(status.contains(" 200 "), "/healthz of the image's daemon: {status}\n{body}");
    eprintln!("GET http://{addr}/healthz from the image's daemon: {status} {}", body.trim());
    // The default config's paths: the token made at start (mode 0600) in the state volume, the
    // pins on the host's bpffs.
    let token = std::fs::metadata(state.join("token")).expect("the daemon made no token in /var/lib/netray");
    assert_eq!(token.permissions().mode() & 0o777, 0o600);
    assert!(pins.exists(), "the daemon pinned nothing in {}", pins.display());
}

/// Every FROM of the Containerfile is a base setup/image.sh makes, a stage, or scratch: building
/// the image pulls from no registry.
#[test]
fn the_image_containerfile_pulls_from_no_registry() {
    let file = std::fs::read_to_string(format!("{ROOT}/Containerfile")).unwrap();
    let mut stages = vec!["scratch".to_string(), "${BINARY}".to_string()];
    for line in file.lines().filter(|l| l.starts_with("FROM ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let from = words[1];
        assert!(
            from.starts_with("localhost/netray-") || stages.iter().any(|s| s == from),
            "{line}: only the bases setup/image.sh makes, earlier stages or scratch"
        );
        if let [_, _, as_, name] = words[..] {
            assert!(as_.eq_ignore_ascii_case("AS"), "{line}");
            stages.push(name.to_string());
        }
    }
    let binary = file.lines().find_map(|l| l.strip_prefix("ARG BINARY=")).expect("ARG BINARY=");
    assert!(stages.iter().any(|s| s == binary), "the default BINARY={binary} is no stage");
}
