//! The OpenAPI 3.1 document served at `/v1/openapi.json`, generated from the
//! handlers' `#[utoipa::path]` annotations and the DTOs' `ToSchema`, so it
//! cannot drift from the code; then completed with what every operation
//! shares (the answers of the layers in front of the handlers, the id and
//! email rules of inputs), and the field schemas DTOs point to
//! (`#[schema(schema_with = …)]`: names, titles, slugs, visitor ids).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::Type;
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::{
    alerts, analytics, audit_log, billing, campaigns, conversions, crm, gdpr, identity, links, ops, tenants, webhooks,
};

/// The API's OpenAPI document (JSON): the info, tags and security scheme
/// here, every domain's paths merged in, each operation's answers and
/// inputs completed: the answers of the layers in front of each handler
/// (401, 403, 429, 400, 503), 404 where a request names another resource,
/// id patterns and email formats on inputs.
pub fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    for part in [
        tenants::Doc::openapi(),
        identity::Doc::openapi(),
        links::Doc::openapi(),
        analytics::Doc::openapi(),
        crm::Doc::openapi(),
        campaigns::Doc::openapi(),
        billing::Doc::openapi(),
        gdpr::Doc::openapi(),
        audit_log::Doc::openapi(),
        ops::Doc::openapi(),
        alerts::Doc::openapi(),
        conversions::Doc::openapi(),
        webhooks::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    completed(doc)
}

/// Input fields and parameters holding a MongoDB id, which the API parses
/// with [`crate::validate::object_id`] (`resource_id` of the audit log is
/// free text, `visitor_id` a browser's `sl_vid`: neither is here).
const ID_FIELDS: &[&str] = &[
    "id",
    "cursor",
    "key_id",
    "delivery_id",
    "client_id",
    "smartlink_id",
    "smartlink_ids",
    "lead_id",
    "source_lead_id",
    "contact_id",
    "campaign_id",
    "opportunity_id",
    "invoice_id",
    "related_id",
    "assigned_to",
    "actor_id",
    "manager",
    "team",
];

/// [`crate::validate::text`]'s rule as a JSON Schema pattern: something
/// besides white space, no control character (Unicode `Cc`). Lengths are
/// each field's `minLength`/`maxLength`.
const TEXT_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// A string schema of `min..=max` characters matching `pattern`.
fn string(min: usize, max: usize, pattern: Option<&str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(pattern)
        .build()
}

/// One function per length: `#[schema(schema_with = …)]` takes a path to a
/// function without arguments. `text` fields need 1..=max characters and
/// something besides white space; `opt_text` ones may also be empty or
/// blank (the API reads that as absent).
macro_rules! text_schemas {
    ($min:literal, $pattern:ident, $what:literal: $($name:ident = $max:literal),* $(,)?) => {$(
        #[doc = concat!("Schema of ", $what, " of at most ", stringify!($max), " characters.")]
        pub fn $name() -> utoipa::openapi::Object {
            string($min, $max, Some($pattern))
        }
    )*};
}

text_schemas!(1, TEXT_PATTERN, "a [`crate::validate::text`] field":
    text_30 = 30,
    text_40 = 40,
    text_50 = 50,
    text_60 = 60,
    text_100 = 100,
    text_150 = 150,
    text_200 = 200,
    text_300 = 300,
    text_500 = 500,
    text_2000 = 2000,
    text_5000 = 5000,
);

/// [`crate::validate::opt_text`]'s rule: no control character (Unicode
/// `Cc`); empty or blank reads as absent.
const OPT_TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

text_schemas!(0, OPT_TEXT_PATTERN, "a [`crate::validate::opt_text`] field":
    opt_text_20 = 20,
    opt_text_30 = 30,
    opt_text_50 = 50,
    opt_text_100 = 100,
    opt_text_200 = 200,
    opt_text_300 = 300,
    opt_text_2000 = 2000,
    opt_text_5000 = 5000,
);

/// Schema of a button label: a [`crate::validate::text`] of 1..=60
/// characters with at least one ASCII letter or digit.
pub fn label_60() -> utoipa::openapi::Object {
    string(1, 60, Some("^[^\\u0000-\\u001f\\u007f-\\u009f]*[A-Za-z0-9][^\\u0000-\\u001f\\u007f-\\u009f]*$"))
}

/// [`crate::validate::multiline`]'s rule as a JSON Schema pattern: line
/// breaks (`\n`) and no other control character.
const MULTILINE_PATTERN: &str = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f]*$";

