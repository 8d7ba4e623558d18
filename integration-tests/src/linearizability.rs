//! A linearizability checker for histories of key-value operations, in the
//! style of porcupine.
//!
//! Test clients record every operation they issue against the store (with a
//! [`Recorder`]); afterwards [`check`] decides whether the recorded history is
//! linearizable with respect to a map of independent registers (one per key)
//! with etcd-like `Put` / `Get` / compare-and-swap / `Delete` operations.
//!
//! # Algorithm
//!
//! The search is the one of Wing & Gong with Lowe's just-in-time
//! linearization and memoization, as used by porcupine:
//!
//! * The history is split by key (P-compositionality: a history of
//!   independent registers is linearizable iff every key's sub-history is),
//!   and each key is checked on its own.
//! * Every operation contributes a *call* entry at its invocation time and a
//!   *return* entry at its response time. The entries are sorted by time into
//!   a doubly linked list.
//! * The search walks the list from its head. At a call entry it tries to
//!   linearize that operation now: if the model accepts the operation's output
//!   in the current state, and the pair (set of linearized operations, new
//!   state) has not been seen before, the operation's call and return entries
//!   are lifted out of the list, a frame is pushed on a stack, and the walk
//!   restarts from the head. Reaching a return entry means that operation
//!   should already have been linearized: the search backtracks by popping
//!   the last frame, unlifting its entries and trying the next candidate
//!   after it. The history is linearizable iff the list becomes empty, and
//!   not linearizable iff a backtrack finds the stack empty.
//! * The memo holds each visited (linearized-set bitset, state) pair, so no
//!   configuration is explored twice.
//!
//! On top of that, values that no operation reads or compares against are
//! merged into one state, and a few rules prune provably redundant or hopeless
//! branches (read-only operations are linearized as soon as they can be;
//! among interchangeable operations only one is tried; unknown outcomes,
//! below, are linearized only where they make a difference; a value that is
//! still to be read is not overwritten for good); see the `search` function
//! for why they keep the search complete. Before searching, a quick check
//! reports reads of values that nobody writes (in time) with a direct message.
//!
//! # Cost
//!
//! Linearizability checking is NP-complete; each key gets a budget of search
//! steps, and exceeding it yields [`CheckResult::Timeout`], which is no
//! verdict: a test should treat it as a failure to verify (and shorten the
//! history, spread it over more keys, or raise the budget). As a guide, in
//! release builds a step takes 0.1 to 0.5 µs, and the default budget of 20
//! million steps holds up to a few hundred MB of memo. In simulations,
//! linearizable histories of 5,000 operations on one key from 32 clients
//! that are all busy all the time (32 concurrent operations) are accepted in
//! well under a second, with a few percent of unknown outcomes too. Proving a
//! history *illegal* means exhausting every way to linearize the part before
//! the violation: with such histories a stale read in the middle is usually
//! found within seconds, but a violation deep in a history with several
//! percent of unknown outcomes, or with few reads, can exhaust the budget.
//!
//! # Real-time order
//!
//! Times are nanoseconds on one monotonic clock. Operation A *precedes*
//! operation B (so A must be linearized before B) only if
//! `A.return_time < B.call`, strictly. Operations whose intervals merely touch
//! (`A.return_time == B.call`) are concurrent. In the entry list this is
//! achieved by ordering call entries before return entries at equal times.
//!
//! # Unknown outcomes
//!
//! An operation whose `return_time` is `None` (the client timed out, or the
//! connection broke), or whose output is [`Output::Unknown`], may or may not
//! have taken effect, at any time after its call. Its return entry is placed
//! at `+infinity` (after every other entry) and any output is accepted for it:
//! it behaves as the model says when linearized, and "never took effect" is
//! covered by linearizing it after everything else, where it cannot be
//! observed. An unknown-outcome `Get` has no effect and constrains nothing, so
//! it is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The per-key search budget used by [`check`]: the number of search steps
/// (candidate attempts plus backtracks) after which a key is reported as
/// [`CheckResult::Timeout`].
pub const DEFAULT_MAX_STEPS_PER_KEY: u64 = 20_000_000;

/// An operation's input. Every operation touches exactly one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Unconditionally set `key` to `value`.
    Put { key: String, value: String },
    /// Read `key`.
    Get { key: String },
    /// If the current value of `key` equals `expected` (`None`: the key is
    /// absent), set it to `new`.
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
    /// Remove `key`.
    Delete { key: String },
}

impl Input {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            Input::Put { key, .. } | Input::Get { key } | Input::Cas { key, .. } | Input::Delete { key } => key,
        }
    }
}

/// An operation's output, as observed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// A `Put` succeeded.
    Put,
    /// A `Get` read `value` (`None`: the key was absent).
    Get { value: Option<String> },
    /// A `Cas` did (`true`) or did not (`false`) find the expected value and
    /// write the new one.
    Cas { succeeded: bool },
    /// A `Delete` did (`true`) or did not (`false`) find the key.
    Delete { deleted: bool },
    /// The outcome is unknown; the operation is treated like one with
    /// `return_time == None`.
    Unknown,
}

/// One operation recorded by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued the operation (for diagnostics only).
    pub client_id: u64,
    pub input: Input,
    /// Monotonic nanoseconds at invocation.
    pub call: u64,
    /// Ignored when the outcome is unknown.
    pub output: Output,
    /// Monotonic nanoseconds at response; `None` if the outcome is unknown.
    pub return_time: Option<u64>,
}

impl Operation {
    /// Whether the operation's outcome is unknown: it may or may not have
    /// taken effect, at any time after its call.
    pub fn is_unknown(&self) -> bool {
        self.return_time.is_none() || self.output == Output::Unknown
    }
}

/// The verdict of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's sub-history is linearizable.
    Ok,
    /// The sub-history of `key` is not linearizable (or is malformed);
    /// `detail` describes the longest linearizable prefix and the operations
    /// none of which can follow it.
    Illegal { key: String, detail: String },
    /// The search for `key` exceeded its step budget without a verdict (and
    /// no key was found illegal).
    Timeout { key: String },
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "history is linearizable"),
            CheckResult::Illegal { key, detail } => {
                write!(f, "history of key {key:?} is not linearizable: {detail}")
            }
            CheckResult::Timeout { key } => write!(f, "linearizability check of key {key:?} exceeded its step budget"),
        }
    }
}

/// Checks `history` with the default per-key budget
/// ([`DEFAULT_MAX_STEPS_PER_KEY`]).
pub fn check(history: &[Operation]) -> CheckResult {
    check_with_budget(history, DEFAULT_MAX_STEPS_PER_KEY)
}

/// Checks `history`, giving up on a key after `max_steps_per_key` search
/// steps. Keys are checked in lexicographic order; the first illegal key is
/// reported. If none is illegal but some ran out of budget, the first such key
/// is reported as a timeout.
pub fn check_with_budget(history: &[Operation], max_steps_per_key: u64) -> CheckResult {
    check_impl(history, max_steps_per_key, true)
}

/// [`check_with_budget`], optionally without the quick checks that precede
/// the search (tests use that to exercise the search itself).
fn check_impl(history: &[Operation], max_steps_per_key: u64, quick_checks: bool) -> CheckResult {
    let mut partitions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        partitions.entry(op.input.key()).or_default().push(index);
    }
    let mut timed_out: Option<String> = None;
    for (key, indices) in partitions {
        let built = Partition::build(history, &indices).and_then(|partition| {
            if quick_checks {
                partition.check_observed_values(history)?;
            }
            Ok(partition)
        });
        let partition = match built {
            Ok(partition) => partition,
            Err(detail) => {
                return CheckResult::Illegal {
                    key: key.to_owned(),
                    detail,
                };
            }
        };
        match search(&partition.ops, partition.n_known, max_steps_per_key) {
            SearchOutcome::Linearizable => {}
            SearchOutcome::Timeout => {
                if timed_out.is_none() {
                    timed_out = Some(key.to_owned());
                }
            }
            SearchOutcome::Illegal { prefix, state } => {
                return CheckResult::Illegal {
                    key: key.to_owned(),
                    detail: partition.describe_failure(history, &prefix, state),
                };
            }
        }
    }
    match timed_out {
        Some(key) => CheckResult::Timeout { key },
        None => CheckResult::Ok,
    }
}

// ---------------------------------------------------------------------------
// Recording.

