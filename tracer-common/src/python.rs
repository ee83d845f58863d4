//! What the kernel needs to tell an asyncio program's own tasks from the
//! tasks its libraries create (`PY_FRAMES`, written by the agent).

/// How to find the Python code creating a task in one CPython process, by
/// pid: the current thread's state, then the frames of its interpreter
/// stack and each frame's file name. Offsets come from the interpreter's
/// DWARF; addresses from the process's mappings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyFrames {
    /// CPython 3.11: address of `_PyRuntime.gilstate.tstate_current`, the
    /// `PyThreadState*` of the thread holding the GIL (the one creating the
    /// task). 0 on 3.12+, which keep it in a thread-local.
    pub tstate_current: u64,
    /// CPython 3.12+: address of `_PyRuntime.interpreters.main`; the
    /// thread's state is found in that interpreter's list of threads by its
    /// kernel thread id.
    pub main_interpreter: u64,
    /// `PyInterpreterState.threads.head`.
    pub threads_head: u16,
    /// `PyThreadState.native_thread_id`.
    pub native_thread_id: u16,
    /// `PyThreadState.next`.
    pub next_thread: u16,
    /// `PyThreadState.cframe` (3.11, 3.12), or `NO_CFRAME` (3.13+: the
    /// thread state holds the current frame itself).
    pub cframe: u16,
    /// `_PyCFrame.current_frame`, or `PyThreadState.current_frame` (3.13+).
    pub current_frame: u16,
    /// `_PyInterpreterFrame.f_code` (`f_executable` in 3.13+).
    pub f_code: u16,
    /// `_PyInterpreterFrame.previous` (the caller's frame).
    pub previous: u16,
    /// `PyCodeObject.co_filename`.
    pub co_filename: u16,
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's bytes start.
    pub ascii_data: u16,
    pub _pad: [u16; 3],
}

/// `PyFrames::cframe` of an interpreter without `_PyCFrame` (3.13+).
pub const NO_CFRAME: u16 = u16::MAX;

impl PyFrames {
    /// Tells one process's interpreter from another's (the address of its
    /// runtime state moves with the library's load address).
    pub const fn interpreter(&self) -> u64 {
        self.tstate_current | self.main_interpreter
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for PyFrames {}

const _: () = assert!(core::mem::size_of::<PyFrames>() == 40);

/// Python frames looked at, innermost first, for the first one that is not
/// asyncio's own (`create_task`, `ensure_future`, `gather`).
pub const MAX_PY_FRAMES: u32 = 8;

/// Threads of an interpreter looked through for the current one (3.12+);
/// newest first. A process with more threads than this started after its
/// event loop's thread has its created tasks left without a request.
pub const MAX_PY_THREADS: u32 = 64;

/// Bytes of a frame's file name looked at.
pub const PY_FILENAME_BYTES: usize = 256;
