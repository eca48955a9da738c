//! Signed answers: a DSSE envelope (Dead Simple Signing Envelope, the in-toto/sigstore
//! format) over a job's audit record, signed by the node's audit key, so that one answer
//! can be kept and checked offline, and reconciled with a bundle's `jobs.jsonl`.
//!
//! The signature is ed25519 over DSSE's pre-authentication encoding of the payload type and
//! the payload: `DSSEv1 <len(type)> <type> <len(payload)> <payload>`, lengths in decimal.
//! The envelope is DSSE's JSON: `payloadType`, `payload` and each signature's `sig` in
//! standard base64, `keyid` the audit key's id.

use super::format::key_id;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The payload type of a signed job.
pub const JOB_PAYLOAD_TYPE: &str = "application/vnd.rota.job+json";

/// The statement a signed job's payload holds: the job's audit line and where it was read.
pub const JOB_STATEMENT: &str = "rota-job/1";

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// The signature in base64.
    pub sig: String,
}

/// A DSSE envelope in its JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// The payload in base64.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// DSSE's pre-authentication encoding: what is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// `payload` of `payload_type` in an envelope signed by `key`.
pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Envelope {
    let signature = key.sign(&pae(payload_type, payload));
    Envelope {
        payload_type: payload_type.to_owned(),
        payload: STANDARD.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: key_id(&key.verifying_key()),
            sig: STANDARD.encode(signature.to_bytes()),
        }],
    }
}

/// Why an envelope does not verify.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("payload type {found:?}, not {expected:?}")]
    PayloadType { found: String, expected: String },
    #[error("no signature by key {0} (the envelope is signed by {1})")]
    NoSignature(String, String),
    #[error("the signature by key {0} does not verify: the payload or its type was changed, or signed with another key")]
    BadSignature(String),
}

/// The payload of the envelope in `json`, once `key` is found to have signed it as
/// `payload_type`.
pub fn open(json: &[u8], key: &VerifyingKey, payload_type: &str) -> Result<Vec<u8>, EnvelopeError> {
    let envelope: Envelope =
        serde_json::from_slice(json).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if envelope.payload_type != payload_type {
        return Err(EnvelopeError::PayloadType {
            found: envelope.payload_type,
            expected: payload_type.to_owned(),
        });
    }
    let payload = STANDARD
        .decode(envelope.payload.trim())
        .map_err(|e| EnvelopeError::Malformed(format!("payload: not base64 ({e})")))?;
    let id = key_id(key);
    let Some(signature) = envelope.signatures.iter().find(|s| s.keyid == id) else {
        let others: Vec<&str> = envelope
            .signatures
            .iter()
            .map(|s| s.keyid.as_str())
            .collect();
        return Err(EnvelopeError::NoSignature(id, others.join(", ")));
    };
    let bytes = STANDARD
        .decode(signature.sig.trim())
        .map_err(|e| EnvelopeError::Malformed(format!("sig: not base64 ({e})")))?;
    let signature = Signature::from_slice(&bytes)
        .map_err(|_| EnvelopeError::Malformed("sig: not an ed25519 signature".to_owned()))?;
    key.verify(&pae(payload_type, &payload), &signature)
        .map_err(|_| EnvelopeError::BadSignature(id))?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn pae_is_dsse_v1() {
        // The example of the DSSE specification's protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_signed_payload_opens_with_its_key_and_nothing_else() {
        let envelope = sign(&key(1), JOB_PAYLOAD_TYPE, b"{\"job_id\":7}");
        let json = serde_json::to_vec(&envelope).expect("encodes");
        let opened = open(&json, &key(1).verifying_key(), JOB_PAYLOAD_TYPE).expect("verifies");
        assert_eq!(opened, b"{\"job_id\":7}");

        let other = open(&json, &key(2).verifying_key(), JOB_PAYLOAD_TYPE);
        assert!(
            matches!(other, Err(EnvelopeError::NoSignature(..))),
            "{other:?}"
        );

        // The payload changed, the signature kept.
        let mut changed = envelope.clone();
        changed.payload = STANDARD.encode(b"{\"job_id\":8}");
        let json = serde_json::to_vec(&changed).expect("encodes");
        let refused = open(&json, &key(1).verifying_key(), JOB_PAYLOAD_TYPE);
        assert!(
            matches!(refused, Err(EnvelopeError::BadSignature(_))),
            "{refused:?}"
        );

        // Re-signed by another key under the first key's id.
        let mut forged = sign(&key(2), JOB_PAYLOAD_TYPE, b"{\"job_id\":8}");
        forged.signatures[0].keyid = key_id(&key(1).verifying_key());
        let json = serde_json::to_vec(&forged).expect("encodes");
        let refused = open(&json, &key(1).verifying_key(), JOB_PAYLOAD_TYPE);
        assert!(
            matches!(refused, Err(EnvelopeError::BadSignature(_))),
            "{refused:?}"
        );

        // Another type: the type is signed too.
        let json = serde_json::to_vec(&envelope).expect("encodes");
        let refused = open(&json, &key(1).verifying_key(), "text/plain");
        assert!(
            matches!(refused, Err(EnvelopeError::PayloadType { .. })),
            "{refused:?}"
        );
        assert!(matches!(
            open(b"{}", &key(1).verifying_key(), JOB_PAYLOAD_TYPE),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
