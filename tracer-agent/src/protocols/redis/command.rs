//! What a Redis command says without its values: its name, and the
//! pattern of its key (`user:?`) for the commands whose first argument is
//! a key. Every other argument is a `?`: values, passwords and channel
//! messages never leave the agent.

use super::Command;

/// Commands whose first argument is a key (the rest of a command's
/// arguments are never shown). A command not listed shows no argument.
const KEY_FIRST: &[&str] = &[
    "APPEND",
    "BITCOUNT",
    "BITPOS",
    "BLMOVE",
    "BLPOP",
    "BRPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "COPY",
    "DECR",
    "DECRBY",
    "DEL",
    "DUMP",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETNX",
    "HSTRLEN",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MGET",
    "MSET",
    "MSETNX",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PFADD",
    "PFCOUNT",
    "PSETEX",
    "PTTL",
    "RENAME",
    "RENAMENX",
    "RESTORE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SCARD",
    "SDIFF",
    "SDIFFSTORE",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SINTER",
    "SINTERSTORE",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SPOP",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "STRLEN",
    "SUNION",
    "SUNIONSTORE",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "WATCH",
    "XACK",
    "XADD",
    "XDEL",
    "XLEN",
    "XRANGE",
    "XREVRANGE",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZINCRBY",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
];

/// Commands whose first argument is a subcommand (`CONFIG GET`), shown.
const WITH_SUBCOMMAND: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Commands after which the server pushes messages that answer nothing.
const SUBSCRIBING: &[&str] = &["MONITOR", "PSUBSCRIBE", "SSUBSCRIBE", "SUBSCRIBE"];

/// Arguments shown in a query text; longer commands end in `…`.
const SHOWN_ARGS: u64 = 8;

/// A command's name and how its arguments are shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSummary {
    /// Upper case (`GET`, `JSON.GET`); `UNKNOWN` when not a name.
    pub name: String,
    /// A shown subcommand (`GET` of `CONFIG GET`).
    pub subcommand: Option<String>,
    /// The first argument's pattern, when it is a key.
    pub key: Option<String>,
}

impl CommandSummary {
    pub fn of(command: &Command) -> CommandSummary {
        let name = command
            .args
            .first()
            .filter(|name| is_word(name, b"._-"))
            .map_or_else(
                || "UNKNOWN".to_string(),
                |name| String::from_utf8_lossy(name).to_ascii_uppercase(),
            );
        let first = command.args.get(1);
        let subcommand = first
            .filter(|_| WITH_SUBCOMMAND.contains(&name.as_str()))
            .filter(|sub| is_word(sub, b"-"))
            .map(|sub| String::from_utf8_lossy(sub).to_ascii_uppercase());
        let key = first
            .filter(|_| KEY_FIRST.contains(&name.as_str()))
            .map(|key| key_pattern(key));
        CommandSummary {
            name,
            subcommand,
            key,
        }
    }

    /// `SET user:? ?`: the name, the subcommand or key pattern, and a `?`
    /// for every other argument.
    pub fn query_text(&self, command: &Command) -> String {
        let mut text = self.name.clone();
        let mut shown = 0;
        if let Some(word) = self.subcommand.as_ref().or(self.key.as_ref()) {
            text.push(' ');
            text.push_str(word);
            shown = 1;
        }
        let args = command.arg_count.saturating_sub(1);
        for _ in shown..args.min(SHOWN_ARGS) {
            text.push_str(" ?");
        }
        if args > SHOWN_ARGS {
            text.push_str(" …");
        }
        text
    }

    /// The database a `SELECT` command chooses.
    pub fn selects_database(&self, command: &Command) -> Option<u32> {
        if self.name != "SELECT" {
            return None;
        }
        let index = command.args.get(1)?;
        std::str::from_utf8(index).ok()?.parse().ok()
    }

    pub fn subscribes(&self) -> bool {
        SUBSCRIBING.contains(&self.name.as_str())
    }
}

/// Letters, digits and `extra`, at most 32 of them, starting with a letter.
fn is_word(text: &[u8], extra: &[u8]) -> bool {
    (1..=32).contains(&text.len())
        && text[0].is_ascii_alphabetic()
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(b))
}

/// A key's shape without what identifies one key: it is cut at `:`, `/`,
/// `.`, `-`, `_`, `|`, `#`, `{`, `}`, `=` and `@`, and each part holding a
/// digit, or not plain printable text, or over 24 bytes, becomes `?`
/// (`user:1234:cart` → `user:?:cart`, `{tenant7}.orders` → `{?}.orders`).
pub fn key_pattern(key: &[u8]) -> String {
    const SEPARATORS: &[u8] = b":/.-_|#{}=@";
    let mut pattern = String::new();
    let mut part_start = 0;
    for end in 0..=key.len() {
        let separator = key.get(end).filter(|b| SEPARATORS.contains(b));
        if end < key.len() && separator.is_none() {
            continue;
        }
        let part = &key[part_start..end];
        let plain = part.len() <= 24
            && part
                .iter()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_digit());
        if plain {
            pattern.push_str(&String::from_utf8_lossy(part));
        } else {
            pattern.push('?');
        }
        if let Some(separator) = separator {
            pattern.push(*separator as char);
        }
        part_start = end + 1;
    }
    pattern
}
