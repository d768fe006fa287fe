//! The edge against the real MongoDB-wire server and Kafka broker: cache
//! sync, landing pages, redirects, escaping, and one event per request.

mod common_env;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bson::doc;
use common_env::*;
use schemas::event::{Consent, EventKind};

/// A link written to MongoDB is served once the cache's next refresh has
/// run (counted in refresh passes, not seconds: the machine is shared),
/// and so are its changes: a new URL, then its archiving (410).
#[tokio::test]
async fn a_link_inserted_in_mongodb_is_served_after_the_next_refresh_and_changes_follow() {
    let env = env(&shared_brokers()).await;
    let client = insert_client(&env.db, "links.cache.test").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    // The cache loaded (an unknown slug is a 404, not a 503).
    wait_status(edge.addr, "links.cache.test", "/nope", 404, CACHE_WAIT).await;

    let inserted = Instant::now();
    let link = insert_link(&env.db, &client, "new-single", "New Single", "https://open.spotify.com/track/A").await;
    let r = served_after_two_refreshes(&edge, "links.cache.test", "/new-single").await;
    assert_eq!(r.status(), 200, "a new link is served");
    eprintln!("new link live after {:?}", inserted.elapsed());

    update_link(&env.db, link.id, doc! { "platforms.spotify": "https://open.spotify.com/track/B" }).await;
    let r = served_after_two_refreshes(&edge, "links.cache.test", "/new-single/spotify").await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://open.spotify.com/track/B", "a changed URL is followed");

    update_link(&env.db, link.id, doc! { "metadata.status": "archived" }).await;
    let r = served_after_two_refreshes(&edge, "links.cache.test", "/new-single").await;
    assert_eq!(r.status(), 410, "an archived link is gone");
    assert!(edge.metrics.cache_refreshes.get() >= 6);

    let ready = http().get(format!("http://{}/readyz", edge.admin_addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}

#[tokio::test]
async fn landing_pages_and_redirects_per_host_and_slug_with_escaping() {
    let env = env(&shared_brokers()).await;
    let a = insert_client(&env.db, "links.a.test").await;
    let b = insert_client(&env.db, "links.b.test").await;
    insert_link(&env.db, &a, "jiro", "<script>alert('pwned')</script>", "https://open.spotify.com/track/A").await;
    insert_link(&env.db, &b, "jiro", "In Your Light", "https://open.spotify.com/track/B").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    wait_status(edge.addr, "links.a.test", "/jiro", 200, CACHE_WAIT).await;
    let c = http();
    let get = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let url = format!("http://{}{path}", edge.addr);
        async move { c.get(url).header("host", host).send().await.unwrap() }
    };

    let page = get("links.a.test", "/jiro").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-store");
    // The view's event id, the one its pixels and its ClickHouse row carry.
    let view_id = page.headers()[edge::server::EVENT_ID_HEADER].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&view_id).is_ok(), "{view_id}");
    // CSP (security review finding 17): our inline blocks run by this
    // response's nonce, the pixels may load (no consent refused yet), no framing.
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    let nonce = csp.split("'nonce-").nth(1).and_then(|n| n.split('\'').next()).unwrap().to_string();
    assert!(csp.contains("'strict-dynamic'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")), "the script carries the header's nonce");
    let again = get("links.a.test", "/jiro").await;
    assert!(!again.headers()["content-security-policy"].to_str().unwrap().contains(&nonce), "a nonce per response");
    // A visitor who refused consent, or asks not to be tracked: no script but ours.
    for (name, value) in [("cookie", "sl_consent=denied"), ("sec-gpc", "1")] {
        let url = format!("http://{}/jiro", edge.addr);
        let r = c.get(url).header("host", "links.a.test").header(name, value).send().await.unwrap();
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("strict-dynamic") && !csp.contains("facebook"), "{name}: {csp}");
    }
    let missing = get("links.a.test", "/missing").await;
    assert!(missing.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert!(html.contains(&view_id), "the page's pixels share the event id");
    assert!(!html.contains("<script>alert"), "title must come out inert");
    assert!(html.contains("&lt;script&gt;alert("), "title is shown escaped");
    assert!(html.contains("href=\"/jiro/spotify?eid="), "buttons point to /slug/platform");
    assert!(html.contains("GTM-TEST1") && html.contains("1234567890"), "pixels configured");

    let page_b = get("links.b.test", "/jiro").await.text().await.unwrap();
    assert!(page_b.contains("<h1>In Your Light</h1>"));

    for (host, want) in [
        ("links.a.test", "https://open.spotify.com/track/A"),
        ("LINKS.B.TEST:8080", "https://open.spotify.com/track/B"),
    ] {
        let r = c.get(format!("http://{}/jiro/spotify", edge.addr)).header("host", host).send().await.unwrap();
        assert_eq!(r.status(), 302, "{host}");
        assert_eq!(r.headers()["location"], want, "{host}");
    }
    let go = get("links.b.test", "/jiro?go=deezer&utm_source=ig").await;
    assert_eq!(
        (go.status().as_u16(), go.headers()["location"].to_str().unwrap()),
        (302, "https://www.deezer.com/track/1")
    );

    assert_eq!(get("links.a.test", "/jiro/tidal").await.status(), 404, "platform not on the link");
    assert_eq!(get("links.a.test", "/missing").await.status(), 404);
    assert_eq!(get("unknown.test", "/jiro").await.status(), 404);
    assert_eq!(get("links.a.test", "/").await.status(), 404);
    assert_eq!(get("links.a.test", "/jiro/spotify/extra").await.status(), 404);
    assert_eq!(get("links.a.test", "/JIRO/Spotify").await.status(), 302, "paths are case-insensitive");

    let head =
        c.head(format!("http://{}/jiro/spotify", edge.addr)).header("host", "links.a.test").send().await.unwrap();
    assert_eq!(head.status(), 302);
    let head = c.head(format!("http://{}/jiro", edge.addr)).header("host", "links.a.test").send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    // POST is a page's engagement beacon: without consent nothing is recorded (204).
    let post = c.post(format!("http://{}/jiro", edge.addr)).header("host", "links.a.test").send().await.unwrap();
    assert_eq!(post.status(), 204);
    let put = c.put(format!("http://{}/jiro", edge.addr)).header("host", "links.a.test").send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, HEAD, POST");
    let long = format!("http://{}/jiro?x={}", edge.addr, "a".repeat(5000));
    assert_eq!(c.get(long).header("host", "links.a.test").send().await.unwrap().status(), 414);

    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}

