//! The validators every API body and query goes through (text, URLs, slugs,
//! host names, ids, colours, dates, emails, phones): arbitrary strings are
//! accepted or refused with a 400 naming the field, never a panic; what a
//! validator accepts, it accepts again (idempotent normal forms).
#![no_main]

use api::validate as v;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    if let Ok(t) = v::text("f", s, 1, 200) {
        assert_eq!(v::text("f", &t, 1, 200).ok(), Some(t.clone()));
    }
    let _ = v::multiline("f", s, 300);
    if let Ok(u) = v::http_url("f", s) {
        assert!(u.starts_with("http://") || u.starts_with("https://"), "{u}");
    }
    if let Ok(slug) = v::slug("f", s) {
        assert_eq!(v::slug("f", &slug).ok(), Some(slug.clone()));
    }
    if let Ok(h) = v::hostname("f", s) {
        assert_eq!(v::hostname("f", &h).ok(), Some(h.clone()));
    }
    let _ = v::object_id("f", s);
    let _ = v::color("f", Some(s));
    let _ = v::tag_id("f", Some(s), "GTM-", false);
    let _ = v::rfc3339("f", s);
    let _ = v::date("f", s);
    if let Ok(m) = v::email("f", s) {
        assert_eq!(v::email("f", &m).ok(), Some(m.clone()));
    }
    if let Ok(p) = v::phone("f", s) {
        assert_eq!(v::phone("f", &p).ok(), Some(p.clone()));
    }
    let _ = v::is_country(s);
    let _ = v::is_isrc(s);
});
