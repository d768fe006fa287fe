//! Field validation shared by the routes. Each check names the field it
//! failed on (`ApiError::Invalid { field }` → 400 `invalid_request`).

use bson::oid::ObjectId;

use crate::error::ApiError;

/// Longest URL accepted, bytes (what browsers and CDNs handle everywhere).
pub const MAX_URL_LEN: usize = 2048;

/// `value` trimmed, with `min..=max` characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    let n = v.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(field, format!("must have {min} to {max} characters, has {n}")));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok(v.to_string())
}

/// A log listing's `limit` parameter: `given` or 50, within 1..=200 (400
/// on `limit` otherwise).
pub fn log_limit(given: Option<i64>) -> Result<i64, ApiError> {
    let limit = given.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("limit", "must be within 1 and 200"))
    }
}

/// [`text`] on an optional value; empty strings become `None`.
pub fn opt_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, 1, max).map(Some),
    }
}

/// Free text that may hold line breaks (`\n`): each line as [`opt_text`]
/// would take it (no other control character), `max` characters in all;
/// trimmed, empty when absent.
pub fn multiline(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    Ok(opt_text(field, Some(&value.replace('\n', " ")), max)?.map(|_| value.trim().to_string()).unwrap_or_default())
}

/// A list of at most `max` texts of 1..=`len` characters each; errors name
/// the element (`tags[2]`).
pub fn texts(field: &str, values: &[String], max: usize, len: usize) -> Result<Vec<String>, ApiError> {
    if values.len() > max {
        return Err(ApiError::invalid(field, format!("at most {max}")));
    }
    values.iter().enumerate().map(|(i, s)| text(&format!("{field}[{i}]"), s, 1, len)).collect()
}

/// `value` if it is one of `allowed`, else 400 listing them.
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(ApiError::invalid(field, format!("must be one of {}", allowed.join(", "))))
    }
}

/// Whether `value` has the shape of an ISO 3166-1 alpha-2 code (`FR`).
pub fn is_country(value: &str) -> bool {
    value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase())
}

/// Whether `value` has the shape of an ISRC (ISO 3901): 12 of A-Z, 0-9.
pub fn is_isrc(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The bytes a stored URL is made of: printable ASCII but `"`, `'`, `<`,
/// `>`, `\`, `^`, `` ` ``, `{`, `|`, `}` (which the WHATWG URL standard
/// percent-encodes in some component, or leaves ambiguous); [`http_url`]
/// percent-encodes any other.
pub const URL_CHARS: &[u8] = b"!#$%&()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~";

/// An absolute `http` or `https` URL with a host, at most [`MAX_URL_LEN`]
/// bytes as sent and as normalised (WHATWG URL serialisation, bytes outside
/// [`URL_CHARS`] percent-encoded: what it gives back) (issue #5: destinations are http/https only, so `javascript:` and
/// `data:` never reach a redirect or a page).
pub fn http_url(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.len() > MAX_URL_LEN {
        return Err(ApiError::invalid(field, format!("longer than {MAX_URL_LEN} bytes")));
    }
    let u = url::Url::parse(v).map_err(|e| ApiError::invalid(field, format!("not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ApiError::invalid(field, "must be an http or https URL"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(field, "must have a host"));
    }
    // The WHATWG serialisation, with what it leaves as is outside
    // URL_CHARS (`'`, `|`, `^`, `{`...) percent-encoded too, so that every
    // stored URL has the form the OpenAPI document states. It can be longer
    // than what was sent (a `/` before a bare query, encoded quotes): the
    // stored form keeps the limit too.
    let mut normalised = String::new();
    for b in String::from(u).bytes() {
        if URL_CHARS.contains(&b) {
            normalised.push(char::from(b));
        } else {
            normalised.push_str(&format!("%{b:02X}"));
        }
    }
    if normalised.len() > MAX_URL_LEN {
        return Err(ApiError::invalid(field, format!("longer than {MAX_URL_LEN} bytes once normalised")));
    }
    Ok(normalised)
}

/// [`http_url`] on an optional value; empty strings become `None`.
pub fn opt_http_url(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => http_url(field, v).map(Some),
    }
}

/// A slug ([`schemas::ids::is_slug`]: `a-z`, `0-9`, `-`, 1 to 64).
pub fn slug(field: &str, value: &str) -> Result<String, ApiError> {
    if schemas::ids::is_slug(value) {
        Ok(value.to_string())
    } else {
        Err(ApiError::invalid(field, "must be 1 to 64 characters of a-z, 0-9 and '-', not starting or ending with '-'"))
    }
}

/// A DNS host name (RFC 1123), lowercased: labels of `a-z`, `0-9`, `-`, 1 to
/// 63 bytes, at least two labels, 253 bytes in all.
pub fn hostname(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.contains('.')
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(v)
    } else {
        Err(ApiError::invalid(field, "must be a host name such as links.example.com"))
    }
}

/// A MongoDB ObjectId as 24 lowercase hex digits.
pub fn object_id(field: &str, value: &str) -> Result<ObjectId, ApiError> {
    if !schemas::ids::is_object_id(value) {
        return Err(ApiError::invalid(field, "must be an id of 24 lowercase hex digits"));
    }
    ObjectId::parse_str(value).map_err(|_| ApiError::invalid(field, "must be an id of 24 lowercase hex digits"))
}

/// A CSS hex colour: `#rgb`, `#rrggbb` or `#rrggbbaa`.
pub fn color(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v)
            if v.starts_with('#') && matches!(v.len(), 4 | 7 | 9) && v[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Some(v.to_string()))
        }
        Some(_) => Err(ApiError::invalid(field, "must be a hex colour such as #1DB954")),
    }
}