#[tokio::test]
async fn every_request_yields_exactly_one_event_with_the_schema_fields() {
    let brokers = shared_brokers();
    let env = env(&brokers).await;
    let tenant = insert_client(&env.db, "links.events.test").await;
    let link = insert_link(&env.db, &tenant, "jiro", "In Your Light", "https://open.spotify.com/track/A").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    wait_status(edge.addr, "links.events.test", "/jiro", 200, CACHE_WAIT).await; // 1 view
    let c = http();
    let base = format!("http://{}", edge.addr);

    // A view from a visitor behind our (trusted, loopback) proxy, with consent.
    let page = c
        .get(format!("{base}/jiro?utm_source=instagram&utm_campaign=launch&fbclid=IwAR0&src=qr"))
        .header("host", "links.events.test")
        .header("x-forwarded-for", "6.6.6.6, 81.2.69.142")
        .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15")
        .header("accept-language", "fr-FR,fr;q=0.9")
        .header("referer", "https://l.instagram.com/")
        .header("cookie", "sl_consent=granted")
        .send()
        .await
        .unwrap();
    let set_cookie =
        page.headers().get("set-cookie").expect("visitor cookie with consent").to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("sl_vid=") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let vid = set_cookie["sl_vid=".len()..set_cookie.find(';').unwrap()].to_string();
    let html = page.text().await.unwrap();
    // The click the page prepared: its eid token and the id it pushes to the pixels.
    let href_start = html.find("href=\"/jiro/spotify?eid=").unwrap() + "href=\"".len();
    let href = &html[href_start..href_start + html[href_start..].find('"').unwrap()];
    let eid_start =
        html.find("data-platform=\"spotify\" data-eid=\"").unwrap() + "data-platform=\"spotify\" data-eid=\"".len();
    let page_click_id = html[eid_start..eid_start + 36].to_string();
    let view_id_start = html.find("\"eventId\":\"").unwrap() + "\"eventId\":\"".len();
    let page_view_id = html[view_id_start..view_id_start + 36].to_string();

    // The click through that button, same visitor; then the same token
    // replayed later (a double click, a retry, a replay): the same event id
    // at the same ts, so the events table keeps one row.
    for _ in 0..2 {
        let click = c
            .get(format!("{base}{href}"))
            .header("host", "links.events.test")
            .header("x-forwarded-for", "81.2.69.142")
            .header("cookie", format!("sl_consent=granted; sl_vid={vid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(click.status(), 302);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A direct click without consent, with DNT, from the link's QR code
    // (`src=qr`), and a HEAD from a bot.
    let direct = c
        .get(format!("{base}/jiro/deezer?src=qr"))
        .header("host", "links.events.test")
        .header("dnt", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 302);
    assert!(direct.headers().get("set-cookie").is_none());
    c.head(format!("{base}/jiro"))
        .header("host", "links.events.test")
        .header("user-agent", "facebookexternalhit/1.1")
        .send()
        .await
        .unwrap();
    // Requests that are not views or clicks make no event.
    c.get(format!("{base}/nope")).header("host", "links.events.test").send().await.unwrap();

    let events = events(&brokers, &env.cfg.kafka.raw_topic, 6).await;
    assert_eq!(events.len(), 6, "1 warm-up view + view + click + replay + direct click + HEAD view: {events:#?}");
    let ids: HashSet<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 5, "unique event ids but the replay's");
    let clicks: Vec<_> = events.iter().filter(|e| e.event_id.to_string() == page_click_id).collect();
    assert_eq!(clicks.len(), 2, "click and replay carry the page's id");
    assert_eq!(clicks[0].ts_ms, clicks[1].ts_ms, "one dedup key: (tenant, link, ts, event_id)");
    assert_eq!(clicks[0].ts_ms, uuid_ts_ms(&page_click_id), "timed at the id's instant");
    for e in &events {
        assert_eq!(e.validate(e.ts_ms), Ok(()), "{e:?}");
        assert_eq!(e.tenant_id, tenant.id.to_hex());
        assert_eq!(e.link_id, link.id.to_hex());
        assert_eq!(e.slug, "jiro");
        assert_eq!(e.host, "links.events.test");
    }
    let view = events.iter().find(|e| e.event_id.to_string() == page_view_id).expect("the page's view id was recorded");
    assert_eq!(view.kind, EventKind::View);
    assert_eq!(view.ip.to_string(), "81.2.69.142", "first untrusted XFF hop");
    assert_eq!(view.attribution.utm_source.as_deref(), Some("instagram"), "a named source wins over src=qr");
    assert_eq!(view.attribution.utm_campaign.as_deref(), Some("launch"));
    assert_eq!(view.attribution.fbclid.as_deref(), Some("IwAR0"));
    assert_eq!(view.referrer.as_deref(), Some("https://l.instagram.com/"));
    assert_eq!(view.accept_language.as_deref(), Some("fr-FR,fr;q=0.9"));
    assert!(view.user_agent.as_deref().unwrap().contains("iPhone"));
    assert_eq!(view.consent, Consent::Granted);
    assert_eq!(view.visitor_id.as_deref(), Some(vid.as_str()));
    assert!(!view.keep_full_ip);

    let click = events
        .iter()
        .find(|e| e.event_id.to_string() == page_click_id)
        .expect("the click carries the id the page gave the pixels");
    assert_eq!(click.kind, EventKind::Click);
    assert_eq!(click.platform.as_deref(), Some("spotify"));
    assert_eq!(click.visitor_id.as_deref(), Some(vid.as_str()));
    assert_eq!(view.partition_key(), click.partition_key(), "one visitor, one partition");

    let direct = events.iter().find(|e| e.platform.as_deref() == Some("deezer")).unwrap();
    assert!(direct.dnt && direct.visitor_id.is_none() && direct.consent == Consent::Unknown);
    assert_eq!(direct.attribution.utm_source.as_deref(), Some("qr"), "a QR code's visit has the source qr");
    assert_eq!(direct.ip.to_string(), "127.0.0.1");
    let head = events.iter().find(|e| e.method == "HEAD").unwrap();
    assert_eq!(head.kind, EventKind::View);
    assert_eq!(head.user_agent.as_deref(), Some("facebookexternalhit/1.1"));

    assert_eq!(metric(edge.admin_addr, "edge_events_produced_total").await, 6.0);
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let mut env = env(&shared_brokers()).await;
    env.cfg.rate_limit_per_sec = 1;
    env.cfg.rate_limit_burst = 3;
    let tenant = insert_client(&env.db, "links.rl.test").await;
    insert_link(&env.db, &tenant, "jiro", "T", "https://open.spotify.com/track/A").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    let c = http();
    // Wait for the cache from another client IP, so the limited one starts fresh.
    testkit::eventually(CACHE_WAIT, "cache", || {
        let c = c.clone();
        let addr = edge.addr;
        async move {
            let r = c
                .get(format!("http://{addr}/jiro"))
                .header("host", "links.rl.test")
                .header("x-forwarded-for", "198.51.100.1")
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = c
            .get(format!("http://{}/jiro/spotify", edge.addr))
            .header("host", "links.rl.test")
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 1);
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [302, 302, 302, 429, 429]);
    let other = c
        .get(format!("http://{}/jiro/spotify", edge.addr))
        .header("host", "links.rl.test")
        .header("x-forwarded-for", "203.0.113.8")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 302, "limits are per client IP");
    // Issue #14: a client's own `Forwarded` header is not read (the proxy
    // writes X-Forwarded-For), so it cannot pick a fresh address per request.
    for i in 0..2 {
        let r = c
            .get(format!("http://{}/jiro/spotify", edge.addr))
            .header("host", "links.rl.test")
            .header("forwarded", format!("for=192.0.2.{i}"))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "spoofed Forwarded: still the proxy's address");
    }
    // IPv6 clients share their /64's limit (a host picks any address in it).
    let mut v6 = Vec::new();
    for addr in ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7::abcd:1", "2001:db8:7:7:ffff:ffff:ffff:fffe"] {
        let r = c
            .get(format!("http://{}/jiro/spotify", edge.addr))
            .header("host", "links.rl.test")
            .header("x-forwarded-for", addr)
            .send()
            .await
            .unwrap();
        v6.push(r.status().as_u16());
    }
    assert_eq!(v6, [302, 302, 302, 429]);
    assert_eq!(metric(edge.admin_addr, "edge_rate_limited_total").await, 5.0);
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}

