//! Two explanations side by side: each row's scores over the text they explain, aligned by
//! character offsets, so that two methods, two models (whose tokenizations differ) or a
//! prompt with one edit can be compared span by span.
//!
//! Each side is a list of `(start, end, score)` character ranges over its text (the user's
//! text under a chat template, else the whole text). The aligned segments are cut at every
//! token boundary of either side; a token's score is spread over the segments it covers in
//! proportion to their characters, so each row still sums to its tokens' total. Texts that
//! differ (an edit) share their common prefix and suffix; what lies between is one segment
//! holding each side's own text. Scores are taken as shares of their row's total |score|, so
//! methods in different units (a gradient norm, a relevance) compare on one scale.

pub mod figure;

use serde::{Deserialize, Serialize};

/// One side: its text and its tokens' character ranges and scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Side {
    /// The text compared.
    pub text: String,
    /// `(start, end, score)`, character offsets into `text`, in order.
    pub tokens: Vec<(usize, usize, f32)>,
}

/// One aligned segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// A's text of the segment.
    pub a_text: String,
    /// B's (the same outside an edit).
    pub b_text: String,
    /// A's share of its total |score| here.
    pub a: f32,
    /// B's.
    pub b: f32,
    /// Inside the edited part.
    pub edited: bool,
}

impl Segment {
    /// B − A.
    pub fn diff(&self) -> f32 {
        self.b - self.a
    }
}

impl Side {
    /// The side from tokens' byte ranges in `full` and their scores, over `full[from..to]`
    /// (bytes): offsets become characters of that part, tokens outside it are left out.
    pub fn new(full: &str, (from, to): (usize, usize), tokens: &[(usize, usize, f32)]) -> Self {
        let text = full.get(from..to).unwrap_or_default().to_string();
        let chars = |byte: usize| {
            let b = byte.clamp(from, to) - from;
            text.get(..b).map_or(0, |s| s.chars().count())
        };
        let tokens = tokens
            .iter()
            .filter(|(s, e, _)| *e > from && *s < to)
            .map(|&(s, e, v)| (chars(s), chars(e), v))
            .filter(|(s, e, _)| e > s)
            .collect();
        Side { text, tokens }
    }

    /// The share of the total |score| in `[s, e)` (characters): each token's share spread over
    /// its characters.
    fn mass(&self, s: usize, e: usize, total: f32) -> f32 {
        let mut m = 0.0;
        for &(ts, te, v) in &self.tokens {
            let overlap = e.min(te).saturating_sub(s.max(ts));
            if overlap > 0 {
                m += v * overlap as f32 / (te - ts) as f32;
            }
        }
        if total > 0.0 {
            m / total
        } else {
            0.0
        }
    }

    fn total(&self) -> f32 {
        self.tokens.iter().map(|t| t.2.abs()).sum()
    }

    fn cuts(&self, from: usize, to: usize, shift: isize) -> impl Iterator<Item = usize> + '_ {
        self.tokens
            .iter()
            .flat_map(|&(s, e, _)| [s, e])
            .filter(move |&c| c > from && c < to)
            .map(move |c| (c as isize + shift) as usize)
    }
}

/// Characters of `s` from `a` to `b`.
fn chars(s: &str, a: usize, b: usize) -> String {
    s.chars().skip(a).take(b.saturating_sub(a)).collect()
}

