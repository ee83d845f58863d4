//! Loading and attaching the uprobe programs on language runtimes (Go,
//! Python, Node.js), shared by their modules.

use std::path::Path;

use aya::{
    Ebpf,
    programs::{UProbe, uprobe::UProbeAttachLocation, uprobe::UProbeScope},
};

/// Loads the uprobe programs `names`; the reason when one cannot be.
pub(super) fn load(
    ebpf: &mut Ebpf,
    names: impl IntoIterator<Item = &'static str>,
) -> Option<String> {
    for name in names {
        let result = match ebpf.program_mut(name) {
            None => Err(format!("no program {name} in the eBPF object")),
            Some(program) => <&mut UProbe>::try_from(program)
                .map_err(|e| e.to_string())
                .and_then(|program| program.load().map_err(|e| e.to_string())),
        };
        if let Err(e) = result {
            return Some(format!("the kernel refused {name}: {e}"));
        }
    }
    None
}

/// Attaches uprobe program `name` at `location` in `file`, for every
/// process that runs it.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    name: &str,
    location: UProbeAttachLocation<'_>,
    file: &Path,
) -> Result<(), String> {
    let program: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("no program {name}"))?
        .try_into()
        .map_err(|e| format!("{name}: {e}"))?;
    program
        .attach(location, file, UProbeScope::AllProcesses)
        .map(|_| ())
        .map_err(|e| format!("cannot attach {name}: {e}"))
}