/// Collects operations from any number of concurrent clients. Cheap to clone;
/// clones share the history and the clock origin.
#[derive(Debug, Clone)]
pub struct Recorder {
    ops: Arc<Mutex<Vec<Operation>>>,
    origin: Instant,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            ops: Arc::new(Mutex::new(Vec::new())),
            origin: Instant::now(),
        }
    }

    /// Monotonic nanoseconds since this recorder (or the one it was cloned
    /// from) was created.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Notes the invocation of `input` by `client_id`, now. Call this right
    /// before sending the request, and finish the returned [`PendingOp`] right
    /// after the response (or error) arrives.
    pub fn invoke(&self, client_id: u64, input: Input) -> PendingOp {
        PendingOp {
            recorder: self.clone(),
            client_id,
            input: Some(input),
            call: self.now(),
        }
    }

    /// Adds an already complete operation.
    pub fn record(&self, op: Operation) {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).push(op);
    }

    /// A copy of the operations recorded so far (in completion order).
    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Checks the history recorded so far.
    pub fn check(&self) -> CheckResult {
        check(&self.history())
    }
}

/// An invoked operation awaiting its outcome. Finish it with
/// [`complete`](Self::complete), [`unknown`](Self::unknown) or
/// [`discard`](Self::discard); dropping it unfinished (for example when a
/// future is cancelled by a timeout) records it as unknown.
#[derive(Debug)]
#[must_use = "finish the operation with complete(), unknown() or discard()"]
pub struct PendingOp {
    recorder: Recorder,
    client_id: u64,
    input: Option<Input>,
    call: u64,
}

impl PendingOp {
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The invocation time, in the recorder's nanoseconds.
    pub fn call_time(&self) -> u64 {
        self.call
    }

    /// Records the operation as returned now with `output`.
    pub fn complete(mut self, output: Output) {
        let return_time = self.recorder.now();
        self.finish(output, Some(return_time));
    }

    /// Records the operation with an unknown outcome: it may or may not take
    /// effect, at any time after its call.
    pub fn unknown(mut self) {
        self.finish(Output::Unknown, None);
    }

    /// Forgets the operation. Use only when it certainly had no effect (for
    /// example the request was rejected before reaching the store).
    pub fn discard(mut self) {
        self.input = None;
    }

    fn finish(&mut self, output: Output, return_time: Option<u64>) {
        if let Some(input) = self.input.take() {
            self.recorder.record(Operation {
                client_id: self.client_id,
                input,
                call: self.call,
                output,
                return_time,
            });
        }
    }
}

impl Drop for PendingOp {
    fn drop(&mut self) {
        self.finish(Output::Unknown, None);
    }
}

// ---------------------------------------------------------------------------
// The model of one key.

/// [`Search::context`] when the last operation had a known outcome.
const NO_CONTEXT: u32 = u32::MAX;

/// Interned value id meaning "key absent".
const ABSENT: u32 = 0;
/// Interned value id of every value that no operation reads or compares
/// against.
const OTHER: u32 = 1;
/// The first id of a value that some operation reads or compares against.
const FIRST_VALUE: u32 = 2;

/// One operation of a partition, with values interned. Outputs of
/// unknown-outcome operations are `None` (unconstrained).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Step {
    Put(u32),
    Get(u32),
    Cas {
        expected: u32,
        new: u32,
        succeeded: Option<bool>,
    },
    Delete {
        deleted: Option<bool>,
    },
}

impl Step {
    /// Whether the step leaves the state unchanged in every state in which
    /// its output is possible: a read, a failed compare-and-swap, a delete
    /// that found nothing. (Not so an unknown-outcome operation or a put,
    /// even when it happens to write the current value.)
    fn is_read_only(self) -> bool {
        match self {
            Step::Put(_) => false,
            Step::Get(_) => true,
            Step::Cas {
                expected,
                new,
                succeeded,
            } => succeeded == Some(false) || (succeeded == Some(true) && expected == new),
            Step::Delete { deleted } => deleted == Some(false),
        }
    }

    /// The state the step may set (other than OTHER).
    fn written(self) -> Option<u32> {
        match self {
            Step::Put(value)
            | Step::Cas {
                new: value,
                succeeded: None | Some(true),
                ..
            } => Some(value).filter(|&v| v != OTHER),
            Step::Delete {
                deleted: None | Some(true),
            } => Some(ABSENT),
            _ => None,
        }
    }

    /// The state the step's output says it found, if that is one state.
    fn observed(self) -> Option<u32> {
        match self {
            Step::Get(value)
            | Step::Cas {
                expected: value,
                succeeded: Some(true),
                ..
            } => Some(value).filter(|&v| v != OTHER),
            Step::Delete { deleted: Some(false) } => Some(ABSENT),
            _ => None,
        }
    }

