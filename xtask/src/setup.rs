//! Installs what the build and the tests need, when it is missing. Safe to
//! run any number of times: each step checks before it installs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::run_checked;

/// bpf-linker 0.10.0 loads the nightly toolchain's own LLVM; newer releases
/// need a system LLVM that Debian 12 does not ship.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Runs the parser fuzz targets (libFuzzer) with the nightly toolchain.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Debian packages the privileged tests drive: (command, package).
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("curl", "curl"),
    ("node", "nodejs"),
    ("python3", "python3"),
    ("nginx", "nginx"),
    // `ip netns` / veth: the two-node test.
    ("ip", "iproute2"),
    // The export tests: a real Prometheus scrapes the agent, and headless
    // Chromium opens the viewer.
    ("prometheus", "prometheus"),
    ("chromium", "chromium"),
    // Installs playwright-core.
    ("npm", "npm"),
    // The Go service of the trace tests (and the accuracy benchmark).
    ("go", "golang-go"),
    // Self-signed certificates for the HTTPS tests.
    ("openssl", "openssl"),
    // HTTP/2 clients (nghttp, h2load) against nginx with `http2 on`.
    ("nghttp", "nghttp2-client"),
    // The database client span tests: servers and their own clients.
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    ("psql", "postgresql-client"),
    ("pg_ctlcluster", "postgresql"),
    ("mariadbd", "mariadb-server"),
    ("mariadb", "mariadb-client"),
    // The deployment tests: the unit file's check, and the capability
    // bounding set the agent runs under.
    ("systemd-analyze", "systemd"),
    ("setpriv", "util-linux"),
];

/// Debian packages `cargo xtask bench` drives: the load generator of the
/// nginx cost case, and the Redis case's server and load generator.
const BENCH_PACKAGES: &[(&str, &str)] = &[
    ("wrk", "wrk"),
    // The HTTP/2 load of the nginx case.
    ("h2load", "nghttp2-client"),
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
];

/// Debian packages `cargo xtask image` uses: the C compiler for musl (the
/// allocator and ring are C), the image builder, and `podman` and `runc`
/// that the image test runs it with.
const IMAGE_PACKAGES: &[(&str, &str)] = &[
    ("musl-gcc", "musl-tools"),
    ("buildah", "buildah"),
    ("podman", "podman"),
    // crun refuses this machine kind's hybrid cgroup layout.
    ("runc", "runc"),
    ("strip", "binutils"),
];

/// The asyncio front service of the trace tests and the accuracy benchmark (PyPI).
const AIOHTTP_VERSION: &str = "3.14.5";

/// Arize Phoenix, the OTLP backend the export test sends to (PyPI).
const PHOENIX_VERSION: &str = "20.26.1";
/// The OpenTelemetry SDK a test service uses to make its own spans (PyPI).
const OPENTELEMETRY_SDK_VERSION: &str = "1.45.2";
/// The gRPC server and client of the HTTP/2 trace tests (PyPI; plaintext
/// h2c, since grpcio carries its own TLS library).
const GRPCIO_VERSION: &str = "1.85.3";
/// The Redis client of the traced service in the database tests (PyPI).
const REDIS_PY_VERSION: &str = "5.2.1";
/// The PostgreSQL client of the traced service in the database tests
/// (PyPI; its wheel carries its own libpq).
const PSYCOPG_VERSION: &str = "3.2.3";
/// The MySQL client of the traced service in the database tests (PyPI;
/// server-side prepared statements).
const MYSQL_CONNECTOR_VERSION: &str = "9.1.0";
/// Validates the Kubernetes manifests against the API schemas, offline (PyPI).
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
/// Renders and lints the Helm chart with Helm's own Go SDK, offline (PyPI;
/// Debian has no helm).
const HELM_PYTHON_SDK_VERSION: &str = "0.2.2";
/// Drives the Debian chromium from the viewer test (npm; no browser download).
const PLAYWRIGHT_CORE_VERSION: &str = "1.65.1";

pub fn run(test_deps: bool) -> Result<()> {
    ensure_nightly_rust_src()?;
    ensure_bpf_linker()?;
    if test_deps {
        ensure_packages(TEST_PACKAGES)?;
        ensure_cargo_fuzz()?;
        ensure_phoenix()?;
        ensure_opentelemetry_sdk()?;
        ensure_venv_package("grpc", &format!("grpcio=={GRPCIO_VERSION}"))?;
        ensure_aiohttp()?;
        ensure_venv_package("redis", &format!("redis=={REDIS_PY_VERSION}"))?;
        ensure_venv_package("postgres", &format!("psycopg[binary]=={PSYCOPG_VERSION}"))?;
        ensure_venv_package(
            "mysql",
            &format!("mysql-connector-python=={MYSQL_CONNECTOR_VERSION}"),
        )?;
        ensure_playwright_core()?;
        ensure_venv_package(
            "kubernetes",
            &format!("kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"),
        )?;
        ensure_venv_package(
            "kubernetes",
            &format!("helm-python-sdk=={HELM_PYTHON_SDK_VERSION}"),
        )?;
    }
    Ok(())
}

/// What `cargo xtask image` needs.
pub fn image_tools() -> Result<()> {
    run(false)?;
    ensure_packages(IMAGE_PACKAGES)
}

/// What the benchmark needs beyond the tests' tools.
pub fn bench_tools() -> Result<()> {
    ensure_packages(BENCH_PACKAGES)?;
    ensure_aiohttp()
}

