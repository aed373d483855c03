//! The `tokenlens` binary with model files and what it writes to files: aliases that need
//! fetching, Hub ids from the cache, a GGUF by path, figures, faithfulness curves.

use super::cli::{fails_with, succeeds};
use std::process::Command;
#[test]
fn alias_not_fetched_says_how_to_fetch() {
    let empty = std::env::temp_dir().join(format!("tokenlens-empty-cache-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_tokenlens"))
        .args(["explain", "--prompt", "hi"])
        .env("TOKENLENS_CACHE", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fetch-models.sh"), "{err}");
}

#[test]
fn figures_are_written_as_png_and_svg() {
    let dir = std::env::temp_dir().join(format!("tokenlens-fig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("h.png");
    let svg = dir.join("t.svg");
    succeeds(&[
        "heatmap",
        "--prompt",
        "What is the capital of France?",
        "-o",
        png.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(w >= 760 && h >= 250, "{w}x{h}");
    succeeds(&[
        "trace",
        "--raw",
        "--prompt",
        "I have 5 cats and 3 dogs. My cats love to play with my",
        "--methods",
        "attnlrp",
        "-o",
        svg.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    // 30 layers × 17 tokens of cells, plus the colorbar and background.
    assert!(text.matches("<rect").count() >= 30 * 17, "too few cells");
    assert!(text.contains("dogs"));
    fails_with(
        &[
            "trace",
            "--prompt",
            "hi",
            "-o",
            dir.join("x.jpg").to_str().unwrap(),
        ],
        ".png or .svg",
    );
}

/// A Hub id resolves through hf-hub's cache layout (`$HF_HOME/hub/models--owner--name`);
/// offline here, so the cache is laid out by hand from the tiny fixture model.
#[test]
fn hub_ids_resolve_through_the_hf_cache() {
    let home = std::env::temp_dir().join(format!("tokenlens-hf-home-{}", std::process::id()));
    let repo = home.join("hub").join("models--test--tiny-llama");
    let snap = repo.join("snapshots").join("0123456789abcdef");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123456789abcdef").unwrap();
    let src = crate::util::root().join("tests/fixtures/tiny-llama");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, snap.join(f.file_name().unwrap())).unwrap();
    }
    let run = |model: &str| {
        Command::new(env!("CARGO_BIN_EXE_tokenlens"))
            .args([
                "explain",
                "--prompt",
                "Why is the sky blue?",
                "--model",
                model,
                "--json",
            ])
            .env("HF_HOME", &home)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let out = run("test/tiny-llama");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "test/tiny-llama");
    assert_eq!(v["n_layers"], 3);
    let out = run("test/absent-model");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json is not in the Hugging Face cache"),
        "{err}"
    );
}

/// A Llama-3-style GGUF (Llama 3.1's vocabulary, template and scaled RoPE; tiny weights) loads
/// by path: the CLI's tokens and AttnLRP scores are those of the PyTorch/lxt fixture.
#[test]
fn llama3_gguf_loads_by_path() {
    let gguf =
        crate::gguf_vocab::complete_gguf(&crate::util::root().join("tests/fixtures/tiny-llama3"));
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::util::root().join("tests/fixtures/reference/tiny_llama3_chat.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let prompt = fixture["prompt"].as_str().unwrap();
    let out = succeeds(&[
        "explain",
        "--model",
        gguf.to_str().unwrap(),
        "--prompt",
        prompt,
        "--methods",
        "attnlrp",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&serde_json::Value> = doc["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    let want: Vec<&serde_json::Value> = fixture["ids"].as_array().unwrap().iter().collect();
    assert_eq!(ids, want);
    let scores = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let ours = scores(&doc["methods"]["attnlrp"]["scores"]);
    let reference = scores(&fixture["targets"][0]["scores"]["attnlrp"]);
    let err = crate::util::rel_err(&ours, &reference);
    assert!(err <= 1e-3, "AttnLRP scores differ from lxt's: {err}");
}

/// `--faithfulness` adds the curves to the JSON document (every method, the random band,
/// the operator and eligible tokens); a bad `--operator` is refused by name, and
/// `--operator` without `--faithfulness` is refused rather than ignored.
#[test]
fn faithfulness_curves_in_the_json_document() {
    let out = succeeds(&[
        "explain",
        "--prompt",
        "What is the capital of France?",
        "--methods",
        "saliency,attnlrp",
        "--faithfulness",
        "--operator",
        "delete",
        "--query-only",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &doc["faithfulness"];
    assert_eq!(f["operator"], "delete");
    let eligible = f["eligible"].as_array().unwrap();
    let steps = f["steps"].as_array().unwrap();
    assert!(!eligible.is_empty());
    assert_eq!(
        steps.len(),
        eligible.len() + 1,
        "every count up to 32 tokens"
    );
    // With the chat template and --query-only, only the user's text moves.
    let span = doc["query_span"].as_array().unwrap();
    let (a, b) = (span[0].as_u64().unwrap(), span[1].as_u64().unwrap());
    assert!(eligible
        .iter()
        .all(|i| (a..b).contains(&i.as_u64().unwrap())));
    for m in ["saliency", "attnlrp"] {
        let c = &f["methods"][m];
        assert_eq!(
            c["morf"]["logit"].as_array().unwrap().len(),
            steps.len(),
            "{m}"
        );
        assert_eq!(
            c["lerf"]["prob"].as_array().unwrap().len(),
            steps.len(),
            "{m}"
        );
        assert_eq!(c["comprehensiveness"].as_array().unwrap().len(), 3, "{m}");
        assert!(c["abpc"].as_f64().unwrap().is_finite(), "{m}");
        // Both orders start from the unperturbed prompt: the explained logit.
        let first = c["morf"]["logit"][0].as_f64().unwrap();
        let logit = doc["target"]["logit"].as_f64().unwrap();
        assert!(
            (first - logit).abs() <= 1e-3 * logit.abs(),
            "{m}: {first} vs {logit}"
        );
    }
    assert_eq!(f["random"]["seeds"].as_array().unwrap().len(), 10);

    fails_with(
        &[
            "explain",
            "--prompt",
            "hi",
            "--faithfulness",
            "--operator",
            "mask",
        ],
        "unknown operator \"mask\"; one of: replace, zero, delete",
    );
    fails_with(
        &["explain", "--prompt", "hi", "--operator", "zero"],
        "--faithfulness",
    );
}
