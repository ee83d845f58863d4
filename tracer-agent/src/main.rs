use tracer_agent::{events, loader, stats::Stats};
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (probes, ring) = loader::load(&loader::LoadOptions { capture_bytes: 4096, ring_buffer_bytes: 8 << 20, pids: vec![] })?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<events::Event>>(16);
    let (_stx, srx) = tokio::sync::watch::channel(false);
    let stats = Stats::default();
    let h = tokio::spawn(async move { while let Some(b) = rx.recv().await { for e in b { println!("{:?} {} {} {:?} {:?} {}->{} bytes={} cap={:?}", e.kind, e.comm, e.pid, e.syscall, e.role, e.local, e.remote, e.bytes, String::from_utf8_lossy(&e.payload[..e.payload.len().min(40)])); } } });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(4), events::read_events(ring, tx, srx, &stats)).await;
    println!("{:?}", probes.counters());
    drop(h);
    Ok(())
}
