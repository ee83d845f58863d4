//! Layouts of types from an ELF file's DWARF: the byte offsets of struct
//! members and the sizes of types that kernel programs read through in
//! another process's memory (Go's `runtime.g.goid`; CPython's thread state,
//! frames and code objects). Read once per file; a file without DWARF (a
//! stripped build) has no layout.

use std::borrow::Cow;

use object::{Object, ObjectSection, ReadRef, read::elf::ElfFile64};

pub type Elf<'data, R> = ElfFile64<'data, object::Endianness, R>;

/// One fact wanted from the DWARF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Byte offset of member `.1` in the struct named `.0`.
    Member(&'static str, &'static str),
    /// Size in bytes of the struct named so, or of the struct a typedef of
    /// that name stands for (`typedef struct { … } PyASCIIObject`).
    Size(&'static str),
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Member(structure, member) => write!(f, "{structure}.{member}"),
            Wanted::Size(name) => write!(f, "sizeof({name})"),
        }
    }
}

/// Each of `wanted`, in order, from the first definition found; an error
/// names the first fact the DWARF does not give.
pub fn layout<'data, R: ReadRef<'data>>(
    elf: &Elf<'data, R>,
    wanted: &[Wanted],
) -> Result<Vec<u64>, String> {
    let load = |id: gimli::SectionId| -> Result<Cow<'data, [u8]>, String> {
        Ok(match elf.section_by_name(id.name()) {
            Some(section) => section.uncompressed_data().map_err(|e| e.to_string())?,
            None => Cow::Borrowed(&[]),
        })
    };
    let sections = gimli::DwarfSections::load(load)?;
    let dwarf = sections.borrow(|section| gimli::EndianSlice::new(section, gimli::LittleEndian));
    let mut found: Vec<Option<u64>> = vec![None; wanted.len()];
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| e.to_string())? {
        let unit = dwarf.unit(header).map_err(|e| e.to_string())?;
        let mut entries = unit.entries();
        // The wanted struct being walked, and its depth.
        let mut inside: Option<(&[u8], isize)> = None;
        let mut depth = 0isize;
        while let Some((delta, entry)) = entries.next_dfs().map_err(|e| e.to_string())? {
            depth += delta;
            if inside.is_some_and(|(_, at)| depth <= at) {
                inside = None;
            }
            let name = match entry.attr_value(gimli::DW_AT_name) {
                Ok(Some(value)) => dwarf.attr_string(&unit, value).ok().map(|n| n.slice()),
                _ => None,
            };
            match (entry.tag(), name) {
                (gimli::DW_TAG_structure_type, Some(name)) => {
                    let size = byte_size(entry);
                    // A declaration (no size) describes no members.
                    if size.is_none() {
                        continue;
                    }
                    let mut wanted_here = false;
                    for (fact, slot) in wanted.iter().zip(found.iter_mut()) {
                        match fact {
                            Wanted::Size(n) if n.as_bytes() == name && slot.is_none() => {
                                *slot = size;
                            }
                            Wanted::Member(s, _) if s.as_bytes() == name => wanted_here = true,
                            _ => {}
                        }
                    }
                    if wanted_here {
                        inside = Some((name, depth));
                    }
                }
                (gimli::DW_TAG_typedef, Some(name)) => {
                    for (fact, slot) in wanted.iter().zip(found.iter_mut()) {
                        if matches!(fact, Wanted::Size(n) if n.as_bytes() == name)
                            && slot.is_none()
                            && let Ok(Some(gimli::AttributeValue::UnitRef(target))) =
                                entry.attr_value(gimli::DW_AT_type)
                            && let Ok(target) = unit.entry(target)
                        {
                            *slot = byte_size(&target);
                        }
                    }
                }
                (gimli::DW_TAG_member, Some(member)) => {
                    let Some((structure, at)) = inside else {
                        continue;
                    };
                    if depth != at + 1 {
                        continue;
                    }
                    for (fact, slot) in wanted.iter().zip(found.iter_mut()) {
                        if matches!(fact, Wanted::Member(s, m)
                            if s.as_bytes() == structure && m.as_bytes() == member)
                            && slot.is_none()
                        {
                            *slot = entry
                                .attr_value(gimli::DW_AT_data_member_location)
                                .ok()
                                .flatten()
                                .and_then(|value| value.udata_value());
                        }
                    }
                }
                _ => {}
            }
            if found.iter().all(Option::is_some) {
                return Ok(found.into_iter().flatten().collect());
            }
        }
    }
    let missing = wanted
        .iter()
        .zip(&found)
        .find_map(|(fact, slot)| slot.is_none().then_some(fact))
        .map_or_else(String::new, ToString::to_string);
    Err(format!("{missing} is not described"))
}

fn byte_size<R: gimli::Reader>(entry: &gimli::DebuggingInformationEntry<R>) -> Option<u64> {
    entry
        .attr_value(gimli::DW_AT_byte_size)
        .ok()
        .flatten()
        .and_then(|value| value.udata_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type this test binary describes in its own DWARF (tests build with
    /// debugging information).
    #[repr(C)]
    struct DwarfLayoutProbe {
        first: u8,
        second: u64,
    }

    #[test]
    fn members_and_sizes_from_this_binary() {
        let probe = DwarfLayoutProbe {
            first: 1,
            second: 2,
        };
        assert_eq!(u64::from(probe.first) + probe.second, 3);
        let data = std::fs::read("/proc/self/exe").expect("read this test binary");
        let elf = Elf::parse(data.as_slice()).expect("an ELF file");
        let wanted = [
            Wanted::Member("DwarfLayoutProbe", "second"),
            Wanted::Size("DwarfLayoutProbe"),
        ];
        assert_eq!(layout(&elf, &wanted), Ok(vec![8, 16]));
        assert_eq!(
            layout(&elf, &[Wanted::Member("DwarfLayoutProbe", "third")]),
            Err("DwarfLayoutProbe.third is not described".to_string())
        );
    }
}
