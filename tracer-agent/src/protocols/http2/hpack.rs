//! HPACK (RFC 7541) through `httlib-hpack`, made total: a block is walked
//! first (integers and string lengths only) and handed to the decoder only
//! when every representation in it is whole, because the decoder indexes
//! past the end of a truncated one instead of returning an error. The
//! dynamic table may not grow past `MAX_TABLE_BYTES`, whatever a peer
//! announces. (`fluke-hpack`, used before, built a hash table of the whole
//! Huffman code for every Huffman-coded string: 80% of the agent's time
//! under an HTTP/2 load.)

/// The dynamic table's largest size a peer may set (64 KiB: 16 times the
/// default; HTTP/2 peers rarely go past the default 4 KiB).
const MAX_TABLE_BYTES: u32 = 64 * 1024;
/// The dynamic table's size until the encoder changes it (RFC 7540's
/// SETTINGS_HEADER_TABLE_SIZE default).
const INITIAL_TABLE_BYTES: u32 = 4096;

pub struct Decoder {
    decoder: httlib_hpack::Decoder<'static>,
    /// The block being decoded (the decoder consumes a `Vec`) and its
    /// fields, kept to reuse their allocations.
    block: Vec<u8>,
    fields: Vec<(Vec<u8>, Vec<u8>, u8)>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hpack::Decoder")
    }
}

/// A block that is not whole, or that the decoder refused: the table may
/// now differ from the encoder's.
#[derive(Debug, PartialEq, Eq)]
pub struct Undecodable;

