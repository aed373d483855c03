//! What the page shows, given a result: the units (tokens, words or sentences), their
//! scores, and how scores become colors. Pure functions of the settings.

use serde::{Deserialize, Serialize};
use tokenlens::colormap::{abs_quantile, ColorScale};
use tokenlens::granularity::{aggregate, groups, Aggregate, Granularity, Group};
use tokenlens::Token;

/// Where the color scale ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clip {
    /// The 95th percentile of |score| for signed methods (one large score, such as the last
    /// template token's under AttnLRP, would leave the rest near white), the largest |score|
    /// for unsigned ones.
    #[default]
    Auto,
    /// At the largest |score| in view.
    Max,
    /// At the 99th percentile of |score|.
    P99,
    /// At the 95th percentile.
    P95,
    /// At the 90th percentile.
    P90,
}

impl Clip {
    /// Every choice, in menu order.
    pub const ALL: [Clip; 5] = [Clip::Auto, Clip::Max, Clip::P99, Clip::P95, Clip::P90];

    /// The quantile of |score| that gets the end color, for a signed or unsigned scale.
    pub fn quantile(self, signed: bool) -> f32 {
        match self {
            Clip::Auto if signed => 0.95,
            Clip::Auto | Clip::Max => 1.0,
            Clip::P99 => 0.99,
            Clip::P95 => 0.95,
            Clip::P90 => 0.90,
        }
    }

    /// Short name (the `<option>` value).
    pub fn name(self) -> &'static str {
        match self {
            Clip::Auto => "auto",
            Clip::Max => "max",
            Clip::P99 => "p99",
            Clip::P95 => "p95",
            Clip::P90 => "p90",
        }
    }

    /// Parses [`Clip::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Menu label.
    pub fn label(self) -> &'static str {
        match self {
            Clip::Auto => "auto (95th pct if signed)",
            Clip::Max => "max |score|",
            Clip::P99 => "clip at 99th pct",
            Clip::P95 => "clip at 95th pct",
            Clip::P90 => "clip at 90th pct",
        }
    }
}

/// The page's view settings (no recomputation needed to change them).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Display {
    /// Tokens, words or sentences.
    pub granularity: Granularity,
    /// How a word's or sentence's score is made.
    pub aggregate: Aggregate,
    /// Color |score| on a sequential map even for signed methods.
    pub absolute: bool,
    /// Where the colors end.
    pub clip: Clip,
    /// Exponent on the normalized magnitude.
    pub gamma: f32,
    /// Leave attention sinks (the first token, special tokens, the chat template's tokens)
    /// out of the color scale: relevance often piles on them and leaves the rest near white. Their scores stay in
    /// hover and exports; their color saturates.
    pub sinks_out: bool,
    /// Mark each signed score's sign with + or − beside its color (not by hue alone).
    pub sign_marks: bool,
    /// Color the layer grid by the target's logit-lens probability instead of relevance.
    pub lens_colors: bool,
    /// The neuron or head whose card is open.
    pub unit: Option<tokenlens::Component>,
    /// With a neuron's card open: its top-activating corpus contexts listed too.
    pub contexts: bool,
}

impl Default for Display {
    fn default() -> Self {
        Display {
            granularity: Granularity::Token,
            aggregate: Aggregate::Sum,
            absolute: false,
            clip: Clip::Auto,
            gamma: 1.0,
            sinks_out: true,
            sign_marks: false,
            lens_colors: false,
            unit: None,
            contexts: false,
        }
    }
}

impl Display {
    /// The color scale for scores in view of a method whose scores are signed or not.
    pub fn scale(&self, signed: bool, in_view: &[f32]) -> ColorScale {
        let signed = signed && !self.absolute;
        ColorScale {
            signed,
            max: abs_quantile(in_view, self.clip.quantile(signed)),
            gamma: self.gamma,
        }
    }
}

/// The units shown for a token list: groups at a granularity, and the unit range that
/// covers the token range `[a, b)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Units {
    /// One per unit.
    pub groups: Vec<Group>,
    /// Unit range in view.
    pub range: (usize, usize),
    /// Per unit: an attention sink, left out of the color scale on request (the first token,
    /// special tokens, and the chat template's tokens around the user's text).
    pub sinks: Vec<bool>,
}

/// The tokens a view shows: under "query only" the user's text (the query span with the chat
/// template) and the answer so far (from the query on, when answer tokens follow); else all.
pub fn shown_range(
    tokens: &[Token],
    query_span: Option<[usize; 2]>,
    query_only: bool,
) -> (usize, usize) {
    match (query_only, query_span) {
        (true, Some([a, _])) if tokens.iter().any(|t| t.generated) => (a, tokens.len()),
        (true, Some([a, b])) => (a, b),
        _ => (0, tokens.len()),
    }
}

