//! Kernel struct member offsets from the kernel's own BTF.

use btf_rs::{Btf, Type};
use tracer_common::KernelOffsets;

use super::LoadError;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// `kernel_offsets`, read in a forked child process: parsing the kernel's
/// BTF builds about 40 MiB of index for a 6 MiB file, which would stay in
/// the agent's memory (and its peak) for good. Call it while the process has
/// one thread (before the async runtime starts), as `fork` requires. When
/// the child cannot run or fails, the offsets are read here instead, so an
/// error is reported as `kernel_offsets` reports it.
pub fn kernel_offsets_in_child(path: &str) -> Result<KernelOffsets, LoadError> {
    match from_child(path) {
        Some(offsets) => Ok(offsets),
        None => kernel_offsets(path),
    }
}

fn from_child(path: &str) -> Option<KernelOffsets> {
    use std::io::{Read, Write};

    const SIZE: usize = std::mem::size_of::<KernelOffsets>();
    let (mut reader, mut writer) = std::io::pipe().ok()?;
    // SAFETY: the caller guarantees a single-threaded process, so the child
    // may allocate and run ordinary code; it leaves with `_exit`.
    match unsafe { libc::fork() } {
        -1 => None,
        0 => {
            let status = match kernel_offsets(path) {
                Ok(offsets) => {
                    // SAFETY: `KernelOffsets` is `repr(C)` u32s, no padding.
                    let bytes: [u8; SIZE] = unsafe { std::mem::transmute(offsets) };
                    i32::from(writer.write_all(&bytes).is_err())
                }
                Err(_) => 1,
            };
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(status) }
        }
        child => {
            drop(writer);
            let mut bytes = Vec::with_capacity(SIZE);
            let read = reader.read_to_end(&mut bytes);
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            let bytes: [u8; SIZE] = bytes.try_into().ok()?;
            (read.is_ok() && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
                // SAFETY: the child wrote a whole `KernelOffsets` (any bits are valid u32s).
                .then(|| unsafe { std::mem::transmute::<[u8; SIZE], KernelOffsets>(bytes) })
        }
    }
}

