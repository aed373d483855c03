//! Real vocabularies as llama.cpp's converter writes them give the ids of the family's own
//! Hugging Face tokenizer.
//!
//! Reference: llama.cpp's vocabulary-only GGUFs (`models/ggml-vocab-<name>.gguf`) with their
//! test texts (`.inp`) and, per text, the ids transformers' `AutoTokenizer` gives
//! (`tokenizer.encode(text, add_special_tokens=False)`, written to `.out` by llama.cpp's
//! `convert_hf_to_gguf_update.py` from each model's Hugging Face tokenizer). Fetched by
//! `scripts/fetch-models.sh` from the llama.cpp tree in PyPI's llama-cpp-python 0.3.36 sdist.

use crate::gguf_vocab::{cache, read_gguf};

/// The vocabularies, with the families that use them.
const VOCABS: &[(&str, &str)] = &[
    (
        "llama-spm",
        "Llama 2, Mistral v0.1 (SentencePiece, dummy prefix)",
    ),
    ("phi-3", "Phi-3 (SentencePiece, dummy prefix)"),
    ("gemma-4", "Gemma 4 (tokenizer model gemma4)"),
    ("qwen35", "Qwen3.5 (pre-tokenizer qwen35)"),
    ("qwen2", "Qwen2, Qwen2.5, Qwen3"),
    ("deepseek-coder", "DeepSeek Coder"),
    ("deepseek-llm", "DeepSeek LLM"),
    ("falcon", "Falcon"),
    ("command-r", "Command R"),
    ("gpt-2", "GPT-2"),
    ("llama-bpe", "Llama 3"),
    ("mpt", "MPT"),
    ("starcoder", "StarCoder"),
    ("refact", "Refact"),
];

/// The test texts and their reference ids.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let dir = cache().join("tokenizers/llama.cpp");
    let read = |ext: &str| {
        let path = dir.join(format!("ggml-vocab-{name}.gguf{ext}"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path:?}: {e}; run scripts/fetch-models.sh"))
    };
    let inp = read(".inp");
    // Texts are separated (and, in most files, ended) by the separator line.
    let sep = "\n__ggml_vocab_test__\n";
    let texts: Vec<&str> = inp.strip_suffix(sep).unwrap_or(&inp).split(sep).collect();
    let out = read(".out");
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: texts vs id lines");
    texts
        .into_iter()
        .zip(ids)
        .map(|(t, i)| (t.to_string(), i))
        .collect()
}

#[test]
fn llama_cpp_vocabularies_tokenize_as_transformers() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, families) in VOCABS {
        let path = cache().join(format!("tokenizers/llama.cpp/ggml-vocab-{name}.gguf"));
        let content = read_gguf(&path);
        let tok = match tokenlens::tokenizer::from_gguf(&content) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name} ({families}): {e}"));
                continue;
            }
        };
        for (text, want) in cases(name) {
            let got = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            checked += 1;
            if got != want {
                failures.push(format!(
                    "{name} ({families}) {text:?}:\n  want {want:?}\n  got  {got:?}"
                ));
            }
        }
    }
    eprintln!("{checked} texts over {} vocabularies", VOCABS.len());
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// SentencePiece's dummy prefix belongs to the first token, whose span still starts at the
/// text's first character; each token's text is what it adds (its space included).
#[test]
fn dummy_prefix_spans_and_texts() {
    let path = cache().join("tokenizers/llama.cpp/ggml-vocab-llama-spm.gguf");
    let tok = tokenlens::tokenizer::from_gguf(&read_gguf(&path)).unwrap();
    let enc = tok.encode("Hello world", false).unwrap();
    assert_eq!(enc.get_ids(), [15043, 3186]);
    assert_eq!(enc.get_offsets(), [(0, 5), (5, 11)]);
    let texts: Vec<String> = enc
        .get_ids()
        .iter()
        .map(|&id| tok.decode(&[id], false).unwrap())
        .collect();
    assert_eq!(texts, [" Hello", " world"]);
    // A space the user typed is a token of its own ("▁"), before the prefixed word.
    let enc = tok.encode(" Hello", false).unwrap();
    assert_eq!(enc.get_ids(), [29871, 15043]);
}
