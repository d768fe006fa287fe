//! The tenant dashboard (issue #20): the single-page app built from `web/`
//! (`deploy/local/web.sh`: TypeScript, Preact, Vite) and served here under
//! `/app/`, so that it calls the API on its own origin (no CORS, session
//! tokens never leave it).
//!
//! - Files come from `API_APP_DIR` (the build's `web/dist`); a release
//!   ships that folder beside the binary (the container image copies it).
//!   Without it, `/app/` answers 404 JSON naming the command that builds
//!   it: the API itself runs without a dashboard.
//! - Hashed assets (`/app/assets/*`, names change with their content) are
//!   cached for a year (`immutable`); everything else (`index.html`, the map)
//!   is revalidated on every load (`no-cache`), so a new release shows at
//!   the next load. The build writes a `.gz` beside each text asset and
//!   they are answered to browsers that accept gzip.
//! - Paths under `/app/` that name no file answer `index.html` (the app
//!   routes in the URL's fragment, so these are only old bookmarks).
//! - Every answer carries [`CSP`]: the app's own scripts, styles, images
//!   and API calls only (no third-party CDN, no inline script), no framing.

use std::path::Path;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;
use crate::state::AppState;

/// The dashboard's Content-Security-Policy: scripts, styles, fonts and API
/// calls from its own origin only; images also as `data:` and `blob:` (the
/// QR preview, chart exports); no plugin, no `<base>`, never framed, forms
/// post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'; object-src 'none'";

/// `Cache-Control` of content-hashed assets (`/app/assets/*`).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The `/app` routes over the build in `dir` (config `API_APP_DIR`):
/// `/app/*` serves files as described in the module header. Errors: none at start; a missing build answers 404 JSON
/// per request (so a build made after start is served at once).
pub fn router(dir: &Path) -> Router<AppState> {
    let index = ServeFile::new(dir.join("index.html")).precompressed_gzip();
    let assets = ServeDir::new(dir.join("assets")).precompressed_gzip();
    let files = ServeDir::new(dir).precompressed_gzip().append_index_html_on_directories(true).fallback(index);
    let built = dir.to_path_buf();
    Router::new().nest_service("/app/assets", assets).nest_service("/app", files).layer(middleware::from_fn(
        move |req: Request, next: Next| {
            let built = built.clone();
            async move { serve(&built, req, next).await }
        },
    ))
}

/// Answers 404 JSON while the app is not built, else the file with the
/// dashboard's headers.
async fn serve(dir: &Path, req: Request, next: Next) -> Response {
    if !dir.join("index.html").is_file() {
        return ApiError::NotFound("dashboard build (run deploy/local/web.sh, or set API_APP_DIR)").into_response();
    }
    let hashed = req.uri().path().starts_with("/app/assets/");
    let mut resp = next.run(req).await;
    let cache = if hashed && resp.status() == StatusCode::OK { IMMUTABLE } else { "no-cache" };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}
