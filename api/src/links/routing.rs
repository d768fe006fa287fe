//! A link's routing rules as the API takes and shows them (issue #18), and
//! their validation into [`schemas::routing::Routing`], the form the edge
//! evaluates (the rules' semantics are documented there).
//!
//! Every error is a 400 naming the field (`routing.rules[2].countries[0]`).

use std::collections::{BTreeMap, HashSet};

use schemas::mongo::PlatformId;
use schemas::routing::{
    is_rule_id, Routing, Rule, Target, Variant, BROWSER_FAMILIES, DEVICES, MAX_RULES, MAX_RULE_ID_CHARS, MAX_VARIANTS,
    OS_FAMILIES, PARAM_PLACEHOLDERS, PREFERRED_RULE,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::validate;

/// Most values in one condition list (countries: every ISO 3166-1 code fits).
const MAX_VALUES: usize = 250;
/// Most platforms a target hides or overrides.
const MAX_PLATFORMS: usize = 20;
/// Longest parameter template, bytes.
const MAX_TEMPLATE_BYTES: usize = 500;

/// How a link routes its visitors; every part optional. Rules are tried in
/// order and the first whose every non-empty condition holds applies.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingDto {
    /// At most 50 rules.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub rules: Vec<RuleDto>,
    /// Send a consenting returning visitor straight to the service they last
    /// chose on this tenant's links (recorded as rule `preferred`).
    #[serde(default)]
    pub remember_choice: bool,
    /// On phones, open the platform's app (Spotify, Apple Music, Deezer,
    /// YouTube Music), the web URL as fallback.
    #[serde(default)]
    pub app_links: bool,
    /// Query parameters appended to destination URLs, by platform id or `*`
    /// (every platform): a template such as `at=1000lqx&ct={utm_campaign}`;
    /// placeholders `{utm_source}`, `{utm_medium}`, `{utm_campaign}`,
    /// `{utm_term}`, `{utm_content}`, `{gclid}`, `{fbclid}`, `{ttclid}`,
    /// `{slug}`, `{country}`, `{rule}`, `{variant}`; a parameter that comes
    /// out empty is left out. At most 20 entries of 500 bytes.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// One routing rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDto {
    /// Id recorded in the events it decides and in the `route` analytics
    /// breakdown: 1..=30 of `a-z`, `0-9`, `-`, `_`, unique in the link
    /// (`preferred` is reserved).
    #[schema(pattern = "^[a-z0-9_-]{1,30}$")]
    pub id: String,
    /// Device classes: `mobile`, `tablet`, `desktop`.
    #[serde(default)]
    pub devices: Vec<String>,
    /// OS families: `ios`, `android`, `windows`, `macos`, `linux`, `chromeos`.
    #[serde(default)]
    pub os: Vec<String>,
    /// Browser families: `chrome`, `safari`, `firefox`, `edge`, `opera`, `samsung`, `ie`.
    #[serde(default)]
    pub browsers: Vec<String>,
    /// ISO 3166-1 alpha-2 countries of the visitor's IP (`FR`).
    #[serde(default)]
    pub countries: Vec<String>,
    /// The visitor's preferred language, primary subtag (`fr`).
    #[serde(default)]
    pub languages: Vec<String>,
    /// What a match does (without `variants`).
    #[serde(default)]
    pub target: TargetDto,
    /// An A/B split (at most 10 arms): each visitor is assigned one arm, by
    /// weight, the same on every visit; `target` must then be empty.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub variants: Vec<VariantDto>,
}

/// What a matching rule or variant does. Empty: the page as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetDto {
    /// Skip the page and redirect to this platform's URL (a view and a
    /// click-out are recorded).
    #[serde(default)]
    pub platform: Option<String>,
    /// Skip the page and redirect to this http(s) URL (a view is recorded);
    /// not with `platform`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::http_url)]
    pub url: Option<String>,
    /// Platforms not shown (their click-out answers 404).
    #[serde(default)]
    #[schema(max_items = 20)]
    pub hide: Vec<String>,
    /// Destination URL per platform id instead of the stored one (a
    /// country's storefront).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::platform_urls)]
    pub urls: BTreeMap<String, String>,
}

