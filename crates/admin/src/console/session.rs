//! Console sessions: the admin token, given once at sign-in, becomes a signed cookie.
//!
//! Nothing is kept in the admin process. The session cookie is `v1.<expires>.<nonce>.<mac>`,
//! the MAC an HMAC-SHA256 under a key derived from the admin token, so every admin replica
//! with the same token accepts the cookies of the others, and changing the token ends every
//! session. Changes need a CSRF token besides (double submit): `X-CSRF-Token` must carry the
//! HMAC of the session's nonce, which the console reads from a second, script-readable cookie.
//! A page of another site can neither read that cookie nor compute the value, and both cookies
//! are `SameSite=Strict` as well.
//!
//! Signing out clears both cookies in the browser. A session cookie copied elsewhere stays
//! valid until it expires ([`SESSION_SECS`]); it cannot be copied by the page's scripts
//! (`HttpOnly`). To end every session at once, change the admin token.

use crate::error::ApiError;
use crate::secret_eq::same_secret;
use crate::shared::{body_of, AdminState, ApiResult, JsonBody, St};
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

pub const SESSION_COOKIE: &str = "tributary_session";
pub const CSRF_COOKIE: &str = "tributary_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts (8 hours: a working day).
pub const SESSION_SECS: i64 = 8 * 3600;

/// A signed-in session, as its cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub expires: i64,
    pub nonce: String,
}

fn mac(token: &str, parts: &[&[u8]]) -> Vec<u8> {
    // The signing key is derived from the admin token (never the token itself), so a leaked
    // cookie says nothing about the token.
    let mut k = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    k.update(b"tributary console session key v1");
    let key = k.finalize().into_bytes();
    let mut m = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
        m.update(b"\n");
    }
    m.finalize().into_bytes().to_vec()
}

/// The session cookie's value for a new session.
pub fn issue(token: &str, now: i64) -> (Session, String) {
    let nonce = B64.encode(uuid::Uuid::new_v4().as_bytes());
    let s = Session { expires: now + SESSION_SECS, nonce };
    let exp = s.expires.to_string();
    let sig = B64.encode(mac(token, &[b"session", exp.as_bytes(), s.nonce.as_bytes()]));
    let value = format!("v1.{exp}.{}.{sig}", s.nonce);
    (s, value)
}

/// Check a session cookie's value: signed under this token, not expired.
pub fn verify(token: &str, value: &str, now: i64) -> Option<Session> {
    if token.is_empty() {
        return None;
    }
    let mut it = value.split('.');
    let (Some("v1"), Some(exp), Some(nonce), Some(sig), None) = (it.next(), it.next(), it.next(), it.next(), it.next()) else {
        return None;
    };
    let expected = mac(token, &[b"session", exp.as_bytes(), nonce.as_bytes()]);
    if !same_secret(&B64.decode(sig).ok()?, &expected) {
        return None;
    }
    let expires: i64 = exp.parse().ok()?;
    (expires > now).then(|| Session { expires, nonce: nonce.to_string() })
}

/// The CSRF token of a session: changes must send it in `X-CSRF-Token`.
pub fn csrf_token(token: &str, s: &Session) -> String {
    B64.encode(mac(token, &[b"csrf", s.nonce.as_bytes()]))
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over TLS: directly, or through a proxy that says so.
fn over_tls(headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    h("x-forwarded-proto").split(',').next().is_some_and(|p| p.trim() == "https")
        || h("forwarded").split([';', ',']).any(|kv| kv.trim() == "proto=https")
}

fn set_cookie(name: &str, value: &str, max_age: i64, http_only: bool, secure: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are base64 and digits")
}

/// The session cookie and its CSRF cookie, to set (`Some`) or clear (`None`).
pub fn cookies(headers: &HeaderMap, session: Option<(&str, &str)>) -> [HeaderValue; 2] {
    let secure = over_tls(headers);
    match session {
        Some((value, csrf)) => [
            set_cookie(SESSION_COOKIE, value, SESSION_SECS, true, secure),
            set_cookie(CSRF_COOKIE, csrf, SESSION_SECS, false, secure),
        ],
        None => [set_cookie(SESSION_COOKIE, "", 0, true, secure), set_cookie(CSRF_COOKIE, "", 0, false, secure)],
    }
}

/// What a request's cookies say, for the admin API's authentication: `Ok(false)` when it
/// carries no session cookie at all, `Ok(true)` when its session is valid (and, for a change,
/// its CSRF header matches), an error naming the problem otherwise.
pub fn authorize(st: &AdminState, headers: &HeaderMap, method: &Method, now: i64) -> Result<bool, ApiError> {
    let Some(value) = cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    let session = verify(&st.token, value, now).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "session_expired", "the console session has ended or is not valid: sign in again")
    })?;
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same_secret(given.as_bytes(), csrf_token(&st.token, &session).as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "a change made with the console session needs the `X-CSRF-Token` header of that session",
            ));
        }
    }
    Ok(true)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `POST /console/session` `{"token"}`: sign in.
