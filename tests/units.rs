//! Unit cards against PyTorch + transformers on the same weights (`scripts/unit_reference.py`
//! → `tests/fixtures/units.json`), on SmolLM2 and the tiny llama, qwen2, gemma3, qwen3 and
//! llama 3.1: a neuron's logit lens (its `down_proj` column through the final norm and the
//! output projection) lists the same 10 most promoted and 10 most suppressed tokens (ties
//! aside) with logits within 1e-4 of the largest (relative, f32); its activation at each token
//! within 1e-4 of the largest; a head's attention probabilities within 1e-5 (absolute).

use serde::Deserialize;
use tokenlens::{Component, UnitRequest};

use crate::util::{cases, engine_for, rel_err, Fixture};

#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    at: Fixture,
    neuron: Component,
    promotes: Vec<u32>,
    promotes_logits: Vec<f32>,
    suppresses: Vec<u32>,
    suppresses_logits: Vec<f32>,
    activations: Vec<f32>,
    head: Component,
    attention: Vec<Vec<f32>>,
}

fn request(c: &Case, unit: Component) -> UnitRequest {
    UnitRequest {
        prompt: c.at.prompt.clone(),
        chat_template: c.at.chat_template,
        thinking: false,
        continuation: Vec::new(),
        unit,
        steer: Vec::new(),
    }
}

/// Lists of ids and values agree: values within `tol` of the largest, ids equal unless tied.
fn same_tokens(name: &str, got: &[tokenlens::LensToken], ids: &[u32], logits: &[f32]) {
    let values: Vec<f32> = got.iter().map(|t| t.logit).collect();
    let err = rel_err(&values, logits);
    assert!(err <= 1e-4, "{name}: logits {err:e}");
    let scale = tokenlens::text::max_abs(logits);
    for (i, (t, (&id, &l))) in got.iter().zip(ids.iter().zip(logits)).enumerate() {
        let tied = logits
            .iter()
            .filter(|&&x| (x - l).abs() <= 1e-4 * scale)
            .count()
            > 1;
        assert!(t.id == id || tied, "{name} {i}: {} vs {id}", t.id);
    }
}

#[test]
fn unit_cards_match_pytorch() {
    for c in cases::<Case>("units.json") {
        let name = &c.at.fixture;
        let e = engine_for(&c.at.model);
        let card = e.unit_card(&request(&c, c.neuron)).unwrap();
        let ids: Vec<u32> = card.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, c.at.ids, "{name}: tokens");
        same_tokens(name, &card.promotes, &c.promotes, &c.promotes_logits);
        same_tokens(name, &card.suppresses, &c.suppresses, &c.suppresses_logits);
        let acts = card.activations.as_ref().expect("activations");
        let err = rel_err(acts, &c.activations);
        assert!(err <= 1e-4, "{name}: activations {err:e}");
        assert!(card.attention.is_none());
        let card = e.unit_card(&request(&c, c.head)).unwrap();
        let att = card.attention.as_ref().expect("attention");
        assert_eq!(att.len(), c.attention.len(), "{name}: queries");
        let worst = att
            .iter()
            .zip(&c.attention)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{name}: attention {worst:e}");
        println!("{name}: activations within {err:.1e}, attention within {worst:.1e}");
    }
}

/// A steered neuron's card shows its edited activation; a unit outside the model is refused.
#[test]
fn unit_cards_follow_steering_and_refuse_bad_units() {
    let e = engine_for("smollm2-135m");
    let c = |unit: &str| tokenlens::parse_edits(&format!("{unit}*1")).unwrap()[0];
    let at = |s: &str| {
        let e = c(s);
        Component {
            layer: e.layer,
            unit: e.unit,
        }
    };
    let mut req = UnitRequest {
        prompt: "The capital of France is".into(),
        chat_template: false,
        thinking: false,
        continuation: Vec::new(),
        unit: at("3:17"),
        steer: tokenlens::parse_edits("3:17=2.5").unwrap(),
    };
    let card = e.unit_card(&req).unwrap();
    assert!(card.activations.unwrap().iter().all(|&a| a == 2.5));
    for (unit, says) in [
        ("30:1", "layers 0 to 29"),
        ("0:1536", "neurons 0 to 1535"),
        ("0:h9", "heads 0 to 8"),
    ] {
        (req.unit, req.steer) = (at(unit), Vec::new());
        let err = e.unit_card(&req).unwrap_err().to_string();
        assert!(err.contains(says), "{unit}: {err}");
    }
}

/// A head of a Gated DeltaNet layer (the tiny Qwen3.5's layers 0-2) is refused as a bad
/// setting with the layer's kind named; the attention layer's heads have cards.
#[test]
fn deltanet_layers_have_no_head_cards() {
    let e = engine_for("tests/fixtures/tiny-qwen3_5");
    let at = |s: &str| {
        let x = tokenlens::parse_edits(&format!("{s}*1")).unwrap()[0];
        Component {
            layer: x.layer,
            unit: x.unit,
        }
    };
    let mut req = UnitRequest {
        prompt: "Each state decays".into(),
        chat_template: false,
        thinking: false,
        continuation: Vec::new(),
        unit: at("0:h1"),
        steer: Vec::new(),
    };
    match e.unit_card(&req) {
        Err(tokenlens::Error::InvalidSetting(m)) => {
            assert!(m.contains("layer 0 is a Gated DeltaNet layer"), "{m}")
        }
        other => panic!("a DeltaNet layer's head: {other:?}"),
    }
    req.unit = at("3:h1");
    let card = e.unit_card(&req).unwrap();
    assert_eq!(card.attention.unwrap().len(), card.tokens.len());
}

