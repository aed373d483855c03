//! Unit cards against PyTorch + transformers on the same weights (`scripts/unit_reference.py`
//! → `tests/fixtures/units.json`), on SmolLM2 and the tiny llama, qwen2 and gemma3: a neuron's
//! logit lens (its `down_proj` column through the final norm and the output projection) lists
//! the same 10 most promoted and 10 most suppressed tokens (ties aside) with logits within
//! 1e-4 of the largest (relative, f32); its activation at each token within 1e-4 of the
//! largest; a head's attention probabilities within 1e-5 (absolute).

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
