//! What a SQL text says without its values: literals replaced by `?`
//! (strings, dollar-quoted strings, numbers), comments dropped, spaces
//! folded; and its operation and the table it works on, for span names
//! like `SELECT orders`. Shared by the SQL databases, each its dialect.

/// How a database quotes: PostgreSQL's `"` quotes a name and `$$` a
/// string; MySQL's `"` quotes a string, `` ` `` a name, `\` escapes in any
/// string and `#` starts a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// Keywords after which the next identifier is the table worked on.
const TABLE_AFTER: &[&str] = &["FROM", "INTO", "UPDATE", "TABLE", "JOIN"];
/// Bytes of a sanitized text kept.
const MAX_TEXT: usize = 1024;

/// `text` with every literal a `?`. Never a value: an unterminated string
/// swallows the rest of the text, and bytes that are not ASCII outside a
/// string or identifier become `?` too.
pub fn sanitize(text: &str, dialect: Dialect) -> String {
    let mysql = dialect == Dialect::Mysql;
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    let mut i = 0;
    let mut space = false;
    while i < bytes.len() && out.len() < MAX_TEXT {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if b.is_ascii_whitespace() {
            space = !out.is_empty();
            i += 1;
            continue;
        }
        if (b == b'-' && next == Some(b'-')) || (mysql && b == b'#') {
            i = find(bytes, i, b"\n").map_or(bytes.len(), |e| e + 1);
            space = !out.is_empty();
            continue;
        }
        if b == b'/' && next == Some(b'*') {
            i = find(bytes, i + 2, b"*/").map_or(bytes.len(), |e| e + 2);
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        match b {
            b'\'' | b'"' if b == b'\'' || mysql => {
                // `E'…'` takes backslash escapes; its E goes with it.
                let e_string =
                    !mysql && matches!(prev(bytes, i), b'E' | b'e') && !prev_is_word(bytes, i - 1);
                if e_string {
                    out.pop();
                }
                i = string_end(bytes, i + 1, b, mysql || e_string);
                out.push('?');
            }
            b'$' if next.is_some_and(|n| n.is_ascii_digit()) || mysql => {
                // A parameter placeholder: kept.
                let end = i
                    + 1
                    + bytes[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                out.push_str(&text[i..end]);
                i = end;
            }
            b'$' => match dollar_tag(bytes, i) {
                Some(tag_end) => {
                    let tag = &bytes[i..tag_end];
                    i = find(bytes, tag_end, tag).map_or(bytes.len(), |e| e + tag.len());
                    out.push('?');
                }
                None => {
                    out.push('$');
                    i += 1;
                }
            },
            b'"' | b'`' => {
                // A quoted name: kept.
                let end = find(bytes, i + 1, &[b]).map_or(bytes.len(), |e| e + 1);
                out.push_str(&String::from_utf8_lossy(&bytes[i..end]));
                i = end;
            }
            b'0'..=b'9' if !prev_is_word(bytes, i) => {
                i += bytes[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'))
                    .count();
                out.push('?');
            }
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) && !prev_is_word(bytes, i) => {
                i += 1 + bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric())
                    .count();
                out.push('?');
            }
            _ if b.is_ascii() => {
                out.push(b as char);
                i += 1;
            }
            _ => {
                // A word in another script: a name, not a value, but not
                // told apart from one here.
                out.push('?');
                i += 1;
                while i < bytes.len() && !bytes[i].is_ascii() {
                    i += 1;
                }
            }
        }
    }
    out
}

fn prev(bytes: &[u8], i: usize) -> u8 {
    if i == 0 { 0 } else { bytes[i - 1] }
}

/// Whether the byte before `i` continues a word (`t1`, `x.y2`).
fn prev_is_word(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

/// Where a string that starts at `i` (after its `quote`) ends: after its
/// closing quote, a doubled quote being one inside (`escapes`: a
/// backslash escapes the next byte too).
fn string_end(bytes: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A dollar-quote tag at `i` (`$$`, `$body$`): where it ends.
fn dollar_tag(bytes: &[u8], i: usize) -> Option<usize> {
    let inner = bytes[i + 1..]
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    (bytes.get(i + 1 + inner) == Some(&b'$')).then_some(i + inner + 2)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || from > bytes.len() {
        return None;
    }
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// A query's operation and the table it works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySummary {
    /// The first keyword, upper case (`SELECT`); for `WITH`, the statement
    /// after its common table expressions when found.
    pub operation: Option<String>,
    pub table: Option<String>,
}

impl QuerySummary {
    /// From a sanitized text (no literal left to mistake for a word).
    pub fn of(sanitized: &str) -> QuerySummary {
        let words: Vec<&str> = sanitized
            .split(|c: char| c.is_ascii_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
            .filter(|w| !w.is_empty())
            .collect();
        let keyword = |w: &str| {
            (w.len() <= 16 && w.bytes().all(|b| b.is_ascii_alphabetic()))
                .then(|| w.to_ascii_uppercase())
        };
        let operation = words.first().and_then(|w| keyword(w));
        // After a WITH's parentheses close, its main statement: the first
        // of these keywords at depth zero is a fair guess.
        let operation = match operation.as_deref() {
            Some("WITH") => words
                .iter()
                .filter_map(|w| keyword(w))
                .find(|w| matches!(w.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE"))
                .or(operation),
            _ => operation,
        };
        let table = words.windows(2).find_map(|pair| {
            let after = keyword(pair[0])?;
            if !TABLE_AFTER.contains(&after.as_str()) {
                return None;
            }
            table_name(pair[1])
        });
        QuerySummary { operation, table }
    }

    /// `SELECT orders`, `BEGIN`, or none.
    pub fn span_name(&self) -> Option<String> {
        let operation = self.operation.as_ref()?;
        Some(match &self.table {
            Some(table) => format!("{operation} {table}"),
            None => operation.clone(),
        })
    }
}

/// A table name as written (`orders`, `shop.orders`, `"Orders"`), or none
/// for what is not one (`?`, a subquery, a keyword).
fn table_name(word: &str) -> Option<String> {
    let valid = !word.is_empty()
        && word.len() <= 64
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'"' | b'`'))
        && !word.as_bytes()[0].is_ascii_digit()
        && !matches!(
            word.to_ascii_uppercase().as_str(),
            "SELECT" | "LATERAL" | "ONLY" | "IF"
        );
    valid.then(|| word.to_string())
}
