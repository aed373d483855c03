//! The `tokenlens` binary: JSON schema, targets, exit codes and messages.

use std::process::{Command, Output};

pub(crate) fn tokenlens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenlens"))
        .args(args)
        .output()
        .expect("run tokenlens")
}

/// Runs the binary and asserts it succeeded (its stderr as the message).
pub(crate) fn succeeds(args: &[&str]) -> Output {
    let out = tokenlens(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn fails_with(args: &[&str], needle: &str) {
    let out = tokenlens(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        err.contains(needle),
        "{args:?}: stderr {err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn json_document_follows_the_schema() {
    let out = succeeds(&[
        "explain",
        "--prompt",
        "What is the capital of France?",
        "--target",
        " Paris",
        "--methods",
        "saliency,attnlrp",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = v["tokens"].as_array().unwrap().len();
    let tok = &v["tokens"][0];
    for k in ["id", "text", "start", "end", "special"] {
        assert!(!tok[k].is_null(), "token lacks {k}");
    }
    let span = v["query_span"].as_array().unwrap();
    assert!(span[0].as_u64().unwrap() < span[1].as_u64().unwrap());
    for k in ["id", "text", "logit", "prob", "top"] {
        assert!(!v["prediction"][k].is_null(), "prediction lacks {k}");
    }
    assert_eq!(v["target"]["text"], " Paris");
    assert!(v["target"]["rank"].as_u64().is_some());
    for m in ["saliency", "attnlrp"] {
        let r = &v["methods"][m];
        assert_eq!(r["scores"].as_array().unwrap().len(), n);
        assert_eq!(r["trace"].as_array().unwrap().len(), 30);
        assert_eq!(r["trace"][0].as_array().unwrap().len(), n);
        assert_eq!(r["trace_normalized"].as_array().unwrap().len(), 30);
    }
    assert!(v["methods"]["attnlrp"]["conservation"]["input"]
        .as_f64()
        .is_some());
}

#[test]
fn terminal_output_names_the_prediction() {
    let out = tokenlens(&["explain", "--raw", "--prompt", "The Eiffel Tower is in"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("prediction:") && s.contains("saliency"), "{s}");
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    fails_with(&["explain", "--prompt", ""], "the prompt is empty");
    fails_with(
        &["explain", "--prompt", "hi", "--model", "nope"],
        "unknown model \"nope\"",
    );
    fails_with(
        &["explain", "--prompt", "hi", "--target-id", "99999999"],
        "out of range",
    );
    fails_with(
        &["explain", "--prompt", "hi", "--target", ""],
        "tokenizes to nothing",
    );
    fails_with(
        &["explain", "--prompt", "hi", "--methods", "magic"],
        "invalid value 'magic' for '--methods <METHODS>'",
    );
    fails_with(
        &[
            "explain",
            "--prompt",
            "a a a a a a",
            "--raw",
            "--max-tokens",
            "3",
        ],
        "more than the 3",
    );
}

/// The command line's bad-input corpus: every numeric flag at 0, negative and huge, unknown
/// names, empty and 100k-character prompts, and malformed model files given by path. Each
/// exits non-zero within a minute with its message; none panics.
#[test]
fn bad_input_corpus() {
    use crate::model_files::write_gguf;
    use candle_core::quantized::gguf_file::Value;
    let huge_prompt = "word ".repeat(20_000);
    let truncated = {
        let p = crate::model_files::tmp_dir().join("cli-truncated.gguf");
        let bytes = std::fs::read(write_gguf("cli-whole.gguf", |_| {})).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
        p
    };
    let edited = |name: &str, key: &str, v: Value| {
        let key = key.to_string();
        write_gguf(name, move |md| {
            md.retain(|(k, _)| *k != key);
            md.push((key, v));
        })
    };
    let zero_heads = edited(
        "cli-heads.gguf",
        "llama.attention.head_count",
        Value::U32(0),
    );
    let alignment = edited("cli-align.gguf", "general.alignment", Value::U32(0));
    let context = edited("cli-ctx.gguf", "llama.context_length", Value::U32(u32::MAX));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--top-k", "0"],
            "top_k must be between 1 and 100, not 0",
        ),
        (vec!["--top-k", "-1"], "unexpected argument '-1'"),
        (vec!["--top-k", "101"], "top_k must be between 1 and 100"),
        (
            vec!["--top-k", "100000000000"],
            "top_k must be between 1 and 100",
        ),
        (vec!["--top-k", "1e99"], "invalid value '1e99' for '--top-k"),
        (vec!["--target-id", "-1"], "unexpected argument '-1'"),
        (vec!["--target-id", "99999999"], "out of range"),
        (
            vec!["--max-tokens", "0"],
            "invalid value '0' for '--max-tokens",
        ),
        (
            vec!["--max-tokens", "99999999999999999999999"],
            "number too large",
        ),
        (vec!["--max-tokens", "3"], "more than the 3"),
        (vec!["--step", "0"], "--step counts from 1"),
        (vec!["--step", "-1"], "unexpected argument '-1'"),
        (
            vec!["--step", "100000", "--max-new-tokens", "2", "--greedy"],
            "steps 1 to 2",
        ),
        (
            vec!["--step", "1", "--max-new-tokens", "0"],
            "max new tokens must be at least 1",
        ),
        (
            vec!["--step", "1", "--temperature", "-1"],
            "unexpected argument '-1'",
        ),
        (
            vec!["--step", "1", "--temperature", "nan"],
            "temperature must be 0 (greedy) or positive",
        ),
        (
            vec!["--step", "1", "--temperature", "inf"],
            "temperature must be 0 (greedy) or positive",
        ),
        (
            vec!["--step", "1", "--top-p", "0"],
            "top-p must be in (0, 1]",
        ),
        (
            vec!["--step", "1", "--top-p", "2"],
            "top-p must be in (0, 1]",
        ),
        (
            vec!["--step", "1", "--seed", "99999999999999999999999"],
            "number too large",
        ),
        (vec!["--max-memory", "-1G"], "unexpected argument '-1'"),
        (vec!["--max-memory", "99999999T"], "is not a size"),
        (vec!["--max-memory", "lots"], "is not a size"),
        (vec!["--device", "cuda:99"], "CUDA"),
        (vec!["--device", "tpu"], "tpu"),
        (vec!["--dtype", "f64"], "unknown dtype \"f64\""),
        (
            vec!["--granularity", "para"],
            "expected token, word or sentence",
        ),
        (vec!["--aggregate", "mean"], "expected sum or max_abs"),
        (
            vec!["--methods", "magic"],
            "invalid value 'magic' for '--methods",
        ),
        (
            vec!["--methods", "saliency,saliency"],
            "method saliency is requested twice",
        ),
        (vec!["--methods", ""], "possible values"),
        (vec!["--target", ""], "tokenizes to nothing"),
        (vec!["--contrast", ""], "tokenizes to nothing"),
        (vec!["--model", "nope"], "unknown model \"nope\""),
        (
            vec!["--model", "/no/such/model.gguf"],
            "/no/such/model.gguf",
        ),
        (vec!["--model", truncated.to_str().unwrap()], "truncated"),
        (
            vec!["--model", zero_heads.to_str().unwrap()],
            "num_attention_heads",
        ),
        (
            vec!["--model", alignment.to_str().unwrap()],
            "general.alignment",
        ),
        (vec!["--model", context.to_str().unwrap()], "context length"),
    ];
    let n = cases.len();
    for (extra, needle) in cases {
        let mut args = vec!["explain", "--prompt", "hi"];
        args.extend(extra);
        fails_with(&args, needle);
    }
    // Prompts: empty, and 100k characters (refused by its token count, not run).
    fails_with(&["explain", "--prompt", ""], "the prompt is empty");
    fails_with(&["generate", "--prompt", ""], "the prompt is empty");
    fails_with(&["explain", "--prompt", &huge_prompt], "more than the 8192");
    fails_with(
        &["generate", "--prompt", &huge_prompt],
        "more than the 8192",
    );
    fails_with(
        &["generate", "--prompt", "hi", "--max-new-tokens", "0"],
        "at least 1",
    );
    fails_with(&["generate", "--prompt", "hi", "--top-p", "0"], "top-p");
    fails_with(
        &[
            "heatmap",
            "--prompt",
            "hi",
            "--output",
            "/no/such/dir/x.png",
        ],
        "/no/such/dir",
    );
    eprintln!("CLI corpus: {} cases", n + 7);
}

#[test]
fn generate_streams_text_and_json() {
    // f32: the answer is then the same on every CPU. In the default precision the weights are
    // read as stored, and without bf16 products the prompt's activations are quantized to 8
    // bits as llama.cpp's are: SmolLM2's first answer token is a near tie (" The" 0.152
    // against "L" 0.140), which that rounding tips.
    let args = [
        "generate",
        "--prompt",
        "What is the capital of France?",
        "--greedy",
        "--max-new-tokens",
        "12",
        "--precision",
        "f32",
    ];
    let out = tokenlens(&args);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Paris"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop:"));
    let out = tokenlens(&[&args[..], &["--json"]].concat());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["answer"].as_str().map(str::trim), Some(text.trim()));
    assert!(doc["generated"][0]["prob"].as_f64().unwrap() > 0.0);
    assert!(doc["stop"].is_string());
    fails_with(
        &["generate", "--prompt", "hi", "--top-p", "0"],
        "top-p must be in (0, 1]",
    );
    // Steered: the original answer, then the steered one; bad edits refused before either.
    let steered = [&args[..], &["--steer", "0:1297*0,23:h4*0,29:1066=-5"]].concat();
    let out = tokenlens(&steered);
    let both = String::from_utf8_lossy(&out.stdout);
    let (original, steered_text) = both.split_once("steered (").expect("both answers");
    assert!(
        original.starts_with("original:") && original.contains(text.trim()),
        "{both}"
    );
    let steered_answer = steered_text.split_once(':').expect("header").1.trim();
    assert_ne!(steered_answer, text.trim(), "{both}");
    let out = tokenlens(&[&steered[..], &["--json"]].concat());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["original"]["answer"].as_str().map(str::trim),
        Some(text.trim())
    );
    assert_eq!(doc["steer"][1]["unit"]["head"], 4);
    assert_ne!(doc["steered"]["answer"], doc["original"]["answer"]);
    let out = tokenlens(&["generate", "--prompt", "hi", "--steer", "30:1*0"]);
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "nothing generated"
    );
    fails_with(
        &["generate", "--prompt", "hi", "--steer", "30:1*0"],
        "layers 0 to 29",
    );
    fails_with(
        &["generate", "--prompt", "hi", "--steer", "1:2"],
        "one '*' or '='",
    );
}

