//! Log producers for the logs tests: `log-lines` (numbered lines at an
//! interval) and upstream's `logs-generator` (N request-like lines spread
//! over a duration).

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::netexec::parse_go_duration;

#[derive(clap::Args, Debug)]
pub struct LinesArgs {
    /// How many lines; 0 writes forever.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// Pause between lines (a Go duration: 100ms, 1s).
    #[arg(long, default_value = "100ms", value_parser = parse_go_duration)]
    interval: Duration,
    /// Write to stderr instead of stdout.
    #[arg(long)]
    stderr: bool,
}

/// Writes `line 1`, `line 2`, … one per interval.
pub async fn lines(args: LinesArgs) -> anyhow::Result<()> {
    let mut n = 1u64;
    loop {
        let line = format!("line {n}\n");
        if args.stderr {
            std::io::stderr().write_all(line.as_bytes())?;
        } else {
            let mut stdout = std::io::stdout();
            stdout.write_all(line.as_bytes())?;
            stdout.flush()?;
        }
        if args.count != 0 && n >= args.count {
            return Ok(());
        }
        n += 1;
        tokio::time::sleep(args.interval).await;
    }
}

#[derive(clap::Args, Debug)]
pub struct GeneratorArgs {
    /// Total number of lines.
    #[arg(short = 't', long = "log-lines-total")]
    total: u64,
    /// Time over which the lines are spread (a Go duration).
    #[arg(short = 'd', long = "run-duration", value_parser = parse_go_duration)]
    duration: Duration,
}

/// Lines like `2000-12-31T12:59:59Z <id> GET /api/v1/namespaces/<ns>/endpoints/<rand> <num>`.
pub async fn generate(args: GeneratorArgs) -> anyhow::Result<()> {
    let interval = if args.total == 0 {
        Duration::ZERO
    } else {
        args.duration / args.total.max(1) as u32
    };
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 ^ u64::from(std::process::id());
    let mut random = XorShift(seed | 1);
    let mut stdout = std::io::stdout();
    for id in 0..args.total {
        let method = ["GET", "POST", "PUT"][(random.next() % 3) as usize];
        let namespace = ["kube-system", "default", "ns"][(random.next() % 3) as usize];
        let name: String = (0..5).map(|_| (b'a' + (random.next() % 26) as u8) as char).collect();
        let line = format!(
            "{} {id} {method} /api/v1/namespaces/{namespace}/endpoints/{name} {}\n",
            rfc3339(SystemTime::now()),
            random.next() % 1000
        );
        stdout.write_all(line.as_bytes())?;
        stdout.flush()?;
        tokio::time::sleep(interval).await;
    }
    Ok(())
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// UTC, whole seconds, `Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(978_267_599), "2000-12-31T12:59:59Z");
        assert_eq!(at(1_767_225_600), "2026-01-01T00:00:00Z");
    }
}
