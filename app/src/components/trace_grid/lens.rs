//! The logit lens on the layer grid: per unit, the lens of its last token (the position that
//! predicts what follows the unit), its hover lines, and where the target settles.

use leptos::prelude::*;
use tokenlens::colormap::ColorScale;
use tokenlens::{target_settles, LensCell};

use super::super::colorbar::Colorbar;
use crate::display::Units;
use crate::format::sig3;

/// The lens `[layer][unit]`: each unit's last token's cell.
pub fn per_unit(lens: &[Vec<LensCell>], units: &Units) -> Vec<Vec<Option<LensCell>>> {
    lens.iter()
        .map(|row| {
            units
                .groups
                .iter()
                .map(|g| g.end.checked_sub(1).and_then(|t| row.get(t)).cloned())
                .collect()
        })
        .collect()
}

/// The target's lens probability `[layer][unit]` (0 where a cell is missing).
pub fn target_probs(lens: &[Vec<Option<LensCell>>]) -> Vec<Vec<f32>> {
    lens.iter()
        .map(|row| {
            row.iter()
                .map(|c| c.as_ref().map_or(0.0, |c| c.target_prob))
                .collect()
        })
        .collect()
}

/// Probabilities are colored on one absolute scale, 0 to 1, the same in every layer.
pub fn scale(gamma: f32) -> ColorScale {
    ColorScale {
        signed: false,
        max: 1.0,
        gamma,
    }
}

/// A hover's lines for one lens cell.
pub fn lines(c: &LensCell, target: &str) -> Vec<String> {
    let top: Vec<String> = c
        .texts
        .iter()
        .zip(&c.probs)
        .map(|(t, p)| format!("{t:?} {}", sig3(*p)))
        .collect();
    vec![
        format!("lens top-{}: {}", top.len(), top.join(" · ")),
        format!(
            "lens: target {target:?} rank {} (p {})",
            c.target_rank + 1,
            sig3(c.target_prob)
        ),
    ]
}

/// The row under the grid: from which layer the target is the lens' top-1 at the last
/// position (the one that predicts it), at every later layer too.
#[component]
pub fn SettlesRow(
    /// The whole lens `[layer][token]`.
    lens: Vec<Vec<LensCell>>,
    /// The target's text.
    target: String,
) -> impl IntoView {
    let layers = lens.len();
    let last = lens.first().map_or(0, |r| r.len().saturating_sub(1));
    let settles = target_settles(&lens, last);
    let end = lens.last().and_then(|r| r.get(last));
    let text = match (settles, end) {
        (Some(l), _) => format!(
            "At the last position the lens' top-1 is {target:?} from layer {l} on (of layers 0–{}): that is where the answer forms.",
            layers.saturating_sub(1)
        ),
        (None, Some(c)) => format!(
            "At the last position {target:?} is not the lens' top-1 at the last layer (rank {}, p {}): the model's own top-1 differs.",
            c.target_rank + 1,
            sig3(c.target_prob)
        ),
        (None, None) => "No lens at the last position.".to_string(),
    };
    let layer = settles.map(|l| l.to_string()).unwrap_or_default();
    view! { <p class="lens-settles" data-testid="lens-settles" data-layer=layer>{text}</p> }
}

/// The legend when the grid shows the lens.
#[component]
pub fn LensLegend(gamma: f32) -> impl IntoView {
    view! {
        <Colorbar scale=scale(gamma) label="lens p(target)".to_string()/>
        <p class="hint legend-text" data-testid="lens-legend">
            "Each cell: the probability of the explained token had the model stopped after that layer (its final norm and output layer applied there), at the unit's last token; one scale, 0 to 1, for every layer. Hover a cell for that layer's top 5."
        </p>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenlens::granularity::Granularity;
    use tokenlens::Token;

    fn cell(p: f32) -> LensCell {
        LensCell {
            top: vec![1, 2],
            probs: vec![0.5, 0.25],
            texts: vec![" a".into(), " b".into()],
            target_rank: 1,
            target_prob: p,
        }
    }

    #[test]
    fn a_unit_takes_its_last_tokens_lens() {
        let tok = |text: &str| Token {
            id: 1,
            text: text.into(),
            start: 0,
            end: 0,
            special: false,
            generated: false,
            piece: None,
        };
        let tokens = [tok("Hello"), tok(" wor"), tok("ld")];
        let units = Units::new(&tokens, Granularity::Word, (0, 3), None);
        assert_eq!(units.groups.len(), 2);
        let lens = vec![vec![cell(0.1), cell(0.2), cell(0.3)]];
        assert_eq!(target_probs(&per_unit(&lens, &units)), vec![vec![0.1, 0.3]]);
        let l = lines(&cell(0.3), " b");
        assert_eq!(l[0], "lens top-2: \" a\" 0.500 · \" b\" 0.250");
        assert_eq!(l[1], "lens: target \" b\" rank 2 (p 0.300)");
    }
}