    /// The state after applying this step to `state`, or `None` if the
    /// recorded output is impossible in `state`.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Put(value) => Some(value),
            Step::Get(value) => (value == state).then_some(state),
            Step::Cas {
                expected,
                new,
                succeeded,
            } => {
                let matched = state == expected;
                if succeeded.is_some_and(|s| s != matched) {
                    None
                } else if matched {
                    Some(new)
                } else {
                    Some(state)
                }
            }
            Step::Delete { deleted } => {
                if deleted.is_some_and(|d| d != (state != ABSENT)) {
                    None
                } else {
                    Some(ABSENT)
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PartOp {
    /// Index in the full history.
    orig: usize,
    step: Step,
    call: u64,
    /// `u64::MAX` for unknown outcomes.
    ret: u64,
}

/// The operations of one key.
struct Partition {
    /// Known-outcome operations by call time, then unknown-outcome ones by
    /// call time.
    ops: Vec<PartOp>,
    n_known: usize,
    /// `values[id]` is the value with interned id `id` (from `FIRST_VALUE`).
    values: Vec<String>,
}

impl Partition {
    fn build(history: &[Operation], indices: &[usize]) -> Result<Partition, String> {
        // Values that are never read or compared against (by a known read or
        // any compare-and-swap) are indistinguishable by every operation:
        // they all map to the single state OTHER, which merges otherwise
        // equivalent configurations.
        let mut observed: HashMap<&str, u32> = HashMap::new();
        for &orig in indices {
            let op = &history[orig];
            let value = match (&op.input, &op.output) {
                (Input::Cas { expected, .. }, _) => expected.as_deref(),
                (Input::Get { .. }, Output::Get { value }) if !op.is_unknown() => value.as_deref(),
                _ => None,
            };
            if let Some(value) = value {
                let next =
                    u32::try_from(observed.len() + FIRST_VALUE as usize).expect("fewer than 2^32 distinct values");
                observed.entry(value).or_insert(next);
            }
        }
        let mut values = vec![String::new(); observed.len() + FIRST_VALUE as usize];
        for (&value, &id) in &observed {
            values[id as usize] = value.to_owned();
        }
        let intern = |value: Option<&str>| -> u32 {
            match value {
                None => ABSENT,
                Some(value) => observed.get(value).copied().unwrap_or(OTHER),
            }
        };
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for &orig in indices {
            let op = &history[orig];
            let is_unknown = op.is_unknown();
            let malformed = || format!("malformed operation, output does not match input: {}", fmt_op(orig, op));
            let step = match (&op.input, &op.output, is_unknown) {
                (Input::Get { .. }, _, true) => continue,
                (Input::Get { .. }, Output::Get { value }, false) => Step::Get(intern(value.as_deref())),
                (Input::Put { value, .. }, Output::Put, _) | (Input::Put { value, .. }, _, true) => {
                    Step::Put(intern(Some(value)))
                }
                (Input::Cas { expected, new, .. }, output, _) => {
                    let succeeded = match (output, is_unknown) {
                        (_, true) => None,
                        (Output::Cas { succeeded }, false) => Some(*succeeded),
                        _ => return Err(malformed()),
                    };
                    Step::Cas {
                        expected: intern(expected.as_deref()),
                        new: intern(Some(new)),
                        succeeded,
                    }
                }
                (Input::Delete { .. }, output, _) => {
                    let deleted = match (output, is_unknown) {
                        (_, true) => None,
                        (Output::Delete { deleted }, false) => Some(*deleted),
                        _ => return Err(malformed()),
                    };
                    Step::Delete { deleted }
                }
                _ => return Err(malformed()),
            };
            let ret = match op.return_time {
                Some(ret) if !is_unknown => {
                    if ret < op.call {
                        return Err(format!(
                            "malformed operation, returns before its call: {}",
                            fmt_op(orig, op)
                        ));
                    }
                    ret
                }
                _ => u64::MAX,
            };
            let part_op = PartOp {
                orig,
                step,
                call: op.call,
                ret,
            };
            if is_unknown {
                unknown.push(part_op);
            } else {
                known.push(part_op);
            }
        }
        // Number known operations by call time and unknown ones after them:
        // the set of linearized operations is then mostly a prefix plus a
        // small window, which keeps the memo's entries small.
        known.sort_by_key(|op| (op.call, op.ret, op.orig));
        unknown.sort_by_key(|op| (op.call, op.orig));
        let n_known = known.len();
        known.extend(unknown);
        Ok(Partition {
            ops: known,
            n_known,
            values,
        })
    }

    /// A quick necessary condition, with a clearer message than the
    /// search's: every value that a known-outcome operation observes (a read
    /// of a present value, a successful compare-and-swap from one) must be
    /// written by an operation called no later than the observer returned.
    fn check_observed_values(&self, history: &[Operation]) -> Result<(), String> {
        let mut first_write = vec![u64::MAX; self.values.len()];
        for op in &self.ops {
            let written = match op.step {
                Step::Put(value) => value,
                Step::Cas { new, succeeded, .. } if succeeded != Some(false) => new,
                _ => continue,
            };
            if let Some(first) = first_write.get_mut(written as usize) {
                *first = (*first).min(op.call);
            }
        }
        for op in &self.ops[..self.n_known] {
            let observed = match op.step {
                Step::Get(value) => value,
                Step::Cas {
                    expected,
                    succeeded: Some(true),
                    ..
                } => expected,
                _ => continue,
            };
            if observed < FIRST_VALUE {
                continue;
            }
            let first = first_write[observed as usize];
            if first <= op.ret {
                continue;
            }
            let why = if first == u64::MAX {
                "which no operation writes".to_owned()
            } else {
                format!(
                    "but the first operation writing it is called at {first}, after #{} returned",
                    op.orig
                )
            };
            return Err(format!(
                "{} observes the value {}, {why}",
                fmt_op(op.orig, &history[op.orig]),
                self.fmt_state(observed),
            ));
        }
        Ok(())
    }

    fn fmt_state(&self, state: u32) -> String {
        match state {
            ABSENT => "absent".to_owned(),
            OTHER => "some value that is never read".to_owned(),
            _ => format!("{:?}", self.values[state as usize]),
        }
    }

    fn describe_failure(&self, history: &[Operation], prefix: &[usize], state: u32) -> String {
        const SHOWN_PREFIX: usize = 10;
        const SHOWN_PENDING: usize = 20;
        let mut linearized = vec![false; self.ops.len()];
        for &op in prefix {
            linearized[op] = true;
        }
        // After the prefix, the next return entry in the list belongs to the
        // remaining operation with the earliest return (a known-outcome one;
        // they are sorted by call time, not return time); the candidates are
        // the remaining operations called no later than that.
        let remaining: Vec<usize> = (0..self.ops.len()).filter(|&i| !linearized[i]).collect();
        let blocking = remaining.iter().copied().min_by_key(|&i| (self.ops[i].ret, i));
        let first_return = blocking.map_or(u64::MAX, |i| self.ops[i].ret);
        let mut candidates: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&i| self.ops[i].call <= first_return)
            .collect();
        // The blocking operation first, then the other known-outcome ones,
        // then the unknown-outcome ones, each by call time.
        candidates.sort_by_key(|&i| {
            (
                Some(i) != blocking,
                i >= self.n_known,
                self.ops[i].call,
                self.ops[i].orig,
            )
        });

        let mut out = format!(
            "{} operations on this key; the longest linearizable prefix found has {} (state after it: {}).",
            self.ops.len(),
            prefix.len(),
            self.fmt_state(state)
        );
        if !prefix.is_empty() {
            let skip = prefix.len().saturating_sub(SHOWN_PREFIX);
            out.push_str(&format!(
                "\nLast {} operations of that prefix, in linearization order:",
                prefix.len() - skip
            ));
            for &i in &prefix[skip..] {
                let orig = self.ops[i].orig;
                out.push_str(&format!("\n  {}", fmt_op(orig, &history[orig])));
            }
        }
        out.push_str(&format!(
            "\nNone of these {} pending operations can be linearized next (the first one must be linearized \
             before it returns):",
            candidates.len()
        ));
        for &i in candidates.iter().take(SHOWN_PENDING) {
            let orig = self.ops[i].orig;
            let why = self.why_not_next(&remaining, i, state);
            out.push_str(&format!("\n  {}: {why}", fmt_op(orig, &history[orig])));
        }
        if candidates.len() > SHOWN_PENDING {
            out.push_str(&format!("\n  ... and {} more", candidates.len() - SHOWN_PENDING));
        }
        out
    }

    /// Why candidate `op` cannot be linearized next in `state`, after every
    /// operation but `remaining` was.
    fn why_not_next(&self, remaining: &[usize], op: usize, state: u32) -> String {
        let step = self.ops[op].step;
        let Some(next_state) = step.apply(state) else {
            return format!("impossible when the value is {}", self.fmt_state(state));
        };
        if next_state == state && op >= self.n_known {
            return "no effect now (unknown outcome; it may take effect later)".to_owned();
        }
        if next_state != state {
            let others = || remaining.iter().copied().filter(move |&i| i != op);
            let observer = others().find(|&i| i < self.n_known && self.ops[i].step.observed() == Some(state));
            let can_restore = others().any(|i| self.ops[i].step.written() == Some(state));
            if let (Some(observer), false) = (observer, can_restore) {
                return format!(
                    "it would change the value {}, which #{} still has to observe, for good",
                    self.fmt_state(state),
                    self.ops[observer].orig
                );
            }
        }
        "every continuation fails".to_owned()
    }
}

fn fmt_op(index: usize, op: &Operation) -> String {
    let ret = match op.return_time {
        Some(ret) => ret.to_string(),
        None => "?".to_owned(),
    };
    let output = if op.is_unknown() {
        "<unknown>".to_owned()
    } else {
        format!("{:?}", op.output)
    };
    format!(
        "#{index} client {} [{}, {}] {:?} -> {}",
        op.client_id, op.call, ret, op.input, output
    )
}

// ---------------------------------------------------------------------------
// The search.

const NIL: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    prev: usize,
    next: usize,
    /// Index into the partition's operations.
    op: usize,
    /// For a call entry, its return entry (and vice versa).
    mate: usize,
    is_call: bool,
}

/// The doubly linked list of call and return entries; node 0 is the head
/// sentinel.
struct EntryList {
    nodes: Vec<Node>,
}

impl EntryList {
    fn new(ops: &[PartOp]) -> EntryList {
        // (time, kind, op): calls (kind 0) before returns (kind 1) at equal
        // times, so that touching intervals are concurrent.
        let mut entries: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.call, 0, i));
            entries.push((op.ret, 1, i));
        }
        entries.sort_unstable();
        let len = entries.len();
        let mut nodes = Vec::with_capacity(len + 1);
        nodes.push(Node {
            prev: NIL,
            next: if len > 0 { 1 } else { NIL },
            op: NIL,
            mate: NIL,
            is_call: false,
        });
        let mut call_node = vec![NIL; ops.len()];
        let mut ret_node = vec![NIL; ops.len()];
        for (pos, &(_, kind, op)) in entries.iter().enumerate() {
            let index = pos + 1;
            if kind == 0 {
                call_node[op] = index;
            } else {
                ret_node[op] = index;
            }
            nodes.push(Node {
                prev: pos,
                next: if index < len { index + 1 } else { NIL },
                op,
                mate: NIL,
                is_call: kind == 0,
            });
        }
        for op in 0..ops.len() {
            nodes[call_node[op]].mate = ret_node[op];
            nodes[ret_node[op]].mate = call_node[op];
        }
        EntryList { nodes }
    }

    fn first(&self) -> usize {
        self.nodes[0].next
    }

    fn unlink(&mut self, index: usize) {
        let Node { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, index: usize) {
        let Node { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = index;
        if next != NIL {
            self.nodes[next].prev = index;
        }
    }

    /// Removes a call entry and its return entry.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.nodes[call].mate);
    }

    /// Undoes the matching `lift` (lifts are undone in reverse order).
    fn unlift(&mut self, call: usize) {
        self.relink(self.nodes[call].mate);
        self.relink(call);
    }
}

/// The set of linearized operations, with an incrementally maintained
/// Zobrist hash and a summary of non-zero words for compact snapshots.
struct LinearizedSet {
    words: Vec<u64>,
    /// Bit `i` set iff `words[i] != 0`.
    summary: Vec<u64>,
    /// Every word before this one is all ones (a lower bound on the index of
    /// the first word that is not).
    full_prefix: usize,
    zobrist: Vec<u64>,
    hash: u64,
}

impl LinearizedSet {
    fn new(len: usize) -> LinearizedSet {
        let words = len.div_ceil(64);
        LinearizedSet {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
            full_prefix: 0,
            zobrist: (0..len as u64).map(|i| splitmix64(i ^ 0x5EED_0F11_4EA2)).collect(),
            hash: 0,
        }
    }

    fn insert(&mut self, op: usize) {
        let word = op / 64;
        self.words[word] |= 1 << (op % 64);
        self.summary[word / 64] |= 1 << (word % 64);
        self.hash ^= self.zobrist[op];
    }

