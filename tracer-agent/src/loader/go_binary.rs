//! What a Go executable tells the kernel programs: where the running
//! goroutine and its id are, and where to put the uprobes that follow a
//! request from goroutine to goroutine (see tracer-ebpf's `goroutines`).
//!
//! Read from the file itself: the Go version from `.go.buildinfo`, the
//! offset of `runtime.g.goid` from its DWARF, the thread-local slot of `g`
//! from its TLS segment, the functions from its symbol table, and the `RET`
//! instructions of `runtime.newproc1` by decoding its code (a return probe
//! on a Go function would corrupt the stacks Go moves).

use std::path::Path;

use object::{Object, ObjectSymbol, read::ReadCache};

use super::{
    dwarf::{self, Elf, Wanted},
    uprobes,
};

/// Where the kernel's uprobes go in one Go executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoBinary {
    /// As the binary states it, e.g. `go1.19.8`.
    pub version: String,
    /// `runtime.g.goid`'s byte offset.
    pub goid_offset: u32,
    /// The `g` pointer's slot, from the thread pointer.
    pub tls_g_offset: i32,
    /// (program, file offset) for each uprobe to attach.
    pub probes: Vec<(GoProbe, u64)>,
    /// Link-time address of `*net.TCPConn`'s itab as a `net.Conn`, when the
    /// program has `crypto/tls` (whose probes are then in `probes`).
    pub tcp_conn_itab: Option<u64>,
    /// [start, end) link-time addresses of the functions whose goroutines
    /// inherit their parent's request (`SpawnRanges`); empty when the
    /// program's own code is too scattered to list (nothing inherits).
    pub spawn_ranges: Vec<[u64; 2]>,
    /// A position-independent executable: its load address is added.
    pub position_independent: bool,
    /// Lowest address the executable is linked at (with `position_independent`).
    pub link_base: u64,
}

/// The uprobe programs on a Go binary, named as in tracer-ebpf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoProbe {
    Newproc1,
    Newproc1Return,
    RoundTrip,
    WriteLoop,
    RequestWrite,
    TlsWrite,
    TlsRead,
    TlsReadReturn,
    TlsStart,
}

impl GoProbe {
    pub const ALL: [GoProbe; 9] = [
        GoProbe::Newproc1,
        GoProbe::Newproc1Return,
        GoProbe::RoundTrip,
        GoProbe::WriteLoop,
        GoProbe::RequestWrite,
        GoProbe::TlsWrite,
        GoProbe::TlsRead,
        GoProbe::TlsReadReturn,
        GoProbe::TlsStart,
    ];

    /// Reads `crypto/tls` (off with `--no-tls`).
    pub const fn is_tls(self) -> bool {
        matches!(
            self,
            GoProbe::TlsWrite | GoProbe::TlsRead | GoProbe::TlsReadReturn | GoProbe::TlsStart
        )
    }

    pub const fn program(self) -> &'static str {
        match self {
            GoProbe::Newproc1 => "go_newproc1",
            GoProbe::Newproc1Return => "go_newproc1_return",
            GoProbe::RoundTrip => "go_round_trip",
            GoProbe::WriteLoop => "go_write_loop",
            GoProbe::RequestWrite => "go_request_write",
            GoProbe::TlsWrite => "go_tls_write",
            GoProbe::TlsRead => "go_tls_read",
            GoProbe::TlsReadReturn => "go_tls_read_return",
            GoProbe::TlsStart => "go_tls_start",
        }
    }
}

/// Why a Go binary's goroutines cannot be followed (its calls then stay
/// unlinked, as before).
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error("cannot read the executable: {0}")]
    Unreadable(String),
    #[error("not an x86-64 ELF executable")]
    Architecture,
    #[error("no Go build information (.go.buildinfo)")]
    NoBuildInfo,
    #[error(
        "Go version {0}: goroutines are followed from Go 1.18 (register ABI, inline build info)"
    )]
    Version(String),
    #[error("no symbol {0} (a stripped binary: build without -ldflags=-s)")]
    NoSymbol(&'static str),
    #[error("no DWARF description of runtime.g.goid (built with -ldflags=-w?): {0}")]
    NoGoid(String),
    #[error("no usable thread-local slot for g: {0}")]
    Tls(String),
    #[error("no RET instruction found in runtime.newproc1")]
    NoReturn,
}

/// Whether the executable at `exe` was built by Go: it has the
/// `.go.buildinfo` section every Go binary since 1.13 carries, stripped or
/// not. Reads the ELF headers only.
pub fn is_go_executable(exe: &Path) -> bool {
    let Ok(file) = std::fs::File::open(exe) else {
        return false;
    };
    let cache = ReadCache::new(file);
    object::File::parse(&cache).is_ok_and(|elf| elf.section_by_name(".go.buildinfo").is_some())
}

