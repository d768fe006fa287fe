//! Shared by the API's integration tests: an API started in-process on
//! its own MongoDB and ClickHouse databases, with helpers to call it.
#![allow(dead_code, clippy::unwrap_used)]

use envconfig::Envconfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use testkit::unique_name;

/// A running API and its stores.
pub struct Env {
    pub base: String,
    pub op: String,
    pub http: reqwest::Client,
    pub api: api::Api,
    pub ch: clickhouse::Client,
    pub ch_db: String,
    pub mongo: mongodb::Database,
    /// The file transport's outbox (one `.eml` per email).
    pub outbox: std::path::PathBuf,
    pub _shutdown: common::shutdown::CancellationToken,
    /// The stores' settings, for dropping the test's databases.
    pub stores: (common::config::ClickHouseConfig, common::config::MongoConfig),
}

impl Drop for Env {
    /// Drops the test's ClickHouse and MongoDB databases and its outbox
    /// when the test passed (a failed one keeps them to look at). New
    /// clients on a thread of their own: the test's runtime is the one
    /// waiting here.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self._shutdown.cancel();
        let (ch, mongo) = self.stores.clone();
        let outbox = self.outbox.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let ch_client = ch.client();
                let _ = ch_client
                    .query("DROP DATABASE IF EXISTS ?")
                    .bind(clickhouse::sql::Identifier(&ch.database))
                    .execute()
                    .await;
                if let Ok(db) = mongo.database().await {
                    let _ = db.drop().await;
                }
            });
            let _ = std::fs::remove_dir_all(outbox);
        });
        let _ = cleanup.join();
    }
}

pub async fn env_with(rate: u32, burst: u32) -> Env {
    env_custom(|cfg| {
        cfg.rate_limit_per_second = rate;
        cfg.rate_limit_burst = burst;
    })
    .await
}

/// An API with the test settings, then `change` applied to them.
pub async fn env_custom(change: impl FnOnce(&mut api::Config)) -> Env {
    let name = unique_name("api");
    let mut cfg = api::Config::init_from_env().unwrap();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.admin_listen = "127.0.0.1:0".parse().unwrap();
    cfg.operator_key = format!("operator-key-for-tests-{}", unique_name("k")).into();
    cfg.rate_limit_per_second = 1000;
    cfg.rate_limit_burst = 1000;
    // Tenants' plans do not limit the tests; the limits have their own.
    (cfg.plan_starter_rps, cfg.plan_professional_rps, cfg.plan_enterprise_rps) = (10_000, 10_000, 10_000);
    // Tests log in from one address many times; the limit has its own test.
    cfg.auth_rate_per_minute = 0;
    cfg.link_scheme = "http".into();
    cfg.pii_keys = crypto::Pii::generate_key("test1").unwrap().into();
    cfg.blind_index_key = "dGVzdC1ibGluZC1pbmRleC1rZXktMzItYnl0ZXMtbG9uZyE=".into();
    cfg.login_lock_secs = 2;
    cfg.ops_alert_emails = "oncall@ops.test, sre@ops.test".into();
    // Tests drive the tenant-alert notifier themselves (api::alerts::Notifier).
    cfg.alerts_eval_secs = 0;
    // ... and the webhook dispatcher (api::webhooks::dispatch::Dispatcher).
    cfg.webhooks_secs = 0;
    cfg.alerts_allow_http_webhooks = true;
    let outbox = std::env::temp_dir().join(format!("outbox-{name}"));
    cfg.mail_url = format!("file:{}", outbox.display()).into();
    cfg.clickhouse.database = name.clone();
    cfg.mongo.database = name.clone();
    change(&mut cfg);
    migrate::apply_clickhouse(&cfg.clickhouse).await.unwrap();
    let mongo = cfg.mongo.database().await.unwrap();
    migrate::apply_mongo_indexes(&mongo).await.unwrap();
    let ch = cfg.clickhouse.client().with_database(&name);
    let shutdown = common::shutdown::CancellationToken::new();
    let op = cfg.operator_key.expose().to_owned();
    let stores = (cfg.clickhouse.clone(), cfg.mongo.clone());
    let api = api::start(cfg, prometheus::Registry::new(), shutdown.clone()).await.unwrap();
    Env {
        base: format!("http://{}", api.addr),
        op,
        http: reqwest::Client::new(),
        api,
        ch,
        ch_db: name,
        mongo,
        outbox,
        _shutdown: shutdown,
        stores,
    }
}

