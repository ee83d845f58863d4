//! Database client spans, against Debian's servers driven by their own
//! clients and by a traced service.

use std::{
    collections::HashMap,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use tracer_tests::{
    Agent, AgentRun, CLIENT, Process, SERVER, SpanRecord, curl, free_port, require_root,
    servers_dir, temp_dir,
};

/// `redis-server` on `port`, nothing saved to disk.
fn redis_server(port: u16) -> Process {
    let dir = temp_dir("redis");
    let child = Process::from_child(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server (cargo xtask setup --test-deps installs it)"),
    );
    for _ in 0..100 {
        if redis_cli(port, &[], &["PING"]).contains("PONG") {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(child);
    panic!("redis-server did not answer on {port}");
}

fn redis_cli(port: u16, options: &[&str], command: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(options)
        .args(command)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The spans of calls to the `system` database listening on `port`.
fn db_spans<'a>(spans: &'a [SpanRecord], system: &str, port: u16) -> Vec<&'a SpanRecord> {
    spans
        .iter()
        .filter(|s| {
            s.str("db.system.name") == Some(system) && s.int("server.port") == Some(port as i64)
        })
        .collect()
}

/// `db_spans`, checked: all CLIENT spans, none made by the database
/// server's own process (`server`), and no value the tests write
/// (`secret-value`, `1234`) in any attribute.
fn checked_db_spans<'a>(
    run: &'a AgentRun,
    system: &str,
    port: u16,
    server: &str,
) -> Vec<&'a SpanRecord> {
    assert!(
        run.spans.iter().all(|s| s.service != server),
        "the server's side is not traced"
    );
    let spans = db_spans(&run.spans, system, port);
    for span in &spans {
        assert_eq!(span.kind, CLIENT, "{span:#?}");
        let text = format!("{:?}", span.attributes);
        assert!(
            !text.contains("secret") && !text.contains("1234"),
            "{span:#?}"
        );
    }
    spans
}

/// The span named `name` among `spans`.
fn named<'a>(spans: &[&'a SpanRecord], name: &str) -> &'a SpanRecord {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} span: {spans:#?}"))
}

/// A database call as `calls_per_request` gives it: its span's name and
/// query text.
type Call = (String, Option<String>);

/// Runs the Python service `script` (in the `venv` of the test tools,
/// calling a database on `db_port`; its connection opened before the
/// agent starts), and drives it under the agent: 5 requests one after the
/// other, then 12 by 4 curls at once. For each request, in order, the
/// spans of its calls to the `system` database: their names and query
/// texts, sorted, each checked to be the request's child in its trace.
fn calls_per_request(
    venv: &str,
    script: &str,
    system: &str,
    db_port: u16,
) -> Vec<(String, Vec<Call>)> {
    let port = free_port();
    let python = tracer_tests::test_tools_dir().join(venv).join("bin/python");
    let _service = Process::spawn_until(
        Command::new(python)
            .arg(servers_dir().join(script))
            .arg(port.to_string())
            .arg(db_port.to_string())
            .env("OTEL_SERVICE_NAME", "db-svc"),
        "ready",
    );
    let agent = Agent::start(&[]);
    let url = |marker: &str| format!("http://127.0.0.1:{port}/req/{marker}");
    let sequential: Vec<String> = (0..5).map(|i| format!("seq{i}")).collect();
    curl(&[], &sequential.iter().map(|m| url(m)).collect::<Vec<_>>());
    let concurrent: Vec<String> = (0..12).map(|i| format!("par{i}")).collect();
    std::thread::scope(|scope| {
        for batch in concurrent.chunks(3) {
            let urls: Vec<String> = batch.iter().map(|m| url(m)).collect();
            scope.spawn(move || curl(&[], &urls));
        }
    });
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.summary("parse_errors"), 0, "{}", run.stderr);
    let calls = db_spans(&run.spans, system, db_port);
    sequential
        .iter()
        .chain(&concurrent)
        .map(|marker| {
            let path = format!("/req/{marker}");
            let server = run
                .spans
                .iter()
                .find(|s| s.kind == SERVER && s.str("url.path") == Some(path.as_str()))
                .unwrap_or_else(|| panic!("no server span for {marker}"));
            let mut children: Vec<Call> = calls
                .iter()
                .filter(|s| s.parent_span_id == server.span_id)
                .map(|s| {
                    assert_eq!(s.trace_id, server.trace_id, "{s:#?}");
                    assert_eq!(s.service, "db-svc");
                    (s.name.clone(), s.str("db.query.text").map(str::to_string))
                })
                .collect();
            children.sort();
            (marker.clone(), children)
        })
        .collect()
}

