//! Newtypes for every identifier, so a job id can never be passed where a lease id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Shared text (`Arc<str>`): a job's name is copied into every index and journal note
        /// that mentions it, and a copy is a reference count, not an allocation. On the wire
        /// and on disk it is a plain string.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub Arc<str>);

        impl $name {
            /// Wraps a name; validation happens where commands are checked.
            pub fn new(name: impl Into<Arc<str>>) -> Self {
                Self(name.into())
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self(name.into())
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                Self(name.into())
            }
        }
    };
}

numeric_id!(
    /// A job's id, assigned by the ledger in enqueue order.
    JobId, "job-"
);
numeric_id!(
    /// A fencing token: unique and strictly increasing across the cluster, derived from the
    /// log index of the `Lease` command that granted it.
    LeaseId, "lease-"
);
numeric_id!(
    /// A plan's id, assigned by the ledger.
    PlanId, "plan-"
);
numeric_id!(
    /// An incident opened by a tripped circuit breaker.
    IncidentId, "incident-"
);

/// A client's self-chosen id, unique in the cluster (a UUID, say): the key of its write
/// session, which carries one write at a time.
pub type ClientId = String;

name_id!(
    /// The tenant a job belongs to; the unit of fairness and quotas.
    TenantId
);
name_id!(
    /// The kind of work a job is; workers lease by job type.
    JobType
);
name_id!(
    /// A worker's self-chosen identity, recorded with each attempt.
    WorkerId
);
name_id!(
    /// A recurring schedule's operator-chosen name.
    ScheduleId
);