/// The instant of a UUIDv7 (ms since the Unix epoch) given as text.
fn uuid_ts_ms(id: &str) -> i64 {
    let id = uuid::Uuid::parse_str(id).expect("a uuid");
    let (secs, nanos) = id.get_timestamp().expect("a UUIDv7").to_unix();
    secs as i64 * 1000 + i64::from(nanos / 1_000_000)
}

/// Issue #18: a suspended tenant (`PATCH /v1/clients/{id}` with
/// `status: suspended`, here its document as the API writes it) gets the
/// neutral 404 page after the next refresh: no redirect, no branding, no
/// pixel; made active again, its links are served as before.
#[tokio::test]
async fn a_suspended_tenant_s_links_answer_a_neutral_page_until_it_is_active_again() {
    let env = env(&shared_brokers()).await;
    let host = "links.suspended.test";
    let client = insert_client(&env.db, host).await;
    insert_link(&env.db, &client, "jiro", "In Your Light", "https://open.spotify.com/track/A").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    wait_status(edge.addr, host, "/jiro/spotify", 302, CACHE_WAIT).await;
    let set_status = |status: &'static str| {
        let db = env.db.clone();
        async move {
            db.collection::<schemas::mongo::Client>(schemas::mongo::collections::CLIENTS)
                .update_one(
                    doc! { "_id": client.id },
                    doc! { "$set": { "metadata.status": status, "metadata.updatedAt": bson::DateTime::now() } },
                )
                .await
                .unwrap();
        }
    };

    set_status("suspended").await;
    let r = served_after_two_refreshes(&edge, host, "/jiro/spotify").await;
    assert_eq!(r.status(), 404, "nothing redirected");
    assert!(r.headers().get("location").is_none());
    let page = served_after_two_refreshes(&edge, host, "/jiro").await;
    assert_eq!(page.status(), 404);
    let html = page.text().await.unwrap();
    assert!(html.contains("This link does not exist"), "{html}");
    // (#1DB954, the tenant's colour, is also the neutral page's default.)
    for tenant_mark in ["GTM-TEST1", "1234567890", "In Your Light", "open.spotify.com"] {
        assert!(!html.contains(tenant_mark), "{tenant_mark} on the neutral page: {html}");
    }

    set_status("active").await;
    let r = served_after_two_refreshes(&edge, host, "/jiro/spotify").await;
    assert_eq!(r.status(), 302, "served again once active");
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}