/// A pixel or tag id matching `prefix` followed by 4 to 30 of `A-Z`, `0-9`
/// (GA4 `G-`, GTM `GTM-`), or only digits when `prefix` is empty and
/// `digits` (Meta), or `A-Z0-9` (TikTok).
pub fn tag_id(field: &str, value: Option<&str>, prefix: &str, digits: bool) -> Result<Option<String>, ApiError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let rest = v.strip_prefix(prefix).unwrap_or("");
    let ok = v.starts_with(prefix)
        && (4..=30).contains(&rest.len())
        && rest.bytes().all(|b| if digits { b.is_ascii_digit() } else { b.is_ascii_uppercase() || b.is_ascii_digit() });
    if ok {
        Ok(Some(v.to_string()))
    } else {
        Err(ApiError::invalid(
            field,
            format!("must look like {prefix}{}", if digits { "1234567890" } else { "ABC123" }),
        ))
    }
}

/// An RFC 3339 time → Unix seconds (UTC). Times before 1970 or after 2106
/// (u32 range of ClickHouse `DateTime`) are refused.
pub fn rfc3339(field: &str, value: &str) -> Result<u32, ApiError> {
    let t = bson::DateTime::parse_rfc3339_str(value)
        .map_err(|_| ApiError::invalid(field, "must be an RFC 3339 time such as 2026-11-21T00:00:00Z"))?;
    u32::try_from(t.timestamp_millis().div_euclid(1000))
        .map_err(|_| ApiError::invalid(field, "out of range (1970..2106)"))
}

/// [`instant`] on an optional value; absent or empty (blank) is none.
pub fn opt_instant(field: &str, value: Option<&str>) -> Result<Option<bson::DateTime>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => instant(field, v).map(Some),
    }
}

/// An RFC 3339 time, any year and offset (`2026-11-21T09:30:00+01:00`) →
/// the instant it names; 400 naming `field` otherwise. For times kept in
/// MongoDB only (a note's due time, an activity's time); [`rfc3339`] is
/// for times that reach ClickHouse.
pub fn instant(field: &str, value: &str) -> Result<bson::DateTime, ApiError> {
    bson::DateTime::parse_rfc3339_str(value.trim())
        .map_err(|_| ApiError::invalid(field, "must be an RFC 3339 time such as 2026-11-21T00:00:00Z"))
}

