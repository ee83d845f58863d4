//! The messages of the agent's Node.js context script (`--node-context-script`),
//! read by the kernel at libuv's `uv_fs_access`: the path of a failing
//! `fs.accessSync`, `/dev/null/tracer/<kind>/<fd>/<id>`.

const PREFIX: &[u8; 17] = b"/dev/null/tracer/";

/// How long a message can be (NUL included) for the kernel to read it.
pub const MESSAGE_LEN: usize = 64;

/// Request `id` is the one now open on server socket `fd`.
pub const REQUEST_STARTED: u8 = b'i';
/// The request about to be written on client socket `fd` is made for
/// request `id` (0: for none).
pub const CALL_FOR: u8 = b'o';

/// (kind, fd, id) of a message; none for any other path. Total: any bytes
/// give an answer, never a panic, in a bounded number of steps.
#[inline(always)]
pub fn parse_message(message: &[u8]) -> Option<(u8, u64, u64)> {
    if message.len() < PREFIX.len() + 2 || message[..PREFIX.len()] != PREFIX[..] {
        return None;
    }
    let kind = message[PREFIX.len()];
    if kind != REQUEST_STARTED && kind != CALL_FOR {
        return None;
    }
    let mut at = PREFIX.len() + 1;
    if message.get(at) != Some(&b'/') {
        return None;
    }
    at += 1;
    let fd = number(message, &mut at)?;
    if message.get(at) != Some(&b'/') {
        return None;
    }
    at += 1;
    let id = number(message, &mut at)?;
    (at == message.len()).then_some((kind, fd, id))
}

/// The decimal number at `message[*at..]` (1 to 19 digits), moving `at` past it.
#[inline(always)]
fn number(message: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    let mut digits = 0;
    for _ in 0..19 {
        match message.get(*at) {
            Some(&digit) if digit.is_ascii_digit() => {
                value = value * 10 + u64::from(digit - b'0');
                *at += 1;
                digits += 1;
            }
            _ => break,
        }
    }
    (digits > 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            parse_message(b"/dev/null/tracer/i/20/1"),
            Some((REQUEST_STARTED, 20, 1))
        );
        assert_eq!(
            parse_message(b"/dev/null/tracer/o/7/18446744073709551"),
            Some((CALL_FOR, 7, 18446744073709551))
        );
        for other in [
            &b""[..],
            b"/dev/null/tracer/",
            b"/dev/null/tracer/i",
            b"/dev/null/tracer/i/",
            b"/dev/null/tracer/i/1",
            b"/dev/null/tracer/i/1/",
            b"/dev/null/tracer/i/1/2/",
            b"/dev/null/tracer/i/x/2",
            b"/dev/null/tracer/i/1/2x",
            b"/etc/passwd",
            b"/dev/null/tracer/i/12345678901234567890/1",
            b"/dev/null/tracer/x/1/2",
        ] {
            assert_eq!(
                parse_message(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn any_bytes_are_an_answer() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..80 {
            for _ in 0..200 {
                let mut message = b"/dev/null/tracer/".to_vec();
                for _ in 0..len {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    message.push(b"io/0123456789x\0"[(state % 15) as usize]);
                }
                let _ = parse_message(&message);
            }
        }
    }
}
