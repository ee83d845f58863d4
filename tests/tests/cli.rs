//! The agent's failures are one clear line and a non-zero exit, never a panic.

use std::process::{Command, Output};

use tracer_tests::{Agent, agent_binary, require_root};

fn agent(args: &[&str]) -> Output {
    Command::new(agent_binary())
        .args(args)
        .output()
        .expect("run tracer-agent")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_explains_the_options() {
    let output = agent(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--pid",
        "--export-file",
        "--capture-bytes",
        "--ring-buffer-mib",
        "--quiet",
        "--otlp-endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "--metrics-addr",
        "--viewer-max-traces",
    ] {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
    assert!(help.contains("root"), "--help says it needs root");
}

#[test]
fn not_root_says_to_use_sudo() {
    require_root();
    // setpriv drops to an unprivileged user with no capabilities.
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(agent_binary())
        .output()
        .expect("run setpriv");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_arguments_are_rejected_before_loading() {
    let output = agent(&["--capture-bytes", "100000"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--capture-bytes"),
        "{}",
        stderr(&output)
    );
    let output = agent(&["--ring-buffer-mib", "3"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("power of two"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_export_settings_are_clear_errors() {
    let output = agent(&["--otlp-protocol", "http"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("grpc, http/protobuf or http/json"),
        "{}",
        stderr(&output)
    );

    let output = agent(&["--metrics-addr", "9464"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("HOST:PORT"), "{}", stderr(&output));

    let output = Command::new(agent_binary())
        .env("OTEL_EXPORTER_OTLP_HEADERS", "api-key")
        .output()
        .expect("run tracer-agent");
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("key=value"), "{}", stderr(&output));

    let output = agent(&[
        "--otlp-endpoint",
        "https://collector:4318",
        "--otlp-certificate",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("cannot read the OTLP CA certificate file /nonexistent/ca.pem"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let output = agent(&[
        "--otlp-endpoint",
        "https://collector:4318",
        "--otlp-client-certificate",
        "/etc/hostname",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("needs both a client certificate and its key"),
        "{err}"
    );

    let output = agent(&[
        "--otlp-endpoint",
        "https://collector:4318",
        "--otlp-certificate",
        "/etc/hostname",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("is not PEM"), "{err}");
}

#[test]
fn bad_viewer_settings_are_clear_errors() {
    let output = agent(&["--viewer-token-file", "/nonexistent/token"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("cannot read the viewer's token file /nonexistent/token"),
        "{err}"
    );

    let output = agent(&["--viewer-tls-certificate", "/etc/hostname"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("needs both --viewer-tls-certificate and --viewer-tls-key"),
        "{err}"
    );

    let output = agent(&[
        "--viewer-tls-certificate",
        "/etc/hostname",
        "--viewer-tls-key",
        "/etc/hostname",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("cannot use the viewer's TLS certificate"),
        "{err}"
    );

    let output = agent(&[
        "--metrics-addr",
        "none",
        "--viewer-token-file",
        "/etc/hostname",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("no viewer is served"), "{err}");
}

#[test]
fn taken_metrics_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = agent(&["--metrics-addr", &addr]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("--metrics-addr"),
        "{err}"
    );
}

#[test]
fn unwritable_export_file_is_a_clear_error() {
    let output = agent(&["--export-file", "/nonexistent-dir/spans.jsonl"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("cannot create --export-file /nonexistent-dir/spans.jsonl"),
        "{err}"
    );
}

#[test]
fn bad_owners_file_is_a_clear_error() {
    let dir = tracer_tests::temp_dir("owners");
    let path = dir.join("owners.toml");
    std::fs::write(&path, "[[team]]\nname = \"x\"\nservices = [\"a[\"]\n").unwrap();
    let output = agent(&["--owners", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("the owners file") && err.contains("a["),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let output = agent(&["--owners", "/nonexistent/owners.toml"]);
    let err = stderr(&output);
    assert!(
        err.contains("cannot read the owners file /nonexistent/owners.toml"),
        "{err}"
    );
}

#[test]
fn overload_threshold_above_the_ring_is_a_clear_error() {
    require_root();
    let output = agent(&["--ring-buffer-mib", "1", "--overload-kib", "2048"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("--overload-kib 2048 is not below the ring buffer's 1024 KiB"),
        "{err}"
    );
}

/// With tracefs unmounted the agent mounts it itself. Done in a private mount
/// namespace so the rest of the machine keeps its mounts.
#[test]
fn mounts_tracefs_when_missing() {
    require_root();
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; \
         test -e /sys/kernel/tracing/events && exit 90; \
         exec timeout --preserve-status --signal=INT 20 {} --quiet --metrics-addr 127.0.0.1:0",
        agent_binary().display()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let err = stderr(&output);
    assert_ne!(
        output.status.code(),
        Some(90),
        "could not unmount tracefs to test this"
    );
    assert!(output.status.success(), "{err}");
    assert!(err.contains("mounted tracefs"), "{err}");
    assert!(err.contains("tracepoints attached"), "{err}");
}

/// SIGTERM stops the agent cleanly, like SIGINT.
#[test]
fn sigterm_stops_cleanly() {
    require_root();
    let agent = Agent::start(&[]);
    let run = agent.stop_with(libc::SIGTERM);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("stopped:"), "{}", run.stderr);
}