/// A calendar date `YYYY-MM-DD` (a real one: no February 30th) as UTC
/// midnight; 400 naming `field` otherwise.
pub fn date(field: &str, value: &str) -> Result<bson::DateTime, ApiError> {
    let b = value.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let parsed = shaped.then(|| bson::DateTime::parse_rfc3339_str(format!("{value}T00:00:00Z")).ok()).flatten();
    parsed.ok_or_else(|| ApiError::invalid(field, "must be a date YYYY-MM-DD"))
}

/// A BSON date → its UTC day `YYYY-MM-DD`.
pub fn day(t: bson::DateTime) -> String {
    rfc(t).get(..10).unwrap_or_default().to_string()
}

/// Unix seconds → RFC 3339 (`2026-11-21T00:00:00Z`).
pub fn to_rfc3339(secs: u32) -> String {
    rfc(bson::DateTime::from_millis(i64::from(secs) * 1000))
}

/// A BSON date → RFC 3339 UTC (`2026-11-21T00:00:00Z`).
pub fn rfc(t: bson::DateTime) -> String {
    t.try_to_rfc3339_string().unwrap_or_default()
}

/// The wire name of a unit enum variant (`"trial"`, `"agent"`), as serde
/// writes it; empty for anything that is not a string.
pub fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// A syntactically valid email (RFC 5321 lengths; one `@`, a dotted domain), lowercased.
pub fn email(field: &str, v: &str) -> Result<String, ApiError> {
    let v = v.trim().to_lowercase();
    let ok = v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !local.contains(char::is_whitespace)
                && hostname(field, domain).is_ok()
        })
        && v.matches('@').count() == 1;
    if ok {
        Ok(v)
    } else {
        Err(ApiError::invalid(field, "must be an email address"))
    }
}

/// Hex of an optional id (`None` stays `None`), as views show ids.
pub fn hex(id: Option<ObjectId>) -> Option<String> {
    id.map(|i| i.to_hex())
}

/// A money amount in minor units: 0 to 10^12 when given.
pub fn money(field: &str, v: Option<i64>) -> Result<Option<i64>, ApiError> {
    match v {
        Some(n) if !(0..=1_000_000_000_000).contains(&n) => {
            Err(ApiError::invalid(field, "must be 0 to 10^12 minor units"))
        }
        other => Ok(other),
    }
}

/// An ISO 4217 currency code (`EUR` when absent).
pub fn currency(v: Option<&str>) -> Result<String, ApiError> {
    let c = v.unwrap_or("EUR");
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c.to_string())
    } else {
        Err(ApiError::invalid("currency", "must be an ISO 4217 code such as EUR"))
    }
}

/// A phone number in E.164 (`+33612345678`) once spaces, dots, dashes and
/// brackets are removed; 400 on `field` otherwise.
pub fn phone(field: &str, v: &str) -> Result<String, ApiError> {
    let v: String = v.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let ok = v.starts_with('+') && (8..=16).contains(&v.len()) && v[1..].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(v)
    } else {
        Err(ApiError::invalid(field, "must be an E.164 number such as +33612345678"))
    }
}

/// Parses a unit enum from its wire name, exactly as serde reads it
/// (`"trial"` → `ClientStatus::Trial`): the one way every route reads an
/// enum from a request. 400 on `field` with `message` (which lists the
/// accepted names) otherwise.
pub fn parse_enum<T: serde::de::DeserializeOwned>(field: &str, v: &str, message: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(v.to_string())).map_err(|_| ApiError::invalid(field, message))
}

