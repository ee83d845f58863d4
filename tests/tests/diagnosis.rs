//! Pinpointing the bottleneck and the team that owns it (issue 16): four
//! services in a chain, one hop slow for a share of requests and the last
//! one failing for another share.

use std::{path::Path, process::Command};

use serde_json::Value;
use tracer_tests::{
    Agent, Process, browser, curl, free_port, http_get, json, require_root, servers_dir, temp_dir,
};

/// svc-a → svc-b → svc-c → svc-d; svc-c takes 60 ms more on `/slow/`
/// paths, svc-d answers 500 on `/fail/` paths (its callers pass it on as
/// 502). Ports and processes, first hop first.
fn topology() -> (Vec<u16>, Vec<Process>) {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut processes = Vec::new();
    for (hop, name) in ["svc-a", "svc-b", "svc-c", "svc-d"]
        .iter()
        .enumerate()
        .rev()
    {
        let mut cmd = Command::new("python3");
        cmd.arg(servers_dir().join("chain_service.py"))
            .arg(ports[hop].to_string())
            .args(ports.get(hop + 1).map(|p| p.to_string()))
            .env("OTEL_SERVICE_NAME", name);
        match *name {
            "svc-c" => cmd.env("SLOW_WHEN", "/slow/"),
            "svc-d" => cmd.env("FAIL_WHEN", "/fail/"),
            _ => &mut cmd,
        };
        processes.push(Process::spawn_until(&mut cmd, "ready"));
    }
    (ports, processes)
}

/// The API ranks the slow hop first for the slowest traffic, with its team
/// from the owners file, and names the failing hop, not its callers, as
/// where the errors start; in Chromium the bottleneck page shows that hop
/// first and its example trace's critical path runs through it.
#[test]
fn the_slow_hop_and_the_failing_hop_are_named() {
    require_root();
    let dir = temp_dir("diagnosis");
    let owners = dir.join("owners.toml");
    std::fs::write(
        &owners,
        "[[team]]\nname = \"ledger-team\"\nservices = [\"svc-c\"]\n\n\
         [[team]]\nname = \"platform\"\nservices = [\"svc-*\"]\n",
    )
    .unwrap();
    let (ports, _services) = topology();
    let agent = Agent::start(&["--owners", owners.to_str().unwrap()]);
    // 30 requests: 6 slow, 6 failing, the rest normal, interleaved.
    let urls: Vec<String> = (0..30)
        .map(|i| {
            let kind = match i % 5 {
                1 => "slow",
                3 => "fail",
                _ => "ok",
            };
            format!("http://127.0.0.1:{}/{kind}/{i}", ports[0])
        })
        .collect();
    curl(&[], &urls);
    // Spans reach the store once the pipeline has held them (100 ms).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let addr = agent
        .http_addr
        .clone()
        .expect("the agent serves the viewer");
    let api = |query: &[(&str, &str)]| -> Vec<Value> {
        let (status, body) = http_get(&format!("http://{addr}/api/bottlenecks"), query);
        assert_eq!(status, 200, "{body}");
        json(&body).as_array().cloned().expect("a list")
    };
    let slowest = api(&[("quantile", "0.8"), ("window_s", "300")]);
    let first = &slowest[0];
    assert_eq!(first["service"], "svc-c", "{slowest:#?}");
    assert_eq!(first["team"], "ledger-team");
    assert_eq!(first["gap"], false);
    assert!(
        first["critical_path_share"].as_f64() > Some(0.5),
        "{first:#}"
    );
    assert!(
        first["self_time_p50_ms"].as_f64() >= Some(60.0),
        "{first:#}"
    );
    let failing = api(&[("errors", "true")]);
    let origins: Vec<(&str, u64)> = failing
        .iter()
        .filter(|b| b["error_origin_count"].as_u64() > Some(0))
        .map(|b| {
            (
                b["service"].as_str().unwrap_or_default(),
                b["error_origin_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(origins, [("svc-d", 6)], "{failing:#?}");
    assert!(
        failing
            .iter()
            .all(|b| b["team"] != "unowned" || b["service"] == "curl"),
        "{failing:#?}"
    );

    // The service table (and map) name each service's team.
    let (status, body) = http_get(&format!("http://{addr}/api/services"), &[]);
    assert_eq!(status, 200, "{body}");
    let services = json(&body);
    let team_of = |name: &str| {
        services
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == name))
            .map(|s| s["team"].clone())
    };
    assert_eq!(
        team_of("svc-c"),
        Some(Value::from("ledger-team")),
        "{services:#}"
    );
    assert_eq!(
        team_of("svc-a"),
        Some(Value::from("platform")),
        "{services:#}"
    );

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/diagnosis");
    let shown = browser(
        "bottlenecks.js",
        &[format!("http://{addr}/"), "0.9".to_string()],
        &out,
    );
    assert_eq!(shown["errors"], Value::Array(vec![]), "page errors");
    assert_eq!(shown["ranked"][0]["service"], "svc-c", "{shown:#}");
    assert_eq!(shown["ranked"][0]["team"], "ledger-team", "{shown:#}");
    assert!(
        shown["hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("#trace=")),
        "{shown:#}"
    );
    let waterfall = shown["waterfall"].as_array().expect("waterfall rows");
    let slow_hop = waterfall
        .iter()
        .find(|r| r["service"] == "svc-c" && r["kind"] == "server")
        .unwrap_or_else(|| panic!("svc-c in the example trace: {shown:#}"));
    assert!(slow_hop["criticalMs"].as_f64() >= Some(60.0), "{slow_hop}");
    assert!(slow_hop["criticalMarks"].as_i64() > Some(0), "{slow_hop}");
    for png in ["bottlenecks.png", "bottleneck-trace.png"] {
        let size = std::fs::metadata(out.join(png)).map_or(0, |m| m.len());
        assert!(size > 1000, "{png} missing or empty");
    }
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
}
