//! `cargo xtask image`: the agent's container image, built offline. A
//! statically linked (musl) release binary on `scratch`, with the build
//! machine's CA bundle for `https://` OTLP endpoints signed by public CAs;
//! assembled and committed by Debian's `buildah`.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run_checked, setup};

const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The CA bundle Debian's ca-certificates writes; rustls-native-certs reads
/// it from the same path inside the image.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The image's name (default: localhost/tracer-agent:VERSION).
    #[arg(long)]
    pub tag: Option<String>,
    /// Also write it as an OCI archive here (for `ctr images import`,
    /// `podman load`, or a registry push from another machine).
    #[arg(long, value_name = "PATH")]
    pub archive: Option<PathBuf>,
}

pub fn default_tag() -> String {
    format!("localhost/tracer-agent:{}", env!("CARGO_PKG_VERSION"))
}

pub fn build(args: &ImageArgs) -> Result<String> {
    setup::image_tools()?;
    ensure_musl_target()?;
    run_checked(cargo().args([
        "build",
        "--release",
        "--package",
        "tracer-agent",
        "--target",
        MUSL_TARGET,
    ]))
    .context("building the static agent failed")?;
    let binary = root()
        .join("target")
        .join(MUSL_TARGET)
        .join("release/tracer-agent");
    // Debug information is most of the binary's size; the image needs none.
    let staged = root().join("target/image/tracer-agent");
    std::fs::create_dir_all(staged.parent().expect("a parent"))?;
    run_checked(
        Command::new("strip")
            .arg("--strip-debug")
            .arg(&binary)
            .arg("-o")
            .arg(&staged),
    )?;

    let tag = args.tag.clone().unwrap_or_else(default_tag);
    let container = buildah(&["from", "scratch"])?;
    let result = (|| -> Result<()> {
        buildah(&[
            "copy",
            &container,
            staged.to_str().context("utf-8 path")?,
            "/usr/bin/tracer-agent",
        ])?;
        if std::path::Path::new(CA_BUNDLE).exists() {
            buildah(&["copy", &container, CA_BUNDLE, CA_BUNDLE])?;
        }
        buildah(&[
            "config",
            "--entrypoint",
            r#"["/usr/bin/tracer-agent"]"#,
            "--cmd",
            "",
            "--label",
            "org.opencontainers.image.title=tracer-agent",
            "--label",
            &format!(
                "org.opencontainers.image.version={}",
                env!("CARGO_PKG_VERSION")
            ),
            "--label",
            "org.opencontainers.image.description=eBPF node agent: OpenTelemetry spans from unmodified programs",
            &container,
        ])?;
        buildah(&["commit", "--quiet", &container, &tag])?;
        Ok(())
    })();
    let _ = buildah(&["rm", &container]);
    result?;
    if let Some(archive) = &args.archive {
        let _ = std::fs::remove_file(archive);
        buildah(&[
            "push",
            "--quiet",
            &tag,
            &format!("oci-archive:{}:{tag}", archive.display()),
        ])?;
        eprintln!("image archive: {}", archive.display());
    }
    eprintln!("image: {tag}");
    Ok(tag)
}

/// Runs buildah, returning its output's last line (a container's name).
fn buildah(args: &[&str]) -> Result<String> {
    let output = Command::new("buildah")
        .args(args)
        .output()
        .context("cannot run buildah (Debian: apt-get install buildah)")?;
    if !output.status.success() {
        bail!(
            "buildah {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string())
}

fn ensure_musl_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == MUSL_TARGET)
    {
        return Ok(());
    }
    run_checked(Command::new("rustup").args(["target", "add", MUSL_TARGET]))
        .context("rustup target add x86_64-unknown-linux-musl failed")
}
