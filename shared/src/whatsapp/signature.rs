//! `X-Hub-Signature-256`: Meta signs every webhook body with the app secret.
//!
//! The header is `sha256=` and the lowercase hex HMAC-SHA256 of the body **bytes as sent**. Meta
//! escapes non-ASCII text (`\u00e9`) and sometimes `/` (`\/`) before signing, so a body that is
//! parsed and re-serialized never verifies: verification takes the raw bytes, before any parsing.
//! API Gateway may hand the body over base64-encoded; [`raw_body`] undoes that first.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header's name as Meta sends it; HTTP API events carry it lowercased.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

const PREFIX: &str = "sha256=";
const DIGEST_HEX_LEN: usize = 64;

/// The Meta app secret. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct AppSecret(Vec<u8>);

impl AppSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecret(<redacted>)")
    }
}

/// Why a signature was refused. Every one of them means: answer 401 and store nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {SIGNATURE_HEADER} header is missing")]
    Missing,
    #[error("the signature does not start with {PREFIX:?}")]
    WrongPrefix,
    #[error("the signature digest has {0} characters, not {DIGEST_HEX_LEN}")]
    WrongLength(usize),
    #[error("the signature digest is not hexadecimal")]
    NotHex,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks `header` (the whole `sha256=…` value) against `body`, in constant time.
pub fn verify(secret: &AppSecret, header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let digest_hex = header.strip_prefix(PREFIX).ok_or(SignatureError::WrongPrefix)?;
    if digest_hex.len() != DIGEST_HEX_LEN {
        return Err(SignatureError::WrongLength(digest_hex.len()));
    }
    let digest = hex::decode(digest_hex).map_err(|_| SignatureError::NotHex)?;
    let mut mac = secret.mac();
    mac.update(body);
    mac.verify_slice(&digest).map_err(|_| SignatureError::Mismatch)
}

/// The header value Meta would send for `body`: used by the sandbox and by tests.
pub fn sign(secret: &AppSecret, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// The body was flagged base64 but is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is flagged base64-encoded but does not decode: {0}")]
pub struct BodyEncodingError(String);

/// The bytes Meta signed: the body itself, or its base64 decoding when the gateway flagged it so.
pub fn raw_body(body: &str, is_base64_encoded: bool) -> Result<Vec<u8>, BodyEncodingError> {
    if is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body.trim()).map_err(|e| BodyEncodingError(e.to_string()))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> AppSecret {
        AppSecret::new("test_app_secret")
    }

    const ESCAPED_BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"id":"wamid.1","from":"1","timestamp":"1","type":"text","text":{"body":"caf\u00e9 \/ ok \ud83d\ude00"}}]}}]}]}"#;

    #[test]
    fn a_signature_made_over_the_bytes_verifies() {
        let header = sign(&secret(), ESCAPED_BODY);
        assert_eq!(verify(&secret(), Some(&header), ESCAPED_BODY), Ok(()));
    }

    #[test]
    fn a_known_digest_matches_an_independent_hmac() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231-style vector.
        let header = sign(&AppSecret::new("key"), b"The quick brown fox jumps over the lazy dog");
        assert_eq!(header, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    }

    #[test]
    fn re_serialized_json_does_not_verify() {
        let header = sign(&secret(), ESCAPED_BODY);
        let value: serde_json::Value = serde_json::from_slice(ESCAPED_BODY).unwrap();
        let reserialized = serde_json::to_vec(&value).unwrap();
        assert_ne!(reserialized, ESCAPED_BODY);
        assert_eq!(verify(&secret(), Some(&header), &reserialized), Err(SignatureError::Mismatch));
    }

    #[test]
    fn non_ascii_bytes_verify_as_sent() {
        let body = "{\"text\":\"Grüße, José 😀\"}".as_bytes();
        let header = sign(&secret(), body);
        assert_eq!(verify(&secret(), Some(&header), body), Ok(()));
        let nfd = "{\"text\":\"Gru\u{308}ße, Jose\u{301} 😀\"}".as_bytes();
        assert_eq!(verify(&secret(), Some(&header), nfd), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_missing_header_is_refused() {
        assert_eq!(verify(&secret(), None, ESCAPED_BODY), Err(SignatureError::Missing));
    }

    #[test]
    fn a_wrong_prefix_is_refused() {
        let header = sign(&secret(), ESCAPED_BODY).replacen("sha256=", "sha1=", 1);
        assert_eq!(verify(&secret(), Some(&header), ESCAPED_BODY), Err(SignatureError::WrongPrefix));
    }

    #[test]
    fn a_digest_of_the_wrong_length_is_refused() {
        let mut header = sign(&secret(), ESCAPED_BODY);
        header.pop();
        assert_eq!(verify(&secret(), Some(&header), ESCAPED_BODY), Err(SignatureError::WrongLength(63)));
    }

    #[test]
    fn a_digest_that_is_not_hex_is_refused() {
        let header = format!("sha256={}", "zz".repeat(32));
        assert_eq!(verify(&secret(), Some(&header), ESCAPED_BODY), Err(SignatureError::NotHex));
    }

    #[test]
    fn another_secret_does_not_verify() {
        let header = sign(&AppSecret::new("another"), ESCAPED_BODY);
        assert_eq!(verify(&secret(), Some(&header), ESCAPED_BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_base64_body_verifies_after_decoding_and_not_before() {
        let header = sign(&secret(), ESCAPED_BODY);
        let encoded = base64::engine::general_purpose::STANDARD.encode(ESCAPED_BODY);
        let raw = raw_body(&encoded, true).unwrap();
        assert_eq!(verify(&secret(), Some(&header), &raw), Ok(()));
        let undecoded = raw_body(&encoded, false).unwrap();
        assert_eq!(verify(&secret(), Some(&header), &undecoded), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_body_flagged_base64_that_is_not_is_an_error() {
        assert!(raw_body("{not base64}", true).is_err());
    }

    #[test]
    fn the_secret_is_never_printed() {
        assert_eq!(format!("{:?}", secret()), "AppSecret(<redacted>)");
    }
}