/// Schema of a [`crate::validate::multiline`] field of at most 300
/// characters (postal addresses, bank details).
pub fn multiline_300() -> utoipa::openapi::Object {
    string(0, 300, Some(MULTILINE_PATTERN))
}

/// Schema of a [`crate::validate::multiline`] field of at most 1000
/// characters (an invoice's note).
pub fn multiline_1000() -> utoipa::openapi::Object {
    string(0, 1000, Some(MULTILINE_PATTERN))
}

/// A string schema of exactly the `values` (JSON Schema `enum`): the one
/// way DTOs state an enumeration, from the constant the API checks with.
pub fn enumeration(values: &[&str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).build()
}

/// An array schema of at most `max` items of `item`.
fn list(item: utoipa::openapi::Object, max: usize) -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new().items(item).max_items(Some(max)).build()
}

/// Schema of CRM tags (`crm::fields::tags`): at most 20 of
/// 1..=30 characters.
pub fn tags() -> utoipa::openapi::schema::Array {
    list(text_30(), 20)
}

/// Schema of music genres: at most 10 of 1..=40 characters.
pub fn genres() -> utoipa::openapi::schema::Array {
    list(text_40(), 10)
}

/// Schema of SEO keywords: at most 20 of 1..=50 characters.
pub fn keywords() -> utoipa::openapi::schema::Array {
    list(text_50(), 20)
}

/// Schema of an absolute http(s) URL ([`crate::validate::http_url`]): a
/// host name whose last label starts with a letter (WHATWG reads a numeric
/// one as an IPv4 address), an optional port, then any path, query and
/// fragment of the printable ASCII characters that the URL standard never
/// percent-encodes ([`crate::validate::URL_CHARS`], the form URLs are stored
/// in), at most [`crate::validate::MAX_URL_LEN`]
/// − 1 characters: normalisation adds at most the `/` of an empty path, so
/// what the API stores and answers stays within its limit. The API also
/// accepts IP literals, non-ASCII and the other characters (normalised
/// within the limit); the document states the form clients should send.
pub fn http_url() -> utoipa::openapi::Object {
    string(1, crate::validate::MAX_URL_LEN - 1, Some(&format!("^https?://{URL_REST}")))
}

/// Schema of an [`http_url`] with the `https` scheme (webhooks).
pub fn https_url() -> utoipa::openapi::Object {
    string(1, crate::validate::MAX_URL_LEN - 1, Some(&format!("^https://{URL_REST}")))
}

/// What follows `scheme://` in [`http_url`]'s pattern.
const URL_REST: &str = concat!(
    "([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(:[0-9]{1,4})?([/?#]",
    "[!#-&(-;=?-\\[\\]_a-z~]", // crate::validate::URL_CHARS
    "*)?$"
);

/// Schema of a map from names to [`http_url`]s: at most `max` entries, names
/// matching `names` (a schema).
fn url_map(names: utoipa::openapi::Object, max: usize) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .property_names(Some(names))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(http_url().into())))
        .max_properties(Some(max))
        .build()
}

/// Schema of a link's destinations by platform id
/// ([`schemas::mongo::PlatformId`]): http(s) URLs.
pub fn platform_urls() -> utoipa::openapi::Object {
    let ids: Vec<&str> = schemas::mongo::PlatformId::ALL.iter().map(|p| p.id()).collect();
    url_map(enumeration(&ids), ids.len())
}

/// Schema of a lead's profile URLs by name (a [`slug`]): at most 20.
pub fn profile_urls() -> utoipa::openapi::Object {
    url_map(slug(), 20)
}

