//! Server-side rendered HTML: the landing page of a smartlink and the small
//! error pages, in the tenant's branding.
//!
//! Escaping rules (every value comes from a tenant or a link, so none is trusted):
//! - text and attribute values: HTML-escaped (`html-escape`);
//! - URLs in `src`/`href`: http(s) only ([`crate::cache::is_http_url`]),
//!   images the page loads https only (its CSP's `img-src`), else left
//!   out, then HTML-escaped;
//! - CSS values: colours must be `#rgb`/`#rrggbb`/`#rrggbbaa`, fonts
//!   `[A-Za-z0-9 ,'"-]`, else the default is used (HTML escaping does not
//!   protect a `<style>` block);
//! - data for the script: one JSON object in a `type="application/json"`
//!   block with `<`, `>`, `&`, U+2028 and U+2029 escaped, so no value can
//!   close the block or run as code.
//!
//! The page is small (about 6 KB) and needs no other request: CSS and JS are
//! inline. The client's pixels (GTM/GA4, Meta, TikTok) load only after the
//! visitor accepts the consent banner, and never with `DNT: 1` /
//! `Sec-GPC: 1`; they receive `smartlink_view` / `smartlink_click` with the
//! same event ids the server recorded (seed 002, dual engine).
//!
//! Every HTML answer carries a Content-Security-Policy
//! ([`content_security_policy`], security review finding 17): our inline
//! `<style>` and `<script>` run by a per-response nonce, nothing else inline
//! does, the page cannot be framed (`frame-ancestors 'none'`), and the
//! pixels' scripts may load only where they could with consent: a visitor
//! who refused, or sends `DNT`/`Sec-GPC`, gets a policy that allows no
//! script but ours.

use std::fmt::Write;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use uuid::Uuid;

use crate::cache::{is_http_url, Button, Link, Tenant};
use crate::i18n::Texts;

/// Name of the consent cookie (`granted` | `denied`), set by the banner.
pub const CONSENT_COOKIE: &str = "sl_consent";
/// Name of the first-party visitor cookie, set only with consent.
pub const VISITOR_COOKIE: &str = "sl_vid";
/// Cookie remembering the platform a consenting visitor last clicked out
/// to, for links with `routing.rememberChoice` (issue #18).
pub const PREFERRED_COOKIE: &str = "sl_pref";

/// Per-request values of a landing page.
pub struct LandingPage<'a> {
    /// The tenant.
    pub tenant: &'a Tenant,
    /// The link.
    pub link: &'a Link,
    /// Host of the request (for `og:url`).
    pub host: &'a str,
    /// The view's event id, as recorded server-side.
    pub view_event_id: Uuid,
    /// The view's id signed for its engagement beacon ([`crate::engage`]).
    pub engage_token: &'a str,
    /// The buttons shown (a routing rule may hide some), in order, each
    /// with its click id and signed token ([`crate::eid`]).
    pub clicks: Vec<(&'a Button, Uuid, String)>,
    /// The landing URL's attribution parameters, form-encoded (empty or
    /// `utm_source=ig&...`): carried on every button so a click-out keeps
    /// the visit's UTMs and click ids (issue #18, pass-through).
    pub query: &'a str,
    /// `DNT: 1` or `Sec-GPC: 1`: pixels never load.
    pub dnt: bool,
    /// Cookies get `Secure`.
    pub secure_cookies: bool,
    /// The response's CSP nonce ([`nonce`]), on our `<style>` and `<script>`.
    pub nonce: &'a str,
    /// The texts in the visitor's language ([`crate::i18n`]).
    pub texts: &'a Texts<'a>,
    /// Before the link's go-live: the line saying when ("Out 5 December
    /// 2026"), shown instead of the buttons.
    pub upcoming: Option<&'a str>,
}

/// A fresh CSP nonce: 122 random bits (a UUIDv4), 32 hex characters; one
/// per response (CSP Level 3, "nonce-source").
pub fn nonce() -> String {
    Uuid::new_v4().simple().to_string()
}