pub async fn sign_in(State(st): St, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        token: String,
    }
    let b: Body = body_of(body)?;
    if b.token.is_empty() {
        return Err(ApiError::invalid("token", "enter the admin token"));
    }
    if st.token.is_empty() || !same_secret(b.token.as_bytes(), st.token.as_bytes()) {
        // A little time per wrong guess.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "that is not the admin token");
        e.details = json!({"field": "token"});
        return Err(e);
    }
    let (session, value) = issue(&st.token, now_secs());
    let csrf = csrf_token(&st.token, &session);
    let mut resp = (StatusCode::OK, Json(json!({"signed_in": true, "expires_at": session.expires * 1000, "csrf_token": csrf}))).into_response();
    for c in cookies(&headers, Some((&value, &csrf))) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    Ok(resp)
}

/// `GET /console/session`: whether the browser is signed in (with the expiry and the CSRF
/// token) or not. Not being signed in is an answer here, not an error.
pub async fn current(State(st): St, headers: HeaderMap) -> Response {
    match cookie(&headers, SESSION_COOKIE).and_then(|v| verify(&st.token, v, now_secs())) {
        Some(s) => Json(json!({"signed_in": true, "expires_at": s.expires * 1000, "csrf_token": csrf_token(&st.token, &s)})).into_response(),
        None => Json(json!({"signed_in": false})).into_response(),
    }
}

/// `DELETE /console/session`: sign out (clears both cookies; needs the CSRF header, as every
/// change made with the session does).
pub async fn sign_out(State(st): St, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&st, &headers, &Method::DELETE, now_secs()) {
        if e.status == StatusCode::FORBIDDEN {
            return e.into_response();
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for c in cookies(&headers, None) {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "admin-token-0123456789";

    #[test]
    fn a_session_verifies_under_its_token_until_it_expires() {
        let (s, v) = issue(T, 1_000);
        assert_eq!(verify(T, &v, 1_001), Some(s.clone()));
        assert_eq!(verify(T, &v, 1_000 + SESSION_SECS), None, "expired");
        assert_eq!(verify("another-token", &v, 1_001), None, "another token, another key");
        assert_eq!(verify("", &v, 1_001), None, "no token, no console");
        // Any change to the value breaks it: a later expiry, another nonce, another MAC.
        let parts: Vec<&str> = v.split('.').collect();
        let later = format!("v1.{}.{}.{}", s.expires + 3600, parts[2], parts[3]);
        assert_eq!(verify(T, &later, 1_001), None);
        let (_, other) = issue(T, 1_000);
        let mixed = format!("v1.{}.{}.{}", parts[1], other.split('.').nth(2).unwrap(), parts[3]);
        assert_eq!(verify(T, &mixed, 1_001), None);
        assert_eq!(verify(T, &format!("{v}.x"), 1_001), None);
        assert_eq!(verify(T, "garbage", 1_001), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let (a, _) = issue(T, 1_000);
        let (b, _) = issue(T, 1_000);
        assert_eq!(csrf_token(T, &a), csrf_token(T, &a));
        assert_ne!(csrf_token(T, &a), csrf_token(T, &b));
        assert_ne!(csrf_token(T, &a), csrf_token("another-token", &a));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let mut h = HeaderMap::new();
        let [s, c] = cookies(&h, Some(("v", "c")));
        let (s, c) = (s.to_str().unwrap().to_string(), c.to_str().unwrap().to_string());
        assert!(s.contains("HttpOnly") && s.contains("SameSite=Strict") && !s.contains("Secure"), "{s}");
        assert!(!c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let [s, c] = cookies(&h, Some(("v", "c")));
        assert!(s.to_str().unwrap().ends_with("; Secure") && c.to_str().unwrap().ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert("forwarded", HeaderValue::from_static("for=10.0.0.1;proto=https"));
        assert!(cookies(&h, None)[0].to_str().unwrap().contains("Max-Age=0; SameSite=Strict; HttpOnly; Secure"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; tributary_session=v1.x.y.z"));
        h.append(COOKIE, HeaderValue::from_static("tributary_csrf=abc"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("v1.x.y.z"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
