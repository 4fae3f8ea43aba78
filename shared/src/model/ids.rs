//! Validation of the ids a request carries, and the member-list normal form that
//! signatures and group writes share.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::Invalid;

/// What an id may not hold besides `:` and control characters: what a path segment sent
/// through an API Gateway HTTP API cannot carry. It hands the function the path already
/// percent-decoded, so a `%2F`, `%3F` or `%23` arrives as a `/`, `?` or `#` that splits or
/// ends the path, and a `%2541` as `%41`, which a second decoding would sign as `A`.
/// Refused everywhere (bodies too), so the local server and Lambda agree and every id a
/// group holds can also be named in a path.
pub const NOT_IN_PATHS: [char; 4] = ['/', '?', '#', '%'];

/// Checks one id (client, app or conversation id). A `:` would make the signed message
/// ambiguous; control characters have no place in an id and would corrupt logs; and
/// [`NOT_IN_PATHS`] cannot reach a function intact.
pub fn check_id(field: &str, value: &str, max_chars: usize) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(format!("{field} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(Invalid::new(format!(
            "{field} is longer than {max_chars} characters"
        )));
    }
    if value.contains(':') {
        return Err(Invalid::new(format!("{field} must not contain ':'")));
    }
    if let Some(c) = value.chars().find(|c| NOT_IN_PATHS.contains(c)) {
        return Err(Invalid::new(format!(
            "{field} must not contain '{c}' (no '/', '?', '#' or '%': \
             a path cannot carry them intact through API Gateway)"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::new(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// The protocol's order of member ids: by UTF-16 code units, as the vendor's SDKs sort
/// them (JavaScript's default `Array.prototype.sort`, and Java's `String.compareTo`) before
/// they sign or send a member list. It differs from UTF-8 byte (and code point) order
/// only when one id has a character outside the Basic Multilingual Plane (a surrogate
/// pair, 0xD800-0xDFFF) where the other has one in U+E000-U+FFFF: `𠮷` (U+20BB7, units
/// D842 DFB7) sorts before `ｹ` (U+FF79) here, after it by bytes. Signing in byte order
/// would make the vendor refuse every such signature.
///
/// So it compares bytes, and looks at characters only where the two ids first differ:
/// there both sit at the same character boundary (their prefixes are equal), and byte
/// order is code point order unless one character is outside the BMP (a 4-byte lead,
/// 0xF0 and up) and the other in U+E000-U+FFFF (a 3-byte lead of 0xEE or 0xEF), where
/// UTF-16 puts the surrogate pair first. This keeps the sort at byte order's cost.
pub fn member_order(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let Some(at) = x.iter().zip(y).position(|(p, q)| p != q) else {
        // One is a prefix of the other (or they are equal): the shorter comes first.
        return x.len().cmp(&y.len());
    };
    // Back to the start of the character that differs (continuation bytes are 10xxxxxx).
    let start = (0..=at).rev().find(|&i| x[i] & 0xC0 != 0x80).unwrap_or(0);
    let top_of_bmp = |lead: u8| lead == 0xEE || lead == 0xEF;
    match (x[start], y[start]) {
        (p, q) if p >= 0xF0 && top_of_bmp(q) => Ordering::Less,
        (p, q) if top_of_bmp(p) && q >= 0xF0 => Ordering::Greater,
        _ => x[at].cmp(&y[at]),
    }
}

/// A set of client ids in the protocol's normal form: ascending [`member_order`], no
/// duplicates, each id valid. `joined()` is exactly what gets signed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberList(Vec<String>);

impl MemberList {
    /// Parses the colon-separated form. The empty string is the empty list (a join);
    /// an empty element (`a::b`, a trailing `:`) is refused rather than guessed at.
    pub fn parse_joined(
        field: &str,
        joined: &str,
        max_ids: usize,
        max_chars: usize,
    ) -> Result<Self, Invalid> {
        if joined.is_empty() {
            return Ok(Self::default());
        }
        Self::from_ids(field, joined.split(':'), max_ids, max_chars)
    }

    pub fn from_ids<'a>(
        field: &str,
        ids: impl IntoIterator<Item = &'a str>,
        max_ids: usize,
        max_chars: usize,
    ) -> Result<Self, Invalid> {
        let mut set = BTreeSet::new();
        for id in ids {
            if id.is_empty() {
                return Err(Invalid::new(format!("{field} contains an empty client id")));
            }
            check_id(field, id, max_chars)?;
            set.insert(id);
            // Checked while collecting so that a huge list is refused without sorting it.
            if set.len() > max_ids {
                return Err(Invalid::new(format!(
                    "{field} may list at most {max_ids} client ids"
                )));
            }
        }
        // The set removed duplicates (equal strings are equal in either order) and holds
        // them in byte order. That is the protocol's order unless the list mixes an id
        // with a character outside the BMP (a 4-byte lead) and one with a character in
        // U+E000-U+FFFF (a 0xEE/0xEF lead): only then is there anything to re-sort.
        let mut ids: Vec<String> = set.into_iter().map(str::to_owned).collect();
        let has = |lead: fn(u8) -> bool| ids.iter().any(|id| id.bytes().any(lead));
        if has(|b| b >= 0xF0) && has(|b| b == 0xEE || b == 0xEF) {
            ids.sort_by(|a, b| member_order(a, b));
        }
        Ok(Self(ids))
    }

    pub fn joined(&self) -> String {
        self.0.join(":")
    }

    pub fn ids(&self) -> &[String] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Group ids are positive integers, written in plain decimal (one spelling: no leading
/// zeros, so `0003` is not group 3, neither as a path nor as a conversation id) and
/// small enough to be exact in a JSON number (2^53).
pub fn parse_group_id(raw: &str) -> Result<u64, Invalid> {
    const MAX: u64 = (1 << 53) - 1;
    let bad = || Invalid::new("group_id must be a positive integer, without leading zeros");
    if raw.is_empty()
        || raw.len() > 16
        || raw.starts_with('0')
        || !raw.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    match raw.parse::<u64>() {
        Ok(n) if (1..=MAX).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

/// A group may link a conversation id that reads as a group id only when it is its own
/// id, written as the service writes it: such an id names that group's conversation
/// (see `super::policy`), so another group must not claim it.
pub fn conversation_may_link(conversation_id: &str, group_id: u64) -> bool {
    parse_group_id(conversation_id).is_err() || conversation_id == group_id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_group_id_has_one_spelling() {
        assert_eq!(parse_group_id("3"), Ok(3));
        assert_eq!(parse_group_id("9007199254740991"), Ok((1 << 53) - 1));
        for other in [
            "0003",
            "03",
            "0",
            "00",
            "+3",
            "3.0",
            " 3",
            "9007199254740992",
            "",
        ] {
            assert!(parse_group_id(other).is_err(), "{other:?}");
        }
        // A conversation id that is not a group id's one spelling is any other id.
        assert!(conversation_may_link("0003", 4));
        assert!(!conversation_may_link("3", 4));
    }

    fn parse(s: &str) -> Result<MemberList, Invalid> {
        MemberList::parse_joined("m", s, 100, 64)
    }

    #[test]
    fn sorts_bytewise_and_dedups() {
        let m = parse("u9:u10:Bob:alice:u9").unwrap();
        // Byte order: uppercase before lowercase, "u10" before "u9".
        assert_eq!(m.joined(), "Bob:alice:u10:u9");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn bmp_ids_sort_as_by_bytes() {
        let m = parse("é:z:a:李:ｹ").unwrap();
        assert_eq!(m.joined(), "a:z:é:李:ｹ");
    }

    /// The case where UTF-16 and UTF-8 disagree: a character outside the BMP (a surrogate
    /// pair, 0xD842 0xDFB7 for 𠮷) against one in U+E000-U+FFFF (0xFF79 for ｹ, 0xE000 for
    /// the first private-use character). JavaScript's `["ｹ", "𠮷"].sort()` gives
    /// `["𠮷", "ｹ"]`; byte order gives the reverse.
    #[test]
    fn non_bmp_ids_sort_before_the_top_of_the_bmp() {
        assert_eq!(member_order("𠮷", "ｹ"), Ordering::Less);
        assert_eq!(member_order("𠮷", "\u{E000}"), Ordering::Less);
        assert_eq!(member_order("\u{D7FF}", "𠮷"), Ordering::Less);
        assert!("𠮷".as_bytes() > "ｹ".as_bytes(), "bytes disagree");
        assert_eq!(member_order("u𠮷", "u𠮷"), Ordering::Equal);
        // Prefixes first, as in any lexicographic order.
        assert_eq!(member_order("u", "u𠮷"), Ordering::Less);
        let m = parse("ｹ:𠮷x:\u{E000}:bob:𠮷:李").unwrap();
        assert_eq!(m.joined(), "bob:李:𠮷:𠮷x:\u{E000}:ｹ");
        // The normal form is stable: parsing it again keeps it.
        assert_eq!(parse(&m.joined()).unwrap(), m);
    }

    /// What Node's default sort gives for these ids: `["ｹ", "𠮷", "bob"].sort()` is
    /// `["bob", "𠮷", "ｹ"]` (signing.rs checks the digest over it against Python's hmac).
    #[test]
    fn normal_form_is_the_sdks_order() {
        let m = parse("ｹ:𠮷:bob").unwrap();
        assert_eq!(m.joined(), "bob:𠮷:ｹ");
    }

    #[test]
    fn empty_string_is_the_empty_list() {
        assert!(parse("").unwrap().is_empty());
        assert_eq!(parse("").unwrap().joined(), "");
    }

    #[test]
    fn refuses_empty_elements_bad_ids_and_long_lists() {
        for bad in ["a::b", ":a", "a:", ":", "a:b\u{7}", "x\n"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_id = "x".repeat(65);
        assert!(parse(&long_id).is_err());
        assert!(parse(&"y".repeat(64)).is_ok());
        // 64 characters, more bytes: the limit is in characters.
        assert!(parse(&"é".repeat(64)).is_ok());
        let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        assert!(parse(&many.join(":")).is_err());
        assert_eq!(parse(&many[..100].join(":")).unwrap().len(), 100);
        // Duplicates do not count against the limit.
        let dups = vec!["same"; 500].join(":");
        assert_eq!(parse(&dups).unwrap().len(), 1);
    }

    #[test]
    fn check_id_rules() {
        assert!(check_id("client_id", "alice", 64).is_ok());
        assert!(check_id("client_id", "", 64).is_err());
        assert!(check_id("client_id", "a:b", 64).is_err());
        assert!(check_id("client_id", "a\u{0}b", 64).is_err());
        assert!(check_id("client_id", "a\u{85}b", 64).is_err());
        assert!(check_id("client_id", "with space+plus=李", 64).is_ok());
        for bad in ["a/b", "/", "a?b", "a#b", "a%41", "%", "100%"] {
            let e = check_id("client_id", bad, 64).unwrap_err().to_string();
            assert!(e.starts_with("client_id must not contain '"), "{bad}: {e}");
        }
    }

    #[test]
    fn group_ids() {
        assert_eq!(parse_group_id("1").unwrap(), 1);
        assert_eq!(parse_group_id("9007199254740991").unwrap(), (1 << 53) - 1);
        for bad in [
            "0",
            "",
            "-1",
            "+1",
            "1.0",
            "abc",
            "9007199254740992",
            " 1",
            "1e3",
        ] {
            assert!(parse_group_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn group_ids_as_conversation_ids() {
        assert!(conversation_may_link("42", 42));
        assert!(!conversation_may_link("42", 7));
        assert!(
            conversation_may_link("042", 42) && conversation_may_link("042", 7),
            "not a group id's one spelling: any other conversation id"
        );
        assert!(conversation_may_link("5f1c0ffee", 7));
        assert!(conversation_may_link("0", 7), "0 is no group id");
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,300}") {
            let _ = parse(&s);
            let _ = parse_group_id(&s);
        }

        #[test]
        fn accepted_lists_round_trip(ids in prop::collection::vec("[a-zA-Z0-9_.@-]{1,64}", 0..50)) {
            let joined = ids.join(":");
            let m = parse(&joined).unwrap();
            // Normal form: sorted, unique, and re-parsing it gives the same list.
            let mut expected = ids.clone();
            expected.sort();
            expected.dedup();
            // ASCII ids: UTF-16 order is byte order.
            prop_assert_eq!(m.ids(), &expected[..]);
            prop_assert_eq!(parse(&m.joined()).unwrap(), m);
        }

        #[test]
        fn member_order_is_utf16_order(a in "\\PC{0,8}", b in "\\PC{0,8}") {
            // Against an independent spelling of the same order: the UTF-16 units, collected.
            let (ua, ub): (Vec<u16>, Vec<u16>) = (a.encode_utf16().collect(), b.encode_utf16().collect());
            prop_assert_eq!(member_order(&a, &b), ua.cmp(&ub));
            // Within the BMP below the surrogates it agrees with byte order.
            if a.chars().chain(b.chars()).all(|c| (c as u32) < 0xD800) {
                prop_assert_eq!(member_order(&a, &b), a.as_bytes().cmp(b.as_bytes()));
            }
        }

        /// The same, on ids drawn from the characters where the orders disagree (and
        /// their neighbours), so that the first difference often falls on them.
        #[test]
        fn member_order_is_utf16_order_where_bytes_disagree(
            a in "[a\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FF79}\u{FFFF}\u{10000}\u{20BB7}\u{10FFFF}]{0,5}",
            b in "[a\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FF79}\u{FFFF}\u{10000}\u{20BB7}\u{10FFFF}]{0,5}",
        ) {
            let (ua, ub): (Vec<u16>, Vec<u16>) = (a.encode_utf16().collect(), b.encode_utf16().collect());
            prop_assert_eq!(member_order(&a, &b), ua.cmp(&ub));
        }

        /// The normal form, whether or not it takes the re-sort, is the ids deduplicated
        /// and sorted by their UTF-16 units (lists with and without both kinds of lead).
        #[test]
        fn the_normal_form_is_sorted_by_utf16_units(
            ids in prop::collection::vec("[ab\u{E9}\u{674E}\u{E000}\u{FF79}\u{20BB7}]{1,4}", 1..12),
        ) {
            let m = MemberList::from_ids("m", ids.iter().map(String::as_str), 100, 64).unwrap();
            let mut expected = ids.clone();
            expected.sort_by_key(|id| id.encode_utf16().collect::<Vec<u16>>());
            expected.dedup();
            prop_assert_eq!(m.ids(), &expected[..]);
        }

        #[test]
        fn accepted_group_ids_round_trip(n in 1u64..(1 << 53)) {
            prop_assert_eq!(parse_group_id(&n.to_string()).unwrap(), n);
        }
    }
}