/// The asyncio front service of the runtime trace tests and of the
/// accuracy benchmark.
fn ensure_aiohttp() -> Result<()> {
    ensure_venv_package("aiohttp", &format!("aiohttp=={AIOHTTP_VERSION}"))
}

/// Where the test tools from language registries live, outside the work
/// tree so a clean clone reuses them: `TRACER_TEST_TOOLS`, else
/// `~/.cache/tracer-tests` (the tests look in the same place).
pub fn test_tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRACER_TEST_TOOLS") {
        return dir.into();
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .join(".cache/tracer-tests")
}

/// Runs `install` into `test_tools_dir()/dir` once per `package`: a marker
/// file records that it finished.
fn install_tool(dir: &str, package: &str, install: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = test_tools_dir().join(dir);
    let marker = dir.join(format!("installed-{package}"));
    if marker.exists() {
        return Ok(());
    }
    eprintln!("setup: installing {package} in {}", dir.display());
    std::fs::create_dir_all(&dir)?;
    install(&dir)?;
    std::fs::write(&marker, "")?;
    Ok(())
}

fn ensure_phoenix() -> Result<()> {
    ensure_venv_package("phoenix", &format!("arize-phoenix=={PHOENIX_VERSION}"))
}

/// The application-side SDK of the trace test where a service makes its own
/// client spans (the agent must not add a second one).
fn ensure_opentelemetry_sdk() -> Result<()> {
    ensure_venv_package(
        "otel-sdk",
        &format!("opentelemetry-sdk=={OPENTELEMETRY_SDK_VERSION}"),
    )
}

/// `package` from PyPI in its own virtualenv under `test_tools_dir()/dir`.
fn ensure_venv_package(dir: &str, package: &str) -> Result<()> {
    install_tool(dir, package, |venv| {
        if !venv.join("bin/pip").exists() {
            run_checked(Command::new("python3").args(["-m", "venv"]).arg(venv))
                .context("python3 -m venv failed (Debian: apt-get install python3-venv)")?;
        }
        run_checked(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(package),
        )
        .with_context(|| format!("pip install {package} failed"))
    })
}

fn ensure_playwright_core() -> Result<()> {
    let package = format!("playwright-core@{PLAYWRIGHT_CORE_VERSION}");
    install_tool("browser", &package, |dir| {
        run_checked(
            Command::new("npm")
                .current_dir(dir)
                .args(["install", "--silent", "--no-audit", "--no-fund"])
                .arg(&package)
                // playwright-core ships no browser; the Debian chromium is used.
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
        )
        .context("npm install playwright-core failed")
    })
}

/// `cargo install` puts tools in `$CARGO_HOME/bin`; make sure children find them.
pub fn put_cargo_bin_on_path() {
    let cargo_bin = cargo_home().join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if !dirs.contains(&cargo_bin) {
        dirs.insert(0, cargo_bin);
        if let Ok(joined) = std::env::join_paths(dirs) {
            // SAFETY: called first thing in main, before any thread is started.
            unsafe { std::env::set_var("PATH", joined) };
        }
    }
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

/// The nightly toolchain, with rust-src (-Z build-std) and clippy.
fn ensure_nightly_rust_src() -> Result<()> {
    let sysroot = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output();
    let has_nightly = sysroot.as_ref().is_ok_and(|o| o.status.success());
    if !has_nightly {
        eprintln!("setup: installing the nightly toolchain (builds the eBPF programs)");
        run_checked(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
            "--component",
            "clippy",
        ]))?;
        return Ok(());
    }
    let sysroot = String::from_utf8_lossy(&sysroot?.stdout).trim().to_string();
    let core_src = PathBuf::from(sysroot).join("lib/rustlib/src/rust/library/core");
    if !core_src.exists() {
        eprintln!("setup: installing rust-src for nightly (-Z build-std=core needs it)");
        run_checked(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let has_clippy = Command::new("cargo")
        .args(["+nightly", "clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_clippy {
        eprintln!("setup: installing clippy for nightly (lints the eBPF crate)");
        run_checked(Command::new("rustup").args([
            "component",
            "add",
            "clippy",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    ensure_cargo_tool(
        &["bpf-linker", "--version"],
        "bpf-linker",
        BPF_LINKER_VERSION,
        "links the eBPF programs",
    )
}

fn ensure_cargo_fuzz() -> Result<()> {
    ensure_cargo_tool(
        &["cargo", "fuzz", "--version"],
        "cargo-fuzz",
        CARGO_FUZZ_VERSION,
        "fuzzes the parsers",
    )
}

/// `cargo install crate@version` unless `probe` prints that version.
fn ensure_cargo_tool(probe: &[&str], krate: &str, version: &str, why: &str) -> Result<()> {
    let installed = Command::new(probe[0])
        .args(&probe[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(version))
        .unwrap_or(false);
    if !installed {
        eprintln!("setup: installing {krate} {version} ({why})");
        run_checked(Command::new("cargo").args([
            "install",
            &format!("{krate}@{version}"),
            "--locked",
            "--force",
        ]))?;
    }
    Ok(())
}

fn ensure_packages(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "missing {}: install them with `sudo apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("setup: installing {}", missing.join(", "));
    run_checked(Command::new("apt-get").arg("update").arg("-q"))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install failed")
}

/// On PATH, or in /usr/sbin (where Debian puts nginx; not on every user's PATH).
fn on_path(command: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .any(|dir| dir.join(command).is_file())
}