/// `user`'s uid and gid: database servers will not run as root.
fn user_ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no {user} user (cargo xtask setup --test-deps makes it)"))
    };
    (id("-u"), id("-g"))
}

/// An empty directory for a database server on `port`, owned by its user:
/// outside the work tree, which that user may not reach.
fn server_dir(name: &str, port: u16, (uid, gid): (u32, u32)) -> PathBuf {
    let dir = Path::new("/tmp").join(format!("tracer-test-{name}-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
    dir
}

/// redis-cli in RESP2 and RESP3, errors, a database chosen with `-n`,
/// and redis-benchmark's pipelines of 16: one CLIENT span per command,
/// with the command and key pattern and never a value; none for the
/// server's side.
#[test]
fn redis_commands_make_client_spans() {
    require_root();
    let port = free_port();
    let _server = redis_server(port);
    let agent = Agent::start(&[]);
    redis_cli(port, &[], &["SET", "user:1234:name", "secret-value"]);
    redis_cli(port, &[], &["GET", "user:1234:name"]);
    redis_cli(
        port,
        &["-n", "3"],
        &["HSET", "cart:77", "sku", "secret-value"],
    );
    redis_cli(port, &["-3"], &["HGETALL", "cart:77"]);
    redis_cli(port, &[], &["LPUSH", "user:1234:name", "x"]);
    let benchmark = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-n",
            "320",
            "-P",
            "16",
            "-c",
            "1",
            "-q",
        ])
        .args(["-t", "set,get"])
        .output()
        .expect("run redis-benchmark");
    assert!(benchmark.status.success(), "{benchmark:?}");
    let metrics = agent.metrics();
    let gets = metrics
        .lines()
        .find(|l| {
            l.starts_with("db_client_operation_duration_seconds_count{")
                && l.contains("db_system_name=\"redis\"")
                && l.contains("db_operation_name=\"GET\"")
                && l.contains("service_name=\"redis-benchmark\"")
        })
        .unwrap_or_else(|| panic!("no GET series:\n{metrics}"));
    assert!(gets.ends_with(" 320"), "{gets}");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    let spans = checked_db_spans(&run, "redis", port, "redis-server");
    let cli: Vec<&SpanRecord> = spans
        .iter()
        .copied()
        .filter(|s| s.service == "redis-cli")
        .collect();
    let find = |name: &str| named(&cli, name);
    let set = find("SET");
    assert_eq!(set.str("db.operation.name"), Some("SET"));
    assert_eq!(set.str("db.query.text"), Some("SET user:?:name ?"));
    assert_eq!(set.str("server.address"), Some("127.0.0.1"));
    assert_eq!(set.status_code, 0);
    assert_eq!(find("GET").str("db.query.text"), Some("GET user:?:name"));
    let hset = find("HSET");
    assert_eq!(hset.str("db.query.text"), Some("HSET cart:? ? ?"));
    assert_eq!(
        hset.str("db.namespace"),
        Some("3"),
        "redis-cli -n 3 sends SELECT 3"
    );
    assert_eq!(find("HELLO").str("db.query.text"), Some("HELLO ?"), "RESP3");
    assert_eq!(find("HGETALL").status_code, 0);
    let wrong = find("LPUSH");
    assert_eq!(wrong.status_code, 2);
    assert_eq!(wrong.str("error.type"), Some("WRONGTYPE"));
    assert_eq!(wrong.str("db.response.status_code"), Some("WRONGTYPE"));
    let benchmark: HashMap<&str, usize> = spans
        .iter()
        .filter(|s| s.service == "redis-benchmark")
        .fold(HashMap::new(), |mut counts, s| {
            *counts.entry(s.name.as_str()).or_default() += 1;
            counts
        });
    // One span per pipelined command: 320 SETs and 320 GETs.
    assert_eq!(
        benchmark.get("SET"),
        Some(&320),
        "{benchmark:?}\n{}",
        run.stderr
    );
    assert_eq!(
        benchmark.get("GET"),
        Some(&320),
        "{benchmark:?}\n{}",
        run.stderr
    );
    assert_eq!(run.summary("parse_errors"), 0, "{}", run.stderr);
}

