//! Plan limits of a tenant (seed 000 `clients.settings`, issue #18),
//! enforced where the limited thing is made or asked:
//! - `max_smartlinks_per_month` on link creation (403 `monthly_link_limit`),
//! - `max_users_per_client` on user creation (403 `user_limit`),
//! - requests per second by plan, all the tenant's keys and users together
//!   (429 `plan_rate_limit`, [`RequestLimits`]),
//! - `api_rate_limit` requests per hour through the tenant's keys
//!   (429 `hourly_request_limit`).
//!
//! The operator is never limited by a tenant's plan.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, oid::ObjectId, DateTime};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use schemas::mongo::{collections, Client, PlanType, Smartlink, User};

use crate::auth::Principal;
use crate::config::Config;
use crate::error::ApiError;
use crate::lock;
use crate::state::AppState;

/// How long a tenant's plan and limits are read from memory before MongoDB
/// is asked again: a change made through `PATCH /v1/clients/{id}` applies
/// at once on the API that made it ([`RequestLimits::forget`]), within this
/// on the others.
pub const LIMITS_TTL: Duration = Duration::from_secs(10);

/// What a tenant's requests are limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quotas {
    /// Requests per second of the plan, all principals together.
    per_second: u32,
    /// Requests per hour through API keys (`settings.api_rate_limit`).
    per_hour: u32,
}

/// The window of a tenant's request limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Period {
    /// The plan's requests per second, all principals together.
    Second,
    /// The tenant's API-key requests per hour.
    Hour,
}

/// Per-tenant request limits: the plan's requests per second and the
/// tenant's hourly key quota (GCRA, `governor`, one limiter per tenant and
/// quota, dropped after an idle hour). A quota change starts a fresh
/// limiter.
pub struct RequestLimits {
    plan_rps: [u32; 3],
    quotas: moka::future::Cache<ObjectId, Quotas>,
    limiters: moka::sync::Cache<(ObjectId, Period, u32), Arc<DefaultDirectRateLimiter>>,
}

