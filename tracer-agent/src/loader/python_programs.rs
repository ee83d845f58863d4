//! Python asyncio programs: uprobes on CPython's `_asyncio` module (see
//! tracer-ebpf's `tasks`), attached once per module file. The functions are
//! local symbols: a build that strips the module (Debian's python3.x does;
//! pyenv and python.org builds do not) cannot be followed, and its asyncio
//! calls stay with the thread rule.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf,
    programs::{UProbe, uprobe::UProbeAttachLocation, uprobe::UProbeScope},
};

/// (program, function) for CPython 3.11; 3.12+ passes the module state
/// first, so its step has its own entry program. `task_step_impl` runs
/// every step (`task_step` is inlined into some of its callers).
const PROBES_3_11: [(&str, &str); 3] = [
    ("py_task_step", "task_step_impl"),
    ("py_task_step_return", "task_step_impl"),
    ("py_task_init", "_asyncio_Task___init__"),
];
const PROBES_3_12: [(&str, &str); 3] = [
    ("py_task_step_with_state", "task_step_impl"),
    ("py_task_step_return", "task_step_impl"),
    ("py_task_init", "_asyncio_Task___init__"),
];
pub const PROGRAMS: [&str; 4] = [
    "py_task_step",
    "py_task_step_with_state",
    "py_task_step_return",
    "py_task_init",
];

pub struct PythonPrograms {
    ebpf: Arc<Mutex<Ebpf>>,
    proc_root: PathBuf,
    /// `_asyncio` module files by (device, inode): whether they are followed.
    modules: HashMap<(u64, u64), bool>,
}

impl PythonPrograms {
    pub(super) fn new(ebpf: Arc<Mutex<Ebpf>>) -> Self {
        PythonPrograms {
            ebpf,
            proc_root: PathBuf::from("/proc"),
            modules: HashMap::new(),
        }
    }

    /// Follows the asyncio tasks of process `pid` if it loaded `_asyncio`.
    pub fn add(&mut self, pid: u32) {
        let dir = self.proc_root.join(pid.to_string());
        let Some(module) = asyncio_module(&dir) else {
            return;
        };
        let module = module.as_str();
        let file = dir.join("root").join(module.trim_start_matches('/'));
        let Ok(metadata) = std::fs::metadata(&file) else {
            return;
        };
        let key = (metadata.dev(), metadata.ino());
        if self.modules.contains_key(&key) {
            return;
        }
        let followed = match self.attach(&file, module) {
            Ok(()) => {
                tracing::info!("following the asyncio tasks of {module} (pid {pid})");
                true
            }
            Err(reason) => {
                tracing::warn!(
                    "asyncio tasks of {module} (pid {pid}) are not followed, its calls \
                     follow the thread rule: {reason}"
                );
                false
            }
        };
        self.modules.insert(key, followed);
    }

    fn attach(&self, file: &Path, module: &str) -> Result<(), String> {
        let probes = match cpython_minor(module) {
            Some(minor) if minor >= 12 => PROBES_3_12,
            Some(11) => PROBES_3_11,
            _ => return Err("a CPython version other than 3.11+".into()),
        };
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        for (name, function) in probes {
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("no program {name}"))?
                .try_into()
                .map_err(|e| format!("{name}: {e}"))?;
            program
                .attach(
                    UProbeAttachLocation::Symbol(function),
                    file,
                    UProbeScope::AllProcesses,
                )
                .map_err(|e| format!("cannot attach to {function}: {e}"))?;
        }
        Ok(())
    }
}

/// The path of the `_asyncio` extension module process `dir` has mapped.
fn asyncio_module(dir: &Path) -> Option<String> {
    let maps = std::fs::read_to_string(dir.join("maps")).ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("_asyncio.") && name.ends_with(".so"))
        })
        .map(str::to_string)
}

/// `_asyncio.cpython-311-x86_64-linux-gnu.so` → 11.
fn cpython_minor(module: &str) -> Option<u32> {
    let tag = module.split("cpython-3").nth(1)?;
    tag.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Loads the asyncio uprobe programs; the reason when they cannot be.
pub(super) fn load_programs(ebpf: &mut Ebpf) -> Option<String> {
    for name in PROGRAMS {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_module_names() {
        assert_eq!(
            cpython_minor(
                "/usr/lib/python3.11/lib-dynload/_asyncio.cpython-311-x86_64-linux-gnu.so"
            ),
            Some(11)
        );
        assert_eq!(
            cpython_minor("_asyncio.cpython-313-x86_64-linux-gnu.so"),
            Some(13)
        );
        assert_eq!(cpython_minor("_asyncio.so"), None);
    }
}
