//! Python programs: uprobes on CPython's `_asyncio` module (asyncio tasks,
//! tracer-ebpf's `tasks`) and `_queue` module (thread pools' work queues,
//! `pools`), attached once per module file. The functions are local
//! symbols: a build that strips the modules (Debian's python3.x does; pyenv
//! and python.org builds do not) cannot be followed, and its calls stay
//! with the thread rule.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{Ebpf, programs::uprobe::UProbeAttachLocation};

use super::uprobes;

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
/// `SimpleQueue.put` (the Argument Clinic wrapper, 3.11+) at its entry; the
/// implementation of `get` at its `RET` instructions (`QUEUE_GET`).
const QUEUE_PUT: (&str, &str) = ("py_queue_put", "_queue_SimpleQueue_put");
const QUEUE_GET: (&str, &str) = ("py_queue_got", "_queue_SimpleQueue_get_impl");
pub const PROGRAMS: [&str; 6] = [
    "py_task_step",
    "py_task_step_with_state",
    "py_task_step_return",
    "py_task_init",
    "py_queue_put",
    "py_queue_got",
];

/// The extension modules followed, by file name prefix, and what they give.
const MODULES: [(&str, &str); 2] = [("_asyncio.", "asyncio tasks"), ("_queue.", "thread pools")];

pub struct PythonPrograms {
    ebpf: Arc<Mutex<Ebpf>>,
    proc_root: PathBuf,
    /// Module files by (device, inode): whether they are followed.
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

    /// Follows the asyncio tasks and thread pools of process `pid`, as far
    /// as it loaded `_asyncio` and `_queue`.
    pub fn add(&mut self, pid: u32) {
        let dir = self.proc_root.join(pid.to_string());
        let Ok(maps) = std::fs::read_to_string(dir.join("maps")) else {
            return;
        };
        for (prefix, what) in MODULES {
            let Some(module) = mapped_module(&maps, prefix) else {
                continue;
            };
            let file = dir.join("root").join(module.trim_start_matches('/'));
            let Ok(metadata) = std::fs::metadata(&file) else {
                continue;
            };
            let key = (metadata.dev(), metadata.ino());
            if self.modules.contains_key(&key) {
                continue;
            }
            let followed = match self.attach(&file, module) {
                Ok(()) => {
                    tracing::info!("following the {what} of {module} (pid {pid})");
                    true
                }
                Err(reason) => {
                    tracing::warn!(
                        "the {what} of {module} (pid {pid}) are not followed, their calls \
                         follow the thread rule: {reason}"
                    );
                    false
                }
            };
            self.modules.insert(key, followed);
        }
    }

    fn attach(&self, file: &Path, module: &str) -> Result<(), String> {
        let minor = cpython_minor(module).filter(|&minor| minor >= 11);
        let probes: &[(&str, &str)] = match minor {
            None => return Err("a CPython version other than 3.11+".into()),
            _ if is_queue_module(module) => &[QUEUE_PUT],
            Some(11) => &PROBES_3_11,
            Some(_) => &PROBES_3_12,
        };
        let mut ebpf = self.ebpf.lock().unwrap_or_else(|e| e.into_inner());
        for &(name, function) in probes {
            let location = UProbeAttachLocation::Symbol(function);
            uprobes::attach(&mut ebpf, name, location, file)?;
        }
        if is_queue_module(module) {
            let (name, function) = QUEUE_GET;
            for offset in uprobes::return_offsets(file, function)? {
                let location = UProbeAttachLocation::AbsoluteOffset(offset);
                uprobes::attach(&mut ebpf, name, location, file)?;
            }
        }
        Ok(())
    }
}

/// The path of the extension module whose file name starts with `prefix`
/// in a process's `maps`.
fn mapped_module<'a>(maps: &'a str, prefix: &str) -> Option<&'a str> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix) && name.ends_with(".so"))
        })
}

fn is_queue_module(module: &str) -> bool {
    Path::new(module)
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("_queue."))
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
