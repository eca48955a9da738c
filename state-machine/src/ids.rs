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
        /// and on disk it is a plain string, as a `String` was. A name decoded from an entry
        /// is the entry's own until its job is created, which then takes the copy the
        /// indexes already hold (`Indexes::share_names`); jobs restored from a snapshot
        /// keep their own.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub struct $name(pub Arc<str>);

        /// Decoded straight from the borrowed text into its `Arc` (serde's own `Arc<str>`
        /// goes through a `Box<str>` first, an allocation and a copy more per name, on
        /// every entry a replica applies).
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_newtype_struct(stringify!($name), SharedText).map(Self)
            }
        }

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

/// Decodes a name (as a newtype or as bare text, whichever the format gives) into shared text.
struct SharedText;

impl<'de> serde::de::Visitor<'de> for SharedText {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name (text)")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Arc<str>, E> {
        Ok(Arc::from(text))
    }

    /// Text a format hands over as bytes, as `String` took it: UTF-8 or refused.
    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Arc<str>, E> {
        std::str::from_utf8(bytes)
            .map(Arc::from)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self))
    }

    /// `deserialize_string`, as `String` asks: a reader-based format (postcard's io
    /// flavors) then keeps the text in scratch space rather than the caller's buffer.
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<Arc<str>, D::Error> {
        d.deserialize_string(SharedText)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = [
        "",
        "acme",
        "ünïcode-tenant",
        "a-rather-longer-job-type-name",
    ];

    /// Logs, snapshots and archives written while names were `String` still read, and what
    /// is written now reads as it did: the bytes are the same either way.
    #[test]
    fn names_encode_and_decode_as_strings_did() {
        for text in NAMES {
            let owned = text.to_owned();
            let name = TenantId::from(text);
            let as_string = postcard::to_stdvec(&owned).unwrap();
            assert_eq!(postcard::to_stdvec(&name).unwrap(), as_string, "{text:?}");
            assert_eq!(
                postcard::from_bytes::<TenantId>(&as_string).unwrap(),
                name,
                "{text:?}"
            );
            let json = serde_json::to_string(&owned).unwrap();
            assert_eq!(serde_json::to_string(&name).unwrap(), json, "{text:?}");
            assert_eq!(
                serde_json::from_str::<JobType>(&json).unwrap(),
                JobType::from(text),
                "{text:?}"
            );
        }
    }

    /// A format that hands text over as bytes (serde's own `BytesDeserializer` does) gets
    /// the name when they are UTF-8, a refusal when not, as `String` did.
    #[test]
    fn a_name_given_as_bytes_is_taken_when_it_is_utf8() {
        use serde::de::value::{BytesDeserializer, Error};
        let utf8 = BytesDeserializer::<Error>::new("ünïcode".as_bytes());
        assert_eq!(
            TenantId::deserialize(utf8).unwrap(),
            TenantId::from("ünïcode")
        );
        let not_utf8 = BytesDeserializer::<Error>::new(&[0xff, 0xfe]);
        assert!(TenantId::deserialize(not_utf8).is_err());
    }

    #[test]
    fn a_name_that_is_not_text_is_refused() {
        assert!(serde_json::from_str::<WorkerId>("42").is_err());
        assert!(postcard::from_bytes::<WorkerId>(&[3, 0xff, 0xfe, 0xfd]).is_err());
    }
}
