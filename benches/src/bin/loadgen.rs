//! `loadgen`: realistic smartlink traffic against a running edge, then a
//! check that the pipeline counted exactly what was sent.
//!
//! 1. Seeds a demo tenant (`demo.smartlinks.local`) and three smartlinks in
//!    MongoDB (until the API of issue #5 exists, directly through the driver;
//!    idempotent).
//! 2. Sends visits over HTTP to the edge: user agents drawn by weight from
//!    the npm `user-agents` dataset, client IPs drawn from public IPv4 space
//!    and kept when DB-IP Lite places them in a country (passed as
//!    `X-Forwarded-For`, which the edge trusts from loopback), real-world
//!    referrers, UTM parameters and ad click ids, consent for some visitors,
//!    click-throughs per platform through the eid links of the landing page,
//!    returning visitors, and crawlers, unfurlers and HEAD requests.
//! 3. Waits until ClickHouse holds every event and the MongoDB daily rollup
//!    of the tenant shows the views, clicks and bots sent, then prints a summary.
//!
//! Usage: `loadgen [VISITS] [CONCURRENCY]` (defaults 3000, 32). Settings from
//! the environment: `LOADGEN_EDGE` (default `http://127.0.0.1:8080`),
//! `MONGODB_*`, `CLICKHOUSE_*` (see `common::config`), `SMARTLINKS_STATE_DIR`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, DateTime};
use envconfig::Envconfig;
use schemas::mongo::*;

const HOST: &str = "demo.smartlinks.local";
const LINKS: [(&str, &str, &str); 3] = [
    ("jiro-in-your-light", "In Your Light", "Jiro"),
    ("nova-midnight-drive", "Midnight Drive", "Nova"),
    ("les-ondes-ete", "Été", "Les Ondes"),
];
const PLATFORMS: [(&str, f64); 4] = [("spotify", 0.5), ("apple-music", 0.25), ("youtube", 0.15), ("deezer", 0.10)];
const REFERRERS: [(&str, f64); 6] = [
    ("https://l.instagram.com/", 0.35),
    ("https://www.tiktok.com/", 0.25),
    ("https://t.co/", 0.1),
    ("https://www.google.com/", 0.1),
    ("https://www.facebook.com/", 0.1),
    ("", 0.1),
];
const CRAWLERS: [&str; 4] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "WhatsApp/2.23.20.0 A",
];

/// What was sent, to compare with what the pipeline counted.
#[derive(Default, Debug)]
struct Sent {
    views: u64,
    clicks: BTreeMap<String, u64>,
    bot_events: u64,
    errors: u64,
}

async fn seed(db: &mongodb::Database) -> anyhow::Result<(ObjectId, Vec<ObjectId>)> {
    let now = DateTime::now();
    let clients = db.collection::<Client>(collections::CLIENTS);
    let tenant = match clients.find_one(doc! { "domain": HOST }).await? {
        Some(c) => c.id,
        None => {
            let c = Client {
                id: ObjectId::new(),
                name: "Demo Records".into(),
                slug: "demo-records".into(),
                domain: HOST.into(),
                subdomain: Some("demo.localhost".into()),
                tracking: ClientTracking { gtm: Some("GTM-DEMO123".into()), facebook: Some("1234567890".into()), ..Default::default() },
                branding: Branding { primary_color: Some("#1DB954".into()), secondary_color: Some("#121212".into()), ..Default::default() },
                settings: ClientSettings::default(),
                metadata: ClientMetadata { created_at: now, updated_at: now, status: ClientStatus::Active, plan_type: PlanType::Professional },
            };
            clients.insert_one(&c).await?;
            c.id
        }
    };
    let links = db.collection::<Smartlink>(collections::SMARTLINKS);
    let mut ids = Vec::new();
    for (slug, title, artist) in LINKS {
        if let Some(l) = links.find_one(doc! { "clientId": tenant, "slug": slug }).await? {
            ids.push(l.id);
            continue;
        }
        let l = Smartlink {
            id: ObjectId::new(),
            client_id: tenant,
            slug: slug.into(),
            track: Track { title: title.into(), artist_name: artist.into(), ..Default::default() },
            platforms: Platforms {
                spotify: Some(format!("https://open.spotify.com/track/{slug}")),
                apple_music: Some(format!("https://music.apple.com/album/{slug}")),
                youtube: Some(format!("https://music.youtube.com/watch?v={slug}")),
                deezer: Some(format!("https://www.deezer.com/track/{slug}")),
                ..Default::default()
            },
            media: Media { cover_art: Some("https://picsum.photos/seed/smartlink/600".into()), ..Default::default() },
            seo: Seo::default(),
            metadata: LinkMetadata::new(now, LinkStatus::Active),
        };
        links.insert_one(&l).await?;
        ids.push(l.id);
    }
    Ok((tenant, ids))
}