impl RequestLimits {
    /// Limits with the plans' rates of `cfg` (`API_PLAN_*_RPS`).
    pub fn new(cfg: &Config) -> Self {
        RequestLimits {
            plan_rps: [cfg.plan_starter_rps, cfg.plan_professional_rps, cfg.plan_enterprise_rps],
            quotas: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LIMITS_TTL).build(),
            limiters: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Requests per second of `plan`.
    pub fn plan_rps(&self, plan: PlanType) -> u32 {
        match plan {
            PlanType::Starter => self.plan_rps[0],
            PlanType::Professional => self.plan_rps[1],
            PlanType::Enterprise => self.plan_rps[2],
        }
    }

    /// Takes one request of `p`'s tenant: Ok, or 429 `plan_rate_limit` /
    /// `hourly_request_limit` with `Retry-After` (counted in
    /// `api_rate_limited_total`); 503 when the tenant cannot be read.
    pub async fn check(&self, st: &AppState, p: &Principal) -> Result<(), ApiError> {
        let Some(client_id) = p.own_client() else { return Ok(()) };
        let quotas = self
            .quotas
            .try_get_with(client_id, async {
                let client = st
                    .mongo
                    .collection::<Client>(collections::CLIENTS)
                    .find_one(doc! { "_id": client_id })
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                Ok::<_, ApiError>(Quotas {
                    per_second: self.plan_rps(client.metadata.plan_type),
                    per_hour: u32::try_from(client.settings.api_rate_limit.max(1)).unwrap_or(u32::MAX),
                })
            })
            .await
            .map_err(|e| (*e).clone())?;
        self.take(st, client_id, Period::Second, quotas.per_second)?;
        if matches!(p, Principal::Tenant { .. }) {
            self.take(st, client_id, Period::Hour, quotas.per_hour)?;
        }
        Ok(())
    }

    /// Takes one request of `n` per `period` from the tenant's limiter; the
    /// refusal names the limit (its message is built only then).
    fn take(&self, st: &AppState, client_id: ObjectId, period: Period, n: u32) -> Result<(), ApiError> {
        let limiter = self.limiters.get_with((client_id, period, n), || {
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            let quota = match period {
                Period::Second => Quota::per_second(n).allow_burst(n.saturating_mul(NonZeroU32::new(2).unwrap_or(n))),
                Period::Hour => Quota::per_hour(n),
            };
            Arc::new(RateLimiter::direct(quota))
        });
        limiter.check().map_err(|not_until| {
            st.metrics.rate_limited.inc();
            let (code, limit) = match period {
                Period::Second => ("plan_rate_limit", format!("the plan's {n} requests per second")),
                Period::Hour => ("hourly_request_limit", format!("the tenant's {n} API-key requests per hour")),
            };
            ApiError::RateLimited { code, limit, retry_after_s: crate::auth::retry_after(&not_until) }
        })
    }

    /// Reads tenant `client_id`'s plan and limits again at its next request
    /// (after a change).
    pub async fn forget(&self, client_id: ObjectId) {
        self.quotas.invalidate(&client_id).await;
    }
}

/// Runs `create`, which adds one back-office user to `client`, unless the
/// tenant already has `max_users_per_client` (deactivated users count: they
/// can be reactivated): then 403 `user_limit`. Creations of one tenant are
/// serialised by a lock (`users-quota:{client}`), so concurrent requests
/// cannot all pass one count; `create`'s error as is.
pub async fn within_users<T, F, Fut>(st: &AppState, client: &Client, create: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let name = format!("users-quota:{}", client.id.to_hex());
    lock::with_lock(st, name, Duration::from_secs(30), Duration::from_secs(10), || async {
        let users =
            st.mongo.collection::<User>(collections::USERS).count_documents(doc! { "clientId": client.id }).await?;
        let max = u64::try_from(client.settings.max_users_per_client).unwrap_or(0);
        if users >= max {
            return Err(ApiError::PlanLimit {
                code: "user_limit",
                message: format!("the plan allows {max} users; the tenant has {users}"),
            });
        }
        create().await
    })
    .await
}

/// `[start, end)` of the calendar month (UTC) holding `now`: midnight UTC
/// of its first day and of the next month's first day.
pub fn month_window(now: DateTime) -> (DateTime, DateTime) {
    let at = time::OffsetDateTime::from_unix_timestamp(now.timestamp_millis().div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (year, month) = (at.year(), at.month());
    let (next_year, next_month) = match month {
        time::Month::December => (year + 1, time::Month::January),
        m => (year, m.next()),
    };
    let first = |y: i32, m: time::Month| {
        let date = time::Date::from_calendar_date(y, m, 1).unwrap_or(time::Date::MIN);
        DateTime::from_millis((date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    };
    (first(year, month), first(next_year, next_month))
}

/// Runs `create`, which makes `n` smartlinks of `client`, unless that would
/// take the links created this UTC month (archived ones included: creating
/// and archiving must not reset the count) past the tenant's
/// `max_smartlinks_per_month`: then 403 `monthly_link_limit`, saying the
/// limit, the count and when it resets. Creations of one tenant are
/// serialised by a lock (`links-quota:{client}`, held 30 s at most), so
/// concurrent requests cannot all pass one count; `create`'s error as is.
pub async fn within_monthly_links<T, F, Fut>(st: &AppState, client: &Client, n: u64, create: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let name = format!("links-quota:{}", client.id.to_hex());
    lock::with_lock(st, name, Duration::from_secs(30), Duration::from_secs(10), || async {
        let (start, end) = month_window(DateTime::now());
        let made = st
            .mongo
            .collection::<Smartlink>(collections::SMARTLINKS)
            .count_documents(doc! { "clientId": client.id, "metadata.createdAt": { "$gte": start } })
            .await?;
        let max = u64::try_from(client.settings.max_smartlinks_per_month).unwrap_or(0);
        if made + n > max {
            return Err(ApiError::PlanLimit {
                code: "monthly_link_limit",
                message: format!(
                    "the plan allows {max} new smartlinks a month; {made} made since {}, {n} more asked; the count resets at {}",
                    crate::validate::rfc(start),
                    crate::validate::rfc(end)
                ),
            });
        }
        create().await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc: &str) -> DateTime {
        DateTime::parse_rfc3339_str(rfc).unwrap()
    }

    #[test]
    fn the_month_window_is_utc_calendar_months_across_a_year_end() {
        assert_eq!(
            month_window(at("2026-12-31T23:59:59.999Z")),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(month_window(at("2027-01-01T00:00:00Z")), (at("2027-01-01T00:00:00Z"), at("2027-02-01T00:00:00Z")));
        assert_eq!(month_window(at("2028-02-29T12:00:00Z")), (at("2028-02-01T00:00:00Z"), at("2028-03-01T00:00:00Z")));
    }
}