pub async fn env() -> Env {
    env_with(1000, 1000).await
}

impl Env {
    pub async fn call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn ok(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(Some(key), method, path, body).await;
        assert!(s.is_success(), "{path}: {s} {v}");
        v
    }

    pub async fn tenant(&self, slug: &str) -> (String, String) {
        let c = self
            .ok(
                &self.op,
                Method::POST,
                "/v1/clients",
                Some(json!({"name": slug, "slug": slug, "domain": format!("{slug}.links.test"),
                "tracking": {"ga4": "G-TEST123"}})),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_string();
        let k = self
            .ok(
                &self.op,
                Method::POST,
                &format!("/v1/clients/{id}/api-keys"),
                Some(json!({"name": "all", "scopes": ["links:write", "analytics:read"]})),
            )
            .await;
        (id, k["key"].as_str().unwrap().to_string())
    }

    /// A new tenant `slug` (domain `{slug}.links.test`) with `settings`,
    /// made by the operator: its id.
    pub async fn tenant_with(&self, slug: &str, settings: Value) -> String {
        let body = json!({"name": slug, "slug": slug, "domain": format!("{slug}.links.test"), "settings": settings});
        let c = self.ok(&self.op, Method::POST, "/v1/clients", Some(body)).await;
        c["id"].as_str().unwrap().to_string()
    }

    /// A new API key of tenant `client` with `scopes` (made by the operator):
    /// (key, key id).
    pub async fn key_with(&self, client: &str, scopes: &[&str]) -> (String, String) {
        let path = format!("/v1/clients/{client}/api-keys");
        let k = self.ok(&self.op, Method::POST, &path, Some(json!({"name": "test", "scopes": scopes}))).await;
        (k["key"].as_str().unwrap().to_string(), k["id"].as_str().unwrap().to_string())
    }

    pub async fn link(&self, key: &str, slug: &str) -> String {
        let l = self
            .ok(key, Method::POST, "/v1/smartlinks", Some(json!({"slug": slug, "track": {"title": "In Your Light", "artist_name": "Jiro"},
                "platforms": {"spotify": "https://open.spotify.com/track/x", "apple-music": "https://music.apple.com/x"}})))
            .await;
        l["id"].as_str().unwrap().to_string()
    }
}

impl Env {
    /// Raw messages (RFC 5322) in the outbox addressed to `to`, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let mut found: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&self.outbox)
            .map(|d| d.flatten().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.path().extension().is_some_and(|x| x == "eml"))
            .filter_map(|f| Some((f.metadata().ok()?.modified().ok()?, std::fs::read_to_string(f.path()).ok()?)))
            .filter(|(_, m)| m.lines().any(|l| l.eq_ignore_ascii_case(&format!("To: {to}"))))
            .collect();
        found.sort();
        found.into_iter().map(|(_, m)| m).collect()
    }
}

impl Env {
    /// Inserts `rows` into ClickHouse `events` (no rollup pass).
    pub async fn insert(&self, rows: &[schemas::clickhouse::EventRow]) {
        let mut ins = self.ch.insert::<schemas::clickhouse::EventRow>(schemas::clickhouse::EVENTS_TABLE).await.unwrap();
        for r in rows {
            ins.write(r).await.unwrap();
        }
        ins.end().await.unwrap();
    }

