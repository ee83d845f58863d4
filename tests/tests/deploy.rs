//! The ways to deploy the agent (deploy/): the systemd unit verifies and
//! its capability set is enough to trace; the Helm chart lints, renders and,
//! like the plain manifest, validates against the Kubernetes schemas.

use std::{path::PathBuf, process::Command};

use tracer_tests::{
    Agent, agent_binary, free_port, python_server, require_root, temp_dir, test_tools_dir,
    three_requests,
};

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn unit_file() -> String {
    std::fs::read_to_string(deploy_dir().join("systemd/tracer-agent.service"))
        .expect("read the unit file")
}

/// The unit's `CapabilityBoundingSet`, without the `CAP_` prefixes.
fn unit_capabilities() -> Vec<String> {
    unit_file()
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds the capabilities")
        .split_whitespace()
        .map(|cap| cap.trim_start_matches("CAP_").to_string())
        .collect()
}

#[test]
fn systemd_unit_verifies() {
    let dir = temp_dir("systemd");
    // The unit names the installed binary; the test's stands in for it.
    let unit = unit_file().replace(
        "/usr/local/bin/tracer-agent",
        agent_binary().to_str().expect("utf-8 path"),
    );
    let path = dir.join("tracer-agent.service");
    std::fs::write(&path, unit).expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze (cargo xtask setup --test-deps installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Unknown keys and bad values are warnings with a zero exit.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");

    // The environment file sets only variables the agent reads.
    let help = Command::new(agent_binary())
        .arg("--help")
        .output()
        .expect("run tracer-agent --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let env = std::fs::read_to_string(deploy_dir().join("systemd/tracer-agent.env"))
        .expect("read the environment file");
    for line in env.lines().map(str::trim) {
        let setting = line.trim_start_matches('#');
        let Some((name, _)) = setting.split_once('=') else {
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue; // a comment's text
        }
        assert!(
            name == "TRACER_AGENT_ARGS" || help.contains(&format!("env: {name}")),
            "{name} in tracer-agent.env is not read by the agent"
        );
    }
    assert!(unit_file().contains("$TRACER_AGENT_ARGS"));
}

/// Under exactly the unit's capability set (what the DaemonSet adds too),
/// the agent loads everything: HTTP spans, and TLS uprobes attached.
#[test]
fn the_documented_capabilities_are_enough() {
    require_root();
    let caps = unit_capabilities();
    let bounding: String = caps
        .iter()
        .map(|cap| format!(",+{}", cap.to_ascii_lowercase()))
        .collect();
    let port = free_port();
    let _server = python_server(port, "capabilities");
    let agent = Agent::start_as(
        &[
            "setpriv",
            "--no-new-privs",
            "--inh-caps=-all",
            &format!("--bounding-set=-all{bounding}"),
            "--",
            agent_binary().to_str().expect("utf-8 path"),
        ],
        &[],
    );
    three_requests(port, "/caps/");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        run.spans_on_port(port).len(),
        6,
        "a client and a server span per request:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("reading TLS plaintext through"),
        "TLS uprobes attached:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains(" WARN "), "{}", run.stderr);
}

#[test]
fn kubernetes_manifests_and_chart_validate() {
    let venv = test_tools_dir().join("kubernetes");
    let output = Command::new(venv.join("bin/python"))
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/check_kubernetes.py"))
        .arg(deploy_dir())
        .output()
        .expect("run check_kubernetes.py (cargo xtask setup --test-deps installs its tools)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The DaemonSet adds the capabilities the unit bounds the agent to.
    let manifest = std::fs::read_to_string(deploy_dir().join("kubernetes/tracer-agent.yaml"))
        .expect("read the plain manifest");
    let added = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("add: ["))
        .expect("capabilities.add")
        .trim_end_matches(']');
    let added: Vec<String> = added.split(',').map(|c| c.trim().to_string()).collect();
    assert_eq!(added, unit_capabilities());
}

/// The test's HTTP server in a container named `name` on the host's
/// network: podman with the host's root as its overlay root (nothing is
/// pulled), no OTEL_SERVICE_NAME.
fn server_in_container(name: &str, port: u16) -> tracer_tests::Process {
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("run python3");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
    tracer_tests::Process::spawn_until(
        Command::new("podman")
            // crun refuses this machine kind's hybrid cgroup layout; runc runs it.
            .args(["--runtime", "runc", "run", "--rm", "--name", name])
            .args(["--network=host", "--ulimit", "nofile=16384:16384"])
            .args(["--ulimit", "nproc=4096:4096"])
            .args(["--rootfs", "/:O", &python])
            .arg(tracer_tests::servers_dir().join("http11_server.py"))
            .arg(port.to_string()),
        "ready",
    )
}

/// Removes the container when the test ends, even if it failed (killing the
/// `podman run` client leaves the container running).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "--force", "--time", "0", "--ignore", &self.0])
            .output();
    }
}

