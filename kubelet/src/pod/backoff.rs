//! Upstream's flowcontrol.Backoff: per key, a delay that starts at `base`,
//! doubles on every use up to `max`, and is forgotten once unused for
//! twice `max` (so a container that ran 10 minutes starts over at 10 s).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Backoff {
    base: Duration,
    max: Duration,
    entries: HashMap<String, (Duration, Instant)>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, last: Instant, now: Instant) -> bool {
        now.duration_since(last) > self.max * 2
    }

    /// Records a use of `key` at `now` and returns its new delay.
    pub fn next(&mut self, key: &str, now: Instant) -> Duration {
        let fresh = match self.entries.get(key) {
            Some((_, last)) => self.expired(*last, now),
            None => true,
        };
        let d = if fresh {
            self.base
        } else {
            let (d, _) = self.entries[key];
            (d * 2).min(self.max)
        };
        self.entries.insert(key.to_string(), (d, now));
        d
    }

    /// Time left in `key`'s back-off that began at `since` (the last
    /// failure), or None if it is over.
    pub fn remaining(&self, key: &str, since: Instant, now: Instant) -> Option<Duration> {
        let (d, last) = self.entries.get(key)?;
        if self.expired(*last, now) {
            return None;
        }
        let end = since + *d;
        (end > now).then(|| end - now)
    }

    /// The current delay of `key` (for messages).
    pub fn current(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|(d, _)| *d)
    }

    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops entries unused for twice `max`.
    pub fn gc(&mut self, now: Instant) {
        let max = self.max;
        self.entries.retain(|_, (_, last)| now.duration_since(*last) <= max * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets_after_twice_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(b.remaining("c", t0, t0), None, "no entry: no back-off");
        assert_eq!(b.next("c", t0), Duration::from_secs(10));
        assert_eq!(
            b.remaining("c", t0, t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.remaining("c", t0, t0 + Duration::from_secs(10)), None);
        let mut t = t0;
        let mut seen = vec![];
        for _ in 0..7 {
            t += Duration::from_secs(1);
            seen.push(b.next("c", t).as_secs());
        }
        assert_eq!(seen, [20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.next("c", t + Duration::from_secs(601)), Duration::from_secs(10));
    }
}
