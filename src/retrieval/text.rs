//! Text analysis shared by indexing and querying: normalisation, Chinese word
//! segmentation, English stemming, stop words and CJK character bigrams.

use std::collections::HashSet;
use std::sync::LazyLock;

use jieba_rs::Jieba;
use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;

use crate::corpus::is_cjk;

/// Words of the corpus and of the sales vocabulary that jieba's default
/// dictionary does not hold, one per line with an optional frequency.
const USER_DICTIONARY: &str = include_str!("user_dict.txt");

/// Chinese function words and chat fillers that carry no topic.
const CHINESE_STOP_WORDS: &str = "的 了 是 我 你 他 她 它 我们 你们 他们 她们 咱们 在 和 与 及 或 就 都 也 还 又 吗 呢 啊 吧 呀 嘛 哦 哈 这 那 这个 那个 这些 那些 这样 那样 个 一 一个 一下 一些 有 有没有 没有 怎么 怎么办 怎样 如何 什么 咋 咋办 咋整 啥 为什么 要 会 能 可以 该 应该 把 被 给 让 对 说 很 太 挺 特别 非常 比较 但 但是 而 而且 所以 因为 如果 就是 还是 然后 其实 可能 到底 已经 现在 时候 之前 之后 里 上 下 中 着 过 得 地 么 呗 嗯 请问 帮 帮我 一直 真的 感觉 觉得 想 想要 需要 问 问题";

/// English function words and chat fillers that carry no topic.
const ENGLISH_STOP_WORDS: &str = "a an the and or but if then so of to in on at by for with from as into about over after before up down out is are was were be been being am do does did doing have has had having i me my mine we us our you your he him his she her it its they them their this that these those there here what which who whom whose how why when where can could should would will shall may might must not no yes just very really too also any some all more most much many such than again still even only own same other s t don didn doesn isn aren wasn weren won wouldn couldn shouldn ve ll re d m get got go going gonna wanna let lets please thanks hi hello hey ok okay";

pub(crate) static JIEBA: LazyLock<Jieba> = LazyLock::new(|| {
    let mut jieba = Jieba::new();
    let mut reader = std::io::BufReader::new(USER_DICTIONARY.as_bytes());
    jieba
        .load_dict(&mut reader)
        .expect("the embedded user dictionary is valid");
    jieba
});

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

static STOP_WORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    CHINESE_STOP_WORDS
        .split_whitespace()
        .chain(ENGLISH_STOP_WORDS.split_whitespace())
        .collect()
});

/// Returns the data files that decide how text is analysed, for index fingerprints.
pub(crate) fn analyzer_data() -> [&'static str; 4] {
    [
        USER_DICTIONARY,
        CHINESE_STOP_WORDS,
        ENGLISH_STOP_WORDS,
        super::simplify::TABLE,
    ]
}

/// Returns `true` for a stop word (compared after normalisation).
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(word)
}

/// Normalises text for matching: NFKC (full-width to half-width), lowercase,
/// Traditional to Simplified Chinese characters.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc() {
        for lower in c.to_lowercase() {
            out.push(super::simplify::to_simplified(lower));
        }
    }
    out
}

/// Stems one lowercase English word.
pub fn stem(word: &str) -> String {
    STEMMER.stem(word).into_owned()
}

/// One analysed term with its byte span in the normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Splits normalised text into index terms: jieba search-mode words for
/// Chinese, stemmed words for English, numbers as they are. Punctuation,
/// whitespace, emoji and stop words produce no term.
pub fn analyze_normalized(text: &str) -> Vec<Term> {
    let mut terms = Vec::new();
    for token in JIEBA.cut_for_search(text, true) {
        let word = token.word;
        if !word.chars().any(|c| c.is_alphanumeric()) {
            continue;
        }
        if is_stop_word(word) {
            continue;
        }
        let term = if word.chars().all(|c| c.is_ascii_alphabetic()) {
            stem(word)
        } else if word.chars().any(is_cjk) {
            word.to_string()
        } else {
            // Mixed or non-Latin tokens: keep the letters and digits only.
            word.chars().filter(|c| c.is_alphanumeric()).collect()
        };
        if term.is_empty() || is_stop_word(&term) {
            continue;
        }
        terms.push(Term {
            text: term,
            start: token.byte_start,
            end: token.byte_end,
        });
    }
    terms
}

/// Normalises and analyses `text`; see [`analyze_normalized`].
pub fn analyze(text: &str) -> Vec<Term> {
    analyze_normalized(&normalize(text))
}

/// Returns the overlapping pairs of Han characters in normalised text, which
/// match words the dictionary does not know (`已读不回` gives `已读`, `读不`,
/// `不回`). A run of a single Han character gives that character.
pub fn cjk_bigrams(text: &str) -> Vec<Term> {
    let mut terms = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut index = 0;
    while index < chars.len() {
        if !is_cjk(chars[index].1) {
            index += 1;
            continue;
        }
        let run_start = index;
        while index < chars.len() && is_cjk(chars[index].1) {
            index += 1;
        }
        let run = &chars[run_start..index];
        let end_of = |i: usize| run[i].0 + run[i].1.len_utf8();
        if run.len() == 1 {
            terms.push(Term {
                text: run[0].1.to_string(),
                start: run[0].0,
                end: end_of(0),
            });
            continue;
        }
        for pair in 0..run.len() - 1 {
            let text: String = [run[pair].1, run[pair + 1].1].iter().collect();
            terms.push(Term {
                text,
                start: run[pair].0,
                end: end_of(pair + 1),
            });
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        analyze(text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn normalize_folds_width_case_and_script() {
        assert_eq!(normalize("ＣＲＭ　系統"), "crm 系统");
        assert_eq!(normalize("客戶說價格太貴"), "客户说价格太贵");
    }

    #[test]
    fn analyze_stems_english_and_drops_stop_words() {
        assert_eq!(words("The clients are ghosting me"), ["client", "ghost"]);
        assert!(words("我的 了 吗？").is_empty());
        assert!(words("！！！？？ ……").is_empty());
        assert!(words("😀🙏").is_empty());
    }

    #[test]
    fn analyze_segments_chinese() {
        let terms = words("客户嫌贵怎么回");
        assert!(terms.contains(&"客户".to_string()), "{terms:?}");
        assert!(terms.contains(&"嫌贵".to_string()), "{terms:?}");
    }

    #[test]
    fn bigrams_cover_han_runs() {
        let grams: Vec<String> = cjk_bigrams("已读不回 ok 好")
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(grams, ["已读", "读不", "不回", "好"]);
    }
}