    fn remove(&mut self, op: usize) {
        let word = op / 64;
        self.words[word] &= !(1 << (op % 64));
        if self.words[word] == 0 {
            self.summary[word / 64] &= !(1 << (word % 64));
        }
        self.full_prefix = self.full_prefix.min(word);
        self.hash ^= self.zobrist[op];
    }

    /// Writes a canonical compact encoding of the set into `out`: the index
    /// of the first word that is not all ones, then (index, word) for every
    /// non-zero word from there on.
    fn snapshot(&mut self, out: &mut Vec<u64>) {
        while self.full_prefix < self.words.len() && self.words[self.full_prefix] == u64::MAX {
            self.full_prefix += 1;
        }
        let start = self.full_prefix;
        out.clear();
        out.push(start as u64);
        let mut summary_index = start / 64;
        while summary_index < self.summary.len() {
            let mut bits = self.summary[summary_index];
            if summary_index == start / 64 {
                // Ignore words before `start`.
                bits &= u64::MAX << (start % 64);
            }
            while bits != 0 {
                let word = summary_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                out.push(word as u64);
                out.push(self.words[word]);
            }
            summary_index += 1;
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = splitmix64(self.0 ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One visited configuration.
#[derive(PartialEq, Eq)]
struct MemoKey {
    /// A hash of the rest, which is all that [`Hash`] feeds the hasher.
    hash: u64,
    state: u32,
    /// See [`Search::context`].
    context: u32,
    /// [`LinearizedSet::snapshot`] of the linearized known-outcome
    /// operations, followed by the bitset of the linearized unknown-outcome
    /// ones (whose length is the same for the whole search).
    sets: Vec<u64>,
}

impl Hash for MemoKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

type Memo = HashSet<MemoKey, BuildHasherDefault<PrehashedHasher>>;

struct Frame {
    /// The call entry that was lifted.
    node: usize,
    /// The state before linearizing it.
    state: u32,
    /// Whether this was a forced move (see [`search`]), which has no
    /// alternatives to try when backtracking.
    forced: bool,
    /// The entry's position among the ordered candidates of the
    /// configuration it was linearized from.
    rank: usize,
}

enum SearchOutcome {
    Linearizable,
    /// `prefix`: partition operation indices of a longest linearizable
    /// prefix, in order; `state`: the state after it.
    Illegal {
        prefix: Vec<usize>,
        state: u32,
    },
    Timeout,
}

struct Search<'a> {
    ops: &'a [PartOp],
    /// Operations `n_known..` have unknown outcomes.
    n_known: usize,
    /// How many known-outcome operations are not linearized.
    known_left: usize,
    /// Operations with the same step have the same class.
    step_class: Vec<u32>,
    /// Per value id: how many operations that may write it, and how many
    /// known-outcome operations that must observe it, are not linearized.
    remaining: Vec<[u32; 2]>,
    list: EntryList,
    /// The linearized known-outcome operations.
    known: LinearizedSet,
    /// The linearized unknown-outcome operations (bit `op - n_known`), and a
    /// Zobrist hash of them.
    unknown: Vec<u64>,
    unknown_hash: u64,
    unknown_zobrist: Vec<u64>,
    memo: Memo,
    /// A buffer for [`MemoKey::sets`].
    scratch: Vec<u64>,
    stack: Vec<Frame>,
    state: u32,
    /// The longest prefix seen so far. `best[..unchanged]` equals the bottom
    /// of the stack (the stack has not gone below `unchanged` since `best`
    /// was last taken), so only the rest needs copying on a new record.
    best: Vec<usize>,
    best_state: u32,
    unchanged: usize,
    steps: u64,
    max_steps: u64,
}

impl Search<'_> {
    /// Counts a step; false once the budget is exhausted.
    fn step(&mut self) -> bool {
        self.steps += 1;
        self.steps <= self.max_steps
    }

    /// Adds `op` to the linearized set, or removes it.
    fn toggle(&mut self, op: usize, linearized: bool) {
        let (written, observed) = (self.ops[op].step.written(), self.ops[op].step.observed());
        let remaining = &mut self.remaining;
        let mut count = |value: Option<u32>, which: usize| {
            if let Some(counts) = value.and_then(|v| remaining.get_mut(v as usize)) {
                if linearized {
                    counts[which] -= 1;
                } else {
                    counts[which] += 1;
                }
            }
        };
        count(written, 0);
        if op < self.n_known {
            count(observed, 1);
        }
        match op.checked_sub(self.n_known) {
            Some(u) => {
                self.unknown[u / 64] ^= 1 << (u % 64);
                self.unknown_hash ^= self.unknown_zobrist[u];
            }
            None if linearized => {
                self.known.insert(op);
                self.known_left -= 1;
            }
            None => {
                self.known.remove(op);
                self.known_left += 1;
            }
        }
    }

    /// What the search from the current configuration depends on besides
    /// the linearized set and the state: if the last linearized operation
    /// has an unknown outcome, the state before it (see [`search`]), else
    /// `NO_CONTEXT`.
    fn context(&self) -> u32 {
        match self.stack.last() {
            Some(frame) if self.list.nodes[frame.node].op >= self.n_known => frame.state,
            _ => NO_CONTEXT,
        }
    }

    /// Whether linearizing `op` next, reaching `next_state`, would make the
    /// last linearized operation pointless (see [`search`]).
    fn absorbs_last(&self, op: usize, next_state: u32) -> bool {
        let context = self.context();
        context != NO_CONTEXT && self.ops[op].step.apply(context) == Some(next_state)
    }

    /// Linearizes the operation of call entry `entry`, moving to state
    /// `next_state`, unless that configuration was visited before (and so
    /// failed: every configuration on the stack is smaller). Returns whether
    /// it did.
    fn try_push(&mut self, entry: usize, next_state: u32, forced: bool, rank: usize) -> bool {
        let op = self.list.nodes[entry].op;
        let context = if op >= self.n_known { self.state } else { NO_CONTEXT };
        self.toggle(op, true);
        if next_state != self.state {
            // Leaving a state that is still to be observed but that nothing
            // left can set again is a dead end.
            let dead = self
                .remaining
                .get(self.state as usize)
                .is_some_and(|&[writers, observers]| observers > 0 && writers == 0);
            if dead {
                self.toggle(op, false);
                return false;
            }
        }
        let mut sets = std::mem::take(&mut self.scratch);
        self.known.snapshot(&mut sets);
        sets.extend_from_slice(&self.unknown);
        let mut key = MemoKey {
            hash: self.known.hash ^ self.unknown_hash ^ splitmix64(u64::from(next_state) | (u64::from(context) << 32)),
            state: next_state,
            context,
            sets,
        };
        if self.memo.contains(&key) {
            self.scratch = key.sets;
            self.toggle(op, false);
            return false;
        }
        key.sets.shrink_to_fit();
        self.memo.insert(key);
        self.stack.push(Frame {
            node: entry,
            state: self.state,
            forced,
            rank,
        });
        self.state = next_state;
        self.list.lift(entry);
        if self.stack.len() > self.best.len() {
            self.best.truncate(self.unchanged);
            let list = &self.list;
            self.best
                .extend(self.stack[self.unchanged..].iter().map(|f| list.nodes[f.node].op));
            self.best_state = self.state;
            self.unchanged = self.stack.len();
        }
        true
    }

    /// Undoes frames up to and including the last unforced one, and returns
    /// the rank of the candidate after its own, where the search resumes;
    /// `None` if the stack ran out.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let frame = self.stack.pop()?;
            self.unchanged = self.unchanged.min(self.stack.len());
            let op = self.list.nodes[frame.node].op;
            self.toggle(op, false);
            self.state = frame.state;
            self.list.unlift(frame.node);
            if !frame.forced {
                return Some(frame.rank + 1);
            }
        }
    }

    /// The current candidates worth trying (see [`search`]), in the order
    /// to try them.
    fn candidates(&self, out: &mut Vec<usize>) {
        out.clear();
        let mut entry = self.list.first();
        while entry != NIL && self.list.nodes[entry].is_call {
            out.push(entry);
            entry = self.list.nodes[entry].next;
        }
        let nodes = &self.list.nodes;
        let ops = self.ops;
        // Of the candidates with the same step, keep the one that must
        // return first.
        out.sort_unstable_by_key(|&e| {
            let op = nodes[e].op;
            (self.step_class[op], ops[op].ret, op)
        });
        out.dedup_by_key(|e| self.step_class[nodes[*e].op]);
        out.sort_unstable_by_key(|&e| (ops[nodes[e].op].call, nodes[e].op));
    }

    /// Among the current candidates (the call entries before the first
    /// return entry), a read-only one whose output is possible now.
    fn find_read_only(&self) -> Option<usize> {
        let mut entry = self.list.first();
        while entry != NIL && self.list.nodes[entry].is_call {
            let node = self.list.nodes[entry];
            let step = self.ops[node.op].step;
            if step.is_read_only() && step.apply(self.state).is_some() {
                return Some(entry);
            }
            entry = node.next;
        }
        None
    }
}

