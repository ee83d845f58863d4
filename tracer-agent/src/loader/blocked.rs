//! Threads that are inside a socket write when the programs attach (a
//! sender blocked on a full socket buffer): the kernel never saw their
//! syscall's enter, so the agent lists them and `sock_send_length` reads the
//! arguments from the thread's registers (see the kernel's `start_in_send`).
//! Reads need no list: the kernel looks at them at their end only.

use std::{fs, path::Path};

/// x86-64 numbers of the writes the programs trace at their entry: write,
/// writev, sendto, sendmsg (sendfile, like reads, is looked at at its end
/// only).
const WRITE_SYSCALLS: [u64; 4] = [1, 20, 44, 46];

/// `pid_tgid` keys (process id high, thread id low) of the threads of every
/// process but `skip_pid` that are now in a write on a socket.
pub fn threads_in_socket_writes(skip_pid: u32) -> Vec<u64> {
    let Ok(processes) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for process in processes.flatten() {
        let Some(pid) = number(&process.file_name()) else {
            continue;
        };
        if pid == skip_pid {
            continue;
        }
        let Ok(threads) = fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for thread in threads.flatten() {
            let Some(tid) = number(&thread.file_name()) else {
                continue;
            };
            let Ok(syscall) = fs::read_to_string(thread.path().join("syscall")) else {
                continue;
            };
            if let Some(fd) = write_syscall_fd(&syscall)
                && is_socket(&process.path(), fd)
            {
                found.push((u64::from(pid) << 32) | u64::from(tid));
            }
        }
    }
    found
}

fn number(name: &std::ffi::OsStr) -> Option<u32> {
    name.to_str()?.parse().ok()
}

/// The descriptor of a `/proc/PID/task/TID/syscall` line ("NR ARG0 ARG1 …",
/// hex arguments) when NR is a traced write; "running" and "-1 …" (not in a
/// syscall) give none.
fn write_syscall_fd(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    let nr: u64 = fields.next()?.parse().ok()?;
    if !WRITE_SYSCALLS.contains(&nr) {
        return None;
    }
    u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()
}

fn is_socket(process: &Path, fd: u64) -> bool {
    fs::read_link(process.join("fd").join(fd.to_string()))
        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:["))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_syscall_lines() {
        assert_eq!(
            write_syscall_fd("44 0x5 0x7ffd1000 0x2000 0x0 0x0 0x0 0x7ffd0ff8 0x7f0012345678"),
            Some(5)
        );
        assert_eq!(
            write_syscall_fd("1 0x1a 0x1 0x2 0x0 0x0 0x0 0x0 0x0"),
            Some(26)
        );
        assert_eq!(write_syscall_fd("45 0x5 0x1 0x2 0x0 0x0 0x0 0x0 0x0"), None);
        assert_eq!(
            write_syscall_fd("232 0x4 0x1 0x2 0x0 0x0 0x0 0x0 0x0"),
            None
        );
        assert_eq!(write_syscall_fd("running"), None);
        assert_eq!(write_syscall_fd("-1 0x7ffd 0x7f00"), None);
        assert_eq!(write_syscall_fd(""), None);
        assert_eq!(write_syscall_fd("1 zz"), None);
    }

    #[test]
    fn finds_a_thread_blocked_in_a_write() {
        let (client, mut server) = std::os::unix::net::UnixStream::pair().unwrap();
        // More than the socket buffer holds: the write blocks until read.
        let writer = std::thread::spawn(move || {
            std::io::Write::write_all(&mut &client, &vec![0u8; 8 << 20]).unwrap();
        });
        // The thread is blocked once the kernel says so; wait for it.
        let me = (u64::from(std::process::id())) << 32;
        let mut found = false;
        for _ in 0..200 {
            if threads_in_socket_writes(0)
                .iter()
                .any(|key| key & !0xffff_ffff == me)
            {
                found = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::io::copy(
            &mut std::io::Read::take(&mut server, 8 << 20),
            &mut std::io::sink(),
        )
        .unwrap();
        writer.join().unwrap();
        assert!(found, "the writing thread was not found");
    }
}
