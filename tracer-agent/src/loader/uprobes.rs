//! Loading and attaching the uprobe programs on language runtimes (Go,
//! Python, Node.js), shared by their modules, and finding where a
//! function returns (a probe on its `RET` instructions sees every return,
//! also of calls that began before it was attached, which a return probe
//! does not; on Go code a return probe is not even safe).

use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol, read::ReadCache};

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

/// The file offset of virtual address `address` (what a uprobe attaches to).
pub(super) fn file_offset<'data>(file: &impl Object<'data>, address: u64) -> Option<u64> {
    file.segments().find_map(|segment| {
        let (offset, size) = segment.file_range();
        let start = segment.address();
        (start..start + size)
            .contains(&address)
            .then(|| address - start + offset)
    })
}

/// The file offsets of the dynamic symbols `functions` the ELF file at
/// `path` exports (what a shared library, or an executable that exports a
/// library it links in, offers); none unless it exports them all.
pub(super) fn exported_offsets<const N: usize>(
    path: &Path,
    functions: &[&str; N],
) -> Option<[u64; N]> {
    let file = std::fs::File::open(path).ok()?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    let mut addresses = [None; N];
    for symbol in elf.dynamic_symbols() {
        if !symbol.is_definition() {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        if let Some(at) = functions.iter().position(|function| *function == name) {
            addresses[at] = Some(symbol.address());
        }
    }
    let mut offsets = [0; N];
    for (offset, address) in offsets.iter_mut().zip(addresses) {
        *offset = file_offset(&elf, address?)?;
    }
    Some(offsets)
}

/// The lowest address `file` is linked at (its first loaded segment's):
/// what its load address in a process is relative to.
pub(super) fn link_base<'data>(file: &impl Object<'data>) -> u64 {
    file.segments()
        .map(|segment| segment.address())
        .min()
        .unwrap_or(0)
}

/// Where `path` is mapped in a process from its start (its mapping at
/// file offset 0), from the process's `/proc/PID/maps` text.
pub(super) fn mapped_start(maps: &str, path: &str) -> Option<u64> {
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let offset = fields.nth(1)?;
        (fields.nth(2)? == path && u64::from_str_radix(offset, 16).ok()? == 0)
            .then(|| u64::from_str_radix(range.split('-').next()?, 16).ok())
            .flatten()
    })
}

/// The addresses of the `RET` instructions of the function at `address`
/// (`size` bytes of code) in `file`; none when that code is in no segment
/// or has no `RET`.
pub(super) fn function_returns<'data>(
    file: &impl Object<'data>,
    address: u64,
    size: u64,
) -> Option<Vec<u64>> {
    let code = file
        .segments()
        .find_map(|segment| segment.data_range(address, size).ok().flatten())?;
    let returns = return_instructions(code, address);
    (!returns.is_empty()).then_some(returns)
}

/// The addresses of the `RET` instructions in `code`, which starts at `address`.
fn return_instructions(code: &[u8], address: u64) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut returns = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.mnemonic() == Mnemonic::Ret {
            returns.push(instruction.ip());
        }
    }
    returns
}

/// The file offsets of the `RET` instructions of `function` (a symbol,
/// local ones included) in the x86-64 ELF file at `path`.
pub(super) fn return_offsets(path: &Path, function: &str) -> Result<Vec<u64>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).map_err(|e| e.to_string())?;
    let symbol = elf
        .symbols()
        .find(|symbol| symbol.name() == Ok(function) && symbol.size() > 0)
        .ok_or_else(|| format!("no symbol {function}"))?;
    let offsets: Vec<u64> = function_returns(&elf, symbol.address(), symbol.size())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|address| file_offset(&elf, address))
        .collect();
    if offsets.is_empty() {
        return Err(format!("no RET instruction in {function}'s code"));
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_are_found_at_instruction_boundaries() {
        // mov eax, 0xc3c3c3c3; add rsp, 8; pop rbp; ret; nop; ret
        let code = [
            0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0x48, 0x83, 0xc4, 0x08, 0x5d, 0xc3, 0x90, 0xc3,
        ];
        assert_eq!(return_instructions(&code, 0x1000), vec![0x100a, 0x100c]);
    }

    #[test]
    fn returns_of_a_function_in_a_file() {
        // This test binary's own C `main` returns.
        let exe = std::env::current_exe().unwrap();
        assert!(!return_offsets(&exe, "main").unwrap().is_empty());
        assert!(return_offsets(&exe, "no_such_function").is_err());
    }
}