/// Issue #18: the landing and error pages speak the visitor's language
/// (`Accept-Language`: French or English), with the tenant's own wording
/// where it set one, and say so to caches (`Vary`).
#[tokio::test]
async fn pages_speak_the_visitor_s_language_with_the_tenant_s_wording() {
    let env = env(&shared_brokers()).await;
    let host = "links.i18n.test";
    let client = insert_client(&env.db, host).await;
    env.db
        .collection::<schemas::mongo::Client>(schemas::mongo::collections::CLIENTS)
        .update_one(
            doc! { "_id": client.id },
            doc! { "$set": { "branding.texts.fr.listen": "Jouer", "metadata.updatedAt": bson::DateTime::now() } },
        )
        .await
        .unwrap();
    insert_link(&env.db, &client, "nuit", "Nuit Blanche", "https://open.spotify.com/track/A").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    wait_status(edge.addr, host, "/nuit", 200, CACHE_WAIT).await;
    let get = |path: &'static str, lang: &'static str| {
        let c = http();
        let url = format!("http://{}{path}", edge.addr);
        async move {
            let r = c.get(url).header("host", host).header("accept-language", lang).send().await.unwrap();
            let vary = r.headers().get("vary").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), vary, r.text().await.unwrap())
        }
    };
    let (status, vary, fr) = get("/nuit", "fr-FR,fr;q=0.9,en;q=0.8").await;
    assert_eq!((status, vary.as_deref()), (200, Some("Accept-Language")));
    assert!(fr.contains("<html lang=\"fr\">"), "{fr}");
    assert!(fr.contains(">Jouer</span>"), "the tenant's word: {fr}");
    assert!(fr.contains(">Accepter</button>") && fr.contains("Écoutez Nuit Blanche de Jiro"), "ours otherwise: {fr}");
    let (_, _, en) = get("/nuit", "de-DE,de;q=0.9,en;q=0.5").await;
    assert!(
        en.contains("<html lang=\"en\">") && en.contains(">Listen</span>") && en.contains(">Accept</button>"),
        "{en}"
    );
    let (status, _, missing) = get("/nope", "fr").await;
    assert_eq!(status, 404);
    assert!(missing.contains("Ce lien n&#x27;existe pas") || missing.contains("Ce lien n'existe pas"), "{missing}");
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}