/// A and B aligned into segments (see the module's documentation).
pub fn align(a: &Side, b: &Side) -> Vec<Segment> {
    let (ac, bc): (Vec<char>, Vec<char>) = (a.text.chars().collect(), b.text.chars().collect());
    let prefix = ac.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let room = ac.len().min(bc.len()) - prefix;
    let suffix = ac
        .iter()
        .rev()
        .zip(bc.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y)
        .count();
    let (ta, tb) = (a.total(), b.total());
    // A shared part `[from, to)` of A, cut at both sides' token boundaries (B's text is
    // A's shifted by `shift`).
    let shared = |from: usize, to: usize, shift: isize| -> Vec<Segment> {
        let mut out = Vec::new();
        let mut cuts: Vec<usize> = std::iter::once(from)
            .chain(a.cuts(from, to, 0))
            .chain(b.cuts(
                (from as isize - shift) as usize,
                (to as isize - shift) as usize,
                shift,
            ))
            .chain(std::iter::once(to))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let (s, e) = (w[0], w[1]);
            let (bs, be) = ((s as isize - shift) as usize, (e as isize - shift) as usize);
            let text = chars(&a.text, s, e);
            out.push(Segment {
                a_text: text.clone(),
                b_text: text,
                a: a.mass(s, e, ta),
                b: b.mass(bs, be, tb),
                edited: false,
            });
        }
        out
    };
    let mut out = shared(0, prefix, 0);
    let (a_end, b_end) = (ac.len() - suffix, bc.len() - suffix);
    let edit = (prefix < a_end || prefix < b_end).then(|| Segment {
        a_text: chars(&a.text, prefix, a_end),
        b_text: chars(&b.text, prefix, b_end),
        a: a.mass(prefix, a_end, ta),
        b: b.mass(prefix, b_end, tb),
        edited: true,
    });
    out.extend(edit);
    out.extend(shared(a_end, ac.len(), a_end as isize - b_end as isize));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(text: &str, tokens: &[(usize, usize, f32)]) -> Side {
        Side {
            text: text.into(),
            tokens: tokens.to_vec(),
        }
    }

    #[test]
    fn the_same_tokens_align_one_to_one() {
        let a = side("ab cd", &[(0, 2, 1.0), (2, 5, 3.0)]);
        let b = side("ab cd", &[(0, 2, -2.0), (2, 5, 2.0)]);
        let s = align(&a, &b);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].a, s[0].b), (0.25, -0.5));
        assert_eq!((s[1].a, s[1].b), (0.75, 0.5));
        assert_eq!(s[1].a_text, " cd");
        assert!((s[1].diff() + 0.25).abs() < 1e-6);
    }

    #[test]
    fn different_tokenizations_are_cut_at_both_boundaries_and_keep_their_totals() {
        // A: "Paris" | " is"; B: "Par" | "is is".
        let a = side("Paris is", &[(0, 5, 2.0), (5, 8, 2.0)]);
        let b = side("Paris is", &[(0, 3, 1.0), (3, 8, 1.0)]);
        let s = align(&a, &b);
        let texts: Vec<&str> = s.iter().map(|x| x.a_text.as_str()).collect();
        assert_eq!(texts, ["Par", "is", " is"]);
        // "Paris" (0.5 of A) is spread 3:2 over "Par" and "is".
        assert!((s[0].a - 0.3).abs() < 1e-6 && (s[1].a - 0.2).abs() < 1e-6);
        // B's "is is" (0.5 of B) is spread 2:3 over "is" and " is".
        assert!((s[1].b - 0.2).abs() < 1e-6 && (s[2].b - 0.3).abs() < 1e-6);
        for f in [|x: &Segment| x.a, |x: &Segment| x.b] {
            assert!((s.iter().map(f).sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn an_edit_is_one_segment_between_the_shared_prefix_and_suffix() {
        let a = side("the cat sat", &[(0, 3, 1.0), (3, 7, 1.0), (7, 11, 2.0)]);
        let b = side("the dog sat", &[(0, 3, 1.0), (3, 7, 3.0), (7, 11, 0.0)]);
        let s = align(&a, &b);
        let edited: Vec<&Segment> = s.iter().filter(|x| x.edited).collect();
        assert_eq!(edited.len(), 1);
        assert_eq!(
            (edited[0].a_text.as_str(), edited[0].b_text.as_str()),
            ("cat", "dog")
        );
        let texts: Vec<&str> = s.iter().map(|x| x.b_text.as_str()).collect();
        assert_eq!(texts, ["the", " ", "dog", " sat"]);
        // An insertion: B is longer; the suffix is shifted into A's coordinates.
        let b = side(
            "the big cat sat",
            &[(0, 3, 1.0), (3, 7, 1.0), (7, 11, 1.0), (11, 15, 1.0)],
        );
        let s = align(&a, &b);
        let texts: Vec<(&str, &str)> = s
            .iter()
            .map(|x| (x.a_text.as_str(), x.b_text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                ("the", "the"),
                (" ", " "),
                ("", "big "),
                ("cat", "cat"),
                (" sat", " sat")
            ]
        );
    }

    #[test]
    fn byte_ranges_become_characters_of_the_part_compared() {
        let full = "<s>héllo wörld</s>";
        let side = Side::new(
            full,
            (3, 16),
            &[(0, 3, 9.0), (3, 9, 1.0), (9, 16, 2.0), (16, 20, 5.0)],
        );
        assert_eq!(side.text, "héllo wörld");
        assert_eq!(side.tokens, vec![(0, 5, 1.0), (5, 11, 2.0)]);
    }
}