/// A model whose layers differ in width (the tiny Qwen3-MoE: 6 experts × 12 units in layers 0
/// and 2, a dense MLP of 40 in layer 1) takes each layer's own neurons and names that
/// layer's range when asked past it.
#[test]
fn each_layer_has_its_own_neurons() {
    let e = engine_for("tests/fixtures/tiny-qwen3-moe");
    let at = |s: &str| {
        let e = tokenlens::parse_edits(&format!("{s}*1")).unwrap()[0];
        Component {
            layer: e.layer,
            unit: e.unit,
        }
    };
    let mut req = tokenlens::UnitRequest {
        prompt: "Each token is sent to two of the six experts".into(),
        chat_template: false,
        thinking: false,
        continuation: Vec::new(),
        unit: at("0:71"),
        steer: Vec::new(),
    };
    let card = e.unit_card(&req).unwrap();
    assert_eq!(card.activations.unwrap().len(), card.tokens.len());
    req.unit = at("1:50");
    let err = e.unit_card(&req).unwrap_err().to_string();
    assert!(err.contains("layer 1 has neurons 0 to 39"), "{err}");
    let err = e
        .neuron_contexts(
            &tokenlens::ContextsRequest {
                layer: 1,
                neuron: 40,
            },
            &mut |_, _| Ok(()),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 1 has neurons 0 to 39"), "{err}");
}

/// A neuron's corpus contexts: its layer read once over the whole corpus, then from the cache;
/// each context's activation is the neuron's activation at that token as the unit card
/// computes it on that text alone (a separate forward pass, ≤ 1e-5 of the largest), and no
/// other corpus text holds a larger one than the last context's (checked on every 12th
/// text).
#[test]
fn neuron_contexts_are_the_corpus_texts_where_it_fires_most() {
    let e = engine_for("tests/fixtures/tiny-llama");
    let req = tokenlens::ContextsRequest {
        layer: 1,
        neuron: 7,
    };
    let _ = std::fs::remove_file(e.contexts_path(req.layer));
    let mut calls = 0;
    let c = e
        .neuron_contexts(&req, &mut |_, _| {
            calls += 1;
            Ok(())
        })
        .unwrap();
    assert!(
        c.texts >= 3000 && c.tokens > c.texts,
        "{} texts, {} tokens",
        c.texts,
        c.tokens
    );
    assert_eq!(calls, c.texts, "progress per text");
    assert_eq!(c.hits.len(), tokenlens::CONTEXT_HITS);
    assert!(c
        .hits
        .windows(2)
        .all(|w| w[0].activation >= w[1].activation));
    let card = |text: &str| {
        e.unit_card(&UnitRequest {
            prompt: text.into(),
            chat_template: false,
            thinking: false,
            continuation: Vec::new(),
            unit: Component {
                layer: req.layer,
                unit: tokenlens::Unit::Neuron(req.neuron),
            },
            steer: Vec::new(),
        })
        .unwrap()
    };
    let scale = c.hits[0].activation.abs();
    for h in &c.hits {
        let card = card(&h.text);
        let at = card
            .tokens
            .iter()
            .position(|t| (t.start, t.end) == (h.start, h.end) && !t.special)
            .expect("the marked token");
        let acts = card.activations.unwrap();
        assert!(
            (acts[at] - h.activation).abs() <= 1e-5 * scale,
            "{} vs {}",
            acts[at],
            h.activation
        );
    }
    // Read from the cache: no second pass.
    let mut again = 0;
    let cached = e
        .neuron_contexts(&req, &mut |_, _| {
            again += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!((again, cached), (0, c.clone()));
    // No other text fires it more than the last context.
    let floor = c.hits.last().unwrap().activation;
    let hit = |t: &str| c.hits.iter().any(|h| h.text == t);
    let corpus = std::fs::read_to_string(crate::util::root().join("data/corpus.jsonl")).unwrap();
    for line in corpus.lines().step_by(12) {
        let text: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = text["text"].as_str().unwrap();
        if hit(text) {
            continue;
        }
        let card = card(text);
        let acts = card.activations.unwrap();
        let best = card
            .tokens
            .iter()
            .zip(&acts)
            .filter(|(t, _)| !t.special)
            .map(|(_, &a)| a)
            .fold(f32::NEG_INFINITY, f32::max);
        assert!(best <= floor + 1e-5 * scale, "{best} > {floor}: {text}");
    }
    let err = e
        .neuron_contexts(
            &tokenlens::ContextsRequest {
                layer: 99,
                neuron: 0,
            },
            &mut |_, _| Ok(()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("layers 0 to"), "{err}");
}
