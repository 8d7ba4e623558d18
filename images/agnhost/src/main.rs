//! agnhost: the test image's multitool (`registry.k8s.io/e2e-test-images/agnhost`),
//! our own code with upstream's subcommand and flag names where they exist.
//!
//! A static binary in an image with busybox beside it: DNS goes through
//! hickory (no NSS), the hostname through uname. As a container's PID 1
//! it gets no default signal actions, so SIGTERM and SIGINT are handled
//! here for every subcommand (exit 0, after `--delay-shutdown` for
//! netexec), or stopping a pod would wait out its grace period.

mod dns;
mod http;
mod inclusterclient;
mod liveness;
mod logs;
mod mem_hog;
mod mounttest;
mod net;
mod netexec;
mod serve_hostname;
mod sockets;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "agnhost",
    version,
    about = "Test-image multitool (agnhost-compatible subcommands)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// HTTP and UDP test server (hostname, echo, clientip, shell, dial, exit, healthz).
    Netexec(netexec::Args),
    /// Serve the hostname over HTTP, TCP and/or UDP.
    ServeHostname(serve_hostname::Args),
    /// Sleep until SIGTERM/SIGINT.
    Pause,
    /// /healthz is 200 for 10 seconds, then 500.
    Liveness,
    /// Resolve a name through /etc/resolv.conf and print its addresses.
    #[command(alias = "nslookup")]
    DnsLookup(dns::LookupArgs),
    /// Print the DNS search list, comma-separated.
    DnsSuffix,
    /// Print the DNS servers, comma-separated.
    DnsServerList,
    /// Print /etc/hosts.
    EtcHosts,
    /// Allocate and touch memory (to be OOM-killed under a limit).
    MemHog(mem_hog::Args),
    /// Echo TCP connections back.
    TcpEcho(sockets::PortArgs),
    /// Read one byte of each TCP connection, then close it (RST).
    TcpReset(sockets::PortArgs),
    /// Try one TCP connection; print TIMEOUT/DNS/REFUSED/OTHER/UNKNOWN on failure.
    Connect(sockets::ConnectArgs),
    /// Exit with the given code.
    Exit {
        #[arg(long, default_value_t = 0)]
        code: u8,
    },
    /// Write numbered lines at an interval.
    LogLines(logs::LinesArgs),
    /// Write request-like lines spread over a duration.
    LogsGenerator(logs::GeneratorArgs),
    /// Volume checks: fs type, new files, modes, owners, content.
    Mounttest(mounttest::Args),
    /// Call the API as an in-cluster client (service-account token and CA).
    Inclusterclient(inclusterclient::Args),
    /// Print the arguments and exit.
    EntrypointTester {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("agnhost: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agnhost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let delay = match &command {
        Command::Netexec(args) => Duration::from_secs(args.delay_shutdown),
        _ => Duration::ZERO,
    };
    tokio::spawn(exit_on_signal(delay));
    match command {
        Command::Netexec(args) => netexec::run(args).await?,
        Command::ServeHostname(args) => serve_hostname::run(args).await?,
        Command::Pause => {
            eprintln!("Paused");
            std::future::pending::<()>().await;
        }
        Command::Liveness => liveness::run().await?,
        Command::DnsLookup(args) => dns::lookup(args).await?,
        Command::DnsSuffix => dns::suffix()?,
        Command::DnsServerList => dns::server_list()?,
        Command::EtcHosts => dns::etc_hosts()?,
        Command::MemHog(args) => mem_hog::run(args).await?,
        Command::TcpEcho(args) => sockets::echo(args).await?,
        Command::TcpReset(args) => sockets::reset(args).await?,
        Command::Connect(args) => sockets::connect(args).await,
        Command::Exit { code } => return Ok(ExitCode::from(code)),
        Command::LogLines(args) => logs::lines(args).await?,
        Command::LogsGenerator(args) => logs::generate(args).await?,
        Command::Mounttest(args) => {
            let ok = tokio::task::spawn_blocking(move || mounttest::run(&args)).await?;
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Inclusterclient(args) => return inclusterclient::run(args).await,
        Command::EntrypointTester { .. } => {
            println!("[{}]", std::env::args().collect::<Vec<_>>().join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exits 0 on SIGTERM or SIGINT, after `delay`.
async fn exit_on_signal(delay: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        eprintln!("agnhost: cannot handle signals");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    if !delay.is_zero() {
        eprintln!("Got a signal; exiting in {delay:?}");
        tokio::time::sleep(delay).await;
    }
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_style_flags_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("agnhost").chain(args.iter().copied()));
        let cli = parse(&["netexec", "--http-port=8080", "--udp-port=-1"]).unwrap();
        assert!(matches!(cli.command, Command::Netexec(_)));
        parse(&["netexec", "--udp-port", "-1", "--delay-shutdown", "5"]).unwrap();
        parse(&["serve-hostname", "--udp", "--http=false", "--port", "9000"]).unwrap();
        parse(&["nslookup", "kubernetes.default"]).unwrap();
        parse(&["mounttest", "--fs_type=/v", "--new_file_0644=/v/f", "--file_perm=/v/f"]).unwrap();
        parse(&["logs-generator", "--log-lines-total", "100", "--run-duration", "20s"]).unwrap();
        parse(&["connect", "--timeout=1s", "svc:80"]).unwrap();
        parse(&["entrypoint-tester", "override", "--arguments"]).unwrap();
        parse(&["mem-hog", "--size", "100Mi", "--hold"]).unwrap();
        assert!(parse(&["netexec", "--no-such-flag"]).is_err());
    }
}