const NEWPROC1: &str = "runtime.newproc1";
/// The `net/http` client functions: all or none (a program without the client).
const HTTP_CLIENT: [(GoProbe, &str); 3] = [
    (GoProbe::RoundTrip, "net/http.(*persistConn).roundTrip"),
    (GoProbe::WriteLoop, "net/http.(*persistConn).writeLoop"),
    (GoProbe::RequestWrite, "net/http.(*Request).write"),
];

/// `crypto/tls`'s functions: the plaintext written, read (and its returns),
/// and a connection's start (a program may have either handshake only).
const TLS_WRITE: &str = "crypto/tls.(*Conn).Write";
const TLS_READ: &str = "crypto/tls.(*Conn).Read";
const TLS_HANDSHAKES: [&str; 2] = [
    "crypto/tls.(*Conn).clientHandshake",
    "crypto/tls.(*Conn).serverHandshake",
];
/// `*net.TCPConn`'s itab as a `net.Conn` (`go.itab.` before Go 1.20).
const TCP_CONN_ITABS: [&str; 2] = [
    "go:itab.*net.TCPConn,net.Conn",
    "go.itab.*net.TCPConn,net.Conn",
];

/// Reads what the uprobes need from the Go executable at `path`.
pub fn inspect(path: &Path) -> Result<GoBinary, Unsupported> {
    let file = std::fs::File::open(path).map_err(|e| Unsupported::Unreadable(e.to_string()))?;
    let cache = ReadCache::new(file);
    let elf = object::read::elf::ElfFile64::<object::Endianness, _>::parse(&cache)
        .map_err(|e| Unsupported::Unreadable(e.to_string()))?;
    if elf.architecture() != object::Architecture::X86_64 {
        return Err(Unsupported::Architecture);
    }
    let (version, module) = go_version(&elf)?;
    let mut functions = std::collections::HashMap::new();
    // (address, end, inherits) of every function, for `spawn_ranges`.
    let mut code = Vec::new();
    for symbol in elf.symbols() {
        let Ok(name) = symbol.name() else { continue };
        let wanted = [NEWPROC1, TLS_WRITE, TLS_READ]
            .iter()
            .chain(&TLS_HANDSHAKES)
            .chain(&TCP_CONN_ITABS)
            .chain(HTTP_CLIENT.iter().map(|(_, name)| name));
        if wanted.into_iter().any(|wanted| *wanted == name) {
            functions.insert(name.to_string(), (symbol.address(), symbol.size()));
        }
        if symbol.kind() == object::SymbolKind::Text && symbol.size() > 0 {
            let end = symbol.address() + symbol.size();
            code.push((symbol.address(), end, inherits(name, module.as_deref())));
        }
    }
    let &(newproc1, newproc1_size) = functions
        .get(NEWPROC1)
        .ok_or(Unsupported::NoSymbol(NEWPROC1))?;
    let file_offset = |address: u64| file_offset(&elf, address);
    let mut probes = vec![(GoProbe::Newproc1, file_offset(newproc1)?)];
    let returns = uprobes::function_returns(&elf, newproc1, newproc1_size);
    for address in returns.ok_or(Unsupported::NoReturn)? {
        probes.push((GoProbe::Newproc1Return, file_offset(address)?));
    }
    let tcp_conn_itab = tls_probes(&elf, &functions, &mut probes)?;
    if HTTP_CLIENT
        .iter()
        .all(|(_, name)| functions.contains_key(*name))
    {
        for (probe, name) in HTTP_CLIENT {
            probes.push((probe, file_offset(functions[name].0)?));
        }
    }
    use object::read::elf::FileHeader;
    let endian = elf.endian();
    Ok(GoBinary {
        version,
        goid_offset: goid_offset(&elf)?,
        tls_g_offset: tls_g_offset(&elf)?,
        probes,
        tcp_conn_itab,
        spawn_ranges: spawn_ranges(code),
        position_independent: elf.elf_header().e_type(endian) == object::elf::ET_DYN,
        link_base: uprobes::link_base(&elf),
    })
}