/// Schemas of strings with a fixed shape: `name = (min, max, pattern)`
/// defines `pub fn name()` with the doc comment above it.
macro_rules! shaped_strings {
    ($($(#[$doc:meta])* $name:ident = ($min:expr, $max:expr, $pattern:expr);)*) => {$(
        $(#[$doc])*
        pub fn $name() -> utoipa::openapi::Object {
            string($min, $max, Some($pattern))
        }
    )*};
}

shaped_strings! {
    /// Schema of a phone number as [`crate::validate::phone`] keeps it:
    /// E.164, `+` then 7 to 15 digits (the API also strips spaces, dots,
    /// dashes and brackets).
    phone = (8, 16, "^\\+[0-9]{7,15}$");
    /// Schema of a [`phone`] in a patch, or `""` to clear it.
    phone_or_empty = (0, 16, "^(\\+[0-9]{7,15})?$");
    /// Schema of an ISO 4217 currency code ([`crate::validate::currency`]).
    currency = (3, 3, "^[A-Z]{3}$");
    /// Schema of an ISO 3166-1 alpha-2 country code, or the empty string
    /// where the field is optional ([`crate::validate::is_country`]).
    country_or_empty = (0, 2, "^([A-Z]{2})?$");
    /// Schema of an ISRC (ISO 3901, [`crate::validate::is_isrc`]).
    isrc = (12, 12, "^[A-Z0-9]{12}$");
    /// Schema of an ISRC or the empty string (clears it).
    isrc_or_empty = (0, 12, "^([A-Z0-9]{12})?$");
    /// Schema of a GA4 measurement id ([`crate::validate::tag_id`]), or
    /// `""` for none.
    ga4_id = (0, 32, "^(G-[A-Z0-9]{4,30})?$");
    /// Schema of a GTM container id, or `""` for none.
    gtm_id = (0, 34, "^(GTM-[A-Z0-9]{4,30})?$");
    /// Schema of a Meta Pixel id (digits), or `""` for none.
    meta_pixel_id = (0, 30, "^([0-9]{4,30})?$");
    /// Schema of a TikTok Pixel id, or `""` for none.
    tiktok_pixel_id = (0, 30, "^([A-Z0-9]{4,30})?$");
    /// Schema of a conversion destination's account id: a Meta pixel id
    /// (digits), a GA4 measurement id (`G-…`) or a TikTok pixel code.
    destination_account = (4, 32, "^(G-)?[A-Z0-9]{4,30}$");
    /// Schema of a destination's credential: 8..=512 printable ASCII
    /// characters without spaces.
    destination_credential = (8, 512, "^[!-~]{8,512}$");
    /// Schema of a platform's test event code, or `""` for none.
    test_event_code = (0, 64, "^[A-Za-z0-9_-]{0,64}$");
    /// Schema of a hex colour ([`crate::validate::color`]): `#rgb`,
    /// `#rrggbb` or `#rrggbbaa`, or `""` for none.
    color = (0, 9, "^(#([0-9A-Fa-f]{3}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8}))?$");
    /// Schema of an `#rrggbb` colour (QR codes).
    rgb_color = (7, 7, "^#[0-9A-Fa-f]{6}$");
    /// Schema of a CSS font family of a landing page: ASCII letters,
    /// digits, spaces, `-` and `,`.
    font = (0, 100, "^[A-Za-z0-9 ,-]*$");
}

/// Schema of a calendar day `YYYY-MM-DD` ([`crate::validate::date`]).
pub fn date() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Date)))
        .build()
}

/// Schema of an RFC 3339 time, any offset ([`crate::validate::instant`]).
pub fn time() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
        .build()
}

/// Schema of a [`time()`] in a patch, or `""` to remove it.
pub fn time_or_empty() -> utoipa::openapi::Schema {
    utoipa::openapi::Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new().item(time()).item(string(0, 0, None)).build(),
    )
}

/// Schema of an [`http_url`] in a patch, or `""` to remove it.
pub fn http_url_or_empty() -> utoipa::openapi::Schema {
    utoipa::openapi::Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new().item(http_url()).item(string(0, 0, None)).build(),
    )
}

/// An integer schema of `min..=max`.
fn integer(min: i64, max: i64) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .build()
}

/// Schema of an amount of money in minor units, 0..=10^12
/// ([`crate::validate::money`]).
pub fn money() -> utoipa::openapi::Object {
    integer(0, 1_000_000_000_000)
}

/// Schema of a percentage, 0..=100 (`crm::fields::percent`).
pub fn percent() -> utoipa::openapi::Object {
    integer(0, 100)
}

/// Schema of basis points, 0..=10000 (2000 = 20 %).
pub fn basis_points() -> utoipa::openapi::Object {
    integer(0, 10_000)
}

/// Schema of a new password: 12..=128 characters, any.
pub fn password() -> utoipa::openapi::Object {
    string(12, 128, None)
}

/// Schema of a slug ([`schemas::ids::is_slug`]): 1..=64 of `a-z`, `0-9`
/// and `-`, not starting or ending with `-`.
pub fn slug() -> utoipa::openapi::Object {
    string(1, 64, Some("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))
}

/// Schema of a browser's visitor id (`sl_vid`): 8..=64 of `A-Z`, `a-z`,
/// `0-9`, `-` and `_`.
pub fn visitor_id() -> utoipa::openapi::Object {
    string(8, 64, Some("^[A-Za-z0-9_-]+$"))
}

/// Schema of a list of at most 50 visitor ids ([`visitor_id`]).
pub fn visitor_ids() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new().items(visitor_id()).max_items(Some(50)).build()
}

/// The id rule of [`schemas::ids::is_object_id`] as a JSON Schema pattern.
const ID_PATTERN: &str = "^[0-9a-f]{24}$";

/// Input fields and parameters holding an email address, which the API
/// parses with [`crate::validate::email`].
const EMAIL_FIELDS: &[&str] = &["email", "emails"];

/// An error answer (`ErrorBody`) described by `description`, with the
/// `Retry-After` header (whole seconds) when `retry_after`.
fn error_answer(description: &str, retry_after: bool) -> serde_json::Value {
    let mut answer = serde_json::json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    });
    if retry_after {
        answer["headers"] = serde_json::json!({"Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds until a request is allowed again",
        }});
    }
    answer
}