/// One arm of an A/B split.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantDto {
    /// Id recorded in the events (`{rule}/{variant}` in the breakdown):
    /// 1..=30 of `a-z`, `0-9`, `-`, `_`, unique in the rule.
    #[schema(pattern = "^[a-z0-9_-]{1,30}$")]
    pub id: String,
    /// Relative share of visitors, 1..=1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: u32,
    /// What this arm does.
    #[serde(default)]
    pub target: TargetDto,
}

/// The API form of stored rules.
pub fn view(r: &Routing) -> RoutingDto {
    let target = |t: &Target| TargetDto {
        platform: t.platform.clone(),
        url: t.url.clone(),
        hide: t.hide.clone(),
        urls: t.urls.clone(),
    };
    RoutingDto {
        rules: r
            .rules
            .iter()
            .map(|rule| RuleDto {
                id: rule.id.clone(),
                devices: rule.devices.clone(),
                os: rule.os.clone(),
                browsers: rule.browsers.clone(),
                countries: rule.countries.clone(),
                languages: rule.languages.clone(),
                target: target(&rule.target),
                variants: rule
                    .variants
                    .iter()
                    .map(|v| VariantDto { id: v.id.clone(), weight: v.weight, target: target(&v.target) })
                    .collect(),
            })
            .collect(),
        remember_choice: r.remember_choice,
        app_links: r.app_links,
        params: r.params.clone(),
    }
}

/// `dto` validated into the stored form (400 naming the field).
pub fn parse(dto: &RoutingDto) -> Result<Routing, ApiError> {
    const F: &str = "routing";
    if dto.rules.len() > MAX_RULES {
        return Err(ApiError::invalid(format!("{F}.rules"), format!("at most {MAX_RULES}")));
    }
    let mut ids = HashSet::new();
    let mut rules = Vec::with_capacity(dto.rules.len());
    for (i, r) in dto.rules.iter().enumerate() {
        let f = format!("{F}.rules[{i}]");
        let id = rule_id(&format!("{f}.id"), &r.id)?;
        if id == PREFERRED_RULE {
            return Err(ApiError::invalid(format!("{f}.id"), "`preferred` is reserved for the remembered service"));
        }
        if !ids.insert(id.clone()) {
            return Err(ApiError::invalid(format!("{f}.id"), "used by an earlier rule"));
        }
        let target = parse_target(&format!("{f}.target"), &r.target)?;
        if r.variants.len() > MAX_VARIANTS {
            return Err(ApiError::invalid(format!("{f}.variants"), format!("at most {MAX_VARIANTS}")));
        }
        if !r.variants.is_empty() && target != Target::default() {
            return Err(ApiError::invalid(format!("{f}.target"), "must be empty when the rule has variants"));
        }
        let mut variant_ids = HashSet::new();
        let mut variants = Vec::with_capacity(r.variants.len());
        for (j, v) in r.variants.iter().enumerate() {
            let fv = format!("{f}.variants[{j}]");
            let vid = rule_id(&format!("{fv}.id"), &v.id)?;
            if !variant_ids.insert(vid.clone()) {
                return Err(ApiError::invalid(format!("{fv}.id"), "used by an earlier variant"));
            }
            if !(1..=1000).contains(&v.weight) {
                return Err(ApiError::invalid(format!("{fv}.weight"), "must be 1 to 1000"));
            }
            variants.push(Variant {
                id: vid,
                weight: v.weight,
                target: parse_target(&format!("{fv}.target"), &v.target)?,
            });
        }
        rules.push(Rule {
            id,
            devices: one_of_each(&format!("{f}.devices"), &r.devices, &DEVICES)?,
            os: one_of_each(&format!("{f}.os"), &r.os, &OS_FAMILIES)?,
            browsers: one_of_each(&format!("{f}.browsers"), &r.browsers, &BROWSER_FAMILIES)?,
            countries: each(&format!("{f}.countries"), &r.countries, |v| {
                let c = v.to_ascii_uppercase();
                validate::is_country(&c).then_some(c).ok_or_else(|| "must be an ISO 3166-1 alpha-2 code".to_string())
            })?,
            languages: each(&format!("{f}.languages"), &r.languages, |v| {
                let l = v.to_ascii_lowercase();
                ((2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()))
                    .then_some(l)
                    .ok_or_else(|| "must be a primary language subtag (2 or 3 letters)".to_string())
            })?,
            target,
            variants,
        });
    }
    if dto.params.len() > MAX_PLATFORMS {
        return Err(ApiError::invalid(format!("{F}.params"), format!("at most {MAX_PLATFORMS} entries")));
    }
    let mut params = BTreeMap::new();
    for (k, v) in &dto.params {
        let f = format!("{F}.params.{k}");
        let key = if k == "*" { k.clone() } else { platform(&f, k)? };
        params.insert(key, template(&f, v)?);
    }
    Ok(Routing { rules, remember_choice: dto.remember_choice, app_links: dto.app_links, params })
}

