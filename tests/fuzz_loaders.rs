//! Mutated and truncated model files never panic (or abort) the loaders: each one is loaded,
//! and then explains, or is refused with an error (proptest; a failure prints its shrunk
//! input).

use crate::model_files::{sentencepiece_gguf, tmp_dir, write_gguf};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::OnceLock;
use tokenlens::{Engine, ExplainRequest, Method};

/// Loads `spec`; when that works, explains a short prompt with every method.
fn load_and_explain(spec: &str) {
    if let Ok(engine) = Engine::load(spec) {
        let mut req = ExplainRequest::new("ab a");
        req.chat_template = false;
        req.methods = Method::ALL.to_vec();
        let _ = engine.explain(&req);
    }
}

fn base_gguf() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(write_gguf("fuzz-base.gguf", |_| {})).unwrap())
}

/// The same model with a SentencePiece vocabulary (pieces and scores).
fn sentencepiece_base() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(sentencepiece_gguf("fuzz-sp.gguf")).unwrap())
}

/// `base` with bytes among its first `head` changed, written to a file of its own, loaded
/// and (when it loads) explained.
fn load_changed(base: &[u8], head: usize, edits: &[(Index, u8)], name: &str) {
    let mut bytes = base.to_vec();
    let head = bytes.len().min(head);
    for (at, value) in edits {
        bytes[at.index(head)] = *value;
    }
    let path = case_path(name);
    std::fs::write(&path, &bytes).unwrap();
    load_and_explain(path.to_str().unwrap());
    let _ = std::fs::remove_file(&path);
}

/// A file of its own per case (tests run in parallel).
fn case_path(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    tmp_dir().join(format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed)))
}

/// 1500 cases per property from a fixed seed, so that CI is deterministic; set
/// `PROPTEST_RNG_SEED` (and `PROPTEST_CASES`) to explore further by hand.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 1500;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(20261204);
    }
    c
}

proptest! {
    #![proptest_config(config())]

    /// Bytes changed in the header and metadata (where lengths, counts, types, offsets and
    /// the tokenizer live); tensor data is only numbers.
    #[test]
    fn gguf_with_changed_bytes(edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6)) {
        load_changed(base_gguf(), 1200, &edits, "changed.gguf");
    }

    /// The same for a SentencePiece vocabulary, whose scores and types are read too.
    #[test]
    fn sentencepiece_gguf_with_changed_bytes(edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6)) {
        load_changed(sentencepiece_base(), 1400, &edits, "sp.gguf");
    }

    #[test]
    fn gguf_cut_short(at in any::<Index>()) {
        let bytes = base_gguf();
        let path = case_path("cut.gguf");
        std::fs::write(&path, &bytes[..at.index(bytes.len())]).unwrap();
        load_and_explain(path.to_str().unwrap());
        let _ = std::fs::remove_file(&path);
    }

    /// config.json with one field set to a value of any JSON kind and size.
    #[test]
    fn config_json_with_a_changed_field(
        key in prop::sample::select(vec![
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings",
            "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings", "model_type",
            "bos_token_id", "eos_token_id",
        ]),
        value in prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            (0u64..64).prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
            any::<bool>().prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
            Just(serde_json::json!({"rope_type": "llama3", "factor": 0.0})),
            Just(serde_json::json!([1, 2])),
        ],
    ) {
        let src = crate::util::root().join("tests/fixtures/tiny-llama");
        let dir = case_path("config");
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            std::os::unix::fs::symlink(src.join(f), dir.join(f)).unwrap();
        }
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
        cfg[key] = value;
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        load_and_explain(dir.to_str().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