/// The field an `invalid_request` names (tests).
#[cfg(test)]
pub fn invalid_field(e: ApiError) -> String {
    match e {
        ApiError::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use invalid_field as field;

    #[test]
    fn shared_field_rules() {
        assert_eq!(multiline("notes", " line 1\nline 2 ", 20).unwrap(), "line 1\nline 2");
        assert_eq!(multiline("notes", "", 20).unwrap(), "");
        assert_eq!(
            field(multiline("notes", "a\tb", 20).unwrap_err()),
            "notes",
            "other control characters stay refused"
        );
        assert_eq!(field(texts("tags", &["ok".into(), "".into()], 5, 10).unwrap_err()), "tags[1]");
        assert_eq!(field(texts("tags", &vec!["a".to_string(); 3], 2, 10).unwrap_err()), "tags");
        assert_eq!(one_of("kind", "CALL", &["CALL", "DEMO"]).unwrap(), "CALL");
        assert_eq!(field(one_of("kind", "call", &["CALL"]).unwrap_err()), "kind");
        assert!(is_country("FR") && !is_country("fr") && !is_country("FRA"));
        assert!(is_isrc("FRZ032600001") && !is_isrc("frz032600001") && !is_isrc("FRZ03260000"));
        assert_eq!(day(date("d", "2024-02-29").unwrap()), "2024-02-29");
        for bad in ["2023-02-29", "2024-2-29", "2024-02-29T00:00:00Z", "abcd-ef-gh"] {
            assert_eq!(field(date("d", bad).unwrap_err()), "d", "{bad}");
        }
    }

    #[test]
    fn urls_are_http_or_https_only() {
        assert_eq!(http_url("u", " https://open.spotify.com/track/x ").unwrap(), "https://open.spotify.com/track/x");
        for bad in ["javascript:alert(1)", "data:text/html,x", "ftp://x.com/a", "//x.com", "https://", "not a url"] {
            assert_eq!(field(http_url("platforms.spotify", bad).unwrap_err()), "platforms.spotify", "{bad}");
        }
        assert!(http_url("u", &format!("https://x.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
        assert_eq!(opt_http_url("u", Some("")).unwrap(), None);
    }

    #[test]
    fn names_hosts_ids_colors_tags_times() {
        assert_eq!(hostname("d", "Links.Client.COM.").unwrap(), "links.client.com");
        for bad in ["localhost", "a..b", "-a.com", "a_b.com", "x.com/path", ""] {
            assert!(hostname("d", bad).is_err(), "{bad}");
        }
        assert!(slug("s", "jiro-in-your-light").is_ok());
        assert!(slug("s", "Jiro").is_err() && slug("s", "a/b").is_err() && slug("s", "-a").is_err());
        assert!(object_id("id", "0123456789abcdef01234567").is_ok());
        assert!(object_id("id", "{\"$gt\":\"\"}").is_err());
        assert_eq!(color("c", Some("#1DB954")).unwrap().as_deref(), Some("#1DB954"));
        assert!(color("c", Some("red;background:url(x)")).is_err());
        assert!(tag_id("g", Some("G-ABC123"), "G-", false).unwrap().is_some());
        assert!(tag_id("g", Some("UA-1"), "G-", false).is_err());
        assert!(tag_id("f", Some("1234567890"), "", true).unwrap().is_some());
        assert!(tag_id("f", Some("12ab"), "", true).is_err());
        assert_eq!(rfc3339("from", "2025-11-21T00:00:00Z").unwrap(), 1_763_683_200);
        assert_eq!(rfc3339("from", "2025-11-21T01:00:00+01:00").unwrap(), 1_763_683_200);
        assert!(rfc3339("from", "yesterday").is_err());
        assert_eq!(to_rfc3339(1_763_683_200), "2025-11-21T00:00:00Z");
        assert!(text("n", "  ", 1, 10).is_err() && text("n", "a\u{0}b", 1, 10).is_err());
        assert_eq!(text("n", " ok ", 1, 10).unwrap(), "ok");
    }
}
