//! The visitor's language and the pages' texts in it (issue #18): English
//! and French (the agency is French), chosen from `Accept-Language`
//! (RFC 9110 §12.5.4: the highest-weighted range whose primary subtag we
//! have; `q=0` excludes; English when none matches), each text overridable
//! by the tenant (`clients.branding.texts.{lang}`).

use std::borrow::Cow;

use schemas::mongo::{Client, PageTexts};

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the default).
    En,
    /// French.
    Fr,
}

impl Lang {
    /// The BCP 47 tag (`html lang`, the tenant's `texts` key).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

/// The language for an `Accept-Language` value (absent: English).
pub fn negotiate(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else { return Lang::En };
    accept_language::parse_with_quality(header)
        .into_iter()
        .filter(|(_, q)| *q > 0.0)
        .find_map(|(range, _)| {
            let primary = range.split('-').next().unwrap_or_default();
            if primary.eq_ignore_ascii_case("fr") {
                Some(Lang::Fr)
            } else if primary.eq_ignore_ascii_case("en") {
                Some(Lang::En)
            } else {
                None
            }
        })
        .unwrap_or(Lang::En)
}

/// The texts of the pages in one language, the tenant's where it set them.
#[derive(Debug, Clone)]
pub struct Texts<'a> {
    /// The language.
    pub lang: Lang,
    description: Cow<'a, str>,
    /// The action on each platform button.
    pub listen: Cow<'a, str>,
    /// The consent banner's sentence.
    pub consent: Cow<'a, str>,
    /// Accept button.
    pub accept: Cow<'a, str>,
    /// Refuse button.
    pub refuse: Cow<'a, str>,
    /// 404 message.
    pub not_found: Cow<'a, str>,
    /// 410 message.
    pub gone: Cow<'a, str>,
    /// 429 message.
    pub too_many: &'static str,
    /// 503 message while the cache loads.
    pub starting: &'static str,
    soon: &'static str,
}

/// The edge's own texts in `lang`.
fn defaults(lang: Lang) -> [&'static str; 10] {
    match lang {
        Lang::En => [
            "Listen to {title} by {artist} on your favourite platform.",
            "Listen",
            "This page uses cookies to measure its audience and for advertising.",
            "Accept",
            "Refuse",
            "This link does not exist",
            "This link is no longer available",
            "Too many requests",
            "Starting up, try again in a moment",
            "Out {date}",
        ],
        Lang::Fr => [
            "Écoutez {title} de {artist} sur votre plateforme préférée.",
            "Écouter",
            "Cette page utilise des cookies pour mesurer son audience et à des fins publicitaires.",
            "Accepter",
            "Refuser",
            "Ce lien n'existe pas",
            "Ce lien n'est plus disponible",
            "Trop de requêtes",
            "Démarrage en cours, réessayez dans un instant",
            "Disponible le {date}",
        ],
    }
}

impl<'a> Texts<'a> {
    /// The texts in `lang`, with `client`'s own where it set them.
    pub fn new(lang: Lang, client: Option<&'a Client>) -> Self {
        let own: Option<&'a PageTexts> = client.and_then(|c| c.branding.texts.get(lang.tag()));
        let [description, listen, consent, accept, refuse, not_found, gone, too_many, starting, soon] = defaults(lang);
        let pick = |mine: Option<&'a String>, default: &'static str| -> Cow<'a, str> {
            match mine.map(|s| s.trim()).filter(|s| !s.is_empty()) {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Borrowed(default),
            }
        };
        Texts {
            lang,
            description: pick(own.and_then(|t| t.description.as_ref()), description),
            listen: pick(own.and_then(|t| t.listen.as_ref()), listen),
            consent: pick(own.and_then(|t| t.consent.as_ref()), consent),
            accept: pick(own.and_then(|t| t.accept.as_ref()), accept),
            refuse: pick(own.and_then(|t| t.refuse.as_ref()), refuse),
            not_found: pick(own.and_then(|t| t.not_found.as_ref()), not_found),
            gone: pick(own.and_then(|t| t.gone.as_ref()), gone),
            too_many,
            starting,
            soon,
        }
    }

    /// The pre-release line of a link going live at `at`: its UTC day in
    /// words ("Out 5 December 2026", "Disponible le 5 décembre 2026").
    pub fn soon(&self, at: bson::DateTime) -> String {
        const EN: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        const FR: [&str; 12] = [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ];
        let day = time::OffsetDateTime::from_unix_timestamp(at.timestamp_millis().div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let month = usize::from(u8::from(day.month())) - 1;
        let name = match self.lang {
            Lang::En => EN[month],
            Lang::Fr => FR[month],
        };
        self.soon.replace("{date}", &format!("{} {name} {}", day.day(), day.year()))
    }

    /// The page description of a track (unescaped: the page escapes it).
    pub fn description(&self, title: &str, artist: &str) -> String {
        self.description.replace("{title}", title).replace("{artist}", artist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_weighted_language_we_have_wins() {
        for (header, lang) in [
            ("fr-FR,fr;q=0.9,en;q=0.8", Lang::Fr),
            ("en-GB,en;q=0.9,fr;q=0.8", Lang::En),
            ("de-DE,de;q=0.9,fr;q=0.5,en;q=0.3", Lang::Fr),
            ("en;q=0.2, FR-ca;q=0.7", Lang::Fr),
            ("fr;q=0, en;q=0.1", Lang::En),
            ("de, es", Lang::En),
            ("", Lang::En),
            ("*", Lang::En),
            (";;;q=,fr", Lang::Fr),
        ] {
            assert_eq!(negotiate(Some(header)), lang, "{header}");
        }
        assert_eq!(negotiate(None), Lang::En);
    }

    #[test]
    fn a_tenant_s_own_texts_replace_ours_in_their_language() {
        let mut client: Client = bson::from_document(bson::doc! {
            "_id": bson::oid::ObjectId::new(), "name": "c", "slug": "c", "domain": "c.test",
            "metadata": { "createdAt": bson::DateTime::now(), "updatedAt": bson::DateTime::now() },
        })
        .unwrap();
        client.branding.texts.insert(
            "fr".into(),
            PageTexts { listen: Some("Jouer".into()), consent: Some("  ".into()), ..PageTexts::default() },
        );
        let fr = Texts::new(Lang::Fr, Some(&client));
        assert_eq!((fr.listen.as_ref(), fr.accept.as_ref()), ("Jouer", "Accepter"));
        assert!(fr.consent.starts_with("Cette page"), "a blank text keeps ours");
        assert_eq!(fr.description("Nuit", "Jiro"), "Écoutez Nuit de Jiro sur votre plateforme préférée.");
        assert_eq!(Texts::new(Lang::En, Some(&client)).listen, "Listen", "other languages keep ours");
        let at = bson::DateTime::parse_rfc3339_str("2026-12-05T23:30:00Z").unwrap();
        assert_eq!(fr.soon(at), "Disponible le 5 décembre 2026");
        assert_eq!(Texts::new(Lang::En, None).soon(at), "Out 5 December 2026", "the UTC day");
    }
}
