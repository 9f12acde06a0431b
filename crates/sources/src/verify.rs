//! Signature and secret checks, over the raw bytes as received (never a re-serialization).
//! Every comparison of secret material is constant-time.

use crate::error::RequestError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tributary_model::{Verification, VerificationScheme};

/// Standard Webhooks: a timestamp further than this from now is refused (replay protection).
pub const TOLERANCE_SECS: i64 = 300;

/// Header lookup, case-insensitive by contract: callers pass lower-cased names.
pub trait Headers {
    fn get(&self, lower_name: &str) -> Option<&str>;
}

impl Headers for [(String, String)] {
    fn get(&self, lower_name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k == lower_name).map(|(_, v)| v.as_str())
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, lower_name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), lower_name)
    }
}

/// The header names that carry credentials under `v`: stripped before anything is stored.
pub fn credential_headers(v: &Verification) -> Vec<String> {
    let mut names: Vec<String> = ["authorization", "x-signature", "webhook-signature", "svix-signature"]
        .into_iter()
        .map(String::from)
        .collect();
    names.push(shared_header_name(v));
    names
}

fn shared_header_name(v: &Verification) -> String {
    v.header.as_deref().unwrap_or("x-webhook-secret").to_ascii_lowercase()
}

/// Check `body` (decoded, as received) against `v`. `now_secs` is the caller's clock.
/// Returns the verification status to record: `verified` or `unverified` (scheme `none`).
pub fn verify(
    v: &Verification,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
) -> Result<&'static str, RequestError> {
    let secrets = v.secrets.iter().filter(|s| !s.is_empty());
    match v.scheme {
        VerificationScheme::None => Ok("unverified"),
        VerificationScheme::SegmentSignature => {
            let given = Headers::get(headers, "x-signature").ok_or(RequestError::MissingSignature("X-Signature header"))?;
            let given = hex::decode(given.trim()).map_err(|_| RequestError::SignatureMismatch("X-Signature"))?;
            let first = first_array_element(body);
            for secret in secrets {
                if hmac_sha1(secret.as_bytes(), body).ct_eq(&given).into() {
                    return Ok("verified");
                }
                if let Some(e0) = first {
                    if hmac_sha1(secret.as_bytes(), e0).ct_eq(&given).into() {
                        return Ok("verified");
                    }
                }
            }
            Err(RequestError::SignatureMismatch("X-Signature"))
        }
        VerificationScheme::StandardWebhooks => {
            let h = |std: &str, svix: &str| Headers::get(headers, std).or_else(|| Headers::get(headers, svix));
            let id = h("webhook-id", "svix-id").ok_or(RequestError::MissingSignature("webhook-id header"))?;
            let ts = h("webhook-timestamp", "svix-timestamp")
                .ok_or(RequestError::MissingSignature("webhook-timestamp header"))?;
            let sigs = h("webhook-signature", "svix-signature")
                .ok_or(RequestError::MissingSignature("webhook-signature header"))?;
            let ts_num: i64 = ts.trim().parse().map_err(|_| RequestError::SignatureMismatch("webhook-timestamp"))?;
            if (now_secs - ts_num).abs() > TOLERANCE_SECS {
                return Err(RequestError::StaleTimestamp(now_secs - ts_num));
            }
            for secret in secrets {
                let Some(key) = standard_webhooks_key(secret) else { continue };
                let expected = standard_webhooks_signature(&key, id, ts.trim(), body);
                for entry in sigs.split(' ') {
                    if let Some(sig) = entry.strip_prefix("v1,") {
                        if let Ok(sig) = B64.decode(sig) {
                            if expected.ct_eq(&sig).into() {
                                return Ok("verified");
                            }
                        }
                    }
                }
            }
            Err(RequestError::SignatureMismatch("webhook-signature"))
        }
        VerificationScheme::SharedSecretHeader => {
            let name = shared_header_name(v);
            let given = Headers::get(headers, &name).ok_or(RequestError::MissingSignature("shared-secret header"))?;
            any_equal(secrets, given.trim()).then_some("verified").ok_or(RequestError::SignatureMismatch("shared secret"))
        }
        VerificationScheme::Bearer => {
            let auth = Headers::get(headers, "authorization").ok_or(RequestError::MissingSignature("Authorization header"))?;
            let token = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
                .ok_or(RequestError::MissingSignature("Bearer token"))?;
            any_equal(secrets, token.trim()).then_some("verified").ok_or(RequestError::SignatureMismatch("Bearer token"))
        }
    }
}

fn any_equal<'a>(secrets: impl Iterator<Item = &'a String>, given: &str) -> bool {
    // Check every secret (no early exit) so timing does not reveal which one matched.
    secrets.fold(false, |ok, s| ok | bool::from(s.as_bytes().ct_eq(given.as_bytes())))
}

