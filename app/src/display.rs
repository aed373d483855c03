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
    /// At the largest |score| in view.
    #[default]
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
    pub const ALL: [Clip; 4] = [Clip::Max, Clip::P99, Clip::P95, Clip::P90];

    /// The quantile of |score| that gets the end color.
    pub fn quantile(self) -> f32 {
        match self {
            Clip::Max => 1.0,
            Clip::P99 => 0.99,
            Clip::P95 => 0.95,
            Clip::P90 => 0.90,
        }
    }

    /// Short name (the `<option>` value).
    pub fn name(self) -> &'static str {
        match self {
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
}

impl Default for Display {
    fn default() -> Self {
        Display {
            granularity: Granularity::Token,
            aggregate: Aggregate::Sum,
            absolute: false,
            clip: Clip::Max,
            gamma: 1.0,
        }
    }
}

impl Display {
    /// The color scale for scores in view of a method whose scores are signed or not.
    pub fn scale(&self, signed: bool, in_view: &[f32]) -> ColorScale {
        ColorScale {
            signed: signed && !self.absolute,
            max: abs_quantile(in_view, self.clip.quantile()),
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
}

impl Units {
    /// Groups `tokens` and maps the token range onto units.
    pub fn new(tokens: &[Token], granularity: Granularity, (a, b): (usize, usize)) -> Self {
        let groups = groups(tokens, granularity);
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
            })
            .collect()
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

    fn tok(text: &str, special: bool) -> Token {
        Token {
            id: 1,
            text: text.into(),
            start: 0,
            end: 0,
            special,
            generated: false,
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
        let u = Units::new(&t, Granularity::Word, (1, 4));
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
