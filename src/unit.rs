//! A neuron's or head's card for one context: a neuron's logit lens (the tokens its output
//! direction promotes and suppresses) and its activation at each token; a head's attention
//! pattern. One forward pass of the context (steered, if asked).

use crate::error::{Error, Result};
use crate::precision::Plan;
use crate::types::{LensToken, Unit, UnitCard, UnitRequest, CARD_TOKENS};

impl crate::Engine {
    /// The card of `req`'s unit.
    pub fn unit_card(&self, req: &UnitRequest) -> Result<UnitCard> {
        self.steered(&req.steer)?.unit_card_inner(req)
    }

    fn unit_card_inner(&self, req: &UnitRequest) -> Result<UnitCard> {
        let c = self.decoder().config();
        let (layer, layers) = (req.unit.layer, c.num_hidden_layers);
        let (index, of, kind) = match req.unit.unit {
            Unit::Neuron(j) => (j as usize, c.neurons(layer), "neurons"),
            Unit::Head(h) => (h as usize, c.num_attention_heads, "heads"),
        };
        if layer >= layers || index >= of {
            return Err(no_unit(&req.unit.to_string(), layer, layers, kind, of));
        }
        if matches!(req.unit.unit, Unit::Head(_)) && c.is_linear(layer) {
            return Err(Error::InvalidSetting(format!(
                "{}: layer {layer} is a Gated DeltaNet layer, which has no attention heads",
                req.unit
            )));
        }
        let tok = self.context(
            &req.prompt,
            req.chat_template,
            req.thinking,
            &req.continuation,
        )?;
        self.check_length(tok.tokens.len())?;
        let ids: Vec<u32> = tok.tokens.iter().map(|t| t.id).collect();
        let saved = self.forward_saved(&ids, Plan::F32, &mut |_| Ok(()))?;
        let mut card = UnitCard {
            unit: req.unit,
            tokens: tok.tokens,
            activations: None,
            promotes: Vec::new(),
            suppresses: Vec::new(),
            attention: None,
        };
        match req.unit.unit {
            Unit::Neuron(_) => {
                let dec = self.decoder();
                card.activations = Some(dec.neuron_activations(&saved, layer, index)?);
                let lens = dec.neuron_lens(layer, index)?;
                let token = |i: usize| LensToken {
                    id: i as u32,
                    text: self.decode_token(i as u32),
                    logit: lens[i],
                };
                let promotes = crate::select::largest(&lens, CARD_TOKENS);
                card.promotes = promotes.into_iter().map(token).collect();
                let suppresses = crate::select::smallest(&lens, CARD_TOKENS);
                card.suppresses = suppresses.into_iter().map(token).collect();
            }
            Unit::Head(_) => {
                card.attention = Some(self.decoder().attention_pattern(&saved, layer, index)?);
            }
        }
        Ok(card)
    }
}

/// The error for a unit the model lacks: `what` (`2:50`), asked of layer `layer` of `layers`,
/// which has `of` units of its `kind` (a layer of experts has more neurons than a dense one).
pub(crate) fn no_unit(what: &str, layer: usize, layers: usize, kind: &str, of: usize) -> Error {
    let last = layers.saturating_sub(1);
    Error::InvalidSetting(if layer >= layers {
        format!("{what}: the model has layers 0 to {last}")
    } else {
        format!(
            "{what}: layer {layer} has {kind} 0 to {} (the model has layers 0 to {last})",
            of.saturating_sub(1)
        )
    })
}
