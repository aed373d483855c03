//! Characters, not bytes: byte-level tokens that each hold part of a character (CJK, emoji)
//! are merged into the characters they form, in prompts and answers, on a byte-level BPE
//! vocabulary (SmolLM2, Qwen2.5) and a SentencePiece one with byte fallback (Gemma 3).

use tokenlens::granularity::{groups, Granularity};
use tokenlens::{Engine, GenerateRequest, Precision, Token};

use crate::util::engine_for;

const TEXT: &str = "東京は日本の首都です。🙂 𝔘 é";

/// The token texts spell `text`, none is a replacement character, and each unit at token
/// granularity is whole characters; every token of a merged unit has its bytes.
fn check(name: &str, tokens: &[Token], text: &str) {
    let joined: String = tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(joined, text, "{name}: the texts spell the text");
    assert!(
        tokens.iter().all(|t| !t.text.contains('\u{FFFD}')),
        "{name}: {tokens:?}"
    );
    let units = groups(tokens, Granularity::Token);
    for g in &units {
        assert!(!g.text.is_empty(), "{name}: an empty unit {g:?}");
        if g.end - g.start > 1 {
            assert!(
                tokens[g.start..g.end].iter().all(|t| t.piece.is_some()),
                "{name}: {g:?}"
            );
        }
    }
    let merged = units.iter().filter(|g| g.end - g.start > 1).count();
    assert!(
        merged > 0,
        "{name}: no character over several tokens: {tokens:?}"
    );
    eprintln!(
        "{name}: {} tokens, {} units, {merged} merged",
        tokens.len(),
        units.len()
    );
}

fn engines() -> Vec<(&'static str, &'static Engine)> {
    ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
        .into_iter()
        .map(|m| (m, engine_for(m)))
        .collect()
}

#[test]
fn prompt_pieces_merge_into_characters() {
    for (name, e) in engines() {
        let tok = e.tokenize(TEXT, false, false).unwrap();
        // Gemma starts with its BOS (text "<bos>", offsets 0..0).
        let body: Vec<Token> = tok.tokens.into_iter().filter(|t| !t.special).collect();
        check(name, &body, TEXT);
    }
}

#[test]
fn answer_pieces_merge_as_they_stream() {
    for (name, e) in engines() {
        let mut streamed: Vec<Token> = Vec::new();
        let gen = e
            .generate_streaming(
                &GenerateRequest {
                    chat_template: false,
                    precision: Precision::F32,
                    answer: Some(TEXT.into()),
                    ..GenerateRequest::new("Say it:")
                },
                &mut |ev| {
                    if let tokenlens::StreamEvent::Generated { token, .. } = ev {
                        streamed.push(token.token.clone());
                    }
                    std::ops::ControlFlow::Continue(())
                },
            )
            .unwrap();
        let tokens: Vec<Token> = gen.generated.iter().map(|g| g.token.clone()).collect();
        assert_eq!(streamed, tokens, "{name}: the stream has the final texts");
        check(name, &tokens, TEXT);
        // Offsets index the prompt text followed by the answer.
        let full = format!("{}{}", gen.text, gen.answer);
        for t in &tokens {
            assert_eq!(&full[t.start..t.end], t.text, "{name}");
        }
    }
}

#[test]
fn a_candidate_that_is_part_of_a_character_reads_as_its_bytes() {
    let e = engine_for("smollm2-135m");
    // SmolLM2 continues this with the first bytes of an emoji.
    let ex = e
        .explain(&tokenlens::ExplainRequest {
            chat_template: false,
            methods: vec![tokenlens::Method::Saliency],
            ..tokenlens::ExplainRequest::new("東京は日本の首都です。")
        })
        .unwrap();
    let (prediction, _) = ex.predicted().unwrap();
    let labels: Vec<&str> = prediction
        .top
        .iter()
        .map(|c| c.text.as_str())
        .filter(|t| t.starts_with('‹'))
        .collect();
    assert!(!labels.is_empty(), "{:?}", prediction.top);
    assert!(prediction.top.iter().all(|c| !c.text.contains('\u{FFFD}')));
}
