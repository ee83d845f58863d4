//! The memory case: is the agent's memory bounded by what it is told to
//! keep, whatever the traffic? nginx (one worker) and the agent with its
//! defaults; the agent's resident memory and the connections it tracks,
//! after start-up, with 10,000 idle keep-alive connections open (each has
//! served one request), after they close, and after 100,000 short
//! connections (one request each), and its peak over the whole run.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{Agent, free_port, nginx::Nginx};

const IDLE_CONNECTIONS: usize = 10_000;
const SHORT_CONNECTIONS: usize = 100_000;
/// Client threads that open the connections.
const CLIENTS: usize = 4;
/// Time the agent gets after each stage: to read, and to free the parsers
/// of idle connections (it looks every 2 s for those idle 2 s).
const SETTLE: Duration = Duration::from_secs(6);

pub fn measure() -> Result<()> {
    raise_file_limit(IDLE_CONNECTIONS as u64 + 256)?;
    let dir = std::env::temp_dir().join(format!("tracer-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// What the agent held at the end of one stage.
struct Stage {
    name: String,
    rss_mib: f64,
    connections_tracked: f64,
    seconds: f64,
}

fn measure_in(dir: &Path) -> Result<()> {
    let port = free_port()?;
    let mut nginx = Nginx::start(dir, port, IDLE_CONNECTIONS as u32 + 1024)?;
    let metrics_port = free_port()?;
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let agent = Agent::start(&["--metrics-addr", &metrics_addr])?;
    let mut stages = Vec::new();
    let mut stage = |name: &str, started: Instant| -> Result<()> {
        let seconds = started.elapsed().as_secs_f64();
        std::thread::sleep(SETTLE);
        stages.push(Stage {
            name: name.to_string(),
            rss_mib: agent.rss_mib("VmRSS:")?,
            connections_tracked: metric(metrics_port, "tracer_connections_tracked")?,
            seconds,
        });
        Ok(())
    };
    stage("started", Instant::now())?;

    let started = Instant::now();
    let idle = on_clients(IDLE_CONNECTIONS, |count| {
        (0..count)
            .map(|_| {
                let mut stream = TcpStream::connect(("127.0.0.1", port))?;
                get(&mut stream)?;
                Ok(stream)
            })
            .collect::<Result<Vec<_>>>()
    })?;
    stage(
        &format!("{IDLE_CONNECTIONS} idle keep-alive connections open"),
        started,
    )?;
    drop(idle);
    stage("after they closed", Instant::now())?;

    let started = Instant::now();
    on_clients(SHORT_CONNECTIONS, |count| {
        for _ in 0..count {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            get(&mut stream)?;
        }
        Ok(Vec::new())
    })?;
    stage(
        &format!("after {SHORT_CONNECTIONS} short connections (one request each)"),
        started,
    )?;

    let peak = agent.rss_mib("VmHWM:")?;
    let summary = agent.stop()?;
    nginx.stop();
    println!(
        "memory case: nginx (1 worker) and the agent with its defaults; \
         RSS {} s after each stage",
        SETTLE.as_secs()
    );
    println!("| stage | stage took s | agent RSS MiB | connections tracked |");
    println!("|---|---|---|---|");
    for stage in &stages {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} |",
            stage.name, stage.seconds, stage.rss_mib, stage.connections_tracked
        );
    }
    println!(
        "peak RSS over the run: {peak:.1} MiB; events lost: {:.0}; spans: {:.0}; \
         connections evicted: {:.0}",
        summary.get("events_lost_ring_full"),
        summary.get("spans_produced"),
        summary.get("connections_evicted"),
    );
    Ok(())
}

/// Runs `work` on `CLIENTS` threads that share `total` connections; what
/// they kept.
fn on_clients(
    total: usize,
    work: impl Fn(usize) -> Result<Vec<TcpStream>> + Sync,
) -> Result<Vec<TcpStream>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(|| work(total / CLIENTS)))
            .collect();
        let mut kept = Vec::new();
        for handle in handles {
            let streams = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            kept.extend(streams);
        }
        Ok(kept)
    })
}

/// One keep-alive GET of the 1 KiB file, read whole.
fn get(stream: &mut TcpStream) -> Result<()> {
    stream.write_all(b"GET /1k.bin HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let mut response = Vec::with_capacity(2048);
    let mut buffer = [0u8; 2048];
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            bail!("nginx closed the connection mid-response");
        }
        response.extend_from_slice(&buffer[..n]);
        if let Some(head) = response.windows(4).position(|w| w == b"\r\n\r\n")
            && response.len() >= head + 4 + 1024
        {
            return Ok(());
        }
    }
}

/// The value of the unlabelled metric `name` on the agent's `/metrics`.
fn metric(port: u16, name: &str) -> Result<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no {name} on the agent's /metrics"))
}

/// Room for this process's connections (the default soft limit is often
/// 1024): the soft limit raised up to the hard one.
fn raise_file_limit(files: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if limit.rlim_max < files {
        bail!(
            "the memory case opens {files} files at once, the hard limit is {} \
             (raise it: ulimit -Hn {files})",
            limit.rlim_max
        );
    }
    limit.rlim_cur = limit.rlim_cur.max(files);
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!(
            "cannot allow {files} open files: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