/// The script hosts the client pixels load from (GTM/GA4, Meta, TikTok).
const PIXEL_SCRIPT_HOSTS: &str =
    "https://www.googletagmanager.com https://connect.facebook.net https://analytics.tiktok.com";

/// The `Content-Security-Policy` of an HTML answer carrying `nonce`.
/// `pixels`: the client's pixels may load on this page (the tenant has one,
/// the visitor has not refused consent and sends no `DNT`/`Sec-GPC`); then
/// scripts added by ours are trusted (`'strict-dynamic'`: GTM loads the tags
/// its container holds) and may send to any https endpoint. `beacon`: the
/// page may report its engagement to its own origin ([`crate::engage`];
/// the visitor has not refused and sends no `DNT`/`Sec-GPC`). Otherwise
/// only our nonced script runs and nothing is sent anywhere.
pub fn content_security_policy(nonce: &str, pixels: bool, beacon: bool) -> String {
    let (scripts, connect) = if pixels {
        (format!("'nonce-{nonce}' 'strict-dynamic' {PIXEL_SCRIPT_HOSTS}"), "'self' https:")
    } else if beacon {
        (format!("'nonce-{nonce}'"), "'self'")
    } else {
        (format!("'nonce-{nonce}'"), "'none'")
    };
    format!(
        "default-src 'none'; script-src {scripts}; style-src 'nonce-{nonce}'; img-src https: data:; \
connect-src {connect}; frame-src {frames}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        frames = if pixels { "https:" } else { "'none'" },
    )
}

fn safe_color(c: Option<&str>, default: &'static str) -> String {
    match c {
        Some(c)
            if c.starts_with('#') && matches!(c.len(), 4 | 7 | 9) && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            c.to_string()
        }
        _ => default.to_string(),
    }
}

fn safe_font(f: Option<&str>) -> String {
    match f {
        Some(f)
            if !f.is_empty()
                && f.len() <= 120
                && f.bytes().all(|b| b.is_ascii_alphanumeric() || b" ,'\"-".contains(&b)) =>
        {
            f.to_string()
        }
        _ => "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif".to_string(),
    }
}

fn safe_url(u: Option<&str>) -> Option<&str> {
    u.filter(|u| is_http_url(u))
}