/// The sources of the DTOs, for [`described`].
const DTO_SOURCES: [&str; 24] = [
    include_str!("alerts/handlers.rs"),
    include_str!("conversions/handlers.rs"),
    include_str!("analytics/handlers.rs"),
    include_str!("audit_log/handlers.rs"),
    include_str!("billing/invoices.rs"),
    include_str!("campaigns/handlers.rs"),
    include_str!("crm/contacts.rs"),
    include_str!("crm/convert.rs"),
    include_str!("crm/dashboard.rs"),
    include_str!("crm/leads.rs"),
    include_str!("crm/opportunities.rs"),
    include_str!("crm/person.rs"),
    include_str!("crm/settings.rs"),
    include_str!("crm/tasks.rs"),
    include_str!("error.rs"),
    include_str!("gdpr/handlers.rs"),
    include_str!("identity/keys.rs"),
    include_str!("identity/tokens.rs"),
    include_str!("identity/users.rs"),
    include_str!("links/handlers.rs"),
    include_str!("links/routing.rs"),
    include_str!("ops/handlers.rs"),
    include_str!("tenants/handlers.rs"),
    include_str!("webhooks/handlers.rs"),
];

/// What the source says of a field: its doc comment (lines joined by `\n`
/// as utoipa joins them) and whether its type is an `Option`.
type FieldSource = (String, bool);

/// [`FieldSource`] of each field of each struct in `src`, by `(struct, field)`.
fn field_sources(src: &str) -> std::collections::HashMap<(String, String), FieldSource> {
    let mut out = std::collections::HashMap::new();
    let (mut current, mut doc) = (None::<String>, Vec::<&str>::new());
    for line in src.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("pub struct ").and_then(|r| r.split([' ', '{', '<', '(']).next()) {
            current = Some(name.to_string());
            doc.clear();
        } else if line == "}" {
            current = None;
        } else if let Some(text) = line.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text));
        } else if let (Some(s), Some((field, ty))) =
            (&current, line.strip_prefix("pub ").and_then(|r| r.split_once(':')))
        {
            out.insert((s.clone(), field.to_string()), (doc.join("\n"), ty.trim().starts_with("Option<")));
            doc.clear();
        } else if !line.starts_with("#[") {
            doc.clear();
        }
    }
    out
}

/// Completes the properties whose schema comes from a function
/// (`#[schema(schema_with = …)]`, the shared field rules of this module),
/// which utoipa renders as the function returns them: the field's doc
/// comment becomes the description (the text utoipa takes everywhere
/// else), and an `Option` field also admits `null` (serde reads `null` as
/// absent and writes `None` as `null`).
fn described(schemas: &mut serde_json::Value) {
    let fields: std::collections::HashMap<_, _> = DTO_SOURCES.iter().flat_map(|src| field_sources(src)).collect();
    let Some(schemas) = schemas.as_object_mut() else { return };
    for (name, schema) in schemas.iter_mut() {
        let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { continue };
        for (field, prop) in props.iter_mut() {
            let Some((doc, optional)) = fields.get(&(name.clone(), field.clone())) else { continue };
            if prop.get("description").is_none() && prop.get("$ref").is_none() && !doc.is_empty() {
                prop["description"] = doc.as_str().into();
            }
            if let (true, Some(t)) = (optional, prop.get("type").and_then(|t| t.as_str()).map(str::to_owned)) {
                prop["type"] = serde_json::json!([t, "null"]);
                if let Some(values) = prop.get_mut("enum").and_then(|e| e.as_array_mut()) {
                    values.push(serde_json::Value::Null);
                }
            }
        }
    }
}

