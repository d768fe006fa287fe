//! One request to one destination, to its end: rate-limited per
//! destination (`governor`), retried with exponential backoff and jitter
//! (`backon`; at least the platform's `Retry-After`) while the answer is
//! retryable ([`crate::platforms::judge`]), at most `FORWARDER_MAX_ATTEMPTS`
//! times.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use bson::oid::ObjectId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use schemas::conversions::{DeliveryOutcome, MAX_ANSWER_BYTES};

use crate::destinations::Dest;
use crate::metrics::Metrics;
use crate::platforms::{judge, Request, Verdict};

/// How a request ended, after its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    /// Delivered, rejected or abandoned.
    pub outcome: DeliveryOutcome,
    /// The last HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer's body or the transport error, at most
    /// [`MAX_ANSWER_BYTES`] (cut on a character boundary).
    pub answer: Option<String>,
}

/// Retry and rate-limit settings.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts of one request, at least 1.
    pub max_attempts: usize,
    /// First wait between attempts.
    pub retry_min: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Requests per second to one destination (burst twice as many).
    pub per_destination_rps: u32,
    /// One attempt's timeout.
    pub timeout: Duration,
}

/// Sends requests to the platforms.
pub struct Sender {
    http: reqwest::Client,
    limiter: DefaultKeyedRateLimiter<ObjectId>,
    policy: Policy,
    metrics: Metrics,
}

/// A transport error as the delivery log keeps it: without the URL (it
/// holds credentials), `timeout: …` when the attempt timed out.
fn transport_error(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let text = e.without_url().to_string();
    if timeout {
        format!("timeout: {text}")
    } else {
        text
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Sender {
    /// A sender with `policy`. Errors when the TLS backend cannot start.
    pub fn new(policy: Policy, metrics: Metrics) -> Result<Sender, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("smartlinks-forwarder/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let rps = NonZeroU32::new(policy.per_destination_rps.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(policy.per_destination_rps.max(1).saturating_mul(2)).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(Quota::per_second(rps).allow_burst(burst));
        Ok(Sender { http, limiter, policy, metrics })
    }

    /// Sends `req` to `dest` until it is delivered, refused, or out of
    /// attempts. Never errors: the outcome says how it ended.
    pub async fn deliver(&self, dest: &Dest, req: &Request) -> Attempted {
        let platform = dest.platform.as_str();
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.policy.retry_min)
            .with_max_delay(self.policy.retry_max)
            .with_max_times(self.policy.max_attempts.max(1) - 1)
            .with_jitter()
            .build();
        let mut attempts = 0u32;
        loop {
            self.limiter.until_key_ready(&dest.id).await;
            attempts += 1;
            let started = Instant::now();
            let mut rb = self
                .http
                .post(&req.url)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(req.body.clone());
            for (k, v) in &req.headers {
                rb = rb.header(*k, v);
            }
            let (verdict, status, answer) = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match resp.bytes().await {
                        Ok(body) => (
                            judge(dest.platform, status, after, &body),
                            Some(status),
                            Some(truncate(&String::from_utf8_lossy(&body), MAX_ANSWER_BYTES)),
                        ),
                        Err(e) => {
                            (Verdict::Retry { cause: "transport", after: None }, Some(status), Some(transport_error(e)))
                        }
                    }
                }
                // Never the URL: it holds Meta's and GA4's credentials.
                Err(e) => (Verdict::Retry { cause: "transport", after: None }, None, Some(transport_error(e))),
            };
            self.metrics.request_seconds.with_label_values(&[platform]).observe(started.elapsed().as_secs_f64());
            let class = match status {
                None => "transport",
                Some(429) => "429",
                Some(200..=299) => "2xx",
                Some(500..=599) => "5xx",
                Some(_) => "4xx",
            };
            self.metrics.requests.with_label_values(&[platform, class]).inc();
            let done = |outcome| Attempted { outcome, status, attempts, answer: answer.clone() };
            match verdict {
                Verdict::Delivered => return done(DeliveryOutcome::Delivered),
                Verdict::Rejected => return done(DeliveryOutcome::Rejected),
                Verdict::Retry { cause, after } => match delays.next() {
                    Some(d) => {
                        self.metrics.retries.with_label_values(&[platform, cause]).inc();
                        let wait = d.max(after.unwrap_or_default().min(self.policy.retry_max));
                        tracing::debug!(destination = %dest.id, platform, cause, ?wait, attempts, "retrying");
                        tokio::time::sleep(wait).await;
                    }
                    None => return done(DeliveryOutcome::Abandoned),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