/// The image `cargo xtask image` built, run as the README says (host PID
/// and network namespaces, the documented capabilities only, the host
/// paths the DaemonSet mounts), traces a server on the host like the bare
/// binary does.
#[test]
fn the_image_traces_host_processes() {
    require_root();
    let image = std::env::var("TRACER_IMAGE").expect(
        "TRACER_IMAGE names the image to test: `cargo xtask test` builds it \
         (or `cargo xtask image`, then TRACER_IMAGE=localhost/tracer-agent:VERSION)",
    );
    let caps = unit_capabilities().join(",");
    let name = format!("tracer-agent-test-{}", std::process::id());
    let _container = Container(name.clone());
    let port = free_port();
    let _server = python_server(port, "on-the-host");
    let agent = Agent::start_as(
        &[
            "podman",
            // crun refuses this machine kind's hybrid cgroup layout; runc runs it.
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--name",
            &name,
            "--pid=host",
            "--network=host",
            "--cap-drop=all",
            &format!("--cap-add={caps}"),
            "--security-opt",
            "seccomp=unconfined",
            // This sandbox cannot raise resource limits; podman's defaults
            // are above them.
            "--ulimit",
            "nofile=16384:16384",
            "--ulimit",
            "nproc=4096:4096",
            "-v",
            "/sys/kernel/btf:/sys/kernel/btf:ro",
            "-v",
            "/sys/kernel/tracing:/sys/kernel/tracing:ro",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            // Where the harness asks the agent to write its spans.
            "-v",
            "/tmp:/tmp",
            &image,
        ],
        &[],
    );
    three_requests(port, "/from-the-image/");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    let spans = run.spans_on_port(port);
    assert_eq!(spans.len(), 6, "{}", run.stderr);
    let services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert!(
        services.contains(&"on-the-host") && services.contains(&"curl"),
        "the host processes' own service names: {services:?}"
    );
}

/// A server in a real container (podman, the host's root as its overlay
/// root, so nothing is pulled) whose id a recorded pod list names: its
/// spans carry the pod, namespace, container, node and Deployment, it is
/// named after the Deployment (it has no OTEL_SERVICE_NAME), its team comes
/// from the pod's `team` label, and the duration metrics get the namespace;
/// the host's curl gets none of it.
#[test]
fn kubernetes_metadata_from_a_recorded_pod_list() {
    require_root();
    let name = format!("tracer-pod-test-{}", std::process::id());
    let _container = Container(name.clone());
    let port = free_port();
    let _server = server_in_container(&name, port);
    let inspect = Command::new("podman")
        .args(["inspect", "--format", "{{.Id}}", &name])
        .output()
        .expect("podman inspect");
    let id = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "a container id: {inspect:?}");

    let pods = temp_dir("pods").join("pods.json");
    let pod_list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [{
            "metadata": {
                "name": "checkout-7d9f8b6c5-x2x4z",
                "namespace": "shop",
                "uid": "5f0c7a52-0d7e-4bd4-9d53-3b1c0e6f4b21",
                "labels": {"app": "checkout", "pod-template-hash": "7d9f8b6c5", "team": "payments"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "checkout-7d9f8b6c5", "controller": true
                }]
            },
            "spec": {"nodeName": "node-1", "containers": [{"name": "web"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{"name": "web", "containerID": format!("containerd://{id}")}]
            }
        }]
    });
    std::fs::write(&pods, pod_list.to_string()).expect("write the pod list");
    let agent = Agent::start(&["--kubernetes-pods-file", pods.to_str().expect("utf-8 path")]);
    three_requests(port, "/in-a-pod/");
    let metrics = agent.metrics();
    let run = agent.stop();
    let spans = run.spans_on_port(port);
    assert_eq!(spans.len(), 6, "{}", run.stderr);
    let resource = |span: &tracer_tests::SpanRecord, key: &str| {
        span.resource
            .get(key)
            .and_then(|v| v["stringValue"].as_str())
            .map(str::to_string)
    };
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == tracer_tests::SERVER)
        .collect();
    assert_eq!(servers.len(), 3);
    for server in servers {
        assert_eq!(server.service, "checkout");
        for (key, value) in [
            ("k8s.pod.name", "checkout-7d9f8b6c5-x2x4z"),
            ("k8s.namespace.name", "shop"),
            ("k8s.container.name", "web"),
            ("k8s.node.name", "node-1"),
            ("k8s.deployment.name", "checkout"),
            ("container.id", id.as_str()),
            ("team", "payments"),
        ] {
            assert_eq!(resource(server, key).as_deref(), Some(value), "{key}");
        }
    }
    for client in spans.iter().filter(|s| s.kind == tracer_tests::CLIENT) {
        assert_eq!(
            resource(client, "k8s.pod.name"),
            None,
            "curl runs on the host"
        );
    }
    assert!(
        metrics.contains("k8s_namespace_name=\"shop\",service_name=\"checkout\",team=\"payments\""),
        "{metrics}"
    );
}

/// Off Kubernetes, a container's name names a service that has no
/// OTEL_SERVICE_NAME (Podman's state; Docker's is read the same way).
#[test]
fn a_containers_name_names_its_service() {
    require_root();
    let name = format!("inventory-{}", std::process::id());
    let _container = Container(name.clone());
    let port = free_port();
    let _server = server_in_container(&name, port);
    let agent = Agent::start(&[]);
    three_requests(port, "/named/");
    let run = agent.stop();
    let servers: Vec<_> = run
        .spans_on_port(port)
        .into_iter()
        .filter(|s| s.kind == tracer_tests::SERVER)
        .collect();
    assert_eq!(servers.len(), 3, "{}", run.stderr);
    assert!(servers.iter().all(|s| s.service == name), "{servers:?}");
}