/// An image the page loads itself (favicon, logo, cover): https only, as
/// the CSP's `img-src https: data:` allows (a plain-http one would be
/// blocked, and reported as a violation, in every browser).
fn safe_image(u: Option<&str>) -> Option<&str> {
    safe_url(u).filter(|u| u.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://")))
}

/// JSON for a `<script type="application/json">` block: cannot close it.
fn script_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn style(tenant: Option<&Tenant>) -> String {
    let b = tenant.map(|t| &t.client.branding);
    let primary = safe_color(b.and_then(|b| b.primary_color.as_deref()), "#1DB954");
    let secondary = safe_color(b.and_then(|b| b.secondary_color.as_deref()), "#191414");
    let accent = safe_color(b.and_then(|b| b.accent_color.as_deref()), "#FFFFFF");
    let font = safe_font(b.and_then(|b| b.font.as_deref()));
    format!(
        ":root{{--p:{primary};--s:{secondary};--a:{accent};--f:{font}}}\
*{{box-sizing:border-box}}body{{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;\
background:var(--s);color:var(--a);font-family:var(--f)}}\
main{{width:100%;max-width:420px;padding:24px;text-align:center}}\
.logo{{max-height:40px;margin-bottom:16px}}.backdrop{{position:fixed;inset:0;width:100%;height:100%;object-fit:cover;filter:blur(48px) brightness(.45);transform:scale(1.2);z-index:-1}}.cover{{width:100%;max-width:320px;aspect-ratio:1;object-fit:cover;border-radius:12px;box-shadow:0 8px 24px rgba(0,0,0,.4)}}\
h1{{font-size:1.5rem;margin:16px 0 4px}}.artist{{margin:0 0 20px;opacity:.8}}\
ul{{list-style:none;padding:0;margin:0}}li{{margin:10px 0}}\
.btn{{display:flex;justify-content:space-between;align-items:center;padding:14px 20px;border-radius:999px;background:var(--p);color:var(--s);text-decoration:none;font-weight:600}}\
.pl{{display:flex;align-items:center}}.ic{{width:28px;height:28px;margin-right:10px;flex:none}}.soon{{font-size:1.1rem;font-weight:600}}.act{{font-size:.85rem;opacity:.85;text-transform:uppercase;letter-spacing:.04em}}\
#consent{{position:fixed;bottom:0;left:0;right:0;padding:12px;background:rgba(0,0,0,.85);color:#fff;font-size:.9rem}}\
#consent button{{margin:6px;padding:8px 14px;border:0;border-radius:6px;cursor:pointer}}"
    )
}

/// The inline script: consent banner, pixels after consent, dataLayer /
/// fbq / ttq events with the server's ids, and with consent the engagement
/// beacon when the page is hidden (visible time, a button clicked:
/// [`crate::engage`]). Static: data comes from `#sl-data`.
const SCRIPT: &str = r#"(function(){var w=window,d=document,x=JSON.parse(d.getElementById('sl-data').textContent);
w.dataLayer=w.dataLayer||[];
function c(){var m=d.cookie.match(/(?:^|; )sl_consent=(granted|denied)/);return m?m[1]:null}
function set(v){d.cookie='sl_consent='+v+'; Max-Age=31536000; Path=/; SameSite=Lax'+(x.secure?'; Secure':'')}
function load(s){var e=d.createElement('script');e.async=true;e.src=s;d.head.appendChild(e)}
var on=false,vis=0,since=d.visibilityState==='visible'?Date.now():0,sent=false,clicked=false,late=c()!=='granted';
function hide(){if(since){vis+=Date.now()-since;since=0}if(sent||x.dnt||c()!=='granted'||!navigator.sendBeacon)return;sent=true;navigator.sendBeacon(location.pathname+location.search,JSON.stringify({t:x.engage,ms:vis,c:clicked,lc:late}))}
d.addEventListener('visibilitychange',function(){if(d.visibilityState==='hidden')hide();else if(!since)since=Date.now()});
w.addEventListener('pagehide',hide);
function pixels(){if(on||x.dnt)return;on=true;var p=x.pixels;
if(p.gtm){w.dataLayer.push({'gtm.start':Date.now(),event:'gtm.js'});load('https://www.googletagmanager.com/gtm.js?id='+encodeURIComponent(p.gtm))}
if(p.ga4){w.gtag=function(){w.dataLayer.push(arguments)};w.gtag('js',new Date());w.gtag('config',p.ga4);load('https://www.googletagmanager.com/gtag/js?id='+encodeURIComponent(p.ga4))}
if(p.facebook){!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?n.callMethod.apply(n,arguments):n.queue.push(arguments)};if(!f._fbq)f._fbq=n;n.push=n;n.loaded=!0;n.version='2.0';n.queue=[];t=b.createElement(e);t.async=!0;t.src=v;s=b.getElementsByTagName(e)[0];s.parentNode.insertBefore(t,s)}(w,d,'script','https://connect.facebook.net/en_US/fbevents.js');w.fbq('init',p.facebook);w.fbq('track','PageView')}
if(p.tiktok){var t=w.ttq=w.ttq||[];t.methods=['page','track','identify'];t.setAndDefer=function(o,m){o[m]=function(){o.push([m].concat([].slice.call(arguments,0)))}};for(var i=0;i<t.methods.length;i++)t.setAndDefer(t,t.methods[i]);load('https://analytics.tiktok.com/i18n/pixel/events.js?sdkid='+encodeURIComponent(p.tiktok)+'&lib=ttq');t.page()}
w.dataLayer.push({event:'smartlink_view',event_id:x.eventId,smartlink_id:x.linkId,track_title:x.title,artist_name:x.artist});
if(w.fbq)w.fbq('track','ViewContent',{content_name:x.title,content_category:'Music'},{eventID:x.eventId});
if(w.ttq)w.ttq.track('ViewContent',{content_name:x.title},{event_id:x.eventId})}
[].forEach.call(d.querySelectorAll('a[data-platform]'),function(a){a.addEventListener('click',function(){clicked=true;if(!on)return;var e=a.getAttribute('data-eid'),pl=a.getAttribute('data-platform');
w.dataLayer.push({event:'smartlink_click',event_id:e,smartlink_id:x.linkId,platform:pl});
if(w.fbq)w.fbq('trackCustom','SmartlinkClick',{platform:pl},{eventID:e});if(w.ttq)w.ttq.track('ClickButton',{content_name:pl},{event_id:e})})});
var b=d.getElementById('consent');
if(c()==='granted')pixels();else if(c()===null&&!x.dnt){b.hidden=false}
[].forEach.call(b.querySelectorAll('button'),function(k){k.addEventListener('click',function(){var v=k.getAttribute('data-consent');set(v);b.hidden=true;if(v==='granted')pixels()})})})();"#;

