//! How a request that passed verification but cannot be used is answered, per template.
//!
//! Retrying never fixes such a request, so the answer is chosen by what the sender does with
//! it:
//!
//! | template    | sender behaviour                                                        | answer |
//! |-------------|-------------------------------------------------------------------------|--------|
//! | segment     | Segment (destinations, Actions webhooks) and its SDKs drop a 4xx; they retry 5xx and 429 | 4xx with the error |
//! | rudderstack | RudderStack's webhook destinations abort on 4xx, retry 5xx and 429       | 4xx with the error |
//! | census      | any 4xx fails the whole request, which is sent again on the next run     | 2xx with the refusal in the body |
//! | hightouch   | a failed request's rows are retried in the run and on every later run    | 2xx with the refusal in the body |
//! | http        | Standard Webhooks / Svix senders retry every non-2xx for days, then disable the endpoint | 2xx with the refusal in the body |
//!
//! Either way the request is logged: its items as rejected events with their codes, and a body
//! that does not parse as one rejected event with the request's code.

use crate::error::RequestError;
use crate::pipeline::Processed;
use tributary_model::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusableAnswer {
    /// The error's own 4xx status: the sender drops the request.
    ClientError,
    /// 200 with the refusal in the body: a 4xx would only be retried (or disable the endpoint).
    AcceptRefused,
}

pub fn unusable_answer(template: Template) -> UnusableAnswer {
    match template {
        Template::Segment | Template::Rudderstack => UnusableAnswer::ClientError,
        Template::Hightouch | Template::Census | Template::Http => UnusableAnswer::AcceptRefused,
    }
}

/// The HTTP status the gateway answers a request of `template` with, given what `process`
/// made of it (once its items are stored): the status of the shape and refusals, or of the
/// request error, with the rule above applied to a verified request whose content cannot be
/// used (a refused single event, or a body that is not a usable envelope). Rehearsals and
/// `tributary normalize` report this, so they never promise a 4xx the gateway does not send.
pub fn answered_status<T>(template: Template, processed: &Result<Processed<T>, RequestError>) -> u16 {
    let refused_content_answer = |client_error: u16| match unusable_answer(template) {
        UnusableAnswer::ClientError => client_error,
        UnusableAnswer::AcceptRefused => 200,
    };
    match processed {
        // a single event refused: the only 400 `status_for` gives
        Ok(p) if p.status() == 400 => refused_content_answer(400),
        Ok(p) => p.status(),
        Err(e) if e.is_unusable_content() => refused_content_answer(e.status()),
        Err(e) => e.status(),
    }
}

impl RequestError {
    /// A refusal of the content of a request that passed verification (as opposed to its
    /// credentials, size or encoding, which are checked before the body is read).
    pub fn is_unusable_content(&self) -> bool {
        matches!(self, RequestError::InvalidJson(_) | RequestError::InvalidEnvelope(_) | RequestError::InvalidArrayPath(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cdps_keep_4xx() {
        for t in Template::ALL {
            let want = if t.is_cdp() { UnusableAnswer::ClientError } else { UnusableAnswer::AcceptRefused };
            assert_eq!(unusable_answer(t), want, "{t}");
        }
    }

    /// What `process` makes of `body` for a `template` source without verification.
    fn answered(template: Template, body: &[u8]) -> u16 {
        let settings = crate::templates::default_settings(template, template.as_str(), "development", "t".into());
        let inc = crate::Incoming { template, settings: &settings, headers: &[], body, max_body: 1 << 20, now_ms: 1_719_826_300_000, implied_type: None };
        answered_status(template, &crate::process(&inc))
    }

    #[test]
    fn answered_status_is_the_gateways() {
        let single_refused = br#"{"type":"track","event":"E","userId":{"not":"an id"}}"#;
        for t in Template::ALL {
            let refused = if t.is_cdp() { 400 } else { 200 };
            assert_eq!(answered(t, b"{not json"), refused, "{t}: invalid JSON");
            assert_eq!(answered(t, br#""a string""#), refused, "{t}: not an envelope");
            // size and encoding are not content: the same 4xx for everyone
            let settings = crate::templates::default_settings(t, t.as_str(), "development", "t".into());
            let big = crate::Incoming { template: t, settings: &settings, headers: &[], body: b"[1,2,3]", max_body: 2, now_ms: 0, implied_type: None };
            assert_eq!(answered_status(t, &crate::process(&big)), 413, "{t}");
            let one = answered(t, single_refused);
            if t.is_cdp() {
                assert_eq!(one, 400, "{t}: a refused single event");
            } else {
                assert_ne!(one, 400, "{t}: a refused single event is answered 2xx");
            }
        }
        assert_eq!(answered(Template::Segment, br#"{"type":"track","event":"E","userId":"u1"}"#), 202);
    }

    #[test]
    fn credentials_and_size_are_not_content() {
        assert!(RequestError::InvalidJson("x".into()).is_unusable_content());
        assert!(RequestError::InvalidEnvelope("a number").is_unusable_content());
        assert!(!RequestError::SignatureMismatch("Bearer token").is_unusable_content());
        assert!(!RequestError::PayloadTooLarge { limit: 1 }.is_unusable_content());
        assert!(!RequestError::InvalidGzip("x".into()).is_unusable_content());
    }
}