fn rule_id(field: &str, v: &str) -> Result<String, ApiError> {
    if is_rule_id(v) {
        Ok(v.to_string())
    } else {
        Err(ApiError::invalid(field, format!("must be 1 to {MAX_RULE_ID_CHARS} of a-z, 0-9, '-', '_'")))
    }
}

/// A platform a target names: a known id, or a custom platform's slug.
fn platform(field: &str, v: &str) -> Result<String, ApiError> {
    if PlatformId::from_id(v).is_some() || schemas::ids::is_slug(v) {
        Ok(v.to_string())
    } else {
        Err(ApiError::invalid(field, "must be a platform id (`spotify`, `apple-music`, ...) or a custom platform's id"))
    }
}

fn parse_target(f: &str, t: &TargetDto) -> Result<Target, ApiError> {
    if t.platform.is_some() && t.url.is_some() {
        return Err(ApiError::invalid(format!("{f}.url"), "not with `platform`: a target redirects to one place"));
    }
    if t.hide.len() > MAX_PLATFORMS {
        return Err(ApiError::invalid(format!("{f}.hide"), format!("at most {MAX_PLATFORMS}")));
    }
    if t.urls.len() > MAX_PLATFORMS {
        return Err(ApiError::invalid(format!("{f}.urls"), format!("at most {MAX_PLATFORMS}")));
    }
    let platform_field = format!("{f}.platform");
    Ok(Target {
        platform: t.platform.as_deref().map(|p| platform(&platform_field, p)).transpose()?,
        url: validate::opt_http_url(&format!("{f}.url"), t.url.as_deref())?,
        hide: t
            .hide
            .iter()
            .enumerate()
            .map(|(i, p)| platform(&format!("{f}.hide[{i}]"), p))
            .collect::<Result<_, _>>()?,
        urls: t
            .urls
            .iter()
            .map(|(p, u)| Ok((platform(&format!("{f}.urls"), p)?, validate::http_url(&format!("{f}.urls.{p}"), u)?)))
            .collect::<Result<_, ApiError>>()?,
    })
}