/// A traced service's Redis calls are children of the request they are
/// made for, on the pool's connection opened before the agent started and
/// on connections opened under load: a thread per request (redis-py),
/// and asyncio handlers that await before and between their calls
/// (redis.asyncio; the runtime context of the asyncio tasks).
#[test]
fn redis_calls_are_children_of_their_request() {
    require_root();
    let redis_port = free_port();
    let _server = redis_server(redis_port);
    for (script, expected) in [
        ("redis_service.py", &["EXPIRE", "GET", "INCRBY", "SET"][..]),
        ("redis_asyncio_service.py", &["GET", "SET"][..]),
    ] {
        let mut connections_opened = 0;
        for (marker, calls) in calls_per_request("redis", script, "redis", redis_port) {
            let mut names: Vec<&str> = calls.iter().map(|(name, _)| name.as_str()).collect();
            // A connection the pool opens for the request introduces itself
            // first (redis-py's CLIENT SETINFO): a call made for it too.
            let before = names.len();
            names.retain(|name| *name != "CLIENT SETINFO");
            if names.len() < before {
                connections_opened += 1;
            }
            assert_eq!(names, expected, "{script} {marker}: {calls:?}");
        }
        assert!(
            script.contains("asyncio") || connections_opened > 0,
            "concurrent requests open new pool connections"
        );
    }
}

/// Debian's PostgreSQL server programs (`/usr/lib/postgresql/N/bin`), the
/// newest installed.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL installed (cargo xtask setup --test-deps installs it)")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL version with its server")
}

/// A throw-away PostgreSQL cluster on `port` (trust authentication,
/// nothing synced to disk; TLS with a self-signed certificate when asked),
/// removed when dropped.
struct PostgresServer {
    _server: Process,
    dir: PathBuf,
}

