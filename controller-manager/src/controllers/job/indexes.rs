//! Completion indexes of Indexed Jobs (upstream's `indexed_job_utils.go`):
//! ordered intervals in the compressed form of `status.completedIndexes`
//! and `status.failedIndexes` ("1,3-5"), and the first indexes that still
//! need a pod.

use std::collections::BTreeMap;
use std::fmt;

pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-failure-count";
pub const INDEX_IGNORED_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub first: i32,
    pub last: i32,
}

/// Disjoint, non-adjacent intervals in increasing order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<Interval>);

impl Intervals {
    /// Parses "1,3-5" keeping indexes below `completions`; corrupt parts are
    /// skipped, as upstream does.
    pub fn parse(s: &str, completions: i32) -> Intervals {
        let mut out: Vec<Interval> = Vec::new();
        if s.is_empty() {
            return Intervals(out);
        }
        for part in s.split(',') {
            let mut limits = part.split('-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i32>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(l) => match l.parse::<i32>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            match out.last_mut() {
                Some(prev) if prev.last == first - 1 => prev.last = last,
                _ => out.push(Interval { first, last }),
            }
        }
        Intervals(out)
    }

    /// These intervals with `indexes` (increasing) added.
    pub fn with_ordered_indexes(&self, indexes: &[i32]) -> Intervals {
        let add = Intervals(indexes.iter().map(|&i| Interval { first: i, last: i }).collect());
        self.merge(&add)
    }

    pub fn merge(&self, other: &Intervals) -> Intervals {
        let mut all: Vec<Interval> = self.0.iter().chain(other.0.iter()).copied().collect();
        all.sort_by_key(|i| i.first);
        let mut out: Vec<Interval> = Vec::with_capacity(all.len());
        for iv in all {
            match out.last_mut() {
                Some(prev) if iv.first <= prev.last + 1 => prev.last = prev.last.max(iv.last),
                _ => out.push(iv),
            }
        }
        Intervals(out)
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|i| i.last - i.first + 1).sum()
    }

    pub fn has(&self, ix: i32) -> bool {
        let pos = self.0.partition_point(|i| i.last < ix);
        self.0.get(pos).is_some_and(|i| i.first <= ix)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Intervals {
    /// Upstream's compressed form: two adjacent indexes are written "3,4",
    /// longer runs "3-5".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, iv) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", iv.first)?;
            if iv.last == iv.first + 1 {
                write!(f, ",{}", iv.last)?;
            } else if iv.last > iv.first {
                write!(f, "-{}", iv.last)?;
            }
        }
        Ok(())
    }
}

/// The completion index annotation of a pod, if valid.
pub fn completion_index(annotations: Option<&BTreeMap<String, String>>) -> Option<i32> {
    annotations?
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// A non-negative int32 annotation; 0 when absent or invalid (upstream's
/// `parseInt32`).
pub fn count_annotation(annotations: Option<&BTreeMap<String, String>>, key: &str) -> i32 {
    annotations
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| (0..=i32::MAX as i64).contains(v))
        .map(|v| v as i32)
        .unwrap_or(0)
}

/// The first `count` indexes below `completions` not in `non_pending`.
pub fn first_pending_indexes(non_pending: &Intervals, count: usize, completions: i32) -> Vec<i32> {
    let mut out = Vec::with_capacity(count);
    let mut candidate = 0;
    for iv in &non_pending.0 {
        while candidate < completions && out.len() < count && candidate < iv.first {
            out.push(candidate);
            candidate += 1;
        }
        if candidate < iv.last + 1 {
            candidate = iv.last + 1;
        }
    }
    while candidate < completions && out.len() < count {
        out.push(candidate);
        candidate += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_form_round_trips() {
        // (input, completions, total, printed, why)
        let cases = [
            ("", 10, 0, "", "nothing succeeded"),
            ("0", 10, 1, "0", "one index"),
            ("1,3-5", 10, 4, "1,3-5", "a run of three is a range"),
            ("3,4", 10, 2, "3,4", "two adjacent indexes are written as a pair"),
            ("1-3,4-6", 10, 6, "1-6", "adjacent ranges merge"),
            ("1,x,7", 10, 2, "1,7", "corrupt parts are skipped"),
            ("2-9,12", 5, 3, "2-4", "indexes at or past completions are dropped"),
        ];
        for (input, completions, total, printed, why) in cases {
            let iv = Intervals::parse(input, completions);
            assert_eq!(iv.total(), total, "{why}");
            assert_eq!(iv.to_string(), printed, "{why}");
        }
    }

    #[test]
    fn adding_indexes_merges_runs() {
        let iv = Intervals::parse("1,5-6", 100);
        assert_eq!(iv.with_ordered_indexes(&[0, 2, 3, 4, 9]).to_string(), "0-6,9");
        assert_eq!(iv.with_ordered_indexes(&[7]).to_string(), "1,5-7");
        let merged = iv.merge(&Intervals::parse("3,8", 100));
        assert_eq!(merged.to_string(), "1,3,5,6,8");
        assert!(merged.has(6) && merged.has(1) && !merged.has(2) && !merged.has(9));
    }

    #[test]
    fn pending_indexes_skip_taken_ones() {
        // (taken, count, completions, expected, why)
        let cases: [(&str, usize, i32, Vec<i32>, &str); 5] = [
            ("", 3, 5, vec![0, 1, 2], "nothing taken"),
            ("0-1,3", 3, 6, vec![2, 4, 5], "gaps filled in order"),
            ("0-4", 2, 5, vec![], "all taken"),
            ("1", 10, 3, vec![0, 2], "bounded by completions"),
            ("", 0, 3, vec![], "nothing asked"),
        ];
        for (taken, count, completions, want, why) in cases {
            let got = first_pending_indexes(&Intervals::parse(taken, completions), count, completions);
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn annotations_parse_defensively() {
        let a: BTreeMap<String, String> = [
            (COMPLETION_INDEX_ANNOTATION.to_string(), "3".to_string()),
            (INDEX_FAILURE_COUNT_ANNOTATION.to_string(), "-2".to_string()),
        ]
        .into();
        assert_eq!(completion_index(Some(&a)), Some(3));
        assert_eq!(count_annotation(Some(&a), INDEX_FAILURE_COUNT_ANNOTATION), 0);
        assert_eq!(completion_index(None), None);
    }
}
