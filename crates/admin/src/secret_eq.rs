//! Comparing what a client sent with a secret (the admin token, a session's MAC or CSRF token)
//! so that the time taken says nothing about how much of it was right.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `given` equals `expected`, in time independent of both. Both are hashed first:
/// equal-length digests, so neither the secret's length nor the position of the first wrong
/// byte shows, and `subtle` compares the digests without an early exit.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn equal_only_when_equal() {
        let token = b"test-admin-token-0123456789";
        assert!(same_secret(token, token));
        assert!(!same_secret(b"test-admin-token-012345678X", token));
        assert!(!same_secret(b"Xest-admin-token-0123456789", token));
        assert!(!same_secret(b"test-admin-token-0123456789 ", token));
        assert!(!same_secret(b"", token));
        assert!(same_secret(b"", b""));
    }
}
