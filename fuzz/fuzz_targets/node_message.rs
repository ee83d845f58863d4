//! The kernel's reader of the Node.js context script's messages, on any
//! bytes: an answer or none, never a panic; an answer only for the
//! message's own shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_common::node::parse_message;

fuzz_target!(|data: &[u8]| {
    if let Some((_, fd, id)) = parse_message(data) {
        assert!(data.starts_with(b"/dev/null/tracer/"));
        let text = std::str::from_utf8(data).expect("an accepted message is ASCII");
        let mut fields = text.rsplit('/');
        assert_eq!(fields.next().and_then(|f| f.parse().ok()), Some(id));
        assert_eq!(fields.next().and_then(|f| f.parse().ok()), Some(fd));
    }
});
