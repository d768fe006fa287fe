//! Plan limits of a tenant (seed 000 `clients.settings`), enforced where
//! the limited thing is made: `max_smartlinks_per_month` on link creation
//! (issue #14, finding 13).

use std::time::Duration;

use bson::{doc, DateTime};
use schemas::mongo::{collections, Client, Smartlink};

use crate::error::ApiError;
use crate::lock;
use crate::state::AppState;

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
