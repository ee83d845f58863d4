//! Running a script inside a Node.js process through its inspector: the
//! documented way to reach a running process's JavaScript. `SIGUSR1` makes
//! Node open the inspector on 127.0.0.1:9229 (in the process's network
//! namespace); the agent evaluates the script over the inspector's WebSocket
//! protocol, then has the process close the inspector again, and checks that
//! the port is gone.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tungstenite::Message;

/// Node's default inspector port; `SIGUSR1` opens it there.
const INSPECTOR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9229);
/// Closes the inspector a second after the agent's connection is gone:
/// closing it while a session is still being torn down crashes Node 20
/// (a SIGSEGV in its inspector thread, seen here). Never throws into the
/// process.
const CLOSE: &str = "((load) => { \
    const inspector = load('inspector'); \
    const close = () => { try { inspector.close(); } catch {} }; \
    setTimeout(close, 1000).unref(); \
})(require), 'closing'";
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum InspectorError {
    #[error("it was started with an inspector option ({0}); the agent leaves its inspector alone")]
    Inspected(String),
    #[error("port 9229 is already in use in its network namespace (another inspector?)")]
    PortTaken,
    #[error("its inspector did not open on 127.0.0.1:9229 within 10 s after SIGUSR1")]
    DidNotOpen,
    #[error("the inspector on 127.0.0.1:9229 belongs to process {0}")]
    OtherProcess(String),
    #[error("the script failed: {0}")]
    Script(String),
    #[error("its inspector is still open after the script closed it")]
    StillOpen,
    #[error("{0}")]
    Io(String),
}

fn io(e: impl std::fmt::Display) -> InspectorError {
    InspectorError::Io(e.to_string())
}

/// Evaluates `script` in process `pid` and returns its value as text.
pub fn run_script(proc_root: &Path, pid: u32, script: &str) -> Result<String, InspectorError> {
    let dir = proc_root.join(pid.to_string());
    if let Some(option) = inspector_option(&dir) {
        return Err(InspectorError::Inspected(option));
    }
    let netns = std::fs::File::open(dir.join("ns/net")).map_err(io)?;
    let script = script.to_string();
    let tcp_table = dir.join("net/tcp");
    // The inspector listens in the process's network namespace: talk to it
    // from a thread that joins that namespace (setns moves only the thread).
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: setns on this thread with a namespace file we opened.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io(std::io::Error::last_os_error()));
                }
                in_namespace(pid, &script, &tcp_table)
            })
            .join()
            .unwrap_or_else(|_| Err(io("the inspector thread panicked")))
    })
}

fn in_namespace(pid: u32, script: &str, tcp_table: &Path) -> Result<String, InspectorError> {
    let listening = || inspector_listening(tcp_table);
    if listening() {
        return Err(InspectorError::PortTaken);
    }
    // SAFETY: sends a signal; no memory is involved.
    if unsafe { libc::kill(pid as i32, libc::SIGUSR1) } != 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    let started = Instant::now();
    while !listening() {
        if started.elapsed() > OPEN_TIMEOUT {
            return Err(InspectorError::DidNotOpen);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = evaluate_all(pid, script);
    // Closed by the script's last step once this connection is gone.
    let closing = Instant::now();
    while listening() {
        if closing.elapsed() > OPEN_TIMEOUT {
            return Err(InspectorError::StillOpen);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(InspectorError::Io(
            "the process exited while its inspector was open".into(),
        ));
    }
    result
}

/// Whether 127.0.0.1:9229 is listening in the namespace whose TCP table
/// (`/proc/PID/net/tcp`) is at `tcp_table`. Read, not connected to: Node's
/// inspector closes only once no connection is open.
fn inspector_listening(tcp_table: &Path) -> bool {
    const LISTEN: &str = "0A";
    let local = format!("0100007F:{:04X}", INSPECTOR.port());
    std::fs::read_to_string(tcp_table).is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&LISTEN)
        })
    })
}