impl Decoder {
    pub fn new() -> Self {
        let mut decoder = httlib_hpack::Decoder::with_dynamic_size(INITIAL_TABLE_BYTES);
        decoder.set_max_dynamic_size(MAX_TABLE_BYTES);
        Decoder {
            decoder,
            block: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Decodes `block`, handing each field to `field`.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), Undecodable> {
        if !is_whole(block) {
            return Err(Undecodable);
        }
        self.block.clear();
        self.block.extend_from_slice(block);
        self.fields.clear();
        let decoded = self.decoder.decode(&mut self.block, &mut self.fields);
        for (name, value, _) in &self.fields {
            field(name, value);
        }
        decoded.map(|_| ()).map_err(|_| Undecodable)
    }

    /// Decodes `block` with a table known only in part (its newest
    /// entries): a field that refers to an entry not in it is skipped (a
    /// reference changes no table), the rest decoded. Whether none was
    /// skipped; an error when a field that would have changed the table
    /// could not be decoded (the table may differ from the encoder's now).
    pub fn decode_known(
        &mut self,
        mut block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<bool, Undecodable> {
        let mut complete = true;
        while !block.is_empty() {
            let used = representation(block).ok_or(Undecodable)?;
            let (one, rest) = block.split_at(used);
            match self.decode(one, &mut field) {
                Ok(()) => {}
                Err(Undecodable) if one[0] & 0x80 != 0 => complete = false,
                Err(Undecodable) => return Err(Undecodable),
            }
            block = rest;
        }
        Ok(complete)
    }
}

/// What the pseudo-header fields of `block` say it is, read without a
/// table (a connection joined midway): a request when one of them is a
/// request's (`:authority`, `:method`, `:path`, `:scheme`, by the static
/// table or a plain literal name) and none is `:status`; a response when
/// one is `:status`; neither (trailers, or fields only the dynamic table
/// knows) otherwise.
pub fn pseudo_headers(mut block: &[u8]) -> PseudoHeaders {
    let (mut request, mut response) = (false, false);
    while let Some(used) = representation(block) {
        let first = block[0];
        let name = if first & 0x80 != 0 {
            integer(block, 7).map_or(StaticName::Other, |(index, _)| StaticName::of(index))
        } else if first & 0xe0 == 0x20 {
            // A table size update.
            StaticName::Other
        } else {
            let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
            match integer(block, prefix) {
                Some((0, name_at)) => StaticName::of_literal(&block[name_at..]),
                Some((index, _)) => StaticName::of(index),
                None => StaticName::Other,
            }
        };
        match name {
            StaticName::Request => request = true,
            StaticName::Status => response = true,
            StaticName::Other => {}
        }
        block = &block[used..];
    }
    match (request, response) {
        (_, true) => PseudoHeaders::Response,
        (true, false) => PseudoHeaders::Request,
        (false, false) => PseudoHeaders::Neither,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum PseudoHeaders {
    Request,
    Response,
    Neither,
}

/// A field's name as far as `pseudo_headers` cares.
enum StaticName {
    Request,
    Status,
    Other,
}

impl StaticName {
    /// By its static table index (RFC 7541 appendix A: 1–7 are
    /// `:authority`, `:method`, `:path`, `:scheme`; 8–14 `:status`).
    fn of(index: usize) -> StaticName {
        match index {
            1..=7 => StaticName::Request,
            8..=14 => StaticName::Status,
            _ => StaticName::Other,
        }
    }

    /// A literal name (a length-prefixed string, not Huffman-coded).
    fn of_literal(string: &[u8]) -> StaticName {
        let Some((length, used)) = integer(string, 7) else {
            return StaticName::Other;
        };
        let huffman = string.first().is_some_and(|b| b & 0x80 != 0);
        match string.get(used..used + length) {
            Some(b":status") if !huffman => StaticName::Status,
            Some(b":authority" | b":method" | b":path" | b":scheme") if !huffman => {
                StaticName::Request
            }
            _ => StaticName::Other,
        }
    }
}

/// The bytes of `block`'s first representation; none when it is not whole.
fn representation(block: &[u8]) -> Option<usize> {
    let first = *block.first()?;
    let used = if first & 0x80 != 0 {
        integer(block, 7)?.1
    } else if first & 0xe0 == 0x20 {
        integer(block, 5)?.1
    } else {
        literal(block, if first & 0xc0 == 0x40 { 6 } else { 4 })?
    };
    (used <= block.len()).then_some(used)
}

/// Whether every representation in `block` is complete.
fn is_whole(mut block: &[u8]) -> bool {
    while !block.is_empty() {
        match representation(block) {
            Some(used) => block = &block[used..],
            None => return false,
        }
    }
    true
}

/// A literal field: its name (indexed or a string), then its value string.
fn literal(block: &[u8], prefix: u8) -> Option<usize> {
    let (index, mut used) = integer(block, prefix)?;
    if index == 0 {
        used += string(block.get(used..)?)?;
    }
    Some(used + string(block.get(used..)?)?)
}

/// A string's length with its length prefix.
fn string(block: &[u8]) -> Option<usize> {
    let (length, used) = integer(block, 7)?;
    let total = used.checked_add(length)?;
    (total <= block.len()).then_some(total)
}

/// An HPACK integer with an `prefix`-bit prefix: its value and its bytes
/// (at most 5 continuation bytes, as the decoder allows).
fn integer(block: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let mask = (1u16 << prefix) as usize - 1;
    let mut value = (*block.first()? as usize) & mask;
    if value < mask {
        return Some((value, 1));
    }
    for (i, byte) in block.iter().enumerate().skip(1).take(4) {
        value += ((byte & 0x7f) as usize) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, Undecodable> {
        let mut out = Vec::new();
        decoder.decode(block, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into(),
                String::from_utf8_lossy(v).into(),
            ))
        })?;
        Ok(out)
    }

    /// RFC 7541 C.3: requests without Huffman coding, the table carried
    /// from one to the next.
    #[test]
    fn rfc_examples_share_the_table() {
        let mut decoder = Decoder::new();
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x0f, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p',
            b'l', b'e', b'.', b'c', b'o', b'm',
        ];
        assert_eq!(
            fields(&mut decoder, &first).unwrap()[3],
            (":authority".into(), "www.example.com".into())
        );
        // `be`: the dynamic table's first entry, the authority above.
        let second = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x08, b'n', b'o', b'-', b'c', b'a', b'c', b'h', b'e',
        ];
        let second = fields(&mut decoder, &second).unwrap();
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
    }

    #[test]
    fn truncated_blocks_are_errors_not_panics() {
        let mut decoder = Decoder::new();
        // A size update whose integer never ends; a string longer than the block.
        for block in [
            &[0x3f][..],
            &[0x3f, 0xff, 0xff],
            &[0x40, 0x05, b'a'],
            &[0xff],
        ] {
            assert_eq!(fields(&mut decoder, block), Err(Undecodable));
        }
        // Size updates to the allowed table size (64 KiB), and one past it.
        assert_eq!(fields(&mut decoder, &[0x3f, 0xe1, 0xff, 0x03]), Ok(vec![]));
        assert_eq!(
            fields(&mut decoder, &[0x3f, 0xe2, 0xff, 0x03]),
            Err(Undecodable)
        );
    }
}
