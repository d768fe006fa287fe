//! QR codes of smartlinks (issue #18): `GET /v1/smartlinks/{id}/qr` draws
//! the link's public URL with `?src=qr` (the edge counts a visit through
//! it with the source `qr`) as SVG or PNG, in the tenant's colour when it
//! scans (dark on light, WCAG contrast ratio at least 3; the default colour
//! needs 4.5), with the chosen error-correction level. Encoding is the
//! `qrcode` crate's (ISO/IEC 18004); PNGs are two-colour indexed images
//! (`png` crate), a few kilobytes.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use qrcode::{EcLevel, QrCode};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::rbac::{Action, Resource};
use crate::state::AppState;

/// Query value that marks a visit as coming from a QR code; the edge
/// records it as `utm_source=qr` when the URL has no `utm_source`.
pub const QR_SOURCE: &str = "src=qr";

/// Image formats.
const FORMATS: [&str; 2] = ["svg", "png"];
/// Error-correction levels: recovers about 7, 15, 25, 30% of the code.
const LEVELS: [&str; 4] = ["L", "M", "Q", "H"];
/// Pixels per module, PNG (an SVG scales).
const MODULE_PX: std::ops::RangeInclusive<u32> = 1..=20;
/// Contrast ratio (WCAG 2.x) a code needs to scan reliably.
const MIN_CONTRAST: f64 = 3.0;
/// Contrast the tenant's colour needs to be the default.
const DEFAULT_CONTRAST: f64 = 4.5;

fn formats() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&FORMATS)
}

fn levels() -> utoipa::openapi::Object {
    crate::openapi::enumeration(&LEVELS)
}

fn rgb() -> utoipa::openapi::Object {
    crate::openapi::rgb_color()
}

/// `GET /v1/smartlinks/{id}/qr` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QrQuery {
    /// `svg` (default) or `png`.
    #[param(schema_with = formats)]
    pub format: Option<String>,
    /// Error correction: `L`, `M` (default), `Q` or `H` (the more, the
    /// larger the code and the more of it may be covered by a logo).
    #[param(schema_with = levels)]
    pub ec: Option<String>,
    /// Pixels per module of a PNG, 1..=20 (default 10); an SVG's viewBox
    /// is in modules.
    #[param(minimum = 1, maximum = 20)]
    pub size: Option<u32>,
    /// Colour of the dark modules, `#rrggbb`. Default: the tenant's
    /// primary colour when its contrast with `bg` is at least 4.5, else
    /// black. Must be darker than `bg` with a contrast ratio of at least 3.
    #[param(schema_with = rgb)]
    pub fg: Option<String>,
    /// Background, `#rrggbb`. Default white.
    #[param(schema_with = rgb)]
    pub bg: Option<String>,
}

/// An `#rrggbb` colour as bytes; 400 naming `field` otherwise.
fn parse_rgb(field: &str, v: &str) -> Result<[u8; 3], ApiError> {
    let hex = v.strip_prefix('#').filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let hex = hex.ok_or_else(|| ApiError::invalid(field, "must be a colour #rrggbb"))?;
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
    Ok([byte(0), byte(2), byte(4)])
}

