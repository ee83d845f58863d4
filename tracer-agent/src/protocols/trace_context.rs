//! Trace context already on the wire: W3C `traceparent`, B3 single and multi
//! headers, in whatever header block a protocol carries (HTTP/1 headers,
//! HTTP/2 header fields, gRPC metadata). Pure parsers: any header value
//! gives a context or `None`.

/// A span context from a request's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// The context in a header block, given how to look a header up by its
/// lower-case name: `traceparent` first, then `b3`, then `X-B3-*`.
pub fn extract<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<RemoteContext> {
    header("traceparent")
        .and_then(parse_traceparent)
        .or_else(|| header("b3").and_then(parse_b3_single))
        .or_else(|| {
            let trace = header("x-b3-traceid")?;
            let span = header("x-b3-spanid")?;
            context(parse_trace_id(trace)?, parse_hex::<8>(span)?)
        })
}

/// `version-traceid-parentid-flags` (W3C Trace Context, version 00 and later).
pub fn parse_traceparent(value: &str) -> Option<RemoteContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") {
        return None;
    }
    parse_hex::<1>(version)?;
    let trace_id = parse_hex::<16>(parts.next()?)?;
    let span_id = parse_hex::<8>(parts.next()?)?;
    let flags = parts.next()?;
    if flags.len() != 2 || parse_hex::<1>(flags).is_none() {
        return None;
    }
    // Version 00 has exactly four fields; later versions may add more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    context(trace_id, span_id)
}

/// `traceid-spanid[-sampled[-parentspanid]]`; a lone `0`/`d` is a sampling
/// decision with no context.
pub fn parse_b3_single(value: &str) -> Option<RemoteContext> {
    let mut parts = value.trim().split('-');
    let trace_id = parse_trace_id(parts.next()?)?;
    let span_id = parse_hex::<8>(parts.next()?)?;
    context(trace_id, span_id)
}

/// A 128-bit or 64-bit (left-padded) hex trace id.
fn parse_trace_id(hex: &str) -> Option<[u8; 16]> {
    match hex.len() {
        32 => parse_hex::<16>(hex),
        16 => {
            let low = parse_hex::<8>(hex)?;
            let mut id = [0; 16];
            id[8..].copy_from_slice(&low);
            Some(id)
        }
        _ => None,
    }
}

fn context(trace_id: [u8; 16], span_id: [u8; 8]) -> Option<RemoteContext> {
    // All-zero ids are invalid in both formats.
    (trace_id != [0; 16] && span_id != [0; 8]).then_some(RemoteContext { trace_id, span_id })
}

/// Exactly `2 * N` hex digits.
pub fn parse_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        out[i] = (high * 16 + low) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn expected() -> RemoteContext {
        RemoteContext {
            trace_id: parse_hex(TRACE).unwrap(),
            span_id: parse_hex(SPAN).unwrap(),
        }
    }

    #[test]
    fn traceparent() {
        assert_eq!(
            parse_traceparent(&format!("00-{TRACE}-{SPAN}-01")),
            Some(expected())
        );
        assert_eq!(
            parse_traceparent(&format!("01-{TRACE}-{SPAN}-00-extra")),
            Some(expected())
        );
        assert_eq!(
            parse_traceparent(&format!("00-{TRACE}-{SPAN}-01-extra")),
            None
        );
        assert_eq!(parse_traceparent(&format!("ff-{TRACE}-{SPAN}-01")), None);
        assert_eq!(
            parse_traceparent(&format!("00-{}-{SPAN}-01", "0".repeat(32))),
            None
        );
        assert_eq!(
            parse_traceparent(&format!("00-{TRACE}-{}-01", "0".repeat(16))),
            None
        );
        assert_eq!(parse_traceparent("00-xyz"), None);
        assert_eq!(parse_traceparent(""), None);
        assert_eq!(parse_traceparent("00-é-é-é"), None);
    }

    #[test]
    fn b3() {
        assert_eq!(
            parse_b3_single(&format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90")),
            Some(expected())
        );
        assert_eq!(
            parse_b3_single(&format!("{TRACE}-{SPAN}")),
            Some(expected())
        );
        assert_eq!(parse_b3_single("0"), None);
        let short = parse_b3_single(&format!("a3ce929d0e0e4736-{SPAN}")).unwrap();
        assert_eq!(&short.trace_id[..8], &[0; 8]);
    }

    #[test]
    fn precedence() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        };
        const MULTI: &[(&str, &str)] = &[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)];
        assert_eq!(extract(lookup(MULTI)), Some(expected()));
        const BOTH: &[(&str, &str)] = &[
            ("b3", "11111111111111111111111111111111-00f067aa0ba902b7"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ];
        assert_eq!(extract(lookup(BOTH)), Some(expected()));
        assert_eq!(extract(lookup(&[])), None);
    }
}
