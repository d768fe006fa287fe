//! Helpers for integration tests that run against the local stack
//! (`deploy/local/up.sh`): unique names so tests run in parallel, and
//! polling with a deadline instead of sleeps.

use std::future::Future;
use std::time::Duration;

/// A name unique to this call: `{prefix}_{12 hex digits}`, valid as a
/// ClickHouse database, MongoDB database and Kafka topic suffix.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// True when `name` ends the way [`unique_name`] ends a name (`_` and 12
/// lowercase hex digits), with a prefix before it: a test's own topic or
/// database, which `sweep` may drop.
pub fn is_unique_name(name: &str) -> bool {
    name.len() > 13
        && name.as_bytes()[name.len() - 13] == b'_'
        && name[name.len() - 12..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what`
/// after `timeout`. For tests only.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads every record of `topic` (all partitions, from the beginning) until
/// `expect` records arrived and then `settle` passed with no new one, or
/// `timeout` passed. Returns `(key, value)` pairs in arrival order. Panics
/// on a consumer error. Blocking; call from `spawn_blocking` in async tests.
pub fn consume_all(
    brokers: &str,
    topic: &str,
    expect: usize,
    timeout: Duration,
    settle: Duration,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = kafka_util::base_config(brokers, "test-reader")
        .set("group.id", unique_name("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions = md.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        if out.len() >= expect && last.elapsed() >= settle {
            break;
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            out.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
            last = std::time::Instant::now();
        }
    }
    out
}

/// A private single-node Apache Kafka broker (KRaft) for tests that stop and
/// restart the broker: the jars `deploy/local/up.sh` installed
/// (`$SMARTLINKS_CACHE_DIR/kafka-3.9.1/libs`), its own ports and log dir.
/// Killed on drop.
pub struct KafkaInstance {
    /// Client port on 127.0.0.1.
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server a test
/// starts. Drawn at random below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, from 32768 by default), where the
/// ports of outgoing connections come from: a port the kernel hands out
/// (`bind(0)`) can be taken by any client connection before the server
/// binds it; one of 20000..32768 only by another test drawing the same.
pub fn free_port() -> u16 {
    let below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768)
        .max(20_100);
    for _ in 0..200 {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % u128::from(below - 20_000)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The repository's root. Cargo sets `CARGO_MANIFEST_DIR` when it runs a
/// test or bench, to the crate's folder, a top-level folder of the
/// repository; the value compiled in is the fallback. At run time, because
/// the shared target dir reuses binaries built from another checkout of
/// the repository (CI's clone), whose compiled-in path may be gone.
pub fn repo_root() -> std::path::PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(std::path::Path::to_path_buf).unwrap_or(manifest)
}

/// The GeoIP test databases with known answers (`../shared/data/geoip-test`,
/// beside the repository), file `name`.
pub fn geoip_test_db(name: &str) -> std::path::PathBuf {
    repo_root().join("../shared/data/geoip-test").join(name)
}

/// The local stack's state directory, where `deploy/local/up.sh` links the
/// data tests and benches read (`geoip/`, `data/user-agents.json`):
/// `$SMARTLINKS_STATE_DIR`, else `<repo>/.state`.
pub fn state_dir() -> std::path::PathBuf {
    std::env::var("SMARTLINKS_STATE_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| repo_root().join(".state"))
}

fn kafka_libs() -> std::path::PathBuf {
    let cache = std::env::var("SMARTLINKS_CACHE_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/smartlinks")
    });
    cache.join("kafka-3.9.1/libs")
}

impl KafkaInstance {
    /// Formats a fresh log dir and starts the broker; returns once it answers
    /// a metadata request. Panics when it does not within 60 s.
    pub fn start_new() -> Self {
        let port = free_port();
        let controller = free_port();
        let dir = std::env::temp_dir().join(unique_name("kafka"));
        std::fs::create_dir_all(dir.join("data")).expect("kafka dir");
        let props = format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{controller}\n\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\nadvertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
controller.listener.names=CONTROLLER\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
inter.broker.listener.name=PLAINTEXT\nlog.dirs={}\nauto.create.topics.enable=false\noffsets.topic.replication.factor=1\n\
offsets.topic.num.partitions=1\ntransaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
group.initial.rebalance.delay.ms=0\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), props).expect("props");
        let mut me = Self { port, dir, child: None };
        let status = me
            .java("kafka.tools.StorageTool")
            .args(["format", "-t", "q1Sh-9_ISia_zwGINzRvyQ", "-c"])
            .arg(me.dir.join("server.properties"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run StorageTool");
        assert!(status.success(), "kafka storage format failed");
        me.start();
        me
    }

    fn java(&self, main: &str) -> std::process::Command {
        let mut c = std::process::Command::new("java");
        let log4j = repo_root().join("deploy/local/kafka/log4j.properties");
        c.args(["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC"])
            .arg(format!("-Dlog4j.configuration=file:{}", log4j.display()))
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()))
            .arg(main);
        c
    }

    /// Bootstrap servers of this broker.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts, with its data) the broker and waits until it answers.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log");
        let child = self
            .java("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kafka");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while kafka_util::probe(&self.brokers(), Duration::from_secs(2)).is_err() {
            assert!(std::time::Instant::now() < deadline, "private kafka did not start; see {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the broker (SIGKILL: the harshest stop) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for KafkaInstance {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private ClickHouse server for tests that stop and restart it: Debian's
/// `clickhouse-server` with our config template on free ports and its own
/// data dir. Killed on drop.
pub struct ClickHouseInstance {
    /// HTTP port on 127.0.0.1.
    pub http_port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl ClickHouseInstance {
    /// Writes a config and starts the server; returns once it answers a query.
    pub fn start_new() -> Self {
        let http_port = free_port();
        let tcp_port = free_port();
        let dir = std::env::temp_dir().join(unique_name("clickhouse"));
        for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.join(sub)).expect("clickhouse dir");
        }
        let deploy = repo_root().join("deploy/local/clickhouse");
        let config = std::fs::read_to_string(deploy.join("config.xml.in"))
            .expect("config template")
            .replace("@STATE@/clickhouse", &dir.display().to_string())
            .replace("<http_port>8123</http_port>", &format!("<http_port>{http_port}</http_port>"))
            .replace("<tcp_port>9000</tcp_port>", &format!("<tcp_port>{tcp_port}</tcp_port>"));
        std::fs::write(dir.join("config.xml"), config).expect("config");
        std::fs::copy(deploy.join("users.xml"), dir.join("users.xml")).expect("users.xml");
        let mut me = Self { http_port, dir, child: None };
        me.start();
        me
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Starts (or restarts, with its data) the server and waits until it answers.
    pub fn start(&mut self) {
        let child = std::process::Command::new("clickhouse-server")
            .arg(format!("--config-file={}", self.dir.join("config.xml").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start clickhouse-server (deploy/local/up.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = "GET /?query=SELECT%201 HTTP/1.0\r\n\r\n";
                let mut buf = String::new();
                s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut buf).is_ok()
                    && buf.starts_with("HTTP/1.0 200")
            });
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private clickhouse did not start; see {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ClickHouseInstance {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_names_are_recognised_and_the_demo_s_names_are_not() {
        for _ in 0..100 {
            assert!(super::is_unique_name(&super::unique_name("edge")));
        }
        assert!(super::is_unique_name("smartlinks.events.raw.t_ff5096582728"));
        for name in [
            "smartlinks",
            "smartlinks.events.raw",
            "__consumer_offsets",
            "_ff5096582728",
            "a_FF5096582728",
            "a_ff509658272",
        ] {
            assert!(!super::is_unique_name(name), "{name}");
        }
    }
}