    /// Inserts engagement beacons `(view ts, visible ms, clicked, bot)` of
    /// `link` into ClickHouse `engagements` (issue #19).
    pub async fn insert_engagements(&self, tenant: &str, link: &str, rows: &[(u32, u32, bool, bool)]) {
        use schemas::clickhouse::{EngagementRow, ENGAGEMENTS_TABLE};
        let mut ins = self.ch.insert::<EngagementRow>(ENGAGEMENTS_TABLE).await.unwrap();
        for &(ts, visible_ms, clicked, bot) in rows {
            ins.write(&EngagementRow {
                view_event_id: uuid::Uuid::now_v7(),
                ts,
                tenant_id: tenant.into(),
                link_id: link.into(),
                visible_ms,
                clicked: u8::from(clicked),
                is_bot: u8::from(bot),
                ingested_at: rollup::now_s(),
            })
            .await
            .unwrap();
        }
        ins.end().await.unwrap();
    }

    /// Inserts `rows` into ClickHouse `events`, runs one aggregator pass
    /// over everything and saves its watermark, so the rows' closed windows
    /// are read from rollups.
    pub async fn insert_and_roll(&self, rows: &[schemas::clickhouse::EventRow]) {
        self.insert(rows).await;
        let stores = rollup::Stores {
            ch: self.ch.clone(),
            ch_db: self.ch_db.clone(),
            mongo: self.mongo.clone(),
            topology: Default::default(),
        };
        let report = rollup::pass_since(&stores, &rollup::PassConfig::unbounded(), 0, rollup::now_s()).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
}

/// The first token with `prefix` (`slv_`, `slr_`) in a message (its
/// quoted-printable soft line breaks undone).
pub fn token_in(mail: &str, prefix: &str) -> String {
    let mail = mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let at = mail.find(prefix).unwrap_or_else(|| panic!("no {prefix} token in {mail}"));
    mail[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The password of users made by [`user_session`].
pub const PASSWORD: &str = "correct horse battery staple";

/// Creates user `email` with `role` and password [`PASSWORD`] in tenant
/// `client` (as the operator); its id.
pub async fn user(e: &Env, client: &str, email: &str, role: &str) -> String {
    let u = e
        .ok(&e.op, Method::POST, "/v1/users", Some(json!({"client_id": client, "email": email, "password": PASSWORD, "first_name": "Ada", "last_name": role, "role": role})))
        .await;
    u["id"].as_str().unwrap().to_string()
}

/// A lead's creation body (every personal field filled).
pub fn lead(first: &str, artist: &str, email: &str) -> Value {
    json!({"first_name": first, "last_name": "Doe", "email": email, "phone": "+33 6 12 34 56 78",
        "address": {"street": "12 rue Oberkampf", "city": "Paris", "postal_code": "75011", "country": "FR"},
        "artist_name": artist, "genres": ["electro"], "links": {"spotify": "https://open.spotify.com/artist/1"}, "budget_minor": 250_000, "tags": ["vip"], "source": "social", "utm_source": "instagram"})
}

/// Creates user `email` with `role` in tenant `client` ([`user`]) and logs
/// in: (session token, user id).
pub async fn user_session(e: &Env, client: &str, email: &str, role: &str) -> (String, String) {
    let id = user(e, client, email, role).await;
    let (s, v) =
        e.call(None, Method::POST, "/v1/auth/login", Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (v["token"].as_str().unwrap().to_string(), id)
}

/// The text of the one QR code in a PNG (any colour type, as the `png`
/// crate expands it to 8-bit), read by `rqrr`; `None` when there is not
/// exactly one readable code.
pub fn qr_text(png_bytes: &[u8]) -> Option<String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    // Luma of the first three channels (or the grey one).
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let p = &buf[(y * w + x) * channels..][..channels];
        if channels >= 3 {
            ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
        } else {
            p[0]
        }
    });
    let grids = img.detect_grids();
    if grids.len() != 1 {
        return None;
    }
    grids[0].decode().ok().map(|(_, text)| text)
}
