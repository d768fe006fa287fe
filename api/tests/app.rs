//! The dashboard's files under `/app/` (issue #20) as the api serves them:
//! its CSP and security headers on every answer, hashed assets cached for a
//! year and answered gzipped, `index.html` revalidated, unknown app paths
//! answered with `index.html`, an unknown asset 404, no build a 404 JSON;
//! and `/v1/users/me` telling the dashboard what the role may do.

#![allow(clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use support::{env_custom, user_session};

/// What the test's `.gz` holds (the server does not look inside).
const PRECOMPRESSED: &[u8] = b"\x1f\x8bprecompressed";

fn build(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><title>app</title>").unwrap();
    let js = "console.log('dashboard');".repeat(50);
    std::fs::write(dir.join("assets/index-abc123.js"), &js).unwrap();
    // The build's precompressed copy: answered as it is to gzip clients.
    std::fs::write(dir.join("assets/index-abc123.js.gz"), PRECOMPRESSED).unwrap();
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_headers() {
    let dir = std::env::temp_dir().join(testkit::unique_name("app-dist"));
    let missing = dir.join("not-built");
    build(&dir);
    let e = env_custom(|c| c.app_dir = dir.clone()).await;
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let get = |path: &str, gzip: bool| {
        let mut r = http.get(format!("{}{path}", e.base));
        if gzip {
            r = r.header("Accept-Encoding", "gzip");
        }
        r.send()
    };

    let index = get("/app/", false).await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let h = index.headers().clone();
    assert_eq!(h["content-security-policy"], api::app::CSP);
    assert!(api::app::CSP.contains("script-src 'self'") && !api::app::CSP.contains("unsafe-inline"));
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(index.text().await.unwrap().contains("<title>app</title>"));

    // A path of the app that is no file (an old bookmark) gets the app.
    let deep = get("/app/links/123", false).await.unwrap();
    assert_eq!(deep.status(), StatusCode::OK);
    assert!(deep.text().await.unwrap().contains("<title>app</title>"));

    let asset = get("/app/assets/index-abc123.js", true).await.unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(asset.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(asset.headers()["content-encoding"], "gzip");
    assert!(asset.headers()["content-type"].to_str().unwrap().contains("javascript"));
    assert_eq!(&asset.bytes().await.unwrap()[..], PRECOMPRESSED);
    let plain = get("/app/assets/index-abc123.js", false).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.text().await.unwrap().starts_with("console.log"));

    let gone = get("/app/assets/index-old999.js", false).await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "an unknown asset is not answered with index.html");
    assert_eq!(gone.headers()["cache-control"], "no-cache");

    // The API's own routes are untouched.
    let (s, _) = e.call(None, Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);

    // The dashboard learns what the signed-in role may do.
    let (client, _) = e.tenant("app-roles").await;
    let (viewer, _) = user_session(&e, &client, "viewer@app.test", "viewer").await;
    let (s, me) = e.call(Some(&viewer), Method::GET, "/v1/users/me", None).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    let perms: Vec<&str> = me["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(perms.contains(&"links:read") && perms.contains(&"analytics:read"), "{perms:?}");
    assert!(!perms.contains(&"links:create") && !perms.contains(&"analytics:export"), "{perms:?}");
    drop(e);

    // Without a build the API runs and /app/ says how to make one.
    let e = env_custom(|c| c.app_dir = missing.clone()).await;
    let (s, v) = e.call(None, Method::GET, "/app/", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"]["message"].as_str().unwrap().contains("deploy/local/web.sh"), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
