//! Server-Sent Event streams: lab packets arrive, slow clients lose events
//! (counted and reported) without stalling anything, gone clients are
//! forgotten, exec events arrive.

mod common;

use std::time::Duration;

use common::{wait_for, Env};
use netray_daemon::config::Config;
use netray_lab::Family;
use serde_json::Value;

#[test]
fn packet_stream_delivers_lab_pings_and_forgets_gone_clients() {
    let env = Env::new("dsse");
    let c = env.client();
    let iface = env.iface().to_string();
    let r = c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}"}}"#));
    assert_eq!(r.status, 201, "{}", r.text);

    let mut s = c.sse(&format!("/v1/events/packets?interface={iface}"));
    let (ev, data) = s.next().expect("ready event");
    assert_eq!(ev, "ready", "{data}");
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["interface"], iface.as_str());

    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    let peer = env.lab.peer_v4().to_string();
    let mut requests = 0;
    while requests < 3 {
        let (ev, data) = s.next().expect("packet events");
        assert_eq!(ev, "packet", "{data}");
        let p: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(p["ifname"], iface.as_str());
        if p["proto"] == "icmp" && p["src"] == peer.as_str() {
            assert_eq!(p["verdict"], "pass");
            requests += 1;
        }
    }
    let st = c.get("/v1/stats").json();
    assert_eq!(st["events"]["clients"], 1, "{st}");
    assert!(st["events"]["packet_streams"][0]["delivered"].as_u64().unwrap() >= 3, "{st}");

    // The client goes away: the daemon notices and stops the monitor, the
    // firewall stays attached.
    drop(s);
    assert_eq!(env.lab.ping(Family::V4, 1).unwrap(), 1);
    let gone = wait_for(Duration::from_secs(10), || {
        let st = c.get("/v1/stats").json();
        (st["events"]["clients"] == 0 && st["events"]["packet_streams"].as_array().unwrap().is_empty()).then_some(())
    });
    assert!(gone.is_some(), "the gone client is still counted: {}", c.get("/v1/stats").text);
    let i = c.get(&format!("/v1/interfaces/{iface}")).json();
    assert_eq!(i["interface"]["firewall"], true, "{i}");
    assert!(!i["interface"]["status"]["features"].as_array().unwrap().contains(&Value::from("monitor")), "{i}");

    // A second stream on the same interface works after the first is gone.
    let mut s2 = c.sse(&format!("/v1/events/packets?interface={iface}"));
    assert_eq!(s2.next().unwrap().0, "ready");
    assert_eq!(env.lab.ping(Family::V4, 1).unwrap(), 1);
    assert_eq!(s2.next().unwrap().0, "packet");
}

#[test]
fn filtered_packet_stream_runs_the_filter_in_the_kernel() {
    let env = Env::new("dflt");
    let c = env.client();
    let iface = env.iface().to_string();
    let path = format!("/v1/events/packets?interface={iface}&filter=udp%20dst%20port%204000");
    let mut s = c.sse(&path);
    let (ev, data) = s.next().expect("ready event");
    assert_eq!(ev, "ready", "{data}");
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["filter"], "udp dst port 4000");
    // A second client with the same filter shares the capture; another filter is refused.
    let mut s2 = c.sse(&path);
    assert_eq!(s2.next().unwrap().0, "ready");
    let e = c.get_auth(&format!("/v1/events/packets?interface={iface}&filter=icmp")).error(409);
    assert!(e.contains("another filter"), "{e}");

    env.lab.udp_send(Family::V4, 4001, 10, 5).unwrap();
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2);
    env.lab.udp_send(Family::V4, 4000, 10, 3).unwrap();
    for stream in [&mut s, &mut s2] {
        for _ in 0..3 {
            let (ev, data) = stream.next().expect("packet events");
            assert_eq!(ev, "packet", "{data}");
            let p: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(p["dport"], 4000, "only what the filter accepts arrives: {p}");
            assert_eq!(p["ifname"], iface.as_str());
            assert_eq!(p["wire_len"], 14 + 20 + 8 + 10);
        }
    }
    let st = c.get("/v1/stats").json();
    let streams = st["events"]["packet_streams"].as_array().unwrap().clone();
    assert!(streams.iter().any(|h| h["source"] == format!("{iface} filter=udp dst port 4000")), "{st}");

    // Both clients gone: the capture is taken down and nothing is left in front of XDP.
    drop(s);
    drop(s2);
    let gone = wait_for(Duration::from_secs(10), || {
        let st = c.get("/v1/stats").json();
        st["events"]["packet_streams"].as_array().unwrap().is_empty().then_some(())
    });
    assert!(gone.is_some(), "the filtered stream was not stopped: {}", c.get("/v1/stats").text);
    let other = c.sse(&format!("/v1/events/packets?interface={iface}&filter=icmp")).next().unwrap();
    assert_eq!(other.0, "ready", "another filter works once the first is gone");
}

