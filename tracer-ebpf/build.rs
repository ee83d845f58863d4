// Rebuild when the bpf-linker binary changes (it is an undeclared build tool).
fn main() {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let linker = dir.join("bpf-linker");
            if linker.exists() {
                println!("cargo:rerun-if-changed={}", linker.display());
                break;
            }
        }
    }
    // bpf-linker's default (`--bpf-expand-memcpy-in-order`) makes LLVM turn
    // every memset, even of a few bytes, into a call to a byte-at-a-time
    // loop: about a twentieth of the programs' run time. Without it, small
    // memsets and memcpys are plain stores.
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
