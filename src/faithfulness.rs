//! Perturbation curves of an explanation (the types: [`crate::Faithfulness`]).
//!
//! Every order and count is defined here so that the PyTorch reference
//! (`scripts/faithfulness_reference.py`) can reproduce it exactly:
//!
//! - **Eligible** positions: with `query_only`, the user's text (the query span with the chat
//!   template, the whole prompt without) and the answer so far (generated tokens); otherwise
//!   every position, the template's too. Never a special token, never the last position (the
//!   model predicts from it).
//! - **Orders**: MoRF sorts eligible positions by score, highest first; LeRF lowest first;
//!   ties go to the earlier position.
//! - **Steps**: every count 0..=E for E ≤ 32 eligible tokens, else `(i·E + 10) / 20` for
//!   i = 0..=20 (integer division).
//! - **Random** orders: Fisher–Yates over the eligible positions (in prompt order) driven by
//!   SplitMix64 seeded with 0, 1, …; `j = next() mod (i + 1)` for i from E−1 down to 1.
//! - **Fractions** for comprehensiveness and sufficiency: k = max(1, (p·E + 50) / 100) tokens
//!   for p = 10, 20, 50 percent.

use std::collections::{BTreeMap, HashMap};

use crate::types::{Curve, MethodFaithfulness, RandomBand, Token, FRACTIONS};

/// Random permutations in the baseline.
pub const RANDOM_ORDERS: u64 = 10;