#[test]
fn slow_client_loses_events_counted_and_reported_without_stalling() {
    let cfg = Config { sse_queue: Some(2), ..Config::default() };
    let env = Env::with_config("dslow", cfg);
    let c = env.client();
    let iface = env.iface().to_string();
    let mut slow = c.sse(&format!("/v1/events/packets?interface={iface}"));
    assert_eq!(slow.next().unwrap().0, "ready");
    // A burst much larger than the queue, while this client does not read.
    let sent = env.lab.udp_send(Family::V4, 9, 32, 20_000).unwrap();
    assert_eq!(sent, 20_000);
    // The daemon keeps answering meanwhile, and counts the drops.
    let dropped = wait_for(Duration::from_secs(10), || {
        let st = c.get("/v1/stats").json();
        let n = st["events"]["dropped_total"].as_u64().unwrap();
        (n > 0).then_some(n)
    })
    .expect("drops are counted in /v1/stats");
    let m = c.get("/metrics").text;
    assert!(m.contains("netray_daemon_sse_dropped_events_total"), "{m}");
    // The stream says so.
    let mut reported = 0;
    let found = wait_for(Duration::from_secs(20), || {
        let (ev, data) = slow.next()?;
        if ev == "dropped" {
            let v: Value = serde_json::from_str(&data).unwrap();
            reported = v["dropped_total"].as_u64().unwrap();
            return Some(());
        }
        None
    });
    assert!(found.is_some(), "no dropped event in the stream");
    assert!(reported > 0 && reported <= dropped.max(reported), "{reported} {dropped}");
}

#[test]
fn exec_stream_reports_execs() {
    let env = Env::new("dexec");
    let c = env.client();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("nrd-true");
    std::fs::copy("/bin/true", &bin).unwrap();
    let mut s = c.sse("/v1/events/exec?comm=nrd-true");
    assert_eq!(s.next().unwrap().0, "ready");
    let st = std::process::Command::new(&bin).arg("hello").status().unwrap();
    assert!(st.success());
    let (ev, data) = s.next().expect("an exec event");
    assert_eq!(ev, "exec", "{data}");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["comm"], "nrd-true", "{v}");
    assert!(data.contains("hello"), "{data}");
}

#[test]
fn drop_stream_reports_kernel_drops_and_metrics_count_them() {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    let env = Env::new("ddrops");
    let c = env.client();
    let iface = env.iface().to_string();
    let mut s = c.sse(&format!("/v1/events/drops?interface={iface}"));
    let (ev, data) = s.next().expect("ready event");
    assert_eq!(ev, "ready", "{data}");
    // UDP to a port nobody listens on at the lab's host end.
    let dst = SocketAddrV4::new(env.lab.host_v4(), 19);
    env.lab
        .in_netns(move || {
            let u = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            for _ in 0..3 {
                u.send_to(b"drop me", dst).unwrap();
            }
        })
        .unwrap();
    let mut seen = 0;
    while seen < 3 {
        let (ev, data) = s.next().expect("drop events");
        assert_eq!(ev, "drop", "{data}");
        let d: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(d["ifname"], iface.as_str(), "{d}");
        if d["dport"] == 19 {
            assert_eq!(d["who"], "kernel", "{d}");
            assert_eq!(d["reason"], "NO_SOCKET", "{d}");
            assert_eq!(d["src"], env.lab.peer_v4().to_string(), "{d}");
            seen += 1;
        }
    }
    let series = format!("netray_drops_total{{who=\"kernel\",reason=\"NO_SOCKET\",interface=\"{iface}\"}} 3");
    let found = wait_for(Duration::from_secs(30), || c.get("/metrics").text.contains(&series).then_some(()));
    assert!(found.is_some(), "{series} not in /metrics: {}", c.get("/metrics").text);
}
