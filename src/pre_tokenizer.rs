//! The byte-level BPE pre-tokenizers that llama.cpp names in a GGUF's `tokenizer.ggml.pre`,
//! as `tokenizers` pipelines.
//!
//! Each entry lists the split regexes that llama.cpp's `llm_tokenizer_bpe` applies one after
//! the other (`src/llama-vocab.cpp`), each keeping both matches and the text between them, as
//! a `Split(…, Isolated)` does; a byte-level step without its own regex follows. This is also
//! how the models' own `tokenizer.json` files are built, so the pipeline matches their Hugging
//! Face tokenizers.
//!
//! Where llama.cpp rewrites a regex for `std::regex` (which has neither `(?i:…)` nor
//! `\p{Lu}`-style categories), we keep the original from the model's `tokenizer.json`, which
//! llama.cpp quotes beside its rewrite: the rewrites are close but not equal (the tekken
//! rewrite drops combining marks from words, and `(?i:'s)` also matches the long s `'ſ`).

use crate::error::{Error, Result};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

/// One pre-tokenizer: the `tokenizer.ggml.pre` values that select it and what it does.
#[derive(Debug)]
pub struct PreTokenizer {
    /// Names llama.cpp accepts for it.
    pub names: &'static [&'static str],
    /// Split regexes, applied in order.
    pub regexes: &'static [&'static str],
    /// A word that is itself in the vocabulary is one token, whatever the merges say
    /// (llama.cpp's `ignore_merges`, the `tokenizer.json` BPE's `ignore_merges`).
    pub ignore_merges: bool,
    /// Text is NFC-normalized first, as the models' `tokenizer.json` does (Qwen's). llama.cpp
    /// skips this step; we follow the Hugging Face tokenizer, the reference for the ids.
    pub nfc: bool,
}

/// GPT-2's regex, which many later pre-tokenizers extend.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GPT-2's regex as llama.cpp writes it for StarCoder-style vocabularies: no final `\s+`
/// (a lone whitespace run before a non-space stays between matches, which the isolated split
/// keeps as its own piece anyway).
const GPT2_LLAMA_CPP: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek LLM's letter class, spelled out by code point ranges in its `tokenizer.json`.
/// Non-ASCII is written as escapes here: several of these letters (U+1FBE, U+2126, U+212A…)
/// are canonical singletons that an editor's Unicode normalization silently rewrites.
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+";

const DEEPSEEK_V3_WORDS: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// Every pre-tokenizer TokenLens builds, by llama.cpp's names for it.
pub const PRE_TOKENIZERS: &[PreTokenizer] = &[
    PreTokenizer {
        // llama.cpp's fallback for vocabularies its converter did not recognise.
        names: &["default"],
        regexes: &[
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2_LLAMA_CPP,
            r"\p{N}+",
            r"[0-9][0-9][0-9]",
        ],
        ignore_merges: false,
        nfc: false,
    },
    PreTokenizer {
        names: &["llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"],
        regexes: &[LLAMA3],
        ignore_merges: true,
        nfc: false,
    },
    PreTokenizer {
        names: &["qwen2", "deepseek-r1-qwen"],
        regexes: &[QWEN2],
        ignore_merges: false,
        nfc: true,
    },
    PreTokenizer {
        // Qwen2's, with combining marks (\p{M}) part of words.
        names: &["qwen35"],
        regexes: &[QWEN35],
        ignore_merges: false,
        // Qwen3.5's tokenizer.json has no NFC step: decomposed accents stay as they are.
        nfc: false,
    },
    PreTokenizer {
        names: &["tekken"],
        regexes: &[TEKKEN],
        ignore_merges: true,
        nfc: false,
    },
    PreTokenizer {
        names: &["deepseek-llm"],
        regexes: &[
            "[\r\n]",
            DEEPSEEK_LLM_LETTERS,
            r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+",
            r"\s+$",
            r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
            r"\p{N}+",
        ],
        ignore_merges: false,
        nfc: false,
    },
    PreTokenizer {
        names: &["deepseek-coder"],
        regexes: &[
            "[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
            r"\p{N}",
        ],
        ignore_merges: false,
        nfc: false,
    },
    PreTokenizer {
        names: &["falcon"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_LLAMA_CPP, r"[0-9][0-9][0-9]"],
        ignore_merges: false,
        nfc: false,
    },
    PreTokenizer {
        names: &["deepseek-v3"],
        regexes: &[
            r"\p{N}{1,3}",
            r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+",
            DEEPSEEK_V3_WORDS,
        ],
        ignore_merges: false,
        nfc: false,
    },
    PreTokenizer {
        names: &["gpt-4o", "llama4"],
        regexes: &[GPT4O],
        ignore_merges: false,
        nfc: false,
    },
    PreTokenizer {
        // Every digit on its own, then GPT-2's regex (SmolLM, StarCoder and their kin).
        names: &["smollm", "starcoder", "refact", "codeshell", "command-r"],
        regexes: &[r"\p{N}", GPT2_LLAMA_CPP],
        ignore_merges: false,
        nfc: false,
    },
    PreTokenizer {
        names: &["gpt-2", "gpt2", "phi-2", "mpt", "olmo"],
        regexes: &[GPT2],
        ignore_merges: false,
        nfc: false,
    },
];

