//! Helpers of the aggregator's integration tests.

/// Now, Unix s.
pub fn now_s() -> u32 {
    (bson::DateTime::now().timestamp_millis() / 1000) as u32
}

/// The value of the first line of `admin`'s `/metrics` starting with
/// `line_start` (name and labels, then a space); `None` when absent.
pub async fn metric(admin: std::net::SocketAddr, line_start: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{admin}/metrics")).await.ok()?.text().await.ok()?;
    body.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}
