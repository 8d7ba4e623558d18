//! `agnhost mem-hog --size 100Mi [--hold]`: allocates and touches that
//! much memory, so a container with a smaller limit gets OOM-killed (and
//! one with a larger limit shows the usage). Without `--hold` it exits 0
//! once the memory is touched.

use std::time::Duration;

use anyhow::{Context, bail};

/// Touched a chunk at a time so progress shows in the logs before an OOM kill.
const CHUNK: usize = 16 << 20;
const PAGE: usize = 4096;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bytes, or a Kubernetes quantity such as 100Mi, 1Gi, 500M.
    #[arg(long)]
    size: String,
    /// Keep the memory (and run) until killed.
    #[arg(long)]
    hold: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let size = parse_size(&args.size).with_context(|| format!("--size {:?}", args.size))?;
    let held = tokio::task::spawn_blocking(move || touch(size)).await?;
    println!("allocated {size} bytes");
    if args.hold {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            std::hint::black_box(&held);
        }
    }
    Ok(())
}

fn touch(size: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut done = 0;
    while done < size {
        let len = CHUNK.min(size - done);
        let mut chunk = vec![0u8; len];
        for offset in (0..len).step_by(PAGE) {
            chunk[offset] = 1;
        }
        chunks.push(std::hint::black_box(chunk));
        done += len;
        println!("touched {done} of {size} bytes");
    }
    chunks
}

/// Bytes from a plain number or a quantity with a binary (Ki, Mi, Gi, Ti)
/// or decimal (k, K, M, G, T) suffix.
pub fn parse_size(text: &str) -> anyhow::Result<usize> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u64 = number.parse().context("expected a number")?;
    let unit: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        other => bail!("unknown suffix {other:?}"),
    };
    let bytes = number.checked_mul(unit).context("too large")?;
    Ok(usize::try_from(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases = [
            ("4096", 4096),
            ("100Mi", 100 << 20),
            ("1Gi", 1 << 30),
            ("500M", 500_000_000),
            ("2k", 2000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).unwrap(), want, "{text}");
        }
        for bad in ["", "Mi", "1.5Gi", "10Xi", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn touches_all_of_it() {
        let chunks = touch(CHUNK + 10);
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), CHUNK + 10);
    }
}