/// Adds the `crypto/tls` probes when the program has what they need (its
/// `Conn`'s Write and Read, Read's returns, `*net.TCPConn`'s itab); the
/// itab's address when it has.
fn tls_probes<'data, R: object::ReadRef<'data>>(
    elf: &Elf<'data, R>,
    functions: &std::collections::HashMap<String, (u64, u64)>,
    probes: &mut Vec<(GoProbe, u64)>,
) -> Result<Option<u64>, Unsupported> {
    let (Some(&(write, _)), Some(&(read, read_size)), Some(&(itab, _))) = (
        functions.get(TLS_WRITE),
        functions.get(TLS_READ),
        TCP_CONN_ITABS.iter().find_map(|name| functions.get(*name)),
    ) else {
        return Ok(None);
    };
    let Some(read_returns) = uprobes::function_returns(elf, read, read_size) else {
        return Ok(None);
    };
    probes.push((GoProbe::TlsWrite, file_offset(elf, write)?));
    probes.push((GoProbe::TlsRead, file_offset(elf, read)?));
    for address in read_returns {
        probes.push((GoProbe::TlsReadReturn, file_offset(elf, address)?));
    }
    for name in TLS_HANDSHAKES {
        if let Some(&(address, _)) = functions.get(name) {
            probes.push((GoProbe::TlsStart, file_offset(elf, address)?));
        }
    }
    Ok(Some(itab))
}

/// Whether a goroutine running function `name` takes over its parent's
/// request: the program's own code (package `main`, its module's packages),
/// `errgroup`'s goroutines and `net/http`'s `TimeoutHandler` (which runs the
/// handler in a goroutine of its own).
fn inherits(name: &str, module: Option<&str>) -> bool {
    const HELPERS: [&str; 2] = [
        "golang.org/x/sync/errgroup.",
        "net/http.(*timeoutHandler).ServeHTTP.",
    ];
    name.starts_with("main.")
        || HELPERS.iter().any(|prefix| name.starts_with(prefix))
        || module.is_some_and(|module| {
            name.strip_prefix(module)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
        })
}

/// Runs of consecutive inheriting functions, by address; none when there
/// are more than `MAX_SPAWN_RANGES` (nothing inherits then: never a wrong
/// parent).
fn spawn_ranges(mut code: Vec<(u64, u64, bool)>) -> Vec<[u64; 2]> {
    code.sort_unstable_by_key(|&(start, _, _)| start);
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    let mut extending = false;
    for (start, end, inherits) in code {
        match (inherits, extending, ranges.last_mut()) {
            (true, true, Some(last)) => last[1] = last[1].max(end),
            (true, _, _) => ranges.push([start, end]),
            (false, _, _) => {}
        }
        extending = inherits;
    }
    if ranges.len() > tracer_common::go::MAX_SPAWN_RANGES {
        return Vec::new();
    }
    ranges
}

/// The version string of a Go 1.18+ binary (stored inline since 1.18), and
/// its main module's path.
fn go_version<'data, R: object::ReadRef<'data>>(
    elf: &Elf<'data, R>,
) -> Result<(String, Option<String>), Unsupported> {
    use object::ObjectSection;
    let data = elf
        .section_by_name(".go.buildinfo")
        .and_then(|section| section.data().ok())
        .ok_or(Unsupported::NoBuildInfo)?;
    parse_build_info(data)
}

fn parse_build_info(data: &[u8]) -> Result<(String, Option<String>), Unsupported> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    const INLINE_STRINGS: u8 = 2;
    if !data.starts_with(MAGIC) || data.len() < 32 {
        return Err(Unsupported::NoBuildInfo);
    }
    if data[15] & INLINE_STRINGS == 0 {
        return Err(Unsupported::Version("before 1.18".into()));
    }
    let (length, used) = uvarint(&data[32..]).ok_or(Unsupported::NoBuildInfo)?;
    let start = 32 + used;
    let version = usize::try_from(length)
        .ok()
        .and_then(|length| data.get(start..start.checked_add(length)?))
        .ok_or(Unsupported::NoBuildInfo)?;
    let version_end = start + version.len();
    let version = String::from_utf8_lossy(version).into_owned();
    match minor_version(&version) {
        Some(minor) if minor >= 18 => {}
        _ => return Err(Unsupported::Version(version)),
    }
    // Then the module information: lines such as `mod\t<path>\t<version>`.
    let module = data.get(version_end..).and_then(|rest| {
        let (length, used) = uvarint(rest)?;
        let info = rest.get(used..used.checked_add(usize::try_from(length).ok()?)?)?;
        String::from_utf8_lossy(info).lines().find_map(|line| {
            let path = line.strip_prefix("mod\t")?.split('\t').next()?;
            (!path.is_empty()).then(|| path.to_string())
        })
    });
    Ok((version, module))
}