/// Reads every offset the programs need from the BTF file at `path`.
pub fn kernel_offsets(path: &str) -> Result<KernelOffsets, LoadError> {
    if !std::path::Path::new(path).exists() {
        return Err(LoadError::NoBtf {
            path: path.to_string(),
        });
    }
    let btf = Btf::from_file(path).map_err(|e| LoadError::BtfUnreadable {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let offset = |strct: &'static str, path: &'static str| member_offset(&btf, strct, path);
    Ok(KernelOffsets {
        task_files: offset("task_struct", "files")?,
        files_fdt: offset("files_struct", "fdt")?,
        fdtable_max_fds: offset("fdtable", "max_fds")?,
        fdtable_fd: offset("fdtable", "fd")?,
        file_inode: offset("file", "f_inode")?,
        file_private_data: offset("file", "private_data")?,
        file_op: offset("file", "f_op")?,
        inode_mode: offset("inode", "i_mode")?,
        socket_type: offset("socket", "type")?,
        socket_sk: offset("socket", "sk")?,
        sock_family: offset("sock", "__sk_common.skc_family")?,
        sock_protocol: offset("sock", "sk_protocol")?,
        sock_num: offset("sock", "__sk_common.skc_num")?,
        sock_dport: offset("sock", "__sk_common.skc_dport")?,
        sock_daddr: offset("sock", "__sk_common.skc_daddr")?,
        sock_rcv_saddr: offset("sock", "__sk_common.skc_rcv_saddr")?,
        sock_v6_daddr: offset("sock", "__sk_common.skc_v6_daddr")?,
        sock_v6_rcv_saddr: offset("sock", "__sk_common.skc_v6_rcv_saddr")?,
        // tcp_sock starts with its struct sock, so these are offsets from it too.
        tcp_write_seq: offset("tcp_sock", "write_seq")?,
        tcp_copied_seq: offset("tcp_sock", "copied_seq")?,
        task_nsproxy: offset("task_struct", "nsproxy")?,
        nsproxy_net_ns: offset("nsproxy", "net_ns")?,
        net_inum: offset("net", "ns.inum")?,
        task_fsbase: offset("task_struct", "thread.fsbase")?,
        walk_shortcuts: 0,
    }
    .with_shortcuts())
}

/// Byte offset of `path` (dot-separated members) inside struct `strct`.
/// Members of anonymous structs and unions are found as the C compiler would.
fn member_offset(btf: &Btf, strct: &'static str, path: &'static str) -> Result<u32, LoadError> {
    let missing = || LoadError::BtfMember {
        strct,
        member: path,
    };
    let mut current = btf
        .resolve_types_by_name(strct)
        .map_err(|_| missing())?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or_else(missing)?;
    let mut bits = 0u32;
    let mut names = path.split('.').peekable();
    while let Some(name) = names.next() {
        let (member_bits, member_type) = find_member(btf, &current, name).ok_or_else(missing)?;
        bits += member_bits;
        if names.peek().is_some() {
            current = as_struct(btf, member_type).ok_or_else(missing)?;
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(LoadError::BtfBitfield {
            strct,
            member: path,
        });
    }
    Ok(bits / 8)
}

/// A member by name, looking through anonymous struct/union members.
/// Returns its bit offset from the start of `strct` and its type.
fn find_member(btf: &Btf, strct: &btf_rs::Struct, name: &str) -> Option<(u32, Type)> {
    for member in &strct.members {
        if member.bitfield_size().is_some_and(|size| size > 0) {
            continue;
        }
        let member_name = btf.resolve_name(member).unwrap_or_default();
        let member_type = btf.resolve_chained_type(member).ok()?;
        if member_name == name {
            return Some((member.bit_offset(), member_type));
        }
        if member_name.is_empty()
            && let Some(inner) = as_struct(btf, member_type)
            && let Some((bits, found)) = find_member(btf, &inner, name)
        {
            return Some((member.bit_offset() + bits, found));
        }
    }
    None
}

/// The struct or union behind typedefs and qualifiers.
fn as_struct(btf: &Btf, mut t: Type) -> Option<btf_rs::Struct> {
    for _ in 0..16 {
        match t {
            Type::Struct(s) | Type::Union(s) => return Some(s),
            Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
                let next = t.as_btf_type()?;
                t = btf.resolve_chained_type(next).ok()?;
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On any machine with BTF (these tests run on the CI kind, which has it).
    #[test]
    fn offsets_from_this_kernel() {
        let offsets = kernel_offsets(VMLINUX_BTF).expect("kernel BTF");
        // skc_family follows the address pair and hash in sock_common: never 0.
        assert!(offsets.sock_family > 0);
        assert!(offsets.socket_sk > offsets.socket_type);
        assert_ne!(offsets.sock_v6_daddr, offsets.sock_v6_rcv_saddr);
        // Past the embedded struct sock.
        assert!(offsets.tcp_write_seq > offsets.sock_protocol);
        assert!(offsets.tcp_copied_seq > offsets.sock_protocol);
    }

    #[test]
    fn walk_shortcuts_follow_where_the_fields_lie() {
        use tracer_common::WALK_FILE_WINDOW;
        let offsets = kernel_offsets(VMLINUX_BTF).expect("kernel BTF");
        let moved = KernelOffsets {
            file_inode: offsets.file_inode + 8,
            ..offsets
        }
        .with_shortcuts();
        assert_eq!(moved.walk_shortcuts & WALK_FILE_WINDOW, 0);
        assert_eq!(
            moved.walk_shortcuts | WALK_FILE_WINDOW,
            offsets.walk_shortcuts | WALK_FILE_WINDOW
        );
    }

    #[test]
    fn a_child_process_reads_the_same_offsets() {
        let here = kernel_offsets(VMLINUX_BTF).expect("kernel BTF");
        assert_eq!(from_child(VMLINUX_BTF), Some(here));
        assert_eq!(from_child("/nonexistent/vmlinux"), None);
        let err = kernel_offsets_in_child("/nonexistent/vmlinux").unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn missing_member_is_a_clear_error() {
        let btf = Btf::from_file(VMLINUX_BTF).expect("kernel BTF");
        let err = member_offset(&btf, "sock", "no_such_member").unwrap_err();
        assert!(err.to_string().contains("sock.no_such_member"), "{err}");
    }

    #[test]
    fn no_btf_file_says_what_to_do() {
        let err = kernel_offsets("/nonexistent/vmlinux").unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