/// `doc` as JSON, each operation completed where its handler's annotation
/// does not already say it:
/// - the answers of the layers in front of the handler, so generated
///   clients and schemathesis' `status_code_conformance` see every status a
///   route answers: on bearer routes ([`crate::auth::middleware`]) 401
///   `unauthorized`, 403 `forbidden` (the key's scopes or the user's role,
///   [`crate::auth::Principal::can`]) and 429 `rate_limited` with
///   `Retry-After`; on the public `/v1/auth/*` routes 429 (their per-IP
///   limit); where it takes a path, query or body ([`crate::extract`]) 400
///   `malformed_*` or `invalid_request`; where it names another resource (a
///   path id, or an [`ID_FIELDS`] parameter or body field) 404 `not_found`
///   (also another tenant's resources); everywhere 503 `unavailable`;
/// - input rules: every [`ID_FIELDS`] parameter, and every such property of
///   the schemas a request body uses (directly or nested), gets the pattern
///   [`ID_PATTERN`], and every [`EMAIL_FIELDS`] one `format: email` with at
///   most 254 characters (RFC 5321): what a generated client must send is
///   then what the API accepts (schemathesis' `positive_data_acceptance`).
///   Answers' schemas are left as they are.
fn completed(doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    fn constrain(name: &str, schema: &mut serde_json::Value) {
        if schema.get("items").is_some() {
            constrain(name, &mut schema["items"]);
        } else if schema.get("type").is_some() {
            if ID_FIELDS.contains(&name) {
                schema["pattern"] = ID_PATTERN.into();
            } else if EMAIL_FIELDS.contains(&name) {
                schema["format"] = "email".into();
                schema["maxLength"] = 254.into();
            }
        }
    }
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.trim_start_matches("#/components/schemas/").to_string());
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(&doc).unwrap_or_default();
    described(&mut v["components"]["schemas"]);
    // The schemas each operation's body uses, directly or nested.
    let schemas = v["components"]["schemas"].clone();
    let body_schemas = |op: &serde_json::Value| {
        let (mut todo, mut seen) = (Vec::new(), std::collections::BTreeSet::new());
        refs(&op["requestBody"], &mut todo);
        while let Some(name) = todo.pop() {
            if seen.insert(name.clone()) {
                refs(&schemas[&name], &mut todo);
            }
        }
        seen
    };
    let mut inputs = std::collections::BTreeSet::new();
    if let Some(paths) = v["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let methods = item.as_object_mut().into_iter().flat_map(|i| i.iter_mut());
            for (_, op) in methods.filter(|(m, _)| ["get", "post", "put", "patch", "delete"].contains(&m.as_str())) {
                let used = body_schemas(op);
                let mut refers = path.contains('{')
                    || used.iter().any(|name| {
                        schemas[name]["properties"]
                            .as_object()
                            .is_some_and(|p| p.keys().any(|k| ID_FIELDS.contains(&k.as_str())))
                    });
                let takes_input =
                    op["parameters"].as_array().is_some_and(|p| !p.is_empty()) || op.get("requestBody").is_some();
                for p in op.get_mut("parameters").and_then(|p| p.as_array_mut()).into_iter().flatten() {
                    let name = p["name"].as_str().unwrap_or_default().to_string();
                    refers |= ID_FIELDS.contains(&name.as_str());
                    constrain(&name, &mut p["schema"]);
                }
                let bearer = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                let mut answers = vec![("503", "A store (MongoDB, ClickHouse) failed: `unavailable`; retry later")];
                if bearer {
                    answers.push((
                        "401",
                        "No bearer key or session, or an unknown, revoked or expired one: `unauthorized`",
                    ));
                    answers.push(("403", "The key's scopes or the user's role do not allow this: `forbidden`"));
                    answers.push((
                        "429",
                        "The key's or session's rate limit is spent: `rate_limited`; retry after `Retry-After` seconds",
                    ));
                } else if path.starts_with("/v1/auth/") {
                    answers.push((
                        "429",
                        "The caller's IP spent its limit on `/v1/auth/*`: `rate_limited`; retry after `Retry-After` seconds",
                    ));
                }
                if takes_input {
                    answers.push(("400", "A parameter or the body is malformed or out of range: `malformed_path`, `malformed_query`, `malformed_body`, `invalid_request` (with `field`)"));
                }
                if refers {
                    answers.push(("404", "A resource the request names (a path id, `client_id` or another id) does not exist for this caller (another tenant's are not disclosed): `not_found`"));
                }
                for (status, description) in answers {
                    if op["responses"].get(status).is_none() {
                        op["responses"][status] = error_answer(description, status == "429");
                    }
                }
                inputs.extend(used);
            }
        }
    }
    for name in inputs {
        let schema = &mut v["components"]["schemas"][&name];
        for (field, prop) in schema.get_mut("properties").and_then(|p| p.as_object_mut()).into_iter().flatten() {
            constrain(field, prop);
        }
    }
    v
}