/// `go1.19.8` → 19 (Go 1 only).
fn minor_version(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Go's unsigned varint: the value and the bytes it took.
fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The file offset of virtual address `address` (what a uprobe attaches to).
fn file_offset<'data, R: object::ReadRef<'data>>(
    elf: &Elf<'data, R>,
    address: u64,
) -> Result<u64, Unsupported> {
    uprobes::file_offset(elf, address)
        .ok_or_else(|| Unsupported::Unreadable(format!("address {address:#x} is in no segment")))
}

/// `runtime.g.goid`'s offset, from the binary's DWARF.
fn goid_offset<'data, R: object::ReadRef<'data>>(elf: &Elf<'data, R>) -> Result<u32, Unsupported> {
    let offsets =
        dwarf::layout(elf, &[Wanted::Member("runtime.g", "goid")]).map_err(Unsupported::NoGoid)?;
    offsets
        .first()
        .and_then(|&offset| u32::try_from(offset).ok())
        .filter(|&offset| offset > 0)
        .ok_or_else(|| Unsupported::NoGoid("goid has no usable location".into()))
}

/// The `g` slot relative to the thread pointer. x86-64 ELF puts the
/// executable's TLS block right below the thread pointer; Go's own linker
/// makes that block the 8-byte `g` slot (`-8(FS)`).
fn tls_g_offset<'data, R: object::ReadRef<'data>>(elf: &Elf<'data, R>) -> Result<i32, Unsupported> {
    use object::read::elf::ProgramHeader;
    let endian = elf.endian();
    let tls = elf
        .elf_program_headers()
        .iter()
        .find(|header| header.p_type(endian) == object::elf::PT_TLS)
        .ok_or_else(|| Unsupported::Tls("no TLS segment".into()))?;
    let size = tls.p_memsz(endian);
    let align = tls.p_align(endian).max(1);
    let block = size.div_ceil(align) * align;
    if block != 8 {
        // A C linker's TLS block (cgo, external linking): where in it Go's
        // slot landed is not read here.
        return Err(Unsupported::Tls(format!(
            "a {size}-byte TLS block (externally linked?)"
        )));
    }
    Ok(-8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_versions() {
        let mut data = b"\xff Go buildinf:\x08\x02".to_vec();
        data.resize(32, 0);
        data.push(8);
        data.extend_from_slice(b"go1.19.8");
        assert_eq!(parse_build_info(&data).unwrap(), ("go1.19.8".into(), None));
        let mut with_module = data.clone();
        let info =
            b"0123456789abcdefpath\texample.com/shop/cmd/api\nmod\texample.com/shop\t(devel)\t\n";
        with_module.push(info.len() as u8);
        with_module.extend_from_slice(info);
        assert_eq!(
            parse_build_info(&with_module).unwrap().1.as_deref(),
            Some("example.com/shop")
        );

        let mut old = data.clone();
        old[15] = 0;
        assert!(matches!(
            parse_build_info(&old),
            Err(Unsupported::Version(_))
        ));
        let mut too_old = data[..32].to_vec();
        too_old.push(8);
        too_old.extend_from_slice(b"go1.17.1");
        assert!(matches!(
            parse_build_info(&too_old),
            Err(Unsupported::Version(v)) if v == "go1.17.1"
        ));
        // Truncated or garbage: an error, never a panic.
        for cut in 0..data.len() {
            let _ = parse_build_info(&data[..cut]);
        }
        let mut long = data[..32].to_vec();
        long.extend_from_slice(&[0xff; 12]);
        assert!(parse_build_info(&long).is_err());
    }

    #[test]
    fn own_code_and_helpers_inherit() {
        let module = Some("example.com/shop");
        assert!(inherits("main.main.func1", module));
        assert!(inherits(
            "example.com/shop/orders.(*Service).fanOut.func2",
            module
        ));
        assert!(inherits(
            "golang.org/x/sync/errgroup.(*Group).Go.func1",
            module
        ));
        assert!(!inherits("example.com/shopping.loop", module));
        assert!(!inherits("net/http.(*persistConn).writeLoop", module));
        assert!(!inherits(
            "google.golang.org/grpc/internal/transport.(*loopyWriter).run",
            None
        ));
    }

    #[test]
    fn spawn_ranges_join_neighbours() {
        let code = vec![
            (0x30, 0x40, true),
            (0x10, 0x20, true),
            (0x20, 0x30, true),
            (0x40, 0x50, false),
            (0x50, 0x60, true),
        ];
        assert_eq!(spawn_ranges(code), vec![[0x10, 0x40], [0x50, 0x60]]);
        let scattered: Vec<_> = (0..100u64)
            .map(|i| (i * 0x10, i * 0x10 + 0x10, i % 2 == 0))
            .collect();
        assert!(spawn_ranges(scattered).is_empty());
    }

    #[test]
    fn versions() {
        assert_eq!(minor_version("go1.19.8"), Some(19));
        assert_eq!(minor_version("go1.22rc1"), Some(22));
        assert_eq!(minor_version("devel +abc"), None);
    }

    #[test]
    fn not_go() {
        let err = inspect(Path::new("/bin/sh")).unwrap_err();
        assert!(matches!(err, Unsupported::NoBuildInfo), "{err}");
        assert!(matches!(
            inspect(Path::new("/nonexistent")),
            Err(Unsupported::Unreadable(_))
        ));
    }
}
