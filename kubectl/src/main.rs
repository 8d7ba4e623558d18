//! `kubectl`: parse flags, set up logging, build the runtime, run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match kubectl::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and usage go out as clap formats them; kubectl exits 1 on
            // usage errors.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    component_base::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(kubectl::run(cli));
    // A read of stdin (exec -i) may still be blocked in its thread; it must
    // not keep the process alive.
    runtime.shutdown_background();
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