fn head(out: &mut String, title: &str, tenant: Option<&Tenant>, lang: &str) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>",
        attr(lang),
        text(title)
    );
    if let Some(fav) = safe_image(tenant.and_then(|t| t.client.branding.favicon.as_deref())) {
        let _ = write!(out, "<link rel=\"icon\" href=\"{}\">", attr(fav));
    }
}

/// Renders the landing page.
pub fn landing(p: &LandingPage<'_>) -> String {
    let link = &p.link.doc;
    let track = &link.track;
    let title = link.seo.meta_title.clone().unwrap_or_else(|| format!("{} - {}", track.title, track.artist_name));
    let description =
        link.seo.meta_description.clone().unwrap_or_else(|| p.texts.description(&track.title, &track.artist_name));
    let cover = safe_image(link.media.cover_art.as_deref());
    let og_image = safe_url(link.seo.og_image.as_deref()).or(safe_url(link.media.cover_art.as_deref()));
    let mut out = String::with_capacity(8 * 1024);
    head(&mut out, &title, Some(p.tenant), p.texts.lang.tag());
    let _ = write!(
        out,
        "<meta name=\"description\" content=\"{d}\">\
<meta property=\"og:type\" content=\"music.song\"><meta property=\"og:title\" content=\"{t}\">\
<meta property=\"og:description\" content=\"{d}\"><meta property=\"og:url\" content=\"https://{h}/{s}\">\
<meta name=\"twitter:card\" content=\"summary_large_image\"><meta name=\"twitter:title\" content=\"{t}\">\
<meta name=\"twitter:description\" content=\"{d}\">",
        d = attr(&description),
        t = attr(&title),
        h = attr(p.host),
        s = attr(&link.slug),
    );
    if !link.seo.keywords.is_empty() {
        let _ = write!(out, "<meta name=\"keywords\" content=\"{}\">", attr(&link.seo.keywords.join(", ")));
    }
    if let Some(img) = og_image {
        let _ = write!(
            out,
            "<meta property=\"og:image\" content=\"{i}\"><meta name=\"twitter:image\" content=\"{i}\">",
            i = attr(img)
        );
    }
    let _ = write!(out, "<style nonce=\"{}\">{}</style></head><body><main>", p.nonce, style(Some(p.tenant)));
    if let Some(logo) = safe_image(p.tenant.client.branding.logo.as_deref()) {
        let _ = write!(out, "<img class=\"logo\" src=\"{}\" alt=\"{}\">", attr(logo), attr(&p.tenant.client.name));
    }
    if let Some(c) = cover {
        // The cover, blurred, fills the background (an `<img>`: the CSP
        // allows https images, and no URL is ever written into CSS).
        let _ = write!(out, "<img class=\"backdrop\" src=\"{}\" alt=\"\" aria-hidden=\"true\">", attr(c));
        let _ = write!(
            out,
            "<img class=\"cover\" src=\"{}\" alt=\"{}\" width=\"320\" height=\"320\">",
            attr(c),
            attr(&format!("{} cover art", track.title))
        );
    }
    let _ = write!(out, "<h1>{}</h1><p class=\"artist\">{}</p>", text(&track.title), text(&track.artist_name));
    if let Some(line) = p.upcoming {
        let _ = write!(out, "<p class=\"soon\">{}</p>", text(line));
    }
    out.push_str("<ul>");
    for (button, click_id, token) in &p.clicks {
        let _ = write!(
            out,
            "<li><a class=\"btn\" href=\"/{s}/{id}?eid={tok}{amp}{q}\" data-platform=\"{id}\" data-eid=\"{eid}\" rel=\"nofollow noopener\">\
<span class=\"pl\">{icon}{label}</span><span class=\"act\">{listen}</span></a></li>",
            s = attr(&link.slug),
            id = attr(&button.id),
            tok = attr(token),
            amp = if p.query.is_empty() { "" } else { "&amp;" },
            q = attr(p.query),
            eid = click_id,
            icon = button.icon.as_deref().unwrap_or(""),
            label = text(&button.label),
            listen = text(&p.texts.listen),
        );
    }
    let _ = write!(
        out,
        "</ul></main><div id=\"consent\" hidden>{} <button data-consent=\"granted\">{}</button>\
<button data-consent=\"denied\">{}</button></div>",
        text(&p.texts.consent),
        text(&p.texts.accept),
        text(&p.texts.refuse)
    );
    let t = &p.tenant.client.tracking;
    let data = serde_json::json!({
        "eventId": p.view_event_id,
        "engage": p.engage_token,
        "linkId": p.link.id_hex,
        "title": track.title,
        "artist": track.artist_name,
        "dnt": p.dnt,
        "secure": p.secure_cookies,
        "pixels": { "gtm": t.gtm, "ga4": t.ga4, "facebook": t.facebook, "tiktok": t.tiktok },
    });
    let _ = write!(
        out,
        "<script id=\"sl-data\" type=\"application/json\">{}</script><script nonce=\"{}\">{}</script></body></html>",
        script_json(&data),
        p.nonce,
        SCRIPT
    );
    out
}