/// Searches for a linearization of one key's operations; `ops[n_known..]`
/// have unknown outcomes.
///
/// Candidates are tried in list order, that is by call time. On top of the
/// plain just-in-time search with memoization, these rules skip candidates
/// that cannot matter. Each is justified by rearranging an arbitrary
/// linearization of the remaining operations into one that the rules allow,
/// keeping it valid:
///
/// * If a read-only candidate (see [`Step::is_read_only`]) can be linearized
///   now, it is linearized at once and no alternative is tried at that point
///   ("forced"). In any linearization of the rest, it can be moved to the
///   front: every operation that must precede it is already linearized (it
///   is a candidate), moving it earlier only drops constraints of the form
///   "it precedes X", its output is possible at the front, and it changes no
///   state wherever it stands, so every other operation sees the same states
///   as before. Consequently, if the configuration after a forced move was
///   visited before (and failed), so does the current one.
/// * Of the candidates with the same step (puts of values nobody reads, which
///   all map to one state, deletes that found the key, ...), only the one that
///   must return first is tried: if a linearization puts another one X first
///   while it is a candidate, swapping the two keeps it valid (X is
///   linearized later, but no later than the other one had to be) and
///   changes no state. For unknown outcomes (which never return) this means
///   by call time.
/// * An unknown-outcome operation is never linearized where it would not
///   change the state: it can as well go to the very end, after every
///   known-outcome operation, where nothing observes it (which is also why
///   the search succeeds once no known-outcome operation is left).
/// * An unknown-outcome operation U is never followed directly by an
///   operation X that would do the same without U, that is, X's output is
///   also possible in the state before U and leads to the same state (say X
///   is a put): U could as well go to the end, and the configuration before U
///   tries X directly. Since the search from a configuration then depends on
///   whether the last operation had an unknown outcome and on the state
///   before it, that "context" is part of the memoized configuration.
/// * Leaving a state that some known-outcome operation still has to observe
///   (a read of that value, say), when no operation left can set it again, is
///   a dead end.
///
/// Without the middle three, every pending unknown-outcome operation, and
/// every group of concurrent puts of values nobody reads, could multiply the
/// search space; the last one finds out early about wrong guesses that would
/// otherwise only fail when the observer's return is reached.
fn search(ops: &[PartOp], n_known: usize, max_steps: u64) -> SearchOutcome {
    let mut classes: HashMap<Step, u32> = HashMap::new();
    let step_class = ops
        .iter()
        .map(|op| {
            let next = u32::try_from(classes.len()).unwrap_or(u32::MAX);
            *classes.entry(op.step).or_insert(next)
        })
        .collect();
    let n_unknown = ops.len() - n_known;
    let mut search = Search {
        ops,
        n_known,
        known_left: n_known,
        step_class,
        remaining: {
            let values = ops
                .iter()
                .filter_map(|op| op.step.written().max(op.step.observed()))
                .max();
            let mut remaining = vec![[0, 0]; values.map_or(0, |v| v as usize + 1)];
            for (i, op) in ops.iter().enumerate() {
                if let Some(v) = op.step.written() {
                    remaining[v as usize][0] += 1;
                }
                if let Some(v) = op.step.observed().filter(|_| i < n_known) {
                    remaining[v as usize][1] += 1;
                }
            }
            remaining
        },
        list: EntryList::new(ops),
        known: LinearizedSet::new(n_known),
        unknown: vec![0; n_unknown.div_ceil(64)],
        unknown_hash: 0,
        unknown_zobrist: (0..n_unknown as u64).map(|i| splitmix64(i ^ 0x0DDB_A110)).collect(),
        memo: Memo::default(),
        scratch: Vec::new(),
        stack: Vec::new(),
        state: ABSENT,
        best: Vec::new(),
        best_state: ABSENT,
        unchanged: 0,
        steps: 0,
        max_steps,
    };
    let mut candidates = Vec::new();
    // `Some(rank)`: resume trying the candidates of the current
    // configuration at `rank`; `None`: the configuration is new.
    let mut resume: Option<usize> = None;
    loop {
        if !search.step() {
            return SearchOutcome::Timeout;
        }
        let start = match resume {
            Some(rank) => rank,
            None => {
                if search.known_left == 0 {
                    // Only unknown-outcome operations are left: linearize
                    // them at the end, where nothing observes them.
                    return SearchOutcome::Linearizable;
                }
                if let Some(forced) = search.find_read_only() {
                    if !search.try_push(forced, search.state, true, 0) {
                        // Dead end.
                        resume = search.backtrack();
                        if resume.is_none() {
                            break;
                        }
                    }
                    continue;
                }
                0
            }
        };
        // Try the candidates from `start` on; no read-only one among them is
        // possible now (or it would have been forced).
        search.candidates(&mut candidates);
        let mut pushed = false;
        for (rank, &entry) in candidates.iter().enumerate().skip(start) {
            if !search.step() {
                return SearchOutcome::Timeout;
            }
            let op = search.list.nodes[entry].op;
            let Some(next_state) = ops[op].step.apply(search.state) else {
                continue;
            };
            let redundant = (op >= n_known && next_state == search.state) || search.absorbs_last(op, next_state);
            if !redundant && search.try_push(entry, next_state, false, rank) {
                pushed = true;
                break;
            }
        }
        if pushed {
            resume = None;
            continue;
        }
        // No candidate works: backtrack.
        resume = search.backtrack();
        if resume.is_none() {
            break;
        }
    }
    SearchOutcome::Illegal {
        prefix: search.best,
        state: search.best_state,
    }
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Input {
        Input::Put {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn get(key: &str) -> Input {
        Input::Get { key: key.to_owned() }
    }

    fn cas(key: &str, expected: Option<&str>, new: &str) -> Input {
        Input::Cas {
            key: key.to_owned(),
            expected: expected.map(str::to_owned),
            new: new.to_owned(),
        }
    }

    fn delete(key: &str) -> Input {
        Input::Delete { key: key.to_owned() }
    }

    fn read(value: Option<&str>) -> Output {
        Output::Get {
            value: value.map(str::to_owned),
        }
    }

    fn op(client_id: u64, input: Input, call: u64, ret: u64, output: Output) -> Operation {
        Operation {
            client_id,
            input,
            call,
            output,
            return_time: Some(ret),
        }
    }

    fn unknown_op(client_id: u64, input: Input, call: u64) -> Operation {
        Operation {
            client_id,
            input,
            call,
            output: Output::Unknown,
            return_time: None,
        }
    }

    fn assert_ok(history: &[Operation]) {
        let result = check(history);
        assert_eq!(result, CheckResult::Ok, "{result}");
    }

    /// Like [`assert_illegal`], without the quick checks.
    fn assert_search_illegal(history: &[Operation], expected_key: &str) -> String {
        match check_impl(history, DEFAULT_MAX_STEPS_PER_KEY, false) {
            CheckResult::Illegal { key, detail } => {
                assert_eq!(key, expected_key, "{detail}");
                detail
            }
            other => panic!("expected Illegal, got {other:?}"),
        }
    }

    fn assert_illegal(history: &[Operation], expected_key: &str) -> String {
        match check(history) {
            CheckResult::Illegal { key, detail } => {
                assert_eq!(key, expected_key, "{detail}");
                detail
            }
            other => panic!("expected Illegal, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_ok() {
        assert_ok(&[]);
    }

    #[test]
    fn sequential_history_is_ok() {
        let history = vec![
            op(1, get("a"), 0, 1, read(None)),
            op(1, put("a", "1"), 2, 3, Output::Put),
            op(2, get("a"), 4, 5, read(Some("1"))),
            op(2, put("a", "2"), 6, 7, Output::Put),
            op(1, get("a"), 8, 9, read(Some("2"))),
            op(3, put("b", "x"), 10, 11, Output::Put),
            op(3, get("b"), 12, 13, read(Some("x"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn concurrent_puts_with_get_seeing_either_value_are_ok() {
        for seen in ["1", "2"] {
            let history = vec![
                op(1, put("a", "1"), 0, 10, Output::Put),
                op(2, put("a", "2"), 1, 11, Output::Put),
                op(3, get("a"), 2, 12, read(Some(seen))),
                op(3, get("a"), 13, 14, read(Some(seen))),
            ];
            assert_ok(&history);
        }
        // A read concurrent with both puts may see neither.
        let history = vec![
            op(1, put("a", "1"), 0, 10, Output::Put),
            op(2, put("a", "2"), 1, 11, Output::Put),
            op(3, get("a"), 2, 12, read(None)),
        ];
        assert_ok(&history);
    }

    #[test]
    fn reads_cannot_flip_back_after_concurrent_puts() {
        // Two sequential reads after both puts completed must agree.
        let history = vec![
            op(1, put("a", "1"), 0, 10, Output::Put),
            op(2, put("a", "2"), 1, 11, Output::Put),
            op(3, get("a"), 12, 13, read(Some("1"))),
            op(3, get("a"), 14, 15, read(Some("2"))),
        ];
        assert_illegal(&history, "a");
    }

    #[test]
    fn stale_read_after_completed_put_is_illegal() {
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(1, put("a", "2"), 2, 3, Output::Put),
            op(2, get("a"), 4, 5, read(Some("1"))),
        ];
        let detail = assert_illegal(&history, "a");
        // The put of "2" cannot be linearized, as the stale read still has
        // to see "1".
        assert!(detail.contains("prefix found has 1"), "{detail}");
        assert!(
            detail.contains("#1 client 1 [2, 3] Put { key: \"a\", value: \"2\" } -> Put: it would change the value \"1\", which #2 still has to observe, for good"),
            "{detail}"
        );
    }

    #[test]
    fn read_concurrent_with_put_may_be_old_or_new() {
        for seen in [Some("1"), Some("2")] {
            let history = vec![
                op(1, put("a", "1"), 0, 1, Output::Put),
                op(1, put("a", "2"), 2, 6, Output::Put),
                op(2, get("a"), 4, 5, read(seen)),
            ];
            assert_ok(&history);
        }
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The put returns at 5 and the get is called at 5: not ordered.
        let history = vec![
            op(1, put("a", "1"), 0, 5, Output::Put),
            op(2, get("a"), 5, 6, read(None)),
        ];
        assert_ok(&history);
        let history = vec![
            op(1, put("a", "1"), 0, 5, Output::Put),
            op(2, get("a"), 6, 7, read(None)),
        ];
        assert_illegal(&history, "a");
    }

    #[test]
    fn read_of_value_never_written_is_illegal() {
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(2, get("a"), 0, 2, read(Some("ghost"))),
        ];
        let detail = assert_illegal(&history, "a");
        assert!(
            detail.contains("#1 client 2") && detail.contains("no operation writes"),
            "{detail}"
        );
        assert_search_illegal(&history, "a");
        // Also a compare-and-swap that succeeded from a value never written.
        let history = vec![op(
            1,
            cas("a", Some("ghost"), "1"),
            0,
            1,
            Output::Cas { succeeded: true },
        )];
        assert_illegal(&history, "a");
        assert_search_illegal(&history, "a");
    }

    #[test]
    fn read_of_value_written_later_is_illegal() {
        let history = vec![
            op(2, get("a"), 0, 1, read(Some("1"))),
            op(1, put("a", "1"), 2, 3, Output::Put),
        ];
        assert_illegal(&history, "a");
        assert_search_illegal(&history, "a");
        // Touching intervals are concurrent, so this one is fine.
        let history = vec![
            op(2, get("a"), 0, 2, read(Some("1"))),
            op(1, put("a", "1"), 2, 3, Output::Put),
        ];
        assert_ok(&history);
    }

    #[test]
    fn put_of_the_current_value_is_not_read_only() {
        // Putting "1" when the value is "1" changes nothing now, but the
        // put is concurrent with a later put of "2" and must come after it
        // for the last read.
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(2, put("a", "1"), 2, 10, Output::Put),
            op(3, put("a", "2"), 3, 4, Output::Put),
            op(3, get("a"), 5, 6, read(Some("2"))),
            op(3, get("a"), 11, 12, read(Some("1"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn cas_correct_cases_are_ok() {
        let history = vec![
            // Create-if-absent succeeds on an absent key.
            op(1, cas("a", None, "1"), 0, 1, Output::Cas { succeeded: true }),
            // Create-if-absent fails once it exists.
            op(2, cas("a", None, "x"), 2, 3, Output::Cas { succeeded: false }),
            // Swap from the current value succeeds.
            op(1, cas("a", Some("1"), "2"), 4, 5, Output::Cas { succeeded: true }),
            // Swap from a stale value fails.
            op(2, cas("a", Some("1"), "3"), 6, 7, Output::Cas { succeeded: false }),
            op(3, get("a"), 8, 9, read(Some("2"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn concurrent_cas_only_one_may_win() {
        let ok = vec![
            op(1, put("a", "0"), 0, 1, Output::Put),
            op(2, cas("a", Some("0"), "x"), 2, 10, Output::Cas { succeeded: true }),
            op(3, cas("a", Some("0"), "y"), 3, 11, Output::Cas { succeeded: false }),
            op(4, get("a"), 12, 13, read(Some("x"))),
        ];
        assert_ok(&ok);
        let both_won = vec![
            op(1, put("a", "0"), 0, 1, Output::Put),
            op(2, cas("a", Some("0"), "x"), 2, 10, Output::Cas { succeeded: true }),
            op(3, cas("a", Some("0"), "y"), 3, 11, Output::Cas { succeeded: true }),
        ];
        assert_illegal(&both_won, "a");
    }

    #[test]
    fn cas_incorrect_cases_are_illegal() {
        // Reported success although the expected value was not there.
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(2, cas("a", Some("0"), "2"), 2, 3, Output::Cas { succeeded: true }),
        ];
        assert_illegal(&history, "a");
        // Reported failure although the expected value was there.
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(2, cas("a", Some("1"), "2"), 2, 3, Output::Cas { succeeded: false }),
        ];
        assert_illegal(&history, "a");
        // Create-if-absent reported success on an existing key.
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(2, cas("a", None, "2"), 2, 3, Output::Cas { succeeded: true }),
        ];
        assert_illegal(&history, "a");
        // Reported success, but a later read does not see the new value.
        let history = vec![
            op(1, cas("a", None, "1"), 0, 1, Output::Cas { succeeded: true }),
            op(2, get("a"), 2, 3, read(None)),
        ];
        assert_illegal(&history, "a");
        // Reported failure, but a later read sees its value.
        let history = vec![
            op(1, cas("a", None, "1"), 0, 1, Output::Cas { succeeded: false }),
            op(2, get("a"), 2, 3, read(Some("1"))),
        ];
        assert_illegal(&history, "a");
    }

    #[test]
    fn delete_semantics() {
        let ok = vec![
            op(1, delete("a"), 0, 1, Output::Delete { deleted: false }),
            op(1, put("a", "1"), 2, 3, Output::Put),
            op(2, delete("a"), 4, 5, Output::Delete { deleted: true }),
            op(3, get("a"), 6, 7, read(None)),
            op(3, cas("a", None, "2"), 8, 9, Output::Cas { succeeded: true }),
            op(2, delete("a"), 10, 11, Output::Delete { deleted: true }),
            op(1, delete("a"), 12, 13, Output::Delete { deleted: false }),
        ];
        assert_ok(&ok);
        // Deleting an absent key cannot report that it existed.
        let history = vec![op(1, delete("a"), 0, 1, Output::Delete { deleted: true })];
        assert_illegal(&history, "a");
        // Deleting an existing key cannot report that it did not exist.
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(1, delete("a"), 2, 3, Output::Delete { deleted: false }),
        ];
        assert_illegal(&history, "a");
        // A read after a completed delete cannot see the old value.
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(1, delete("a"), 2, 3, Output::Delete { deleted: true }),
            op(2, get("a"), 4, 5, read(Some("1"))),
        ];
        assert_illegal(&history, "a");
        // Two concurrent deletes of one existing key: only one finds it.
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(1, delete("a"), 2, 5, Output::Delete { deleted: true }),
            op(2, delete("a"), 3, 6, Output::Delete { deleted: true }),
        ];
        assert_illegal(&history, "a");
    }

    #[test]
    fn unknown_put_that_shows_up_later_is_ok() {
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            unknown_op(2, put("a", "2"), 2),
            op(3, get("a"), 3, 4, read(Some("1"))),
            op(3, get("a"), 100, 101, read(Some("2"))),
            op(3, get("a"), 102, 103, read(Some("2"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn unknown_put_that_never_shows_up_is_ok() {
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            unknown_op(2, put("a", "2"), 2),
            op(3, get("a"), 3, 4, read(Some("1"))),
            op(3, get("a"), 100, 101, read(Some("1"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn unknown_put_is_not_visible_before_its_call() {
        let history = vec![op(3, get("a"), 0, 1, read(Some("2"))), unknown_op(2, put("a", "2"), 2)];
        assert_illegal(&history, "a");
    }

    #[test]
    fn unknown_put_cannot_flicker() {
        // Once seen and then overwritten, it cannot be seen again.
        let history = vec![
            unknown_op(2, put("a", "2"), 0),
            op(3, get("a"), 1, 2, read(Some("2"))),
            op(1, put("a", "1"), 3, 4, Output::Put),
            op(3, get("a"), 5, 6, read(Some("2"))),
        ];
        assert_illegal(&history, "a");
    }

    #[test]
    fn unknown_put_can_explain_a_delete() {
        let history = vec![
            unknown_op(1, put("a", "1"), 0),
            op(2, delete("a"), 1, 2, Output::Delete { deleted: true }),
        ];
        assert_ok(&history);
        let history = vec![op(2, delete("a"), 1, 2, Output::Delete { deleted: true })];
        assert_illegal(&history, "a");
        // Not if the put was called after the delete returned.
        let history = vec![
            op(2, delete("a"), 1, 2, Output::Delete { deleted: true }),
            unknown_op(1, put("a", "1"), 3),
        ];
        assert_illegal(&history, "a");
    }

    #[test]
    fn chain_of_unknown_operations() {
        // Only put "b", then compare-and-swap "b" -> "c" explains the read.
        let history = vec![
            op(1, put("a", "a"), 0, 1, Output::Put),
            unknown_op(2, cas("a", Some("b"), "c"), 2),
            unknown_op(3, put("a", "b"), 3),
            op(4, get("a"), 10, 11, read(Some("c"))),
            op(4, get("a"), 12, 13, read(Some("c"))),
        ];
        assert_ok(&history);
        // ... and then "b" cannot be read any more.
        let mut history = history;
        history.push(op(4, get("a"), 14, 15, read(Some("b"))));
        assert_illegal(&history, "a");
    }

    #[test]
    fn many_unknown_puts_do_not_blow_up_the_search() {
        // Hundreds of pending puts of values nobody reads, and a stale read
        // at the end: proving it illegal must not try their subsets.
        let mut history = vec![
            op(1, put("a", "old"), 0, 1, Output::Put),
            op(1, put("a", "new"), 2, 3, Output::Put),
        ];
        for i in 0..300 {
            history.push(unknown_op(10 + i, put("a", &format!("lost{i}")), 4 + i));
            history.push(unknown_op(1000 + i, delete("a"), 4 + i));
        }
        history.push(op(2, get("a"), 500, 501, read(Some("new"))));
        history.push(op(2, get("a"), 502, 503, read(Some("old"))));
        match check_with_budget(&history, 1_000_000) {
            CheckResult::Illegal { key, .. } => assert_eq!(key, "a"),
            other => panic!("expected Illegal, got {other:?}"),
        }
        history.pop();
        assert_eq!(check_with_budget(&history, 1_000_000), CheckResult::Ok);
    }

    #[test]
    fn unknown_output_with_return_time_is_unknown() {
        let history = vec![
            Operation {
                client_id: 1,
                input: cas("a", None, "1"),
                call: 0,
                output: Output::Unknown,
                return_time: Some(1),
            },
            op(2, get("a"), 5, 6, read(None)),
            op(2, get("a"), 7, 8, read(Some("1"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn unknown_delete_and_cas_are_ok_either_way() {
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            unknown_op(2, delete("a"), 2),
            unknown_op(3, cas("a", Some("1"), "2"), 3),
            op(1, get("a"), 4, 5, read(Some("1"))),
            op(1, get("a"), 6, 7, read(Some("2"))),
            op(1, get("a"), 8, 9, read(None)),
        ];
        assert_ok(&history);
    }

    #[test]
    fn mismatched_output_is_illegal() {
        let history = vec![op(1, put("a", "1"), 0, 1, read(None))];
        let detail = assert_illegal(&history, "a");
        assert!(detail.contains("malformed"), "{detail}");
        let history = vec![op(1, get("a"), 2, 1, read(None))];
        let detail = assert_illegal(&history, "a");
        assert!(detail.contains("malformed"), "{detail}");
    }

    #[test]
    fn keys_are_checked_independently() {
        let history = vec![
            op(1, put("a", "1"), 0, 1, Output::Put),
            op(1, put("b", "1"), 2, 3, Output::Put),
            op(2, get("a"), 4, 5, read(Some("1"))),
            // Fine for "a" but stale for "b".
            op(2, get("b"), 6, 7, read(None)),
        ];
        assert_illegal(&history, "b");
    }

    #[test]
    fn tiny_budget_times_out() {
        let history = vec![
            op(1, put("a", "1"), 0, 10, Output::Put),
            op(2, put("a", "2"), 1, 11, Output::Put),
            op(3, get("a"), 12, 13, read(Some("1"))),
        ];
        assert_eq!(
            check_with_budget(&history, 1),
            CheckResult::Timeout { key: "a".to_owned() }
        );
        assert_eq!(check_with_budget(&history, 1_000), CheckResult::Ok);
    }

    #[test]
    fn recorder_records_concurrent_clients() {
        let recorder = Recorder::new();
        let store = Arc::new(Mutex::new(HashMap::<String, String>::new()));
        let threads: Vec<_> = (0..8u64)
            .map(|client| {
                let recorder = recorder.clone();
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut rng = XorShift::new(client + 1);
                    for i in 0..200 {
                        let key = format!("k{}", rng.below(3));
                        let pending = match rng.below(4) {
                            0 => {
                                let value = format!("c{client}-{i}");
                                let pending = recorder.invoke(client, put(&key, &value));
                                store.lock().unwrap().insert(key, value);
                                pending.complete(Output::Put);
                                continue;
                            }
                            1 => recorder.invoke(client, get(&key)),
                            2 => {
                                let pending = recorder.invoke(client, delete(&key));
                                let deleted = store.lock().unwrap().remove(&key).is_some();
                                pending.complete(Output::Delete { deleted });
                                continue;
                            }
                            _ => {
                                // Dropped without an outcome: recorded as
                                // unknown; it never takes effect.
                                let pending = recorder.invoke(client, cas(&key, None, &format!("u{i}")));
                                drop(pending);
                                continue;
                            }
                        };
                        let value = store.lock().unwrap().get(&key).cloned();
                        pending.complete(Output::Get { value });
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let history = recorder.history();
        assert_eq!(history.len(), 8 * 200);
        assert!(history.iter().any(Operation::is_unknown));
        assert_eq!(recorder.check(), CheckResult::Ok);
    }

    #[test]
    fn discarded_ops_are_not_recorded() {
        let recorder = Recorder::default();
        recorder.invoke(1, put("a", "1")).discard();
        recorder.invoke(1, put("a", "2")).unknown();
        recorder.invoke(1, get("a")).complete(read(None));
        let history = recorder.history();
        assert_eq!(history.len(), 2);
        assert!(history[0].return_time.is_none());
        assert!(history[1].return_time.is_some_and(|r| r >= history[1].call));
    }

    // -- Randomized histories ----------------------------------------------

    /// xorshift64* PRNG.
    struct XorShift(u64);

    impl XorShift {
        fn new(seed: u64) -> Self {
            XorShift(splitmix64(seed) | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    struct SimParams {
        seed: u64,
        ops: usize,
        clients: usize,
        keys: u64,
        /// Maximal distance of call and return from the linearization point.
        window: u64,
        /// Percentage of operations whose outcome is lost.
        unknown_percent: u64,
    }

    /// The model, directly on strings: the state after `op` and whether its
    /// output is possible (any output is, for unknown outcomes).
    fn brute_apply(op: &Operation, state: &Option<String>) -> (Option<String>, bool) {
        let unknown = op.is_unknown();
        match (&op.input, &op.output) {
            (Input::Put { value, .. }, _) => (Some(value.clone()), true),
            (Input::Get { .. }, Output::Get { value }) => (state.clone(), unknown || value == state),
            (Input::Get { .. }, _) => (state.clone(), unknown),
            (Input::Cas { expected, new, .. }, output) => {
                let matched = expected == state;
                let ok = unknown || *output == Output::Cas { succeeded: matched };
                (if matched { Some(new.clone()) } else { state.clone() }, ok)
            }
            (Input::Delete { .. }, output) => {
                let ok = unknown
                    || *output
                        == Output::Delete {
                            deleted: state.is_some(),
                        };
                (None, ok)
            }
        }
    }

    /// Exhaustive search over orders of one key's operations: known ones
    /// must all be placed, unknown ones may be left out, and an operation
    /// can be placed once every operation that returned before its call is.
    fn brute_force(history: &[Operation], placed: &mut Vec<bool>, state: &Option<String>) -> bool {
        if (0..history.len()).all(|i| placed[i] || history[i].is_unknown()) {
            return true;
        }
        for i in 0..history.len() {
            if placed[i] {
                continue;
            }
            let ready = (0..history.len()).all(|j| {
                placed[j] || history[j].is_unknown() || history[j].return_time.is_none_or(|r| r >= history[i].call)
            });
            if !ready {
                continue;
            }
            let (next, ok) = brute_apply(&history[i], state);
            if ok {
                placed[i] = true;
                let found = brute_force(history, placed, &next);
                placed[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = XorShift::new(99);
        let values = ["x", "y", "z", "w"];
        let value = |rng: &mut XorShift| values[rng.below(4) as usize].to_owned();
        let (mut legal, mut illegal) = (0, 0);
        for _ in 0..30_000 {
            let n = 1 + rng.below(8) as usize;
            let mut history = Vec::new();
            for client in 0..n as u64 {
                let call = rng.below(8);
                let ret = call + rng.below(6);
                let (input, output) = match rng.below(4) {
                    0 => (put("a", &value(&mut rng)), Output::Put),
                    1 => {
                        let seen = (rng.below(4) > 0).then(|| value(&mut rng));
                        (get("a"), Output::Get { value: seen })
                    }
                    2 => {
                        let expected = (rng.below(3) > 0).then(|| value(&mut rng));
                        let input = Input::Cas {
                            key: "a".to_owned(),
                            expected,
                            new: value(&mut rng),
                        };
                        (
                            input,
                            Output::Cas {
                                succeeded: rng.below(2) == 0,
                            },
                        )
                    }
                    _ => (
                        delete("a"),
                        Output::Delete {
                            deleted: rng.below(2) == 0,
                        },
                    ),
                };
                let unknown = rng.below(5) == 0;
                history.push(Operation {
                    client_id: client,
                    input,
                    call,
                    output: if unknown { Output::Unknown } else { output },
                    return_time: if unknown { None } else { Some(ret) },
                });
            }
            let expected = brute_force(&history, &mut vec![false; n], &None);
            let quick = check(&history);
            let search_only = check_impl(&history, DEFAULT_MAX_STEPS_PER_KEY, false);
            assert_eq!(quick.is_ok(), expected, "{history:#?}\n{quick}");
            assert_eq!(search_only.is_ok(), expected, "{history:#?}\n{search_only}");
            if expected {
                legal += 1;
            } else {
                illegal += 1;
            }
        }
        // Both verdicts are well represented.
        assert!(legal > 2_000 && illegal > 2_000, "{legal} legal, {illegal} illegal");
    }

    /// Simulates clients of a truly linearizable store: operations are
    /// executed one by one at strictly increasing linearization points, and
    /// each one's call and return are placed randomly around its point
    /// (respecting that every client is sequential). Written values are
    /// unique.
    fn simulate(p: &SimParams) -> Vec<Operation> {
        let mut rng = XorShift::new(p.seed);
        let mut store: HashMap<String, String> = HashMap::new();
        let mut free_at = vec![0u64; p.clients];
        let mut history = Vec::with_capacity(p.ops);
        let mut now = 0u64;
        let mut counter = 0u64;
        while history.len() < p.ops {
            now += 1 + rng.below(4);
            let ready: Vec<usize> = (0..p.clients).filter(|&c| free_at[c] < now).collect();
            if ready.is_empty() {
                continue;
            }
            let client = ready[rng.below(ready.len() as u64) as usize];
            let slack = (now - free_at[client] - 1).min(p.window);
            let call = now - rng.below(slack + 1);
            let ret = now + rng.below(p.window + 1);
            free_at[client] = ret;
            let lost = rng.below(100) < p.unknown_percent;
            // A lost operation takes effect (at `now`) or never does.
            let effective = !lost || rng.below(2) == 0;

            let key = format!("k{}", rng.below(p.keys));
            let current = store.get(&key).cloned();
            counter += 1;
            let fresh = format!("v{counter}");
            let (input, output) = match rng.below(100) {
                0..35 => {
                    if effective {
                        store.insert(key.clone(), fresh.clone());
                    }
                    (put(&key, &fresh), Output::Put)
                }
                35..75 => (get(&key), Output::Get { value: current }),
                75..90 => {
                    let expected = match rng.below(4) {
                        0 | 1 => current.clone(),
                        2 => None,
                        _ => Some(format!("v{}", rng.below(counter) + 1)),
                    };
                    let succeeded = expected == current;
                    if succeeded && effective {
                        store.insert(key.clone(), fresh.clone());
                    }
                    let input = Input::Cas {
                        key: key.clone(),
                        expected,
                        new: fresh,
                    };
                    (input, Output::Cas { succeeded })
                }
                _ => {
                    let deleted = current.is_some();
                    if effective {
                        store.remove(&key);
                    }
                    (delete(&key), Output::Delete { deleted })
                }
            };
            history.push(Operation {
                client_id: client as u64,
                input,
                call,
                output: if lost { Output::Unknown } else { output },
                return_time: if lost { None } else { Some(ret) },
            });
        }
        history
    }

    fn params(seed: u64) -> SimParams {
        SimParams {
            seed,
            ops: 4000,
            clients: 16,
            keys: 1,
            window: 40,
            unknown_percent: 0,
        }
    }

    /// Index of a known `Get` of a present value near the middle.
    fn middle_read(history: &[Operation]) -> usize {
        (history.len() / 2..history.len())
            .find(|&i| {
                matches!(history[i].input, Input::Get { .. })
                    && !history[i].is_unknown()
                    && matches!(history[i].output, Output::Get { value: Some(_) })
            })
            .expect("some read")
    }

    #[test]
    fn random_linearizable_history_is_ok() {
        for seed in 1..=3 {
            let history = simulate(&params(seed));
            assert_ok(&history);
        }
    }

    #[test]
    fn random_history_with_many_keys_is_ok() {
        let history = simulate(&SimParams {
            ops: 10_000,
            keys: 5,
            clients: 32,
            ..params(7)
        });
        assert_ok(&history);
    }

    #[test]
    fn random_history_with_unknown_outcomes_is_ok() {
        for seed in 10..=12 {
            let history = simulate(&SimParams {
                unknown_percent: 1,
                ..params(seed)
            });
            assert!(history.iter().any(Operation::is_unknown));
            assert_ok(&history);
        }
    }

    #[test]
    fn random_history_with_bogus_read_is_illegal() {
        let mut history = simulate(&params(4));
        let index = middle_read(&history);
        history[index].output = read(Some("bogus"));
        let detail = assert_illegal(&history, "k0");
        assert!(detail.contains("which no operation writes"), "{detail}");
        // The search alone finds it too, and names the read as the blocking
        // operation.
        let detail = assert_search_illegal(&history, "k0");
        assert!(detail.contains(&format!("returns):\n  #{index} ")), "{detail}");
    }

    #[test]
    fn random_history_with_unknown_outcomes_and_bogus_read_is_illegal() {
        let mut history = simulate(&SimParams {
            ops: 2000,
            clients: 4,
            unknown_percent: 2,
            ..params(8)
        });
        assert!(history.iter().any(Operation::is_unknown));
        let index = middle_read(&history);
        history[index].output = read(Some("bogus"));
        assert_search_illegal(&history, "k0");
    }

    #[test]
    fn random_history_with_read_from_the_future_is_illegal() {
        let mut history = simulate(&params(5));
        let index = middle_read(&history);
        let ret = history[index].return_time.unwrap();
        // A value first written by a put called after the read returned.
        let future = history
            .iter()
            .find_map(|op| match &op.input {
                Input::Put { value, .. } if op.call > ret => Some(value.clone()),
                _ => None,
            })
            .expect("a later put");
        history[index].output = Output::Get { value: Some(future) };
        let detail = assert_illegal(&history, "k0");
        assert!(detail.contains("after #"), "{detail}");
        assert_search_illegal(&history, "k0");
    }

    #[test]
    fn random_history_with_stale_read_is_illegal() {
        // Make a read that saw the value of put W return instead the value of
        // a put that completed before W was called: W overwrote it before
        // the read, and values are unique, so it cannot be seen again.
        let mut history = simulate(&SimParams { window: 5, ..params(6) });
        let mut found = false;
        'outer: for index in history.len() / 2..history.len() {
            let Input::Get { .. } = history[index].input else {
                continue;
            };
            let Output::Get { value: Some(seen) } = history[index].output.clone() else {
                continue;
            };
            // The put that wrote `seen`, and an earlier put that completed
            // before it was called: that earlier value is certainly stale.
            let Some(writer) = history.iter().position(|op| match &op.input {
                Input::Put { value, .. } => *value == seen,
                _ => false,
            }) else {
                continue;
            };
            // The read must follow the writer in real time.
            if history[writer].return_time.is_none_or(|r| r >= history[index].call) {
                continue;
            }
            let writer_call = history[writer].call;
            for earlier in (0..writer).rev() {
                let Input::Put { value, .. } = &history[earlier].input else {
                    continue;
                };
                if history[earlier].return_time.is_some_and(|r| r < writer_call) {
                    let stale = value.clone();
                    history[index].output = read(Some(&stale));
                    found = true;
                    break 'outer;
                }
            }
        }
        assert!(found);
        assert_illegal(&history, "k0");
    }
}