/// SplitMix64's next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seeded permutation of `items` (see the module's docs).
pub fn permutation(items: &[usize], seed: u64) -> Vec<usize> {
    let mut v = items.to_vec();
    let mut state = seed;
    for i in (1..v.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// The positions that may be taken out (see the module's docs).
pub fn eligible(tokens: &[Token], query_span: Option<[usize; 2]>, query_only: bool) -> Vec<usize> {
    let [a, b] = query_span.unwrap_or([0, tokens.len()]);
    let last = tokens.len().saturating_sub(1);
    tokens
        .iter()
        .enumerate()
        .filter(|&(i, t)| {
            let in_query = (a..b).contains(&i);
            let allowed = !query_only || in_query || t.generated;
            allowed && !t.special && i != last
        })
        .map(|(i, _)| i)
        .collect()
}

/// Tokens taken out at each step for `e` eligible tokens.
pub fn steps(e: usize) -> Vec<usize> {
    if e <= 32 {
        (0..=e).collect()
    } else {
        (0..=20).map(|i| (i * e + 10) / 20).collect()
    }
}

/// The eligible positions ordered by `scores`: highest first (`most_first`) or lowest first;
/// ties to the earlier position.
pub fn order(scores: &[f32], eligible: &[usize], most_first: bool) -> Vec<usize> {
    let mut v = eligible.to_vec();
    let score = |i: usize| scores.get(i).copied().unwrap_or(0.0);
    v.sort_by(|&x, &y| {
        let by_score = if most_first {
            score(y).total_cmp(&score(x))
        } else {
            score(x).total_cmp(&score(y))
        };
        by_score.then(x.cmp(&y))
    });
    v
}

/// Token counts for comprehensiveness and sufficiency at [`FRACTIONS`].
pub fn fraction_counts(e: usize) -> Vec<usize> {
    FRACTIONS
        .iter()
        .map(|f| ((f * 100.0).round() as usize * e + 50) / 100)
        .map(|k| k.max(1).min(e))
        .collect()
}

/// Builds curves at the steps, evaluating each distinct set of taken-out positions once with
/// `eval`: the target's (logit, probability) with those positions (sorted ascending) out.
pub struct Curves<F> {
    eval: F,
    seen: HashMap<Vec<usize>, (f32, f32)>,
    steps: Vec<usize>,
}

impl<F: FnMut(&[usize]) -> crate::Result<(f32, f32)>> Curves<F> {
    /// Curves at `steps`, values from `eval`.
    pub fn new(steps: Vec<usize>, eval: F) -> Self {
        Curves {
            eval,
            seen: HashMap::new(),
            steps,
        }
    }

    /// The value with the first `k` positions of `order` taken out.
    fn value(&mut self, order: &[usize], k: usize) -> crate::Result<(f32, f32)> {
        let mut set: Vec<usize> = order.iter().take(k).copied().collect();
        set.sort_unstable();
        if let Some(v) = self.seen.get(&set) {
            return Ok(*v);
        }
        let v = (self.eval)(&set)?;
        self.seen.insert(set, v);
        Ok(v)
    }

    /// The curve of `order`.
    pub fn curve(&mut self, order: Vec<usize>) -> crate::Result<Curve> {
        let (mut logit, mut prob) = (Vec::new(), Vec::new());
        for k in self.steps.clone() {
            let (l, p) = self.value(&order, k)?;
            logit.push(l);
            prob.push(p);
        }
        Ok(Curve { order, logit, prob })
    }

    /// A method's curves and scores from its per-position `scores`.
    pub fn method(
        &mut self,
        scores: &[f32],
        eligible: &[usize],
    ) -> crate::Result<MethodFaithfulness> {
        let morf = self.curve(order(scores, eligible, true))?;
        let lerf = self.curve(order(scores, eligible, false))?;
        self.scored(morf, lerf)
    }

    fn scored(&mut self, morf: Curve, lerf: Curve) -> crate::Result<MethodFaithfulness> {
        let e = morf.order.len();
        let (_, p0) = self.value(&morf.order, 0)?;
        let (mut comprehensiveness, mut sufficiency) = (Vec::new(), Vec::new());
        for k in fraction_counts(e) {
            comprehensiveness.push(p0 - self.value(&morf.order, k)?.1);
            sufficiency.push(p0 - self.value(&lerf.order, e - k)?.1);
        }
        Ok(MethodFaithfulness {
            abpc: abpc(&morf, &lerf),
            morf,
            lerf,
            comprehensiveness,
            sufficiency,
        })
    }

    /// The random baseline over `eligible`.
    pub fn random(&mut self, eligible: &[usize]) -> crate::Result<RandomBand> {
        let seeds: Vec<u64> = (0..RANDOM_ORDERS).collect();
        let mut curves = Vec::new();
        let mut abpcs = Vec::new();
        for &seed in &seeds {
            let forward = permutation(eligible, seed);
            let reverse: Vec<usize> = forward.iter().rev().copied().collect();
            let c = self.curve(forward)?;
            let r = self.curve(reverse)?;
            abpcs.push(abpc(&c, &r));
            curves.push(c);
        }
        let column = |f: fn(&Curve) -> &Vec<f32>, i: usize| -> Vec<f32> {
            curves.iter().filter_map(|c| f(c).get(i).copied()).collect()
        };
        let n = self.steps.len();
        let logits: Vec<(f32, f32)> = (0..n).map(|i| mean_sd(&column(|c| &c.logit, i))).collect();
        let probs: Vec<(f32, f32)> = (0..n).map(|i| mean_sd(&column(|c| &c.prob, i))).collect();
        let (abpc_mean, abpc_sd) = mean_sd(&abpcs);
        Ok(RandomBand {
            seeds,
            logit_mean: logits.iter().map(|x| x.0).collect(),
            logit_sd: logits.iter().map(|x| x.1).collect(),
            prob_mean: probs.iter().map(|x| x.0).collect(),
            prob_sd: probs.iter().map(|x| x.1).collect(),
            abpc_mean,
            abpc_sd,
        })
    }

    /// Distinct inputs evaluated so far.
    pub fn evaluated(&self) -> usize {
        self.seen.len()
    }
}

/// Area between the curves: the mean over the steps of `lerf − morf` (logits).
fn abpc(morf: &Curve, lerf: &Curve) -> f32 {
    let n = morf.logit.len().max(1) as f32;
    lerf.logit
        .iter()
        .zip(&morf.logit)
        .map(|(l, m)| l - m)
        .sum::<f32>()
        / n
}

/// Mean and sample standard deviation (0 for fewer than two values).
fn mean_sd(xs: &[f32]) -> (f32, f32) {
    let n = xs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f32>() / n as f32;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / (n - 1) as f32;
    (mean, var.sqrt())
}

/// Scores by method name, in a stable order.
pub type MethodScores = BTreeMap<crate::Method, Vec<f32>>;

impl crate::Engine {
    /// The token `replace` puts in: the model's padding token (unless it is an
    /// end-of-sequence token), else its unknown token, as its files name them; else the token
    /// of a single space.
    pub fn neutral_id(&self) -> Option<u32> {
        self.pad_or_unk().or_else(|| {
            let enc = self.tokenizer().encode(" ", false).ok()?;
            enc.get_ids().last().copied()
        })
    }

    /// Perturbation curves of each method's `scores` (one per token of `tok`) for `target`
    /// at the last position of `tok`, and the random baseline, the forward passes with
    /// `products`. `progress` hears how many distinct inputs have run of at most how many
    /// (repeats run once), and may cancel.
    pub fn faithfulness(
        &self,
        tok: &crate::Tokenized,
        target: u32,
        scores: &MethodScores,
        spec: crate::types::FaithfulnessSpec,
        products: crate::kernels::Products,
        progress: &mut dyn FnMut(usize, usize) -> crate::Result<()>,
    ) -> crate::Result<crate::types::Faithfulness> {
        use crate::types::Operator;

        let model = self.decoder();
        let ids: Vec<u32> = tok.tokens.iter().map(|t| t.id).collect();
        let ids = &ids[..];
        if let Some((name, s)) = scores.iter().find(|(_, s)| s.len() != ids.len()) {
            return Err(crate::Error::InvalidSetting(format!(
                "{name}: {} scores for {} tokens",
                s.len(),
                ids.len()
            )));
        }
        let eligible = eligible(&tok.tokens, tok.query_span, spec.query_only);
        let steps = steps(eligible.len());
        let neutral = match spec.operator {
            Operator::Replace => Some(self.neutral_id().ok_or_else(|| {
                crate::Error::InvalidSetting("this model has no neutral token to put in".into())
            })?),
            _ => None,
        };
        // Which inputs the curves need: a first pass through them records each distinct one.
        let mut wanted: Vec<Vec<usize>> = Vec::new();
        let mut plan = Curves::new(steps.clone(), |out: &[usize]| {
            wanted.push(out.to_vec());
            Ok((0.0, 0.0))
        });
        for s in scores.values() {
            plan.method(s, &eligible)?;
        }
        plan.random(&eligible)?;
        let inputs = Inputs {
            model,
            ids,
            embeds: model.embed(ids)?,
            operator: spec.operator,
            neutral,
        };
        let values = self.run_inputs(&inputs, wanted, target, products, progress)?;
        let mut curves = Curves::new(steps.clone(), |out: &[usize]| {
            values.get(out).copied().ok_or_else(|| {
                crate::Error::InvalidSetting(format!("no value for {out:?} (a planning slip)"))
            })
        });
        let mut methods = BTreeMap::new();
        for (name, s) in scores {
            methods.insert(*name, curves.method(s, &eligible)?);
        }
        let random = curves.random(&eligible)?;
        tracing::debug!(inputs = curves.evaluated(), "faithfulness curves");
        Ok(crate::types::Faithfulness {
            operator: spec.operator,
            neutral_id: neutral,
            eligible,
            steps,
            methods,
            random,
        })
    }
}

/// The prompt and how its tokens are taken out.
struct Inputs<'a> {
    model: &'a crate::models::decoder::Decoder,
    ids: &'a [u32],
    /// `(seq, hidden)`, for `zero`.
    embeds: candle_core::Tensor,
    operator: crate::types::Operator,
    /// The token `replace` puts in.
    neutral: Option<u32>,
}

impl Inputs<'_> {
    /// Input embeddings from position `from` on, with the positions `out` (sorted) taken out.
    fn tail(&self, out: &[usize], from: usize) -> candle_core::Result<candle_core::Tensor> {
        use crate::types::Operator;
        let gone = |i: &usize| out.binary_search(i).is_ok();
        let rows = from..self.ids.len();
        match (self.operator, self.neutral) {
            (Operator::Zero, _) => {
                let rows = rows
                    .map(|i| {
                        let row = self.embeds.get(i)?;
                        if gone(&i) {
                            row.zeros_like()
                        } else {
                            Ok(row)
                        }
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                candle_core::Tensor::stack(&rows, 0)
            }
            (Operator::Replace, Some(n)) => {
                let ids: Vec<u32> = rows
                    .map(|i| if gone(&i) { n } else { self.ids[i] })
                    .collect();
                self.model.embed(&ids)
            }
            // Delete (or replace without a token, which `faithfulness` refuses earlier).
            _ => {
                let ids: Vec<u32> = rows.filter(|i| !gone(i)).map(|i| self.ids[i]).collect();
                self.model.embed(&ids)
            }
        }
    }
}

/// Rows a batch of inputs may stack (their products then keep both cores busy).
const BATCH_ROWS: usize = 2048;

impl crate::Engine {
    /// The target's (logit, probability) for each of `wanted` (sets of positions taken out,
    /// sorted), in batches of inputs that share a prefix; `progress` hears how many have run.
    fn run_inputs(
        &self,
        inputs: &Inputs,
        mut wanted: Vec<Vec<usize>>,
        target: u32,
        products: crate::kernels::Products,
        progress: &mut dyn FnMut(usize, usize) -> crate::Result<()>,
    ) -> crate::Result<HashMap<Vec<usize>, (f32, f32)>> {
        let model = self.decoder();
        let n = inputs.ids.len();
        let last = n.saturating_sub(1);
        // Every input shares the positions before its first change: those run once here.
        let mut base = crate::models::decoder::KvCache::default();
        model.forward_cached(inputs.ids, &mut base, products)?;
        let first = |out: &[usize]| out.first().copied().unwrap_or(last).min(last);
        // Latest change first, so that a batch's inputs start at nearly the same position.
        wanted.sort_by_key(|out| std::cmp::Reverse(first(out)));
        let total = wanted.len();
        let mut values = HashMap::with_capacity(total);
        let mut rest = &wanted[..];
        while !rest.is_empty() {
            // Grow the batch while its stacked rows (from its earliest change) fit.
            let mut take = 1;
            while take < rest.len() && (take + 1) * (n - first(&rest[take])) <= BATCH_ROWS {
                take += 1;
            }
            let (batch, after) = rest.split_at(take);
            rest = after;
            let from = batch.iter().map(|o| first(o)).min().unwrap_or(last);
            let tails = batch
                .iter()
                .map(|out| inputs.tail(out, from))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let logits = model.forward_batch(&base, from, &tails, products)?;
            for (out, l) in batch.iter().zip(logits) {
                let l: Vec<f32> = l.to_vec1()?;
                let logit = *l.get(target as usize).ok_or_else(|| {
                    crate::Error::InvalidSetting(format!(
                        "target id {target} is not in the vocabulary"
                    ))
                })?;
                let prob = crate::target::Softmax::of(&l).prob(logit);
                values.insert(out.clone(), (logit, prob));
            }
            progress(values.len(), total)?;
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values the Python reference's implementation of the same generator gives
    /// (`scripts/faithfulness_reference.py`), so both sides draw the same orders.
    #[test]
    fn permutations_and_steps_are_the_documented_ones() {
        let items: Vec<usize> = (10..20).collect();
        let p = permutation(&items, 0);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, items, "a permutation");
        assert_ne!(p, items, "shuffled");
        assert_ne!(permutation(&items, 1), p, "seeds differ");
        assert_eq!(steps(3), vec![0, 1, 2, 3]);
        assert_eq!(steps(40), (0..=20).map(|i| 2 * i).collect::<Vec<_>>());
        assert_eq!(steps(33)[1], 2); // (33 + 10) / 20
        assert_eq!(fraction_counts(7), vec![1, 1, 4]);
        assert_eq!(
            order(&[0.0, 3.0, 1.0, 3.0], &[0, 1, 2, 3], true),
            vec![1, 3, 2, 0]
        );
        assert_eq!(
            order(&[0.0, 3.0, 1.0, 3.0], &[0, 1, 2, 3], false),
            vec![0, 2, 1, 3]
        );
    }

    fn token(special: bool, generated: bool) -> Token {
        Token {
            id: 0,
            text: String::new(),
            start: 0,
            end: 0,
            special,
            generated,
            piece: None,
        }
    }

    /// A chat prompt: template tokens 0..2 (0 special), the query 2..5 (4 special), the
    /// template 5..7 (5 special), then two generated tokens, the last of which predicts.
    #[test]
    fn the_eligible_set_keeps_template_special_and_last_tokens() {
        let tokens: Vec<Token> = (0..9)
            .map(|i| token(i == 0 || i == 4 || i == 5, i >= 7))
            .collect();
        let span = Some([2, 5]);
        // Query only: the user's text and the answer so far.
        assert_eq!(eligible(&tokens, span, true), vec![2, 3, 7]);
        // Otherwise the template's ordinary tokens too.
        assert_eq!(eligible(&tokens, span, false), vec![1, 2, 3, 6, 7]);
        // Without a template every ordinary token but the last is eligible.
        assert_eq!(eligible(&tokens[..4], None, false), vec![1, 2]);
        assert!(eligible(&tokens[..1], None, false).is_empty());
    }

    #[test]
    fn the_area_is_the_mean_gap_between_lerf_and_morf() {
        let curve = |logit: Vec<f32>| Curve {
            order: Vec::new(),
            prob: vec![0.0; logit.len()],
            logit,
        };
        let morf = curve(vec![4.0, 1.0, 0.0, -1.0]);
        let lerf = curve(vec![4.0, 4.0, 3.0, -1.0]);
        assert_eq!(abpc(&morf, &lerf), (0.0 + 3.0 + 3.0 + 0.0) / 4.0);
        assert_eq!(
            abpc(&lerf, &morf),
            -1.5,
            "a reversed ranking scores below zero"
        );
        assert_eq!(abpc(&morf, &morf), 0.0);
        assert_eq!(mean_sd(&[1.0, 3.0]), (2.0, 2f32.sqrt()));
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }
}
