//! Identifier rules shared by every stage: MongoDB ObjectIds as hex strings,
//! slugs, and platform ids.

/// True when `s` is a MongoDB ObjectId rendered as 24 lowercase hex digits,
/// the form ids take in events, ClickHouse rows and API paths.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Longest slug, in bytes.
pub const MAX_SLUG_LEN: usize = 64;

/// True when `s` is a valid slug (and, with the same rule, a platform id): 1 to
/// [`MAX_SLUG_LEN`] characters of `a-z`, `0-9` and `-`, not starting or ending
/// with `-`. The charset keeps slugs URL-safe without escaping and keeps them
/// apart from files a browser asks for (`favicon.ico`, `robots.txt`).
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SLUG_LEN
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids() {
        assert!(is_object_id("65f1c0ffee0000000000beef"));
        assert!(!is_object_id("65F1C0FFEE0000000000BEEF"));
        assert!(!is_object_id("65f1c0ffee0000000000bee"));
        assert!(!is_object_id("65f1c0ffee0000000000beeg"));
    }

    #[test]
    fn slugs() {
        for ok in ["a", "jiro-in-your-light", "2024", &"a".repeat(64)] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "favicon.ico", "é", &"a".repeat(65)] {
            assert!(!is_slug(bad), "{bad}");
        }
    }
}