/// Issue #18: a link's schedule. Before its go-live the edge serves a
/// pre-release page (its date, no button) on every path and redirects
/// nowhere; from its expiry every visit goes to the fallback URL, or is
/// answered 410 without one. Visits are counted as views.
#[tokio::test]
async fn a_scheduled_link_waits_for_its_go_live_and_leaves_at_its_expiry() {
    let env = env(&shared_brokers()).await;
    let host = "links.schedule.test";
    let client = insert_client(&env.db, host).await;
    let day = 86_400_000;
    let soon = insert_link(&env.db, &client, "soon", "Soon", "https://open.spotify.com/track/S").await;
    let publish = bson::DateTime::from_millis((bson::DateTime::now().timestamp_millis() / day + 3) * day);
    update_link(&env.db, soon.id, doc! { "metadata.publishAt": publish }).await;
    let past = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - 60_000);
    let over = insert_link(&env.db, &client, "over", "Over", "https://open.spotify.com/track/O").await;
    update_link(
        &env.db,
        over.id,
        doc! { "metadata.expiresAt": past, "metadata.expiredUrl": "https://label.example/next" },
    )
    .await;
    let gone = insert_link(&env.db, &client, "gone", "Gone", "https://open.spotify.com/track/G").await;
    update_link(&env.db, gone.id, doc! { "metadata.expiresAt": past }).await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    wait_status(edge.addr, host, "/soon", 200, CACHE_WAIT).await; // a view
    let c = http();
    let get = |path: &str| c.get(format!("http://{}{path}", edge.addr)).header("host", host).send();

    let page = get("/soon").await.unwrap().text().await.unwrap();
    let day_words = {
        let d = time::OffsetDateTime::from_unix_timestamp(publish.timestamp_millis() / 1000).unwrap();
        format!("Out {} {} {}", d.day(), d.month(), d.year())
    };
    assert!(page.contains(&day_words), "{day_words}: {page}");
    assert!(!page.contains("data-platform=\""), "no button before go-live: {page}");
    let r = get("/soon/spotify").await.unwrap();
    assert_eq!(r.status(), 200, "no redirect before go-live");
    assert!(r.text().await.unwrap().contains(&day_words));

    for path in ["/over", "/over/spotify"] {
        let r = get(path).await.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
            (302, "https://label.example/next")
        );
    }
    assert_eq!(get("/gone/spotify").await.unwrap().status(), 410);

    // 1 warm-up + 2 pre-release views + 2 expired visits; the 410 is not one.
    let events = events(&shared_brokers(), &env.cfg.kafka.raw_topic, 5).await;
    assert_eq!(events.len(), 5, "{events:#?}");
    assert!(events.iter().all(|e| e.kind == EventKind::View && e.platform.is_none()), "{events:#?}");
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}