/// The page that opens a platform's app (issue #18, app links): it
/// navigates to `app` (a URI scheme or an Android intent,
/// [`crate::routing::app_link`]) and, if the app did not take over within
/// 1.5 s, to `web`; without JavaScript the visitor follows either link
/// (and a meta refresh goes to `web` after 3 s). `nonce` is the response's
/// CSP nonce; `lang` a BCP 47 tag (`fr` gets French).
pub fn app_open(app: &str, web: &str, label: &str, tenant: Option<&Tenant>, nonce: &str, lang: &str) -> String {
    let (opening, browser) = if lang == "fr" {
        ("Ouverture de", "Continuer dans le navigateur")
    } else {
        ("Opening", "Continue in the browser")
    };
    let mut out = String::with_capacity(2048);
    head(&mut out, label, tenant, lang);
    let data = serde_json::json!({ "app": app, "web": web });
    let _ = write!(
        out,
        "<meta http-equiv=\"refresh\" content=\"3;url={w}\"><style nonce=\"{n}\">{css}</style></head><body><main>\
<h1>{opening} {l}</h1><ul><li><a class=\"btn\" href=\"{a}\">{l}</a></li><li><a class=\"btn\" href=\"{w}\" rel=\"nofollow noopener\">{browser}</a></li></ul>\
</main><script id=\"sl-app\" type=\"application/json\">{d}</script><script nonce=\"{n}\">\
var d=JSON.parse(document.getElementById('sl-app').textContent);location.href=d.app;\
setTimeout(function(){{if(!document.hidden)location.replace(d.web)}},1500);</script></body></html>",
        w = attr(web),
        a = attr(app),
        n = nonce,
        css = style(tenant),
        l = text(label),
        d = script_json(&data),
    );
    out
}

