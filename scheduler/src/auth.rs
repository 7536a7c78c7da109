//! Bearer tokens, compared in constant time: both sides are hashed first (so neither the
//! content nor the length of a token leaks through timing) and the digests compared with
//! `subtle`. Tokens never reach a log line, `/status` or an error message.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A token as the daemon keeps it: its sha256, never the text.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `given` is this token, in time independent of where they differ.
    pub fn matches(&self, given: &TokenDigest) -> bool {
        self.0.ct_eq(&given.0).into()
    }
}

/// The token of an `Authorization: Bearer <token>` header, if that is what it holds.
pub fn bearer(header: Option<&axum::http::HeaderValue>) -> Option<TokenDigest> {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(TokenDigest::of)
}

/// Whether the header carries `token`.
pub fn bearer_matches(header: Option<&axum::http::HeaderValue>, token: &str) -> bool {
    bearer(header).is_some_and(|given| TokenDigest::of(token).matches(&given))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_exact_token_matches() {
        let h = |s: &str| HeaderValue::from_str(s).ok();
        assert!(bearer_matches(
            h("Bearer sesame-sesame-1234").as_ref(),
            "sesame-sesame-1234"
        ));
        for bad in [
            "Bearer sesame-sesame-123",
            "Bearer sesame-sesame-12345",
            "bearer sesame-sesame-1234",
            "sesame-sesame-1234",
            "Bearer ",
        ] {
            assert!(
                !bearer_matches(h(bad).as_ref(), "sesame-sesame-1234"),
                "{bad}"
            );
        }
        assert!(!bearer_matches(None, "sesame-sesame-1234"));
    }
}