fn each(
    field: &str,
    values: &[String],
    check: impl Fn(&str) -> Result<String, String>,
) -> Result<Vec<String>, ApiError> {
    if values.len() > MAX_VALUES {
        return Err(ApiError::invalid(field, format!("at most {MAX_VALUES}")));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let v = check(v.trim()).map_err(|m| ApiError::invalid(format!("{field}[{i}]"), m))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn one_of_each(field: &str, values: &[String], allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    each(field, values, |v| {
        let v = v.to_ascii_lowercase();
        allowed.contains(&v.as_str()).then_some(v).ok_or_else(|| format!("must be one of {}", allowed.join(", ")))
    })
}

/// A parameter template: `name=value` pairs joined by `&`; names of
/// `[A-Za-z0-9_.-]`, values of URL-safe characters and `{placeholder}`s.
fn template(field: &str, v: &str) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > MAX_TEMPLATE_BYTES {
        return Err(ApiError::invalid(field, format!("must be 1 to {MAX_TEMPLATE_BYTES} bytes")));
    }
    for pair in v.split('&') {
        let (name, value) =
            pair.split_once('=').ok_or_else(|| ApiError::invalid(field, "each part must be name=value"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return Err(ApiError::invalid(
                field,
                format!("parameter name `{name}` must be of A-Z, a-z, 0-9, '_', '.', '-'"),
            ));
        }
        let mut rest = value;
        while let Some(open) = rest.find('{') {
            literal(field, &rest[..open])?;
            let close = rest[open..].find('}').ok_or_else(|| ApiError::invalid(field, "`{` without `}`"))? + open;
            let name = &rest[open + 1..close];
            if !PARAM_PLACEHOLDERS.contains(&name) {
                return Err(ApiError::invalid(
                    field,
                    format!("unknown placeholder {{{name}}}; known: {}", PARAM_PLACEHOLDERS.join(", ")),
                ));
            }
            rest = &rest[close + 1..];
        }
        literal(field, rest)?;
    }
    Ok(v.to_string())
}

fn literal(field: &str, s: &str) -> Result<(), ApiError> {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')) {
        Ok(())
    } else {
        Err(ApiError::invalid(field, "values are URL-safe characters (A-Z a-z 0-9 - . _ ~ %) and {placeholders}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ApiError) -> String {
        validate::invalid_field(e)
    }

    #[test]
    fn a_full_routing_validates_and_round_trips() {
        let dto: RoutingDto = serde_json::from_value(serde_json::json!({
            "rules": [
                {"id": "ios", "os": ["iOS"], "target": {"platform": "apple-music"}},
                {"id": "jp", "countries": ["jp"], "target": {"hide": ["deezer"], "urls": {"apple-music": "https://music.apple.com/jp/album/1"}}},
                {"id": "ab", "variants": [{"id": "a", "weight": 1}, {"id": "b", "weight": 3, "target": {"url": "https://label.example/b"}}]}
            ],
            "remember_choice": true,
            "params": {"*": "utm_source={utm_source}", "apple-music": "at=1000lqx&ct={utm_campaign}"}
        }))
        .unwrap();
        let r = parse(&dto).unwrap();
        assert_eq!(r.rules[0].os, vec!["ios"], "stored lowercase");
        assert_eq!(r.rules[1].countries, vec!["JP"], "stored uppercase");
        assert!(r.rules[2].variants[1].target.redirects());
        assert_eq!(parse(&view(&r)).unwrap(), r);
    }

    #[test]
    fn every_mistake_names_its_field() {
        let bad = |v: serde_json::Value| field(parse(&serde_json::from_value(v).unwrap()).unwrap_err());
        assert_eq!(bad(serde_json::json!({"rules": [{"id": "A"}]})), "routing.rules[0].id");
        assert_eq!(bad(serde_json::json!({"rules": [{"id": "preferred"}]})), "routing.rules[0].id");
        assert_eq!(bad(serde_json::json!({"rules": [{"id": "a"}, {"id": "a"}]})), "routing.rules[1].id");
        assert_eq!(bad(serde_json::json!({"rules": [{"id": "a", "os": ["beos"]}]})), "routing.rules[0].os[0]");
        assert_eq!(
            bad(serde_json::json!({"rules": [{"id": "a", "countries": ["FRA"]}]})),
            "routing.rules[0].countries[0]"
        );
        assert_eq!(
            bad(
                serde_json::json!({"rules": [{"id": "a", "target": {"platform": "spotify", "url": "https://x.example"}}]})
            ),
            "routing.rules[0].target.url"
        );
        assert_eq!(
            bad(serde_json::json!({"rules": [{"id": "a", "target": {"url": "javascript:alert(1)"}}]})),
            "routing.rules[0].target.url"
        );
        assert_eq!(
            bad(
                serde_json::json!({"rules": [{"id": "a", "target": {"hide": ["spotify"]}, "variants": [{"id": "x", "weight": 1}]}]})
            ),
            "routing.rules[0].target"
        );
        assert_eq!(
            bad(serde_json::json!({"rules": [{"id": "a", "variants": [{"id": "x", "weight": 0}]}]})),
            "routing.rules[0].variants[0].weight"
        );
        assert_eq!(bad(serde_json::json!({"params": {"spotify": "a={nope}"}})), "routing.params.spotify");
        assert_eq!(bad(serde_json::json!({"params": {"spotify": "a=<b>"}})), "routing.params.spotify");
        assert_eq!(bad(serde_json::json!({"params": {"Bad Platform": "a=b"}})), "routing.params.Bad Platform");
    }
}
