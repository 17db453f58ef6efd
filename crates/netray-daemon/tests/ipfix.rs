//! The daemon's `[ipfix]` export in the lab: the flows of an interface the
//! daemon attached reach a collector on 127.0.0.1 with exact counts, the
//! exporter's counters are in /metrics, and stopping the daemon flushes
//! what was not exported yet.

mod common;
#[path = "../../netray-tests/support/ipfix_collector.rs"]
mod ipfix_collector;

use std::{net::IpAddr, time::Duration};

use common::{wait_for, Env};
use ipfix_collector::{decode, Listener};
use netray_daemon::config::{Config, IpfixConfig};
use netray_lab::Family;

#[test]
fn ipfix_daemon_exports_the_flows_of_its_interfaces_and_flushes_at_shutdown() {
    let l = Listener::udp();
    let config = Config {
        ipfix: IpfixConfig {
            collector: Some(l.addr.to_string()),
            // Nothing is due before shutdown but what the idle timeout sends.
            active_timeout: Some("1h".into()),
            idle_timeout: Some("1s".into()),
            observation_domain_id: Some(9),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut env = Env::with_config("dipfix", config);
    let c = env.client();
    assert_eq!(c.post("/v1/interfaces", &format!(r#"{{"name": "{}"}}"#, env.iface())).status, 201);
    let (peer, host): (IpAddr, IpAddr) = (env.lab.peer_v4().into(), env.lab.host_v4().into());
    let flow = |dport: u16| {
        move |r: &ipfix_collector::Rec| r.key() == (peer, host, dport, 17)
    };

    // An idle flow is exported while the daemon runs.
    assert_eq!(env.lab.udp_send(Family::V4, 9301, 50, 4).unwrap(), 4);
    let got = wait_for(Duration::from_secs(30), || {
        let recs: Vec<_> = decode(&l.messages()).into_iter().filter(flow(9301)).collect();
        (!recs.is_empty()).then_some(recs)
    })
    .expect("the idle flow was never exported");
    assert_eq!(got.iter().map(|r| r.uint(2)).sum::<u64>(), 4);
    assert_eq!(got.iter().map(|r| r.uint(1)).sum::<u64>(), 4 * (14 + 20 + 8 + 50));
    assert_eq!(l.messages()[0][12..16], 9u32.to_be_bytes(), "observation domain");

    let metrics = c.get("/metrics").text;
    assert!(metrics.contains("netray_ipfix_records_sent_total{"), "{metrics}");
    assert!(metrics.contains("netray_ipfix_records_dropped_total{"), "{metrics}");

    // A flow still active at shutdown is flushed by the stop.
    assert_eq!(env.lab.udp_send(Family::V4, 9302, 60, 3).unwrap(), 3);
    std::thread::sleep(Duration::from_millis(300));
    env.stop();
    let got: Vec<_> = decode(&l.messages()).into_iter().filter(flow(9302)).collect();
    assert_eq!(got.iter().map(|r| r.uint(2)).sum::<u64>(), 3, "flushed at shutdown");
}