/// Public IPv4 addresses DB-IP places in a country.
fn client_ips(n: usize, rng: &mut benches::Rng) -> anyhow::Result<Vec<String>> {
    let [ipv4, _] = benches::dbip_paths();
    let geo = ingest::geoip::GeoIp::open(&[ipv4])?;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ip = std::net::Ipv4Addr::from((rng.next() as u32).max(0x0100_0000));
        if ip.is_private() || ip.is_loopback() || ip.is_multicast() || ip.is_link_local() || ip.octets()[0] >= 224 {
            continue;
        }
        if geo.lookup(ip.into()).map(|g| g.country != [0, 0]).unwrap_or(false) {
            out.push(ip.to_string());
        }
    }
    Ok(out)
}

/// One visitor's behaviour.
struct Plan {
    i: usize,
    link: &'static str,
    ua: String,
    head: bool,
    crawler: bool,
    referrer: String,
    clicks: bool,
    platform: String,
    returns: bool,
    ip: String,
}

/// One visit: the landing page, then maybe a click through its eid link.
/// Returns the cookies to send next time.
async fn visit(http: &reqwest::Client, edge: &str, sent: &Mutex<Sent>, p: &Plan, mut cookie: String) -> String {
    let utm = ["instagram", "tiktok", "newsletter", "youtube_ads"][p.i % 4];
    let url = format!("{edge}/{}?utm_source={utm}&utm_medium=social&utm_campaign=release&fbclid=IwAR{}", p.link, p.i);
    let req = if p.head { http.head(&url) } else { http.get(&url) };
    let mut req = req.header("host", HOST).header("user-agent", &p.ua).header("x-forwarded-for", &p.ip).header("accept-language", "en-GB,en;q=0.8");
    if !p.referrer.is_empty() {
        req = req.header("referer", &p.referrer);
    }
    if !cookie.is_empty() {
        req = req.header("cookie", &cookie);
    }
    let Ok(resp) = req.send().await else {
        sent.lock().map(|mut s| s.errors += 1).ok();
        return cookie;
    };
    if let Some(vid) = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()) {
        cookie = format!("{cookie}; {vid}");
    }
    let ok = resp.status() == 200;
    let body = resp.text().await.unwrap_or_default();
    {
        let mut s = sent.lock().unwrap_or_else(|e| e.into_inner());
        if !ok {
            s.errors += 1;
            return cookie;
        }
        if p.crawler {
            s.bot_events += 1;
        } else {
            s.views += 1;
        }
    }
    if p.clicks {
        let needle = format!("href=\"/{}/{}?eid=", p.link, p.platform);
        if let Some(start) = body.find(&needle) {
            let href = &body[start + 6..];
            let href = &href[..href.find('"').unwrap_or(0)];
            let r = http
                .get(format!("{edge}{href}"))
                .header("host", HOST)
                .header("user-agent", &p.ua)
                .header("x-forwarded-for", &p.ip)
                .header("cookie", &cookie)
                .send()
                .await;
            let mut s = sent.lock().unwrap_or_else(|e| e.into_inner());
            match r {
                Ok(r) if r.status() == 302 => *s.clicks.entry(p.platform.clone()).or_insert(0) += 1,
                _ => s.errors += 1,
            }
        }
    }
    cookie
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let visits: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(3000);
    let concurrency: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let edge = std::env::var("LOADGEN_EDGE").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let mongo = common::config::MongoConfig::init_from_env()?.database().await?;
    let ch_cfg = common::config::ClickHouseConfig::init_from_env()?;
    let ch = ch_cfg.client().with_database(&ch_cfg.database);
    let (tenant, _links) = seed(&mongo).await?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(concurrency).build()?;

    // Baseline: what the pipeline already counted today (the demo can run again).
    let tenant_hex = tenant.to_hex();
    let day_id = |t: u32| aggregator::rollup::rollup_id(&tenant_hex, "", t - t % 86_400);
    let now_s = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    let today = day_id(now_s());
    let daily = mongo.collection::<Rollup>(collections::ANALYTICS_DAILY);
    let base = daily.find_one(doc! { "_id": &today }).await?.map(|r| r.metrics).unwrap_or_default();
    let base_stored: u64 = ch.query("SELECT count() FROM events FINAL WHERE tenant_id = ?").bind(&tenant_hex).fetch_one().await.unwrap_or(0);

    // Wait for the edge to pick the demo tenant up. Probes are HEAD requests:
    // counted as bots, like the pipeline does.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = 0;
    loop {
        let r = http.head(format!("{edge}/{}", LINKS[0].0)).header("host", HOST).header("user-agent", "loadgen-probe").send().await;
        if let Ok(r) = &r {
            probes += u64::from(r.status() == 200);
            if r.status() == 200 {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the edge does not serve {HOST} (is it running? deploy/local/demo.sh starts it)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut rng = benches::Rng(0x5eed_1234_abcd_ef01);
    let uas = benches::UserAgents::load()?;
    let ips = client_ips(visits, &mut rng)?;
    let sent = Arc::new(Mutex::new(Sent { views: 0, bot_events: probes, ..Default::default() }));
    let return_after = Duration::from_millis(std::env::var("LOADGEN_RETURN_AFTER_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0));
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut first_wave = Vec::with_capacity(visits);
    for (i, ip) in ips.into_iter().enumerate() {
        let crawler = rng.unit() < 0.05;
        let plan = Arc::new(Plan {
            i,
            link: LINKS[(rng.next() % 3) as usize].0,
            ua: if crawler { CRAWLERS[(rng.next() % 4) as usize].to_string() } else { uas.pick(&mut rng).to_string() },
            head: crawler && rng.unit() < 0.3,
            crawler,
            referrer: rng.pick(&REFERRERS).to_string(),
            clicks: !crawler && rng.unit() < 0.45,
            platform: rng.pick(&PLATFORMS).to_string(),
            returns: !crawler && rng.unit() < 0.2,
            ip,
        });
        let cookie = if rng.unit() < 0.6 { "sl_consent=granted".to_string() } else { String::new() };
        let permit = sem.clone().acquire_owned().await?;
        let (http, edge, sent) = (http.clone(), edge.clone(), sent.clone());
        first_wave.push(tokio::spawn(async move {
            let _permit = permit;
            let cookie = visit(&http, &edge, &sent, &plan, cookie).await;
            plan.returns.then_some((plan, cookie))
        }));
    }
    let mut returning = Vec::new();
    for t in first_wave {
        if let Some(r) = t.await? {
            returning.push(r);
        }
    }
    // Returning visitors come back after the session timeout (the demo
    // shortens ingest's), so they count as returning, not as the same visit.
    tokio::time::sleep(return_after).await;
    let mut second_wave = Vec::with_capacity(returning.len());
    for (plan, cookie) in returning {
        let permit = sem.clone().acquire_owned().await?;
        let (http, edge, sent) = (http.clone(), edge.clone(), sent.clone());
        second_wave.push(tokio::spawn(async move {
            let _permit = permit;
            visit(&http, &edge, &sent, &plan, cookie).await;
        }));
    }
    for t in second_wave {
        t.await?;
    }
    let send_secs = (started.elapsed() - return_after).as_secs_f64();
    let sent = Arc::try_unwrap(sent).map_err(|_| anyhow::anyhow!("tasks still running"))?.into_inner().unwrap_or_else(|e| e.into_inner());
    let total_clicks: u64 = sent.clicks.values().sum();
    let total = sent.views + total_clicks + sent.bot_events;
    eprintln!("sent {total} requests in {send_secs:.1} s ({:.0} events/s); waiting for the pipeline…", total as f64 / send_secs);

    // Wait until ClickHouse has every event and the daily rollup shows them.
    let waited = Instant::now();
    let rollup = loop {
        let stored: u64 = ch.query("SELECT count() FROM events FINAL WHERE tenant_id = ?").bind(&tenant_hex).fetch_one().await.unwrap_or(0);
        let r = daily.find_one(doc! { "_id": &today }).await?;
        if let Some(r) = r {
            let m = &r.metrics;
            if stored - base_stored >= total
                && (m.total_views - base.total_views) as u64 >= sent.views
                && (m.total_clicks - base.total_clicks) as u64 >= total_clicks
                && (m.bots - base.bots) as u64 >= sent.bot_events
            {
                break r;
            }
        }
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(120),
            "pipeline did not catch up: {} of {total} events in ClickHouse",
            stored - base_stored
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let delay = waited.elapsed().as_secs_f64();
    let m = RollupMetrics {
        total_views: rollup.metrics.total_views - base.total_views,
        total_clicks: rollup.metrics.total_clicks - base.total_clicks,
        bots: rollup.metrics.bots - base.bots,
        ..rollup.metrics.clone()
    };
    let m = &m;
    println!("\n=== demo summary (tenant {HOST}, today, UTC) ===");
    println!("sent:    {} views, {} clicks {:?}, {} bot requests, {} errors", sent.views, total_clicks, sent.clicks, sent.bot_events, sent.errors);
    println!("counted: {} views, {} clicks, {} bots (this run); today's clicks by platform {:?}", m.total_views, m.total_clicks, m.bots, rollup.breakdown.platforms);
    println!("today (all runs): unique visitors {}, returning {}, conversions {}, conversion rate {:.1}%", m.unique_visitors, m.returning_visitors, m.total_conversions, m.conversion_rate * 100.0);
    let top = |map: &BTreeMap<String, i64>| {
        let mut v: Vec<_> = map.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.into_iter().take(6).map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    };
    println!("top countries: {}", top(&rollup.breakdown.countries));
    println!("devices: {}", top(&rollup.breakdown.devices));
    println!("browsers: {}", top(&rollup.breakdown.browsers));
    println!("referrers: {}", top(&rollup.breakdown.referrers));
    println!("achieved {:.0} events/s at the edge; ClickHouse and rollups caught up {delay:.1} s after the last request", total as f64 / send_secs);
    anyhow::ensure!(
        m.total_views as u64 == sent.views && m.total_clicks as u64 == total_clicks && m.bots as u64 == sent.bot_events,
        "counted numbers differ from what was sent"
    );
    println!("OK: counted exactly what was sent. GeoIP by DB-IP Lite (CC BY 4.0, https://db-ip.com).");
    Ok(())
}