/// The raw bytes of element 0 of a top-level JSON array: what Segment signs for a batch.
pub fn first_array_element(body: &[u8]) -> Option<&[u8]> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'[' {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    let first = items.first()?.get();
    // `first` borrows from `text`; find its offset to return a slice of `body`.
    let offset = first.as_ptr() as usize - text.as_ptr() as usize;
    Some(&body[offset..offset + first.len()])
}

pub fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    let s = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(s).ok()
}

pub fn standard_webhooks_signature(key: &[u8], id: &str, ts: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Sign like Standard Webhooks senders do (`v1,<base64>`): for tests and the load generator.
pub fn sign_standard_webhooks(secret: &str, id: &str, ts: &str, body: &[u8]) -> Option<String> {
    let key = standard_webhooks_key(secret)?;
    Some(format!("v1,{}", B64.encode(standard_webhooks_signature(&key, id, ts, body))))
}

/// Sign like Segment does (hex HMAC-SHA1).
pub fn sign_segment(secret: &str, signed_bytes: &[u8]) -> String {
    hex::encode(hmac_sha1(secret.as_bytes(), signed_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn scheme(scheme: VerificationScheme, secrets: &[&str]) -> Verification {
        Verification { scheme, header: None, secrets: secrets.iter().map(|s| s.to_string()).collect() }
    }

    /// The public vector from standard-webhooks `libraries/python/tests/test_webhooks.py`.
    #[test]
    fn standard_webhooks_public_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign_standard_webhooks(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let h = hdrs(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", "v1,bm90LXRoaXM= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ]);
        let v = scheme(VerificationScheme::StandardWebhooks, &["whsec_b2xkLW9uZQ==", secret]);
        assert_eq!(verify(&v, &h, body, 1614265330 + 10), Ok("verified"));
        // outside the 5 minute tolerance, either direction
        assert_eq!(verify(&v, &h, body, 1614265330 + 301), Err(RequestError::StaleTimestamp(301)));
        assert_eq!(verify(&v, &h, body, 1614265330 - 301), Err(RequestError::StaleTimestamp(-301)));
        // tampered body
        assert_eq!(
            verify(&v, &h, br#"{"test": 2432232315}"#, 1614265330),
            Err(RequestError::SignatureMismatch("webhook-signature"))
        );
        // svix-* names work too
        let svix = hdrs(&[
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            ("svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ]);
        assert_eq!(verify(&v, &svix, body, 1614265330), Ok("verified"));
    }

    #[test]
    fn segment_signature_whole_body_and_first_element() {
        // Known vector: HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            sign_segment("key", b"The quick brown fox jumps over the lazy dog"),
            "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
        let single = br#"{"type":"track","event":"A","userId":"u1"}"#;
        let v = scheme(VerificationScheme::SegmentSignature, &["old", "s3cret"]);
        let h = hdrs(&[("x-signature", &sign_segment("s3cret", single))]);
        assert_eq!(verify(&v, &h, single, 0), Ok("verified"));

        let e0 = br#"{"type":"track","event":"A","userId":"u1","properties":{"n":1.50}}"#;
        let batch = [b"[".as_slice(), e0, br#",{"type":"track","event":"B","userId":"u2"}]"#].concat();
        assert_eq!(first_array_element(&batch), Some(e0.as_slice()));
        let h = hdrs(&[("x-signature", &sign_segment("s3cret", e0))]);
        assert_eq!(verify(&v, &h, &batch, 0), Ok("verified"));
        // tampering with element 0 is detected
        let tampered = String::from_utf8(batch.clone()).unwrap().replacen("\"A\"", "\"Z\"", 1);
        assert!(verify(&v, &h, tampered.as_bytes(), 0).is_err());
        // a missing header is its own error
        assert_eq!(verify(&v, &hdrs(&[]), &batch, 0), Err(RequestError::MissingSignature("X-Signature header")));
    }

    #[test]
    fn shared_secret_and_bearer() {
        let mut v = scheme(VerificationScheme::SharedSecretHeader, &["a", "b"]);
        assert_eq!(verify(&v, &hdrs(&[("x-webhook-secret", "b")]), b"{}", 0), Ok("verified"));
        assert!(verify(&v, &hdrs(&[("x-webhook-secret", "c")]), b"{}", 0).is_err());
        v.header = Some("X-Rudder-Secret".into());
        assert_eq!(verify(&v, &hdrs(&[("x-rudder-secret", "a")]), b"{}", 0), Ok("verified"));
        let v = scheme(VerificationScheme::Bearer, &["tok"]);
        assert_eq!(verify(&v, &hdrs(&[("authorization", "Bearer tok")]), b"{}", 0), Ok("verified"));
        assert!(verify(&v, &hdrs(&[("authorization", "Bearer nope")]), b"{}", 0).is_err());
        assert!(verify(&v, &hdrs(&[("authorization", "Basic dG9rOg==")]), b"{}", 0).is_err());
        // no secrets configured: nothing verifies
        let v = scheme(VerificationScheme::Bearer, &[]);
        assert!(verify(&v, &hdrs(&[("authorization", "Bearer ")]), b"{}", 0).is_err());
    }
}
