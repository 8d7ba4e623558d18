//! `make bench-dns`: the real UDP server on loopback over a synthetic
//! cluster (10k Services, two endpoints each, every 50th headless); N
//! concurrent clients ask A records of random Services for a while.
//! Prints queries/s and latency percentiles as a markdown table, also
//! written to target/bench-dns.md. A second row times the zone's lookup
//! alone (no sockets).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use cluster_dns::forward::Forwarder;
use cluster_dns::synthetic;
use cluster_dns::zone::{Lookup, Zone, ZoneConfig};
use hdrhistogram::Histogram;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rand::Rng;
use tokio::net::UdpSocket;

#[derive(Parser, Debug)]
#[command(name = "dnsbench", about = "cluster-dns throughput and latency on loopback")]
struct Flags {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Concurrent clients, each with one query in flight.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value = "5s", value_parser = component_base::duration::parse)]
    duration: Duration,
    #[arg(long, default_value = "target/bench-dns.md")]
    out: PathBuf,
}

struct Row {
    what: String,
    queries: u64,
    errors: u64,
    seconds: f64,
    hist: Histogram<u64>,
}

fn query_name(i: usize) -> String {
    let (name, ns) = synthetic::service_name(i);
    format!("{name}.{ns}.svc.cluster.local.")
}

async fn client(addr: std::net::SocketAddr, services: usize, until: Instant) -> anyhow::Result<(Histogram<u64>, u64)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(addr).await?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut buf = vec![0u8; 4096];
    let mut id: u16 = rand::rng().random();
    while Instant::now() < until {
        let i = rand::rng().random_range(0..services);
        id = id.wrapping_add(1);
        let mut msg = Message::new();
        msg.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(query_name(i))?, RecordType::A));
        let bytes = msg.to_vec()?;
        let start = Instant::now();
        socket.send(&bytes).await?;
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
                Ok(n) => match Message::from_vec(&buf[..n?]) {
                    Ok(m) if m.id() == id => break Some(m),
                    _ => continue,
                },
                Err(_) => break None,
            }
        };
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        match answer {
            Some(m) if m.response_code() == ResponseCode::NoError && !m.answers().is_empty() => {
                hist.record(micros.max(1))?;
            }
            _ => errors += 1,
        }
    }
    Ok((hist, errors))
}

fn lookup_row(zone: &Zone, services: usize, duration: Duration) -> anyhow::Result<Row> {
    let names: Vec<Name> = (0..services.min(10_000))
        .map(|i| Name::from_ascii(query_name(i)))
        .collect::<Result<_, _>>()?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut rng = rand::rng();
    let mut errors = 0;
    let start = Instant::now();
    let mut queries = 0;
    while start.elapsed() < duration {
        let name = &names[rng.random_range(0..names.len())];
        let t = Instant::now();
        let answer = zone.lookup(name, RecordType::A);
        let nanos = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if !matches!(answer, Lookup::Answer(a) if !a.answers.is_empty()) {
            errors += 1;
        }
        hist.record(nanos.max(1))?;
        queries += 1;
    }
    Ok(Row {
        what: "zone lookup (in-process, ns)".into(),
        queries,
        errors,
        seconds: start.elapsed().as_secs_f64(),
        hist,
    })
}

fn table(flags: &Flags, rows: &[Row], build: Duration) -> String {
    let mut out = format!(
        "# cluster-dns benchmark\n\n{} services (2 endpoints each, every 50th headless), {} UDP clients, {:?}; zone built in {:.0} ms.\n\n",
        flags.services,
        flags.clients,
        flags.duration,
        build.as_secs_f64() * 1000.0
    );
    out.push_str("| what | queries | errors | queries/s | p50 | p99 | p999 | max |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let unit = if r.what.contains("ns") { "ns" } else { "µs" };
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} {unit} | {} {unit} | {} {unit} | {} {unit} |\n",
            r.what,
            r.queries,
            r.errors,
            r.queries as f64 / r.seconds,
            r.hist.value_at_quantile(0.5),
            r.hist.value_at_quantile(0.99),
            r.hist.value_at_quantile(0.999),
            r.hist.max(),
        ));
    }
    out
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let (services, slices) = synthetic::cluster(flags.services);
        let start = Instant::now();
        let zone = Zone::from_snapshot(ZoneConfig::default(), services, slices);
        let build = start.elapsed();
        let lookup = lookup_row(&zone, flags.services, Duration::from_secs(1))?;

        let server = cluster_dns::serve_static(
            zone,
            "127.0.0.1:0".parse()?,
            Forwarder::new(vec![], Duration::from_secs(1)),
        )
        .await?;
        let until = Instant::now() + flags.duration;
        let start = Instant::now();
        let tasks: Vec<_> = (0..flags.clients)
            .map(|_| tokio::spawn(client(server.addr, flags.services, until)))
            .collect();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut errors = 0;
        for task in tasks {
            let (h, e) = task.await.context("client task")??;
            hist.add(h)?;
            errors += e;
        }
        let seconds = start.elapsed().as_secs_f64();
        server.shutdown().await?;
        let udp = Row {
            what: "A over UDP (µs)".into(),
            queries: hist.len() + errors,
            errors,
            seconds,
            hist,
        };
        let out = table(&flags, &[udp, lookup], build);
        print!("{out}");
        if let Some(dir) = flags.out.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(&flags.out, &out).with_context(|| format!("writing {}", flags.out.display()))?;
        anyhow::Ok(())
    })
}