/// WCAG 2.x relative luminance of an sRGB colour, 0 (black) to 1 (white).
fn luminance(c: [u8; 3]) -> f64 {
    let lin = |v: u8| {
        let s = f64::from(v) / 255.0;
        if s <= 0.040_45 {
            s / 12.92
        } else {
            ((s + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
}

/// WCAG 2.x contrast ratio of a dark and a light colour (1 to 21).
fn contrast(dark: [u8; 3], light: [u8; 3]) -> f64 {
    (luminance(light) + 0.05) / (luminance(dark) + 0.05)
}

/// The colours of a code: `(dark, light)`, from the query or the tenant's
/// primary colour (`tenant_color`, any CSS hex form); 400 when they would
/// not scan.
fn colours(q: &QrQuery, tenant_color: Option<&str>) -> Result<([u8; 3], [u8; 3]), ApiError> {
    let bg = match &q.bg {
        Some(v) => parse_rgb("bg", v)?,
        None => [255, 255, 255],
    };
    let fg = match &q.fg {
        Some(v) => parse_rgb("fg", v)?,
        None => tenant_color
            .and_then(|c| parse_rgb("fg", c).ok())
            .filter(|c| luminance(*c) < luminance(bg) && contrast(*c, bg) >= DEFAULT_CONTRAST)
            .unwrap_or([0, 0, 0]),
    };
    if luminance(fg) >= luminance(bg) || contrast(fg, bg) < MIN_CONTRAST {
        return Err(ApiError::invalid(
            "fg",
            format!(
                "must be darker than bg with a contrast ratio of at least {MIN_CONTRAST} to scan (it is {:.2})",
                contrast(fg, bg).min(contrast(bg, fg))
            ),
        ));
    }
    Ok((fg, bg))
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The SVG of `code` (viewBox in modules, 4-module quiet zone).
fn svg(code: &QrCode, fg: [u8; 3], bg: [u8; 3]) -> String {
    let (dark, light) = (hex(fg), hex(bg));
    code.render::<qrcode::render::svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .dark_color(qrcode::render::svg::Color(&dark))
        .light_color(qrcode::render::svg::Color(&light))
        .build()
}

/// The PNG of `code`: 1-bit indexed (palette `[bg, fg]`), `px` pixels per
/// module, 4-module quiet zone.
fn png(code: &QrCode, px: u32, fg: [u8; 3], bg: [u8; 3]) -> Result<Vec<u8>, png::EncodingError> {
    let modules = code.width();
    let colors = code.to_colors();
    let side_modules = modules + 8;
    let side = u32::try_from(side_modules).unwrap_or(u32::MAX).saturating_mul(px);
    let row_bytes = (side as usize).div_ceil(8);
    let mut data = vec![0u8; row_bytes * side as usize];
    for y in 0..side as usize {
        let my = y / px as usize;
        for x in 0..side as usize {
            let mx = x / px as usize;
            let dark = (4..modules + 4).contains(&mx)
                && (4..modules + 4).contains(&my)
                && colors[(my - 4) * modules + (mx - 4)] == qrcode::Color::Dark;
            if dark {
                data[y * row_bytes + x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::One);
        enc.set_palette(vec![bg[0], bg[1], bg[2], fg[0], fg[1], fg[2]]);
        let mut w = enc.write_header()?;
        w.write_image_data(&data)?;
    }
    Ok(out)
}

/// A QR code of the link's public URL with `?src=qr` (visits through it
/// count with the source `qr`), as `image/svg+xml` (default) or
/// `image/png`. 400 when the colours would not scan.
#[utoipa::path(get, path = "/v1/smartlinks/{id}/qr", tag = "smartlinks",
    params(("id" = String, Path, description = "Link id"), QrQuery),
    responses(
        (status = 200, description = "The code", content((String = "image/svg+xml"), (Vec<u8> = "image/png"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn qr(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<QrQuery>,
) -> Result<Response, ApiError> {
    p.can(Resource::Links, Action::Read)?;
    let format = crate::validate::one_of("format", q.format.as_deref().unwrap_or("svg"), &FORMATS)?;
    let ec = match crate::validate::one_of("ec", q.ec.as_deref().unwrap_or("M"), &LEVELS)?.as_str() {
        "L" => EcLevel::L,
        "Q" => EcLevel::Q,
        "H" => EcLevel::H,
        _ => EcLevel::M,
    };
    let px = q.size.unwrap_or(10);
    if !MODULE_PX.contains(&px) {
        return Err(ApiError::invalid("size", "must be 1 to 20"));
    }
    let (link, client) = super::handlers::load_link(&st, &p, &id).await?;
    let (fg, bg) = colours(&q, client.branding.primary_color.as_deref())?;
    let url = format!("{}?{QR_SOURCE}", super::handlers::view(&link, &client, &st.cfg.link_scheme).url);
    // A URL of at most a few hundred bytes always fits (version 40-L holds
    // 2,953 bytes, 40-H 1,273).
    let code = QrCode::with_error_correction_level(url.as_bytes(), ec)
        .map_err(|e| ApiError::invalid("ec", format!("the link's URL does not fit a QR code: {e}")))?;
    let (content_type, body) = if format == "png" {
        let bytes = png(&code, px, fg, bg)
            .map_err(|e| ApiError::Unavailable { store: "png encoder", detail: e.to_string() })?;
        ("image/png", bytes)
    } else {
        ("image/svg+xml", svg(&code, fg, bg).into_bytes())
    };
    let disposition = format!("inline; filename=\"{}-qr.{format}\"", link.slug);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("inline")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300")),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_follows_wcag() {
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 0.01);
        assert!((contrast([0x77, 0x77, 0x77], [255, 255, 255]) - 4.48).abs() < 0.01);
    }

    #[test]
    fn colours_default_to_the_tenant_s_when_they_scan() {
        let q = QrQuery::default();
        assert_eq!(colours(&q, Some("#1a237e")).unwrap(), ([0x1a, 0x23, 0x7e], [255; 3]), "dark navy: used");
        assert_eq!(colours(&q, Some("#1DB954")).unwrap().0, [0; 3], "Spotify green on white: 2.1, black instead");
        assert_eq!(colours(&q, Some("#abc")).unwrap().0, [0; 3], "short forms fall back to black");
        let q = QrQuery { fg: Some("#eeeeee".into()), ..QrQuery::default() };
        assert!(matches!(colours(&q, None), Err(ApiError::Invalid { field, .. }) if field == "fg"));
        let q = QrQuery { fg: Some("#ffffff".into()), bg: Some("#000000".into()), ..QrQuery::default() };
        assert!(colours(&q, None).is_err(), "light on dark is refused (many readers miss it)");
        let q = QrQuery { bg: Some("#zzzzzz".into()), ..QrQuery::default() };
        assert!(matches!(colours(&q, None), Err(ApiError::Invalid { field, .. }) if field == "bg"));
    }
}