impl Units {
    /// Groups `tokens` and maps the token range onto units; `query`: the user's text among
    /// the tokens, when a chat template surrounds it.
    pub fn new(
        tokens: &[Token],
        granularity: Granularity,
        (a, b): (usize, usize),
        query: Option<[usize; 2]>,
    ) -> Self {
        let groups = groups(tokens, granularity);
        let template = |i: usize| {
            query.is_some_and(|[qa, qb]| !(qa..qb).contains(&i))
                && !tokens.get(i).is_some_and(|t| t.generated)
        };
        let sinks = groups
            .iter()
            .map(|g| g.special || g.start == 0 || template(g.start))
            .collect();
        let first = groups
            .iter()
            .position(|g| g.end > a)
            .unwrap_or(groups.len());
        let last = groups
            .iter()
            .rposition(|g| g.start < b)
            .map_or(first, |k| k + 1);
        Units {
            groups,
            range: (first, last.max(first)),
            sinks,
        }
    }

    /// Pseudo-tokens, one per unit (for labels).
    pub fn labels(&self, tokens: &[Token]) -> Vec<Token> {
        self.groups
            .iter()
            .map(|g| Token {
                id: if g.end - g.start == 1 {
                    tokens[g.start].id
                } else {
                    0
                },
                text: g.text.clone(),
                start: tokens[g.start].start,
                end: tokens[g.end - 1].end,
                special: g.special,
                generated: tokens[g.start].generated,
                piece: None,
            })
            .collect()
    }

    /// The scores (one per unit) that set the color scale: those in view, less the sinks
    /// when `sinks_out`; all in view if nothing is left.
    pub fn in_scale(&self, unit_scores: &[f32], sinks_out: bool) -> Vec<f32> {
        let (a, b) = self.range;
        let in_view = || {
            unit_scores
                .iter()
                .enumerate()
                .skip(a)
                .take(b.saturating_sub(a))
        };
        let kept: Vec<f32> = in_view()
            .filter(|&(i, _)| !(sinks_out && self.sinks.get(i).copied().unwrap_or(false)))
            .map(|(_, &v)| v)
            .collect();
        if kept.is_empty() {
            in_view().map(|(_, &v)| v).collect()
        } else {
            kept
        }
    }

    /// The color scale of `unit_scores` (one per unit) under `d`.
    pub fn scale(&self, d: &Display, signed: bool, unit_scores: &[f32]) -> ColorScale {
        d.scale(signed, &self.in_scale(unit_scores, d.sinks_out))
    }

    /// Scores per unit.
    pub fn scores(&self, scores: &[f32], how: Aggregate) -> Vec<f32> {
        aggregate(scores, &self.groups, how)
    }

    /// A trace `[layer][token]` per unit, `[layer][unit]`.
    pub fn trace(&self, trace: &[Vec<f32>], how: Aggregate) -> Vec<Vec<f32>> {
        trace.iter().map(|row| self.scores(row, how)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_leave_the_scale_only_when_asked() {
        let t = vec![tok("<s>", true), tok("a", false), tok(" b", false)];
        let u = Units::new(&t, Granularity::Token, (0, 3), None);
        let scores = [10.0, 1.0, -2.0];
        assert_eq!(u.in_scale(&scores, false), [10.0, 1.0, -2.0]);
        assert_eq!(u.in_scale(&scores, true), [1.0, -2.0]);
        let d = Display {
            sinks_out: true,
            ..Display::default()
        };
        assert_eq!(u.scale(&d, true, &scores).max, 2.0);
        // Nothing but sinks in view: they set the scale after all.
        let only = Units::new(&t[..1], Granularity::Token, (0, 1), None);
        assert_eq!(only.in_scale(&[10.0], true), [10.0]);
        // With a chat template, the template's tokens around the user's text are sinks too.
        let t = vec![
            tok("<s>", true),
            tok("user", false),
            tok(" hi", false),
            tok("\n", false),
        ];
        let u = Units::new(&t, Granularity::Token, (0, 4), Some([2, 3]));
        assert_eq!(u.in_scale(&[9.0, 8.0, 1.0, 7.0], true), [1.0]);
    }

    fn tok(text: &str, special: bool) -> Token {
        Token {
            id: 1,
            text: text.into(),
            start: 0,
            end: 0,
            special,
            generated: false,
            piece: None,
        }
    }

    #[test]
    fn units_follow_the_token_range() {
        let t = vec![
            tok("<s>", true),
            tok("Hel", false),
            tok("lo", false),
            tok(" world", false),
            tok("</s>", true),
        ];
        let u = Units::new(&t, Granularity::Word, (1, 4), None);
        assert_eq!(u.groups.len(), 4);
        assert_eq!(u.range, (1, 3));
        assert_eq!(
            u.scores(&[1.0, 2.0, 3.0, 4.0, 5.0], Aggregate::Sum),
            [1.0, 5.0, 4.0, 5.0]
        );
        assert_eq!(u.labels(&t)[1].text, "Hello");
        let d = Display {
            clip: Clip::P90,
            ..Display::default()
        };
        let s = d.scale(true, &(1..=10).map(|x| x as f32).collect::<Vec<_>>());
        assert_eq!(s.max, 9.0);
        assert!(s.signed);
        assert!(
            !Display {
                absolute: true,
                ..d
            }
            .scale(true, &[1.0])
            .signed
        );
    }
}
