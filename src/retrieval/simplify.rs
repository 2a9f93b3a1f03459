//! Traditional to Simplified Chinese, character by character.
//!
//! NOTE: the table in `t2s.txt` covers common characters of business chat,
//! not the whole OpenCC dictionary, and it maps characters one to one, so
//! phrase-level differences (`軟體` vs `软件`) are not converted.

use std::collections::HashMap;
use std::sync::LazyLock;

pub(crate) const TABLE: &str = include_str!("t2s.txt");

static MAP: LazyLock<HashMap<char, char>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for line in TABLE.lines().filter(|line| !line.starts_with('#')) {
        for pair in line.split_whitespace() {
            let mut chars = pair.chars();
            if let (Some(traditional), Some(simplified), None) =
                (chars.next(), chars.next(), chars.next())
                && traditional != simplified
            {
                map.insert(traditional, simplified);
            }
        }
    }
    map
});

/// Returns the Simplified form of a Traditional character, or the character itself.
pub fn to_simplified(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    MAP.get(&c).copied().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pairs_are_well_formed() {
        for line in TABLE.lines().filter(|line| !line.starts_with('#')) {
            for pair in line.split_whitespace() {
                assert_eq!(pair.chars().count(), 2, "malformed pair {pair:?}");
            }
        }
        assert!(MAP.len() > 500);
    }

    #[test]
    fn converts_common_characters() {
        let converted: String = "客戶說報價太貴，競品便宜"
            .chars()
            .map(to_simplified)
            .collect();
        assert_eq!(converted, "客户说报价太贵，竞品便宜");
        assert_eq!(to_simplified('a'), 'a');
    }
}
