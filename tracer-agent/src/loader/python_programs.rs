//! Python programs: uprobes on CPython's `_asyncio` module (asyncio tasks,
//! tracer-ebpf's `tasks`) and `_queue` module (thread pools' work queues,
//! `pools`), attached once per module file. The functions are local
//! symbols: a build that strips the modules (Debian's python3.x does; pyenv
//! and python.org builds do not) cannot be followed, and its calls stay
//! with the thread rule.
//!
//! A task takes over its creator's request only when the program's own
//! code creates it (`PY_FRAMES`): the kernel reads the creating Python
//! frames, which needs the interpreter's layout from its DWARF (CPython
//! 3.11). Elsewhere created tasks take no request.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf,
    maps::{HashMap as KernelMap, MapData},
    programs::uprobe::UProbeAttachLocation,
};
use tracer_common::PyFrames;

use super::{
    dwarf::{self, Wanted},
    uprobes,
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

/// Files remembered (modules, interpreters); past this the caches start over.
const MAX_FILES: usize = 1024;

pub struct PythonPrograms {
    ebpf: Arc<Mutex<Ebpf>>,
    frames: KernelMap<MapData, u32, PyFrames>,
    proc_root: PathBuf,
    /// Module files by (device, inode): whether they are followed.
    modules: HashMap<(u64, u64), bool>,
    /// Interpreter files (libpython or a static executable) by (device,
    /// inode): how to read their frames, or none.
    interpreters: HashMap<(u64, u64), Option<Interpreter>>,
}

impl PythonPrograms {
    pub(super) fn new(ebpf: Arc<Mutex<Ebpf>>, frames: KernelMap<MapData, u32, PyFrames>) -> Self {
        PythonPrograms {
            ebpf,
            frames,
            proc_root: PathBuf::from("/proc"),
            modules: HashMap::new(),
            interpreters: HashMap::new(),
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
            if let Some(&followed) = self.modules.get(&key) {
                if followed && !is_queue_module(module) {
                    self.register_frames(pid, &maps, cpython_minor(module));
                }
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
            if self.modules.len() >= MAX_FILES {
                self.modules.clear();
            }
            self.modules.insert(key, followed);
            if followed && !is_queue_module(module) {
                self.register_frames(pid, &maps, cpython_minor(module));
            }
        }
    }

    /// Tells the kernel how to read the Python frames of asyncio process
    /// `pid` (CPython 3.`minor`), so that tasks its own code creates take
    /// over their creator's request. Without it, created tasks take none.
    fn register_frames(&mut self, pid: u32, maps: &str, minor: Option<u32>) {
        if minor != Some(11) {
            tracing::warn!(
                "pid {pid}: tasks that a request's task creates are not linked to that \
                 request (their calls follow the thread rule): telling the program's own \
                 tasks from its libraries' is done for CPython 3.11 only"
            );
            return;
        }
        let dir = self.proc_root.join(pid.to_string());
        let path = mapped_interpreter(maps).map(str::to_string).or_else(|| {
            let exe = std::fs::read_link(dir.join("exe")).ok()?;
            Some(exe.to_str()?.to_string())
        });
        let Some(path) = path else { return };
        let file = dir.join("root").join(path.trim_start_matches('/'));
        let Ok(metadata) = std::fs::metadata(&file) else {
            return;
        };
        let key = (metadata.dev(), metadata.ino());
        let interpreter = match self.interpreters.get(&key) {
            Some(known) => *known,
            None => {
                let inspected = Interpreter::inspect(&file);
                match &inspected {
                    Ok(_) => tracing::info!(
                        "asyncio tasks of {path}: a task takes over its creator's request \
                         when the program's own code creates it, not a library"
                    ),
                    Err(reason) => tracing::warn!(
                        "{path}: tasks that a request's task creates are not linked to that \
                         request (their calls follow the thread rule): {reason}"
                    ),
                }
                if self.interpreters.len() >= MAX_FILES {
                    self.interpreters.clear();
                }
                let known = inspected.ok();
                self.interpreters.insert(key, known);
                known
            }
        };
        let Some(interpreter) = interpreter else {
            return;
        };
        let Some(loaded) = uprobes::mapped_start(maps, &path) else {
            return;
        };
        let mut frames = interpreter.frames;
        frames.tstate_current = loaded
            .wrapping_sub(interpreter.link_base & !0xfff)
            .wrapping_add(interpreter.tstate_current);
        if let Err(e) = self.frames.insert(pid, frames, 0) {
            tracing::debug!("cannot tell the kernel about Python process {pid}: {e}");
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

/// What the kernel needs to read the frames of one CPython 3.11 interpreter file.
#[derive(Clone, Copy, Debug)]
struct Interpreter {
    /// Link-time address of `_PyRuntime.gilstate.tstate_current`.
    tstate_current: u64,
    /// Lowest address the file is linked at.
    link_base: u64,
    /// The offsets; `tstate_current` is the process's, set per process.
    frames: PyFrames,
}

/// The layout facts `PyFrames` takes, in its order after the thread state.
const FRAME_LAYOUT: [Wanted; 8] = [
    Wanted::Member("pyruntimestate", "gilstate"),
    Wanted::Member("_gilstate_runtime_state", "tstate_current"),
    Wanted::Member("_ts", "cframe"),
    Wanted::Member("_PyCFrame", "current_frame"),
    Wanted::Member("_PyInterpreterFrame", "f_code"),
    Wanted::Member("_PyInterpreterFrame", "previous"),
    Wanted::Member("PyCodeObject", "co_filename"),
    Wanted::Size("PyASCIIObject"),
];

impl Interpreter {
    fn inspect(file: &Path) -> Result<Interpreter, String> {
        use object::{Object, ObjectSymbol};
        let data = std::fs::read(file).map_err(|e| e.to_string())?;
        let elf = dwarf::Elf::parse(data.as_slice()).map_err(|e| e.to_string())?;
        let runtime = elf
            .dynamic_symbols()
            .chain(elf.symbols())
            .find(|symbol| symbol.name() == Ok("_PyRuntime"))
            .ok_or("no symbol _PyRuntime")?
            .address();
        let offsets = dwarf::layout(&elf, &FRAME_LAYOUT)
            .map_err(|e| format!("no debugging information on its frames: {e}"))?;
        let small = |index: usize| {
            u16::try_from(offsets[index])
                .map_err(|_| format!("{} is too large", FRAME_LAYOUT[index]))
        };
        Ok(Interpreter {
            tstate_current: runtime + offsets[0] + offsets[1],
            link_base: uprobes::link_base(&elf),
            frames: PyFrames {
                tstate_current: 0,
                cframe: small(2)?,
                current_frame: small(3)?,
                f_code: small(4)?,
                previous: small(5)?,
                co_filename: small(6)?,
                ascii_data: small(7)?,
                _pad: 0,
            },
        })
    }
}

/// The shared CPython library a process has mapped (`libpython3.X.so…`),
/// if it has one (else the interpreter is its executable).
fn mapped_interpreter(maps: &str) -> Option<&str> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libpython3.") && name.contains(".so"))
        })
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

    #[test]
    fn the_interpreter_is_libpython_when_mapped() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 1234 /usr/bin/python3.11
7f1e2c000000-7f1e2c0a0000 r--p 00000000 fe:01 5678 /opt/py/lib/libpython3.11.so.1.0
7f1e2c0a0000-7f1e2c300000 r-xp 000a0000 fe:01 5678 /opt/py/lib/libpython3.11.so.1.0
";
        assert_eq!(
            mapped_interpreter(maps),
            Some("/opt/py/lib/libpython3.11.so.1.0")
        );
        assert_eq!(
            uprobes::mapped_start(maps, "/opt/py/lib/libpython3.11.so.1.0"),
            Some(0x7f1e2c000000)
        );
        assert_eq!(mapped_interpreter(maps.lines().next().unwrap()), None);
    }
}
