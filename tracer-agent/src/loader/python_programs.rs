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
//! 3.11 to 3.13). Without it created tasks take no request.

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
use tracer_common::{PyFrames, RUNTIME_PYTHON, python::NO_CFRAME};

use super::{
    dwarf::{self, Wanted},
    follow_runtime, uprobes,
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
            let followed = match self.modules.get(&key) {
                Some(&followed) => followed,
                None => {
                    let followed = match self.attach(&file, module) {
                        Ok(()) => {
                            tracing::info!("following the {what} of {module} (pid {pid})");
                            true
                        }
                        Err(reason) => {
                            tracing::warn!(
                                "the {what} of {module} (pid {pid}) are not followed, their \
                                 calls follow the thread rule: {reason}"
                            );
                            false
                        }
                    };
                    if self.modules.len() >= MAX_FILES {
                        self.modules.clear();
                    }
                    self.modules.insert(key, followed);
                    followed
                }
            };
            if followed && !is_queue_module(module) {
                self.register_frames(pid, &maps, cpython_minor(module));
            }
        }
    }

    /// Tells the kernel how to read the Python frames of asyncio process
    /// `pid` (CPython 3.`minor`), so that tasks its own code creates take
    /// over their creator's request. Without it, created tasks take none.
    fn register_frames(&mut self, pid: u32, maps: &str, minor: Option<u32>) {
        let Some(minor) = minor.filter(|&minor| minor >= 11) else {
            return;
        };
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
                let inspected = Interpreter::inspect(&file, minor);
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
        let frames = interpreter.frames_at(loaded);
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
        follow_runtime(&self.ebpf, RUNTIME_PYTHON).map_err(|e| e.to_string())?;
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

/// What the kernel needs to read the frames of one CPython interpreter file.
#[derive(Clone, Copy, Debug)]
struct Interpreter {
    /// CPython 3.`minor`.
    minor: u32,
    /// Link-time address of `_PyRuntime.gilstate.tstate_current` (3.11),
    /// or of `_PyRuntime.interpreters.main` (3.12+).
    thread_state_at: u64,
    /// Lowest address the file is linked at.
    link_base: u64,
    /// The offsets; the addresses are the process's, set per process.
    frames: PyFrames,
}

impl Interpreter {
    /// Reads the layout of CPython 3.`minor` from `file` (libpython or an
    /// executable that links it statically) and its DWARF.
    fn inspect(file: &Path, minor: u32) -> Result<Interpreter, String> {
        use object::{Object, ObjectSymbol};
        let data = std::fs::read(file).map_err(|e| e.to_string())?;
        let elf = dwarf::Elf::parse(data.as_slice()).map_err(|e| e.to_string())?;
        let runtime = elf
            .dynamic_symbols()
            .chain(elf.symbols())
            .find(|symbol| symbol.name() == Ok("_PyRuntime"))
            .ok_or("no symbol _PyRuntime")?
            .address();
        let wanted = frame_layout(minor);
        let offsets = dwarf::layout(&elf, &wanted)
            .map_err(|e| format!("no debugging information on its frames: {e}"))?;
        let fact = |fact: Wanted| -> Result<u64, String> {
            wanted
                .iter()
                .zip(&offsets)
                .find_map(|(asked, &offset)| (*asked == fact).then_some(offset))
                .ok_or_else(|| format!("{fact} was not asked for"))
        };
        let small = |wanted: Wanted| -> Result<u16, String> {
            u16::try_from(fact(wanted)?).map_err(|_| format!("{wanted} is too large"))
        };
        let mut frames = PyFrames {
            previous: small(FRAME_PREVIOUS)?,
            co_filename: small(CODE_FILENAME)?,
            ascii_data: small(ASCII_SIZE)?,
            ..PyFrames::default()
        };
        frames.f_code = small(if minor >= 13 {
            FRAME_EXECUTABLE
        } else {
            FRAME_CODE
        })?;
        let thread_state_at = if minor == 11 {
            runtime + fact(RUNTIME_GILSTATE)? + fact(GILSTATE_TSTATE)?
        } else {
            frames.threads_head = small(INTERPRETER_THREADS)? + small(THREADS_HEAD)?;
            frames.native_thread_id = small(THREAD_NATIVE_ID)?;
            frames.next_thread = small(THREAD_NEXT)?;
            runtime + fact(RUNTIME_INTERPRETERS)? + fact(INTERPRETERS_MAIN)?
        };
        if minor >= 13 {
            frames.cframe = NO_CFRAME;
            frames.current_frame = small(THREAD_CURRENT_FRAME)?;
        } else {
            frames.cframe = small(THREAD_CFRAME)?;
            frames.current_frame = small(CFRAME_CURRENT_FRAME)?;
        }
        Ok(Interpreter {
            minor,
            thread_state_at,
            link_base: uprobes::link_base(&elf),
            frames,
        })
    }

    /// The kernel's view for one process that loaded this file at `loaded`.
    fn frames_at(&self, loaded: u64) -> PyFrames {
        let address = loaded
            .wrapping_sub(self.link_base & !0xfff)
            .wrapping_add(self.thread_state_at);
        let mut frames = self.frames;
        if self.minor == 11 {
            frames.tstate_current = address;
        } else {
            frames.main_interpreter = address;
        }
        frames
    }
}

const RUNTIME_GILSTATE: Wanted = Wanted::Member("pyruntimestate", "gilstate");
const GILSTATE_TSTATE: Wanted = Wanted::Member("_gilstate_runtime_state", "tstate_current");
const RUNTIME_INTERPRETERS: Wanted = Wanted::Member("pyruntimestate", "interpreters");
const INTERPRETERS_MAIN: Wanted = Wanted::Member("pyinterpreters", "main");
const INTERPRETER_THREADS: Wanted = Wanted::Member("_is", "threads");
const THREADS_HEAD: Wanted = Wanted::Member("pythreads", "head");
const THREAD_NATIVE_ID: Wanted = Wanted::Member("_ts", "native_thread_id");
const THREAD_NEXT: Wanted = Wanted::Member("_ts", "next");
const THREAD_CFRAME: Wanted = Wanted::Member("_ts", "cframe");
const CFRAME_CURRENT_FRAME: Wanted = Wanted::Member("_PyCFrame", "current_frame");
const THREAD_CURRENT_FRAME: Wanted = Wanted::Member("_ts", "current_frame");
const FRAME_CODE: Wanted = Wanted::Member("_PyInterpreterFrame", "f_code");
const FRAME_EXECUTABLE: Wanted = Wanted::Member("_PyInterpreterFrame", "f_executable");
const FRAME_PREVIOUS: Wanted = Wanted::Member("_PyInterpreterFrame", "previous");
const CODE_FILENAME: Wanted = Wanted::Member("PyCodeObject", "co_filename");
const ASCII_SIZE: Wanted = Wanted::Size("PyASCIIObject");

/// The layout facts the kernel needs from CPython 3.`minor`: 3.11 keeps
/// the current thread's state in `_PyRuntime`, 3.12+ in a thread-local
/// (found through the main interpreter's list of threads instead); 3.13
/// dropped `_PyCFrame` and renamed a frame's code `f_executable`.
fn frame_layout(minor: u32) -> Vec<Wanted> {
    let mut wanted = vec![FRAME_PREVIOUS, CODE_FILENAME, ASCII_SIZE];
    if minor == 11 {
        wanted.extend([RUNTIME_GILSTATE, GILSTATE_TSTATE]);
    } else {
        wanted.extend([
            RUNTIME_INTERPRETERS,
            INTERPRETERS_MAIN,
            INTERPRETER_THREADS,
            THREADS_HEAD,
            THREAD_NATIVE_ID,
            THREAD_NEXT,
        ]);
    }
    if minor >= 13 {
        wanted.extend([THREAD_CURRENT_FRAME, FRAME_EXECUTABLE]);
    } else {
        wanted.extend([THREAD_CFRAME, CFRAME_CURRENT_FRAME, FRAME_CODE]);
    }
    wanted
}

/// The shared CPython library a process has mapped (`libpython3.X.so…`),
/// if it has one (else the interpreter is its executable).
fn mapped_interpreter(maps: &str) -> Option<&str> {
    mapped_file(maps, |name| {
        name.starts_with("libpython3.") && name.contains(".so")
    })
}

/// The path of the extension module whose file name starts with `prefix`
/// in a process's `maps`.
fn mapped_module<'a>(maps: &'a str, prefix: &str) -> Option<&'a str> {
    mapped_file(maps, |name| {
        name.starts_with(prefix) && name.ends_with(".so")
    })
}

/// The first path in a process's `maps` whose file name `wanted` accepts.
fn mapped_file(maps: &str, wanted: impl Fn(&str) -> bool) -> Option<&str> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(&wanted)
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
