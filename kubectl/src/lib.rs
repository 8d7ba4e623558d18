//! Our `kubectl`: the Kubernetes command-line client, printing what upstream
//! kubectl prints against our apiserver.
//!
//! The binary parses flags ([`cli::Cli`]) and calls [`run`]. Commands live
//! in [`cmd`]; they reach the cluster through a [`Factory`] (kubeconfig,
//! client, discovery) and print through [`printers`]. The pure pieces —
//! kubeconfig merging, resource resolution, Go-compatible YAML/JSON, tables,
//! JSONPath, patch computation — are plain functions with table tests.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod discovery;
pub mod errors;
pub mod factory;
pub mod gofmt;
pub mod gojson;
pub mod goyaml;
pub mod jsonpath;
pub mod kubeconfig;
pub mod openapi;
pub mod printers;
pub mod resource;
pub mod tabwriter;

pub use factory::Factory;

use std::io::Write as _;

/// Runs one command line; returns the process exit code.
pub async fn run(cli: cli::Cli) -> i32 {
    let factory = Factory::new(&cli.global);
    match cmd::dispatch(&factory, cli.command).await {
        Ok(()) => 0,
        Err(err) => {
            let code = err.downcast_ref::<errors::Exit>().map(|e| e.0).unwrap_or(1);
            if let Some(msg) = errors::message(&err) {
                let _ = std::io::stdout().flush();
                eprintln!("{}", msg.trim_end_matches('\n'));
            }
            code
        }
    }
}

/// Writes to stdout and flushes (watch output must appear at once); a
/// closed pipe is not an error worth reporting.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes a line to stderr.
pub fn err_line(text: &str) {
    let _ = std::io::stdout().flush();
    eprintln!("{text}");
}