/// Every supported name, for error messages.
pub fn supported_names() -> String {
    let mut names: Vec<&str> = PRE_TOKENIZERS
        .iter()
        .flat_map(|p| p.names.iter().copied())
        .collect();
    names.sort_unstable();
    names.join(", ")
}

/// The pre-tokenizer llama.cpp selects for `name`.
pub fn find(name: &str) -> Result<&'static PreTokenizer> {
    PRE_TOKENIZERS
        .iter()
        .find(|p| p.names.contains(&name))
        .ok_or_else(|| {
            Error::Tokenizer(format!(
                "GGUF pre-tokenizer {name:?} (tokenizer.ggml.pre) is not supported; supported: {} \
                 (and SentencePiece vocabularies, tokenizer.ggml.model = \"llama\")",
                supported_names()
            ))
        })
}

impl PreTokenizer {
    /// The `tokenizers` pipeline: each regex as an isolated split, then the byte-level
    /// mapping (no regex of its own; offsets untrimmed, so a token's span keeps its space).
    pub fn build(&self) -> Result<PreTokenizerWrapper> {
        let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(self.regexes.len() + 1);
        for re in self.regexes {
            let split = Split::new(
                SplitPattern::Regex((*re).to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex {re:?}: {e}")))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        Ok(Sequence::new(steps).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};

    fn pieces(name: &str, text: &str) -> Vec<String> {
        let pre = find(name).unwrap().build().unwrap();
        let mut s = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, (a, b), _)| text[a..b].to_string())
            .collect()
    }

    #[test]
    fn every_regex_compiles() {
        for p in PRE_TOKENIZERS {
            p.build().unwrap_or_else(|e| panic!("{:?}: {e}", p.names));
        }
    }

    #[test]
    fn names_are_unique() {
        let mut all: Vec<&str> = PRE_TOKENIZERS
            .iter()
            .flat_map(|p| p.names.to_vec())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn digits_by_family() {
        // llama3: runs of up to three digits; qwen2 and smollm: one digit each.
        assert_eq!(pieces("llama-bpe", "12345"), ["123", "45"]);
        assert_eq!(pieces("qwen2", "12345"), ["1", "2", "3", "4", "5"]);
        assert_eq!(pieces("smollm", " 42"), [" ", "4", "2"]);
        assert_eq!(pieces("gpt-2", " 42"), [" 42"]);
    }

    #[test]
    fn contractions_ignore_case_where_the_model_does() {
        assert_eq!(pieces("qwen2", "I'M"), ["I", "'M"]);
        assert_eq!(pieces("gpt-2", "I'M"), ["I", "'", "M"]);
        assert_eq!(pieces("gpt-4o", "DON'T"), ["DON'T"]);
    }

    #[test]
    fn tekken_splits_camel_case() {
        assert_eq!(pieces("tekken", "HelloWorld"), ["Hello", "World"]);
    }

    #[test]
    fn unknown_name_lists_the_supported_ones() {
        let e = find("no-such-pre").unwrap_err().to_string();
        assert!(e.contains("\"no-such-pre\""), "{e}");
        assert!(
            e.contains("qwen2") && e.contains("llama-bpe") && e.contains("tekken"),
            "{e}"
        );
    }
}