fn evaluate_all(pid: u32, script: &str) -> Result<String, InspectorError> {
    let url = debugger_url()?;
    let stream = TcpStream::connect_timeout(&INSPECTOR, REPLY_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    let (mut socket, _) = tungstenite::client(url.as_str(), stream).map_err(io)?;
    let mut call = |id: u64, expression: &str| -> Result<Value, InspectorError> {
        let request = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {
                "expression": expression,
                // Gives the expression `require`.
                "includeCommandLineAPI": true,
                "returnByValue": true,
            },
        });
        socket
            .send(Message::Text(request.to_string().into()))
            .map_err(io)?;
        loop {
            let Message::Text(text) = socket.read().map_err(io)? else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).map_err(io)?;
            if reply["id"] != id {
                continue; // an event
            }
            let result = &reply["result"];
            if let Some(exception) = result.get("exceptionDetails") {
                return Err(InspectorError::Script(exception.to_string()));
            }
            return Ok(result["result"]["value"].clone());
        }
    };
    let outcome = match call(1, "process.pid") {
        Ok(answered) if answered != pid => Err(InspectorError::OtherProcess(answered.to_string())),
        Ok(_) => call(2, script).map(|value| match value {
            Value::String(text) => text,
            other => other.to_string(),
        }),
        Err(e) => Err(e),
    };
    // Whatever happened: the inspector closes once this connection is gone.
    // `require` exists only while an expression is evaluated: take it along.
    call(3, CLOSE)?;
    // The close handshake, whole, well before that second is up.
    let _ = socket.close(None);
    while socket.read().is_ok() {}
    outcome
}

/// The inspector's WebSocket address for the process's main context.
fn debugger_url() -> Result<String, InspectorError> {
    let mut stream = TcpStream::connect_timeout(&INSPECTOR, REPLY_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    stream
        .write_all(b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:9229\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    // The inspector keeps the connection open: read what Content-Length says.
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(io("the inspector closed /json/list early"));
        }
        response.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = parsed.parse(&response) {
            let length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .ok_or_else(|| io("no Content-Length in the inspector's /json/list"))?;
            if response.len() >= head + length {
                break &response[head..head + length];
            }
        }
        if response.len() > 1 << 20 {
            return Err(io("the inspector's /json/list is too long"));
        }
    };
    let targets: Value = serde_json::from_slice(body).map_err(io)?;
    targets[0]["webSocketDebuggerUrl"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| io("no webSocketDebuggerUrl in the inspector's /json/list"))
}

/// An inspector option on the command line or in `NODE_OPTIONS`.
fn inspector_option(dir: &Path) -> Option<String> {
    let has_option = |text: &[u8]| {
        text.split(|b| *b == 0 || *b == b' ')
            .find(|arg| arg.starts_with(b"--inspect") || arg.starts_with(b"--debug"))
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
    };
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    if let Some(option) = has_option(&cmdline) {
        return Some(option);
    }
    let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"NODE_OPTIONS="))
        .and_then(has_option)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspector_options_are_found() {
        let dir = std::env::temp_dir().join(format!("tracer-inspector-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cmdline"), b"node\0server.js\0").unwrap();
        std::fs::write(dir.join("environ"), b"PATH=/bin\0").unwrap();
        assert_eq!(inspector_option(&dir), None);
        std::fs::write(dir.join("cmdline"), b"node\0--inspect=0\0server.js\0").unwrap();
        assert_eq!(inspector_option(&dir).as_deref(), Some("--inspect=0"));
        std::fs::write(dir.join("cmdline"), b"node\0server.js\0").unwrap();
        std::fs::write(
            dir.join("environ"),
            b"NODE_OPTIONS=--max-old-space-size=64 --inspect-brk\0",
        )
        .unwrap();
        assert_eq!(inspector_option(&dir).as_deref(), Some("--inspect-brk"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