/// The API's OpenAPI frame (info, tags, bearer scheme); [`document`] adds
/// the paths.
#[derive(OpenApi)]
#[openapi(
    info(title = "smartlinks API", version = "1", description = "Tenants, API keys, smartlinks and analytics. Authenticate with `Authorization: Bearer <key>`; errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Tenants and their API keys (operator)"),
        (name = "smartlinks", description = "Smartlinks of a tenant"),
        (name = "crm", description = "Leads, contacts, opportunities, pipeline dashboard"),
        (name = "campaigns", description = "Campaigns, daily ad KPIs (derived ratios computed), performance beside the pipeline's click-outs"),
        (name = "gdpr", description = "Consents and newsletter with history; data-subject export and erasure"),
        (name = "billing", description = "Invoices (gapless numbers, minor units, VAT), PDFs, payments with idempotency keys"),
        (name = "users", description = "Back-office users, login sessions, TOTP"),
        (name = "analytics", description = "Views, clicks, visitors: rollups for closed windows, raw events for the open ones"),
        (name = "alerts", description = "Tracking-health alerts to tenants (seed 002): settings, health now, delivery log"),
        (name = "destinations", description = "Server-side conversions (issue #19): the ad platforms a tenant forwards consented views and click-outs to, and the delivery log"),
        (name = "webhooks", description = "Tenant webhooks (issue #19): endpoints and their events, Standard Webhooks signatures, delivery log, replay"),
        (name = "ops", description = "Operations: Alertmanager's webhook receiver, emailing the operators (operator key)"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schema`'s pattern as a regex (JSON Schema `\uXXXX` escapes as Rust
    /// regex's `\x{XXXX}`).
    fn pattern(schema: utoipa::openapi::Object) -> regex::Regex {
        let p = schema.pattern.expect("a pattern");
        let rust = regex::Regex::new(r"\\u([0-9a-fA-F]{4})").unwrap().replace_all(&p, r"\x{$1}");
        regex::Regex::new(&rust).unwrap()
    }

    #[test]
    fn every_property_of_a_request_body_is_described() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let track = &schemas["TrackDto"]["properties"];
        assert_eq!(track["album_name"]["description"], "Album, at most 200 characters.", "a schema_with field");
        assert_eq!(track["title"]["maxLength"], 200, "its rules kept");
        assert_eq!(track["album_name"]["type"], serde_json::json!(["string", "null"]), "an Option admits null");
        assert_eq!(track["title"]["type"], "string");
        let mut missing = Vec::new();
        for (name, schema) in schemas.iter().filter(|(n, _)| !n.ends_with("View") && !n.ends_with("Page")) {
            for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
                if prop.get("description").is_none() && prop.get("$ref").is_none() {
                    missing.push(format!("{name}.{field}"));
                }
            }
        }
        assert!(missing.is_empty(), "undescribed: {missing:?}");
    }

    #[test]
    fn what_the_url_pattern_admits_the_api_accepts_and_it_refuses_what_the_api_refuses() {
        let url = pattern(http_url());
        for ok in [
            "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC?si=x#t",
            "http://a.b:8080",
            "https://x-1.example/p/%41~_.!*();:@&=+$,/?q=[1]",
            "http://localhost/",
        ] {
            assert!(url.is_match(ok), "{ok}");
            assert!(crate::validate::http_url("u", ok).is_ok(), "{ok}");
        }
        for no in
            ["javascript:alert(1)", "ftp://a.b/", "https://", "https://-a.b/", "https://a..b/", "https://1.2.3.4.5/"]
        {
            assert!(!url.is_match(no), "{no}");
        }
        for no in ["http://a/\"", "http://a/'", "http://a/<", "http://a/`", "http://a/{", "http://a/|", "http://a/^"] {
            assert!(!url.is_match(no), "{no}");
        }
        let https = pattern(https_url());
        assert!(https.is_match("https://hooks.example/x") && !https.is_match("http://hooks.example/x"));
    }

    /// Every `$ref` names a component schema that is an object (a schema
    /// named by hand and never registered came out `null`: schemathesis
    /// refused the whole document).
    #[test]
    fn every_reference_names_a_defined_schema() {
        fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                        out.push(r);
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (name, schema) in schemas {
            assert!(schema.is_object(), "{name}: {schema}");
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50);
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.get(name).is_some_and(|s| s.is_object()), "{r} is not defined");
        }
    }

    /// What the document admits, the API stores within its limit: a URL of
    /// the pattern grows by at most the `/` of an empty path (the CI's
    /// schemathesis run once found a stored URL of 2,049 bytes).
    #[test]
    fn a_url_of_the_pattern_is_stored_within_the_limit() {
        let url = pattern(http_url());
        let max = http_url().max_length.unwrap();
        use crate::validate::URL_CHARS;
        assert!(URL_CHARS.iter().all(|&c| url.is_match(&format!("http://a/{}", c as char))));
        assert!((0x21u8..0x7f)
            .filter(|c| !URL_CHARS.contains(c))
            .all(|c| !url.is_match(&format!("http://a/{}", c as char))));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2000 {
            let head = ["http://A", "https://a.b:443", "http://x-1.example:8080", "http://a"][round % 4];
            let sep = ["/", "?", "#", "/?", "?#"][(next() % 5) as usize];
            let len = if round % 10 == 0 { max - head.len() - sep.len() } else { (next() % 64) as usize };
            let rest: String =
                (0..len).map(|_| URL_CHARS[(next() % URL_CHARS.len() as u64) as usize] as char).collect();
            let sent = format!("{head}{sep}{rest}");
            if !url.is_match(&sent) || sent.len() > max {
                continue;
            }
            let stored = crate::validate::http_url("u", &sent).unwrap_or_else(|e| panic!("{sent}: {e:?}"));
            assert!(stored.len() <= sent.len() + 1, "{sent} -> {stored}");
            assert!(stored.len() <= crate::validate::MAX_URL_LEN);
        }
        // What the API takes beyond the document is stored in its form.
        for odd in ["http://a/it's", "http://a/?q={x}|y^", "http://A/\"x\"#`"] {
            let stored = crate::validate::http_url("u", odd).unwrap();
            assert!(url.is_match(&stored), "{odd} -> {stored}");
        }
    }

    #[test]
    fn text_patterns_agree_with_the_text_validators() {
        let (text, opt) = (pattern(text_30()), pattern(opt_text_30()));
        for (v, is_text, is_opt) in [
            ("Jiro", true, true),
            ("  padded  ", true, true),
            ("", false, true),
            ("   ", false, true),
            ("tab\there", false, false),
            ("nul\u{0}", false, false),
            ("c1\u{85}mid", false, false),
        ] {
            assert_eq!(text.is_match(v), is_text, "{v:?}");
            assert_eq!(crate::validate::text("f", v, 1, 30).is_ok(), is_text, "{v:?}");
            assert_eq!(opt.is_match(v), is_opt, "{v:?}");
            assert_eq!(crate::validate::opt_text("f", Some(v), 30).is_ok(), is_opt, "{v:?}");
        }
        let lines = pattern(multiline_300());
        assert!(lines.is_match("1 rue X\n75001 Paris") && !lines.is_match("a\rb"));
        assert!(crate::validate::multiline("f", "1 rue X\n75001 Paris", 300).is_ok());
        let phone = pattern(phone());
        assert!(phone.is_match("+33612345678") && !phone.is_match("0612345678"));
        assert!(crate::validate::phone("f", "+33612345678").is_ok());
    }

    /// `(method, path)` of the routes served without a key
    /// ([`crate::identity::public_router`]), read from its source.
    fn identity_public_routes() -> std::collections::BTreeSet<(String, String)> {
        let src = include_str!("identity/mod.rs");
        let body = &src[src.find("pub fn public_router").unwrap()..];
        let body = &body[..body.find("\n}").unwrap()];
        body.split(".route(\"")
            .skip(1)
            .map(|part| {
                let (path, rest) = part.split_once('"').unwrap();
                let method = ["get", "post", "patch", "put", "delete"]
                    .into_iter()
                    .find(|m| rest.contains(&format!("{m}(")))
                    .unwrap();
                (method.to_string(), path.to_string())
            })
            .collect()
    }

    #[test]
    fn document_lists_every_route_of_the_router_with_bearer_auth() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        // Every `.route("/v1/…", method(…))` of the routers, read from their source.
        let src = [
            include_str!("lib.rs"),
            include_str!("tenants/mod.rs"),
            include_str!("identity/mod.rs"),
            include_str!("links/mod.rs"),
            include_str!("analytics/mod.rs"),
            include_str!("crm/mod.rs"),
            include_str!("campaigns/mod.rs"),
            include_str!("billing/mod.rs"),
            include_str!("gdpr/mod.rs"),
            include_str!("audit_log/mod.rs"),
            include_str!("ops/mod.rs"),
            include_str!("alerts/mod.rs"),
            include_str!("conversions/mod.rs"),
            include_str!("webhooks/mod.rs"),
        ]
        .concat();
        // `.route(\n "/path", …)` as rustfmt breaks a long one: the same as on one line.
        let src = src.split(".route(").map(str::trim_start).collect::<Vec<_>>().join(".route(");
        let mut routed = std::collections::BTreeSet::new();
        for part in src.split(".route(\"").skip(1) {
            let (path, rest) = part.split_once('"').unwrap();
            if path == "/v1/openapi.json" {
                continue;
            }
            let methods = rest.split_once("))\n").map_or(rest, |(m, _)| m);
            for m in ["get", "post", "patch", "put", "delete"] {
                if methods.contains(&format!("{m}(")) {
                    assert!(
                        paths.get(path).and_then(|p| p.get(m)).is_some(),
                        "{m} {path} is routed but not in the OpenAPI document"
                    );
                    routed.insert((m.to_string(), path.to_string()));
                }
            }
        }
        // The routers' real size (a parse that misses routes fails here).
        assert_eq!(routed.len(), 98, "routes read from the routers: {routed:?}");
        for r in crate::audit::PERSONAL_READS {
            assert!(routed.contains(&("get".to_string(), r.to_string())), "audited read {r} is not a GET route");
        }
        // The other direction: every documented operation is routed, and
        // needs the bearer key unless it is one of the public routes.
        let public = identity_public_routes();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let key = (method.clone(), path.clone());
                assert!(routed.contains(&key), "{method} {path} is documented but not routed");
                let bearer = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                assert_eq!(bearer, !public.contains(&key), "{method} {path}: security {:?}", op["security"]);
            }
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["SmartlinkCreate"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }

    #[test]
    fn every_schema_name_is_defined_once() {
        // Two DTOs of one name share one `components.schemas` entry: the
        // document would describe one with the other's fields.
        let mut seen = std::collections::HashMap::new();
        for (i, src) in DTO_SOURCES.iter().enumerate() {
            let mut lines = src.lines().peekable();
            while let Some(line) = lines.next() {
                if !line.contains("derive(") || !line.contains("ToSchema") {
                    continue;
                }
                let Some(decl) = lines.find(|l| l.starts_with("pub struct ") || l.starts_with("pub enum ")) else {
                    continue;
                };
                let name: String =
                    decl.split_whitespace().nth(2).unwrap_or("").chars().take_while(|c| c.is_alphanumeric()).collect();
                if let Some(j) = seen.insert(name.clone(), i) {
                    panic!("{name} is defined in DTO_SOURCES[{j}] and DTO_SOURCES[{i}]");
                }
            }
        }
        assert!(seen.contains_key("WebhookDeliveryView") && seen.contains_key("ConversionDeliveryView"));
    }

    #[test]
    fn every_operation_documents_what_the_layers_in_front_of_it_answer() {
        let doc = document();
        let public = identity_public_routes();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(op.get("parameters").is_none_or(|p| p.is_array()), "{method} {path}: {}", op["parameters"]);
                let mut expected = vec!["503"];
                if !public.contains(&(method.clone(), path.clone())) {
                    expected.extend(["401", "403", "429"]);
                } else if path.starts_with("/v1/auth/") {
                    expected.push("429");
                }
                if path.contains('{') {
                    expected.extend(["400", "404"]);
                }
                for status in expected {
                    assert!(responses.contains_key(status), "{method} {path} does not document {status}");
                }
                if let Some(r) = responses.get("429").filter(|r| r["headers"].is_object()) {
                    assert_eq!(r["headers"]["Retry-After"]["schema"]["type"], "integer", "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn input_ids_carry_the_object_id_pattern_and_answers_do_not() {
        let doc = document();
        let op = &doc["paths"]["/v1/analytics/overview"]["get"];
        let client = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "client_id").unwrap();
        assert_eq!(client["schema"]["pattern"], ID_PATTERN);
        let path_id = &doc["paths"]["/v1/smartlinks/{id}"]["get"]["parameters"][0];
        assert_eq!(path_id["schema"]["pattern"], ID_PATTERN);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["SmartlinkCreate"]["properties"]["client_id"]["pattern"], ID_PATTERN);
        assert_eq!(schemas["CampaignInput"]["properties"]["smartlink_ids"]["items"]["pattern"], ID_PATTERN);
        assert!(schemas["SmartlinkView"]["properties"]["id"].get("pattern").is_none());
        let re = regex::Regex::new(ID_PATTERN).unwrap();
        assert!(re.is_match(&bson::oid::ObjectId::new().to_hex()));
        assert!(!re.is_match("") && !re.is_match("65F1C0FFEE0000000000BEEF"));
    }
}