/// Issue #19: a landing page's engagement beacon (`POST /{slug}`) is
/// recorded once checked (consent, the view's signed token for this link,
/// a bounded body), as an engagement event naming its view; without
/// consent nothing is recorded; a forged or foreign token, junk, a body too
/// large and an unknown link are refused with a JSON error.
#[tokio::test]
async fn a_consented_page_reports_its_engagement_and_forged_reports_are_refused() {
    let brokers = shared_brokers();
    let env = env(&brokers).await;
    let tenant = insert_client(&env.db, "links.engage.test").await;
    insert_link(&env.db, &tenant, "jiro", "In Your Light", "https://open.spotify.com/track/A").await;
    insert_link(&env.db, &tenant, "nova", "Nova", "https://open.spotify.com/track/B").await;
    let edge = edge::start(env.cfg.clone(), prometheus::Registry::new(), env.shutdown.clone()).await.unwrap();
    wait_status(edge.addr, "links.engage.test", "/jiro", 200, CACHE_WAIT).await; // 1 view
    let c = http();
    let base = format!("http://{}", edge.addr);
    let page = |path: &'static str| {
        let c = c.clone();
        let url = format!("{base}{path}");
        async move {
            let r = c.get(url).header("host", "links.engage.test").header("cookie", "sl_consent=granted").send().await;
            r.unwrap().text().await.unwrap()
        }
    };
    let field = |html: &str, name: &str| {
        let needle = format!("\"{name}\":\"");
        let start = html.find(&needle).unwrap() + needle.len();
        html[start..start + html[start..].find('"').unwrap()].to_string()
    };
    let html = page("/jiro").await; // 2 views
    let (view_id, token) = (field(&html, "eventId"), field(&html, "engage"));
    let nova_token = field(&page("/nova").await, "engage"); // 3 views
    assert!(html.contains("sendBeacon"), "the page reports its engagement");

    let post = |path: &'static str, cookie: &'static str, body: String| {
        let c = c.clone();
        let url = format!("{base}{path}");
        async move {
            let r = c
                .post(url)
                .header("host", "links.engage.test")
                .header("cookie", cookie)
                .header("content-type", "text/plain;charset=UTF-8")
                .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let report = |t: &str, ms: u64, clicked: bool| format!("{{\"t\":\"{t}\",\"ms\":{ms},\"c\":{clicked}}}");
    // The page posts to its own URL (its query too), consent given on it.
    let first_report = format!("{{\"t\":\"{token}\",\"ms\":12345,\"c\":true,\"lc\":true}}");
    assert_eq!(post("/jiro?fbclid=IwAR9", "sl_consent=granted; _fbp=fb.1.1.2", first_report).await.0, 204);
    // Without consent: accepted, not recorded.
    assert_eq!(post("/jiro", "", report(&token, 1, false)).await.0, 204);
    assert_eq!(post("/jiro", "sl_consent=denied", report(&token, 1, false)).await.0, 204);
    // Refused: another link's token, a forged one, junk, too large, unknown link.
    let (s, body) = post("/jiro", "sl_consent=granted", report(&nova_token, 1, false)).await;
    assert_eq!((s, body.as_str()), (400, "{\"error\":{\"code\":\"bad_token\"}}"));
    let forged = format!("{}.0000000000000000", token.split('.').next().unwrap());
    assert_eq!(post("/jiro", "sl_consent=granted", report(&forged, 1, false)).await.0, 400);
    assert_eq!(post("/jiro", "sl_consent=granted", "not json".into()).await.0, 400);
    assert_eq!(post("/jiro", "sl_consent=granted", "x".repeat(2000)).await.0, 413);
    assert_eq!(post("/nope", "sl_consent=granted", report(&token, 1, false)).await.0, 404);
    // An hour-long tab is capped at 4 h.
    assert_eq!(post("/nova", "sl_consent=granted", report(&nova_token, 99_000_000, false)).await.0, 204);

    let all = events(&brokers, &env.cfg.kafka.raw_topic, 5).await;
    let engaged: Vec<_> = all.iter().filter(|e| e.kind == EventKind::Engagement).collect();
    assert_eq!(engaged.len(), 2, "{engaged:?}");
    // Events of several partitions arrive in any order: the view is found by its id.
    let jiro_view = all.iter().find(|e| e.event_id.to_string() == view_id).expect("the view");
    let first = engaged.iter().find(|e| e.link_id == jiro_view.link_id).unwrap();
    let report = first.engagement.unwrap();
    assert_eq!(report.view_id.to_string(), view_id);
    assert_eq!((report.visible_ms, report.clicked, report.consented_on_page), (12_345, true, true));
    assert_eq!(first.attribution.fbclid.as_deref(), Some("IwAR9"), "the landing query's attribution");
    assert_eq!(first.ad_cookies.fbp.as_deref(), Some("fb.1.1.2"), "the platforms' cookies, with consent");
    assert_eq!(report.view_ts_ms, jiro_view.ts_ms);
    assert_eq!((first.consent, first.method.as_str(), first.platform.as_ref()), (Consent::Granted, "POST", None));
    first.validate(first.ts_ms).expect("a valid raw event");
    let capped = engaged.iter().find(|e| e.link_id != jiro_view.link_id).unwrap();
    assert_eq!(capped.engagement.unwrap().visible_ms, schemas::event::MAX_ENGAGED_MS);
    let m = |r: &str| edge.metrics.engagements.with_label_values(&[r]).get();
    assert_eq!((m("recorded"), m("no_consent"), m("invalid")), (2, 2, 5));
    env.shutdown.cancel();
    edge.wait().await;
    env.db.drop().await.unwrap();
}
