//! The store's errors. Messages are etcd's own (`etcdserver: ...`), because
//! etcd clients and the Kubernetes apiserver match on them.

use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: invalid {0}")]
    InvalidArgument(String),
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: data corruption: {0}")]
    Corrupt(String),
    #[error("etcdserver: storage: {0}")]
    Storage(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Storage(other.to_string()),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        use StoreError::*;
        let code = match &e {
            Compacted { .. } | FutureRevision => Code::OutOfRange,
            EmptyKey | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey | RequestTooLarge
            | InvalidArgument(_) => Code::InvalidArgument,
            KeyNotFound => Code::InvalidArgument,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists
            | PeerUrlExists
            | MemberExists
            | NotLearner
            | LearnerNotReady
            | NotEnoughStartedMembers
            | LeaseTtlTooLarge => Code::FailedPrecondition,
            NoLeader | NotLeader | Timeout | Stopped => Code::Unavailable,
            Corrupt(_) => Code::DataLoss,
            Storage(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
