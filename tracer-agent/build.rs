//! Builds the kernel programs (`tracer-ebpf`) with the nightly toolchain and
//! bpf-linker, so `cargo build` embeds them in the agent binary.
//! `cargo xtask setup` installs what this needs.

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // aya-build reruns on changes under the eBPF crate; the shared types too.
    println!("cargo:rerun-if-changed={root}/tracer-common/src");
    let ebpf = aya_build::Package {
        name: "tracer-ebpf",
        root_dir: &format!("{root}/tracer-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
