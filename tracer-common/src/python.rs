//! What the kernel needs to tell an asyncio program's own tasks from the
//! tasks its libraries create (`PY_FRAMES`, written by the agent).

/// How to find the Python code creating a task in one CPython 3.11 process,
/// by pid: the current thread's state through `_PyRuntime`, then the frames
/// of its interpreter stack and each frame's file name. Offsets come from
/// the interpreter's DWARF; the address from the process's mappings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyFrames {
    /// Address of `_PyRuntime.gilstate.tstate_current` in the process: the
    /// `PyThreadState*` of the thread holding the GIL (the one creating the task).
    pub tstate_current: u64,
    /// `PyThreadState.cframe`.
    pub cframe: u16,
    /// `_PyCFrame.current_frame`.
    pub current_frame: u16,
    /// `_PyInterpreterFrame.f_code`.
    pub f_code: u16,
    /// `_PyInterpreterFrame.previous` (the caller's frame).
    pub previous: u16,
    /// `PyCodeObject.co_filename`.
    pub co_filename: u16,
    /// `sizeof(PyASCIIObject)`: where a compact ASCII string's bytes start.
    pub ascii_data: u16,
    pub _pad: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for PyFrames {}

const _: () = assert!(core::mem::size_of::<PyFrames>() == 24);

/// Python frames looked at, innermost first, for the first one that is not
/// asyncio's own (`create_task`, `ensure_future`, `gather`).
pub const MAX_PY_FRAMES: u32 = 8;

/// Bytes of a frame's file name looked at.
pub const PY_FILENAME_BYTES: usize = 256;
