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

    #[test]
    fn credentials_and_size_are_not_content() {
        assert!(RequestError::InvalidJson("x".into()).is_unusable_content());
        assert!(RequestError::InvalidEnvelope("a number").is_unusable_content());
        assert!(!RequestError::SignatureMismatch("Bearer token").is_unusable_content());
        assert!(!RequestError::PayloadTooLarge { limit: 1 }.is_unusable_content());
        assert!(!RequestError::InvalidGzip("x".into()).is_unusable_content());
    }
}
