//! Project tasks: `cargo xtask <command>`. Every command that builds first
//! runs `setup`, which installs only what is missing, so a fresh machine needs
//! nothing done by hand.

mod bench;
mod image;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set-up, build, run, test and benchmark the tracer"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need, if missing: the nightly
    /// toolchain's rust-src, bpf-linker 0.10.0, and (with --test-deps) the
    /// Debian packages the tests drive (curl, nodejs, nginx, iproute2,
    /// prometheus, chromium, golang-go, openssl, nghttp2-client,
    /// redis-server, redis-tools, postgresql, postgresql-client,
    /// mariadb-server, mariadb-client, systemd, util-linux), cargo-fuzz,
    /// and in ~/.cache/tracer-tests Arize Phoenix, opentelemetry-sdk,
    /// grpcio, aiohttp, redis-py, psycopg, mysql-connector-python,
    /// kubernetes-validate and helm-python-sdk (pip) and playwright-core
    /// (npm).
    Setup {
        #[arg(long)]
        test_deps: bool,
    },
    /// Build the agent (release), with its eBPF programs embedded.
    Build,
    /// Set up, build and run the agent as root. Arguments after `--` go to the agent.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The whole test suite: formatting, clippy, unit tests, the container
    /// image, and the privileged tests that load the real programs (needs root).
    Test,
    /// Build the container image (static binary on scratch, with buildah;
    /// installs musl-tools, buildah and podman if missing).
    Image(image::ImageArgs),
    /// Fuzz the protocol parsers (libFuzzer, nightly) for a while.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Measure the agent's cost (`cost`: nginx under wrk, and a Python
    /// server, with and without the agent, side by side) or how whole its
    /// traces are (`accuracy`). Installs wrk and aiohttp if missing.
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    setup::put_cargo_bin_on_path();
    match cli.command {
        Task::Setup { test_deps } => setup::run(test_deps),
        Task::Build => {
            setup::run(false)?;
            build_agent(true)
        }
        Task::Run { args } => {
            setup::run(false)?;
            build_agent(true)?;
            run_agent(&args)
        }
        Task::Test => test(),
        Task::Image(args) => image::build(&args).map(|_| ()),
        Task::Fuzz { seconds } => {
            setup::run(true)?;
            fuzz(seconds)
        }
        Task::Bench(args) => {
            setup::run(true)?;
            setup::bench_tools()?;
            build_agent(true)?;
            bench::run(args)
        }
    }
}

/// The workspace root (xtask's parent directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, failing with its description if it does not succeed.
pub fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn build_agent(release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--package", "tracer-agent"]);
    if release {
        cmd.arg("--release");
    }
    run_checked(&mut cmd)
}

pub fn agent_binary(release: bool) -> PathBuf {
    root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("tracer-agent")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_agent(args: &[String]) -> Result<()> {
    let binary = agent_binary(true);
    let mut cmd = if is_root() {
        Command::new(&binary)
    } else {
        eprintln!("tracer-agent needs root: running it with sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&binary);
        sudo
    };
    cmd.args(args);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn test() -> Result<()> {
    if !is_root() {
        bail!("the test suite loads eBPF programs and needs root: run `sudo -E cargo xtask test`");
    }
    setup::run(true)?;
    run_checked(cargo().args(["fmt", "--all", "--check"]))
        .context("code is not formatted: run `cargo fmt --all`")?;
    // tracer-ebpf only builds for the bpf target (tracer-agent's build.rs does that).
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "tracer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel crate, with the toolchain and target it is built for.
    run_checked(
        Command::new("cargo")
            .current_dir(root().join("tracer-ebpf"))
            .args([
                "+nightly",
                "clippy",
                "--release",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(["-Z", "build-std=core", "--", "-D", "warnings"]),
    )?;
    // The privileged tests run the debug agent binary, and the image.
    build_agent(false)?;
    let image = image::build(&image::ImageArgs {
        tag: None,
        archive: None,
    })?;
    run_checked(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "tracer-ebpf",
        "--exclude",
        "tracer-tests",
    ]))?;
    fuzz(20)?;
    // One test at a time: each loads the programs and traces the whole machine.
    // `--tests`: no doc-tests, so the suite's last line counts real tests.
    run_checked(
        cargo()
            .args([
                "test",
                "--package",
                "tracer-tests",
                "--tests",
                "--",
                "--test-threads=1",
            ])
            .env("TRACER_AGENT_BIN", agent_binary(false))
            .env("TRACER_IMAGE", image)
            .env("TRACER_TEST_TOOLS", setup::test_tools_dir()),
    )
}

/// Parser fuzz targets (under fuzz/), each run for `seconds`.
const FUZZ_TARGETS: &[&str] = &[
    "http1",
    "http2",
    "redis",
    "postgres",
    "mysql",
    "node_message",
];

fn fuzz(seconds: u32) -> Result<()> {
    for target in FUZZ_TARGETS {
        eprintln!("fuzzing {target} for {seconds} s");
        // The rustup proxy (not $CARGO) understands `+nightly`.
        run_checked(
            Command::new("cargo")
                .current_dir(root().join("fuzz"))
                .args(["+nightly", "fuzz", "run", target, "--"])
                .arg(format!("-max_total_time={seconds}"))
                .arg("-max_len=4096"),
        )?;
    }
    Ok(())
}