/// A small error page (`404`, `410`, `429`, `503`...) in the tenant's
/// colours when known, in language `lang` (a BCP 47 tag); its `<style>`
/// carries `nonce` (served with [`content_security_policy`]`(nonce, false)`).
pub fn error(status: u16, message: &str, tenant: Option<&Tenant>, nonce: &str, lang: &str) -> String {
    let mut out = String::with_capacity(2048);
    head(&mut out, message, tenant, lang);
    let _ = write!(
        out,
        "<style nonce=\"{}\">{}</style></head><body><main><h1>{}</h1><p class=\"artist\">{}</p></main></body></html>",
        nonce,
        style(tenant),
        status,
        text(message)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Snapshot;
    use bson::{oid::ObjectId, DateTime};
    use schemas::mongo::*;

    fn snapshot(title: &str, color: &str, cover: &str) -> Snapshot {
        let c = Client {
            id: ObjectId::new(),
            name: "Label <b>".into(),
            slug: "label".into(),
            domain: "x.com".into(),
            subdomain: None,
            tracking: ClientTracking {
                gtm: Some("GTM-</script><script>alert(1)</script>".into()),
                ..Default::default()
            },
            branding: Branding {
                primary_color: Some(color.into()),
                logo: Some("javascript:alert(1)".into()),
                ..Default::default()
            },
            settings: Default::default(),
            metadata: ClientMetadata::new(DateTime::now(), ClientStatus::Active, PlanType::Starter),
        };
        let l = Smartlink {
            id: ObjectId::new(),
            client_id: c.id,
            slug: "s".into(),
            track: Track { title: title.into(), artist_name: "Jiro & \"friends\"".into(), ..Default::default() },
            platforms: Platforms { spotify: Some("https://open.spotify.com/t".into()), ..Default::default() },
            media: Media { cover_art: Some(cover.into()), ..Default::default() },
            seo: Default::default(),
            routing: Default::default(),
            metadata: LinkMetadata::new(DateTime::now(), LinkStatus::Active),
        };
        Snapshot::build(vec![c], vec![l])
    }

    fn render(s: &Snapshot) -> String {
        render_in(s, crate::i18n::Lang::En)
    }

    fn render_in(s: &Snapshot, lang: crate::i18n::Lang) -> String {
        let crate::cache::Resolved::Found(tenant, link) = s.resolve("x.com", "s") else { panic!() };
        let id = Uuid::now_v7();
        let texts = Texts::new(lang, Some(&tenant.client));
        landing(&LandingPage {
            tenant,
            link,
            host: "x.com",
            view_event_id: id,
            engage_token: "tok.en",
            clicks: link.buttons.iter().take(1).map(|b| (b, id, "tok.en".to_string())).collect(),
            query: "",
            dnt: false,
            secure_cookies: false,
            nonce: "n0nce",
            texts: &texts,
            upcoming: None,
        })
    }

    #[test]
    fn the_page_speaks_the_visitor_s_language() {
        let s = snapshot("Nuit", "#112233", "https://cdn.example/cover.jpg");
        let fr = render_in(&s, crate::i18n::Lang::Fr);
        assert!(fr.contains("<html lang=\"fr\">"), "{fr}");
        assert!(
            fr.contains(">Écouter</span>") && fr.contains(">Accepter</button>") && fr.contains(">Refuser</button>")
        );
        assert!(fr.contains("Écoutez Nuit de Jiro"), "the description");
        let en = render(&s);
        assert!(en.contains("<html lang=\"en\">") && en.contains(">Listen</span>") && en.contains(">Accept</button>"));
    }

    #[test]
    fn every_value_is_escaped_and_unsafe_urls_and_css_dropped() {
        let s =
            snapshot("<script>alert('x')</script>", "red;}</style><script>alert(1)</script>", "javascript:alert(2)");
        let html = render(&s);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;")
                || html.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("--p:#1DB954"), "bad colour falls back to default");
        assert!(html.contains("Jiro &amp; &quot;friends&quot;") || html.contains("Jiro &amp; \"friends\""), "{html}");
        assert!(html.contains("GTM-\\u003c/script\\u003e"), "pixel id cannot close the JSON block");
        assert_eq!(html.matches("</script>").count(), 2, "only our two script blocks close");
    }

    #[test]
    fn images_the_page_loads_are_https_only_as_its_policy_allows() {
        let s = snapshot("In Your Light", "#112233", "http://cdn.example/cover.jpg");
        let html = render(&s);
        assert!(!html.contains("<img class=\"backdrop\"") && !html.contains("<img class=\"cover\""), "{html}");
        assert!(
            html.contains("og:image\" content=\"http://cdn.example/cover.jpg\""),
            "a crawler reads it, not the page"
        );
    }

    #[test]
    fn landing_has_buttons_seo_and_the_event_id() {
        let s = snapshot("In Your Light", "#112233", "https://cdn.example/cover.jpg");
        let html = render(&s);
        assert!(
            html.contains("<title>In Your Light - Jiro &amp; &quot;friends&quot;</title>")
                || html.contains("<title>In Your Light - Jiro &amp; \"friends\"</title>"),
            "{html}"
        );
        assert!(html.contains("href=\"/s/spotify?eid=tok.en\""));
        assert!(html.contains("og:image\" content=\"https://cdn.example/cover.jpg\""));
        assert!(html.contains("--p:#112233"));
        assert!(html.contains("\"eventId\":\""));
        assert!(html.contains("<span class=\"pl\"><svg class=\"ic\""), "the platform's mark beside its name: {html}");
        assert!(html.contains("<img class=\"backdrop\" src=\"https://cdn.example/cover.jpg\" alt=\"\""));
        assert!(html.len() < 12_000, "{} bytes", html.len());
    }

    #[test]
    fn only_our_nonced_blocks_run_and_pixels_only_where_consent_may_come() {
        let s = snapshot("In Your Light", "#112233", "https://cdn.example/cover.jpg");
        let html = render(&s);
        assert_eq!(html.matches("<script nonce=\"n0nce\">").count(), 1, "our one executable script");
        assert_eq!(html.matches("<style nonce=\"n0nce\">").count(), 1);
        assert!(!html.contains("<script>") && !html.contains("<style>"), "no inline block without the nonce");
        assert!(!html.contains("onclick=") && !html.contains("onload="), "no inline handlers");
        let with = content_security_policy("n0nce", true, true);
        let without = content_security_policy("n0nce", false, false);
        let beacon_only = content_security_policy("n0nce", false, true);
        assert!(
            beacon_only.contains("connect-src 'self';") && !beacon_only.contains("strict-dynamic"),
            "{beacon_only}"
        );
        assert!(with.contains("connect-src 'self' https:"), "{with}");
        for csp in [&with, &without, &beacon_only] {
            assert!(csp.starts_with("default-src 'none'; script-src 'nonce-n0nce'"), "{csp}");
            assert!(csp.contains("style-src 'nonce-n0nce'") && csp.ends_with("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        }
        assert!(with.contains("'strict-dynamic'") && with.contains("https://connect.facebook.net"), "{with}");
        assert!(!without.contains("facebook") && !without.contains("strict-dynamic"), "{without}");
        assert!(without.contains("connect-src 'none'"), "{without}");
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 32);
    }

    #[test]
    fn error_pages_escape_too() {
        let html = error(404, "<nope>", None, "n", "fr");
        assert!(html.contains("<html lang=\"fr\">"));
        assert!(html.contains("&lt;nope&gt;") && html.contains("404"));
    }
}