#[test]
fn explain_step_contrast_and_granularity() {
    let out = succeeds(&[
        "explain",
        "--prompt",
        "What is the capital of France?",
        "--greedy",
        "--step",
        "5",
        "--contrast",
        " London",
        "--granularity",
        "word",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = doc["tokens"].as_array().unwrap();
    let generated = tokens.iter().filter(|t| t["generated"] == true).count();
    assert_eq!(generated, 4, "step 5 sees the 4 tokens before it");
    assert_eq!(doc["target"]["contrast"]["text"], " London");
    let g = &doc["granularity"];
    assert_eq!(g["level"], "word");
    let groups = g["groups"].as_array().unwrap();
    assert!(groups.len() < tokens.len() && groups.len() > 5);
    for m in ["saliency", "input_x_gradient"] {
        let by_word: f64 = g["scores"][m]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        let by_token: f64 = doc["methods"][m]["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!(
            (by_word - by_token).abs() <= 1e-4 * by_token.abs().max(1.0),
            "{m}"
        );
    }
    fails_with(
        &[
            "explain",
            "--prompt",
            "Hi",
            "--greedy",
            "--step",
            "999",
            "--max-new-tokens",
            "3",
        ],
        "--step 999 is out of range",
    );
    fails_with(
        &["explain", "--prompt", "Hi", "--granularity", "paragraph"],
        "expected token, word or sentence",
    );
}