impl PostgresServer {
    fn start(port: u16, tls: bool) -> PostgresServer {
        let (uid, gid) = user_ids("postgres");
        let dir = server_dir("postgres", port, (uid, gid));
        let bin = postgres_bin();
        let initdb = Command::new(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run initdb");
        assert!(initdb.status.success(), "{initdb:?}");
        let mut server = Command::new(bin.join("postgres"));
        server
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        if tls {
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            let openssl = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("run openssl");
            assert!(openssl.status.success(), "{openssl:?}");
            for file in [&cert, &key] {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).expect("chown");
            }
            server
                .args(["-c", "ssl=on", "-c"])
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        let server = Process::from_child(
            server
                .stderr(std::process::Stdio::null())
                .uid(uid)
                .gid(gid)
                .spawn()
                .expect("start postgres"),
        );
        for _ in 0..200 {
            if psql(port, "SELECT 1").status.success() {
                return PostgresServer {
                    _server: server,
                    dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("postgres did not answer on {port}");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn psql(port: u16, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-X", "-q", "-c", sql])
        .output()
        .expect("run psql")
}

/// psql's simple queries (each after an SSLRequest the server refuses):
/// one CLIENT span per query, named by operation and table, literals
/// replaced, the database from the start-up message, an error's SQLSTATE;
/// none for the server's side.
#[test]
fn postgres_queries_make_client_spans() {
    require_root();
    let port = free_port();
    let _server = PostgresServer::start(port, false);
    let agent = Agent::start(&[]);
    for sql in [
        "CREATE TABLE orders (id int, name text)",
        "INSERT INTO orders VALUES (1234, 'secret-value')",
        "SELECT name FROM orders WHERE id = 1234",
        "SELECT * FROM missing",
    ] {
        psql(port, sql);
    }
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    let spans = checked_db_spans(&run, "postgresql", port, "postgres");
    assert!(spans.iter().all(|s| s.service == "psql"), "{spans:#?}");
    let find = |name: &str| named(&spans, name);
    let insert = find("INSERT orders");
    assert_eq!(
        insert.str("db.query.text"),
        Some("INSERT INTO orders VALUES (?, ?)")
    );
    assert_eq!(insert.str("db.operation.name"), Some("INSERT"));
    assert_eq!(insert.str("db.collection.name"), Some("orders"));
    assert_eq!(insert.str("db.namespace"), Some("postgres"));
    let select = find("SELECT orders");
    assert_eq!(
        select.str("db.query.text"),
        Some("SELECT name FROM orders WHERE id = ?")
    );
    assert_eq!(select.status_code, 0);
    let missing = find("SELECT missing");
    assert_eq!(missing.status_code, 2);
    assert_eq!(missing.str("error.type"), Some("42P01"));
    assert_eq!(missing.str("db.response.status_code"), Some("42P01"));
    find("CREATE orders");
    assert_eq!(run.summary("parse_errors"), 0, "{}", run.stderr);
}

/// psql over TLS (`sslmode=require`, libpq on the system's OpenSSL): the
/// socket's bytes after the server accepts are ciphertext and left alone;
/// the queries are read from the TLS library's plaintext, start-up
/// message and all.
#[test]
fn postgres_over_tls_is_read_as_plaintext() {
    require_root();
    let port = free_port();
    let _server = PostgresServer::start(port, true);
    let agent = Agent::start(&[]);
    let output = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require"
        ))
        .args([
            "-X",
            "-q",
            "-c",
            "SELECT datname FROM pg_database WHERE oid = 1234",
        ])
        .output()
        .expect("run psql");
    assert!(output.status.success(), "{output:?}");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    let spans = checked_db_spans(&run, "postgresql", port, "postgres");
    let select = spans
        .iter()
        .find(|s| s.name == "SELECT pg_database")
        .unwrap_or_else(|| panic!("no query span: {spans:#?}\n{}", run.stderr));
    assert_eq!(
        select.str("db.query.text"),
        Some("SELECT datname FROM pg_database WHERE oid = ?")
    );
    assert_eq!(select.str("db.namespace"), Some("postgres"));
    assert_eq!(run.summary("parse_errors"), 0, "{}", run.stderr);
}

/// A traced service's queries (psycopg: extended protocol, then a named
/// prepared statement) on a connection opened before the agent started
/// are children of the request they are made for.
#[test]
fn postgres_queries_are_children_of_their_request() {
    require_root();
    let postgres_port = free_port();
    let _server = PostgresServer::start(postgres_port, false);
    let calls = calls_per_request(
        "postgres",
        "postgres_service.py",
        "postgresql",
        postgres_port,
    );
    for (marker, calls) in calls {
        assert_eq!(
            calls,
            expected_queries(&[
                ("INSERT visits", "INSERT INTO visits (marker) VALUES ($1)"),
                (
                    "SELECT visits",
                    "SELECT count(*) FROM visits WHERE marker = $1"
                ),
            ]),
            "{marker}"
        );
    }
}

/// Span names and query texts as `calls_per_request` gives them.
fn expected_queries(queries: &[(&str, &str)]) -> Vec<Call> {
    queries
        .iter()
        .map(|(name, text)| (name.to_string(), Some(text.to_string())))
        .collect()
}

/// A throw-away MariaDB server on `port` (no grant tables: any user,
/// no password), a database `shop` in it, removed when dropped.
struct MariadbServer {
    _server: Process,
    dir: PathBuf,
}

impl MariadbServer {
    fn start(port: u16) -> MariadbServer {
        let dir = server_dir("mariadb", port, user_ids("mysql"));
        let data = dir.join("data");
        let install = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=mysql", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("run mariadb-install-db");
        assert!(install.status.success(), "{install:?}");
        let server = Process::from_child(
            Command::new("mariadbd")
                .args(["--no-defaults", "--user=mysql", "--skip-grant-tables"])
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", dir.join("socket").display()))
                .arg(format!("--pid-file={}", dir.join("pid").display()))
                .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start mariadbd"),
        );
        for _ in 0..200 {
            if mariadb(port, "CREATE DATABASE IF NOT EXISTS shop")
                .status
                .success()
            {
                return MariadbServer {
                    _server: server,
                    dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("mariadbd did not answer on {port}");
    }
}

impl Drop for MariadbServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mariadb(port: u16, sql: &str) -> std::process::Output {
    Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "root",
        ])
        .args(["--skip-ssl", "-e", sql])
        .output()
        .expect("run mariadb")
}

/// The mariadb client's queries: one CLIENT span each, named by operation
/// and table, literals replaced, the database of the handshake, an
/// error's number; none for the server's side.
#[test]
fn mysql_queries_make_client_spans() {
    require_root();
    let port = free_port();
    let _server = MariadbServer::start(port);
    let agent = Agent::start(&[]);
    for sql in [
        "CREATE TABLE shop.orders (id INT, name VARCHAR(32))",
        "INSERT INTO shop.orders VALUES (1234, 'secret-value')",
        "SELECT name FROM shop.orders WHERE id = 1234",
        "SELECT * FROM shop.missing",
    ] {
        mariadb(port, sql);
    }
    Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "root",
        ])
        .args([
            "--skip-ssl",
            "-D",
            "shop",
            "-e",
            "SELECT COUNT(*) FROM orders",
        ])
        .output()
        .expect("run mariadb");
    let run = agent.stop();
    assert!(run.status.success(), "{}", run.stderr);
    let spans = checked_db_spans(&run, "mysql", port, "mariadbd");
    assert!(spans.iter().all(|s| s.service == "mariadb"), "{spans:#?}");
    let find = |name: &str| named(&spans, name);
    let insert = find("INSERT shop.orders");
    assert_eq!(
        insert.str("db.query.text"),
        Some("INSERT INTO shop.orders VALUES (?, ?)")
    );
    assert_eq!(insert.str("db.collection.name"), Some("shop.orders"));
    let select = find("SELECT shop.orders");
    assert_eq!(
        select.str("db.query.text"),
        Some("SELECT name FROM shop.orders WHERE id = ?")
    );
    assert_eq!(select.status_code, 0);
    let missing = find("SELECT shop.missing");
    assert_eq!(missing.status_code, 2);
    assert_eq!(missing.str("error.type"), Some("1146"));
    assert_eq!(find("SELECT orders").str("db.namespace"), Some("shop"));
    assert_eq!(run.summary("parse_errors"), 0, "{}", run.stderr);
}

/// A traced service's prepared statements (mysql-connector: prepare, then
/// execute) on a connection opened before the agent started are children
/// of the request they are made for, named by the prepared text.
#[test]
fn mysql_queries_are_children_of_their_request() {
    require_root();
    let mariadb_port = free_port();
    let _server = MariadbServer::start(mariadb_port);
    for (marker, calls) in calls_per_request("mysql", "mysql_service.py", "mysql", mariadb_port) {
        assert_eq!(
            calls,
            expected_queries(&[
                ("INSERT visits", "INSERT INTO visits (marker) VALUES (?)"),
                (
                    "SELECT visits",
                    "SELECT COUNT(*) FROM visits WHERE marker = ?"
                ),
            ]),
            "{marker}"
        );
    }
}
