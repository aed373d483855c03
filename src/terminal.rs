//! Colored tokens for the terminal (24-bit ANSI backgrounds).

use tokenlens::colormap::{text_on, ColorScale};
use tokenlens::granularity::{aggregate, groups, Aggregate, Granularity, Group};
use tokenlens::text::{percent, visible_lines as visible};
use tokenlens::{Explanation, Method, MethodResult};

/// The scores per word or sentence, as the `granularity` member of `explain --json`.
pub fn grouped(ex: &Explanation, level: Granularity, how: Aggregate) -> serde_json::Value {
    let g = groups(&ex.tokens, level);
    let scores: serde_json::Map<String, serde_json::Value> = ex
        .methods
        .iter()
        .map(|(m, r)| {
            (
                m.name().to_string(),
                serde_json::json!(aggregate(&r.scores, &g, how)),
            )
        })
        .collect();
    serde_json::json!({
        "level": level.name(),
        "aggregate": how.name(),
        "groups": g,
        "scores": scores,
    })
}

/// Prints the prediction, the target and each method's colored tokens (or words, or
/// sentences).
pub fn print(ex: &Explanation, level: Granularity, how: Aggregate) {
    let Some((prediction, t)) = ex.predicted() else {
        println!("no prediction: the explanation stopped before its forward pass ended");
        return;
    };
    let p = &prediction.best;
    println!(
        "prediction: {:?} (id {}, logit {:.3}, p {})",
        p.text,
        p.id,
        p.logit,
        percent(p.prob)
    );
    match &t.span {
        Some(span) => {
            let text: String = span.tokens.iter().map(|k| k.text.as_str()).collect();
            println!(
                "target:     the span {text:?} (answer tokens {} to {}): Σ log p = {:.4}, \
                 each token given everything before it",
                span.span.start + 1,
                span.span.end,
                span.log_prob
            );
            for k in &span.tokens {
                println!("            {:?} log p {:.4}", k.text, k.log_prob);
            }
        }
        None => println!(
            "target:     {:?} (id {}, logit {:.3}, p {}, rank {})",
            t.token.text,
            t.token.id,
            t.token.logit,
            percent(t.token.prob),
            t.rank
        ),
    }
    if let (Some(lp), None) = (t.log_prob, &t.span) {
        println!("score:      its log-probability, {lp:.4} (the backward pass starts from onehot − softmax)");
    }
    if t.pieces.len() > 1 {
        println!(
            "note:       the target text is {} tokens ({:?}); only the first is explained \
             (--target-id picks any single token)",
            t.pieces.len(),
            t.pieces
        );
    }
    if let Some(lens) = &ex.lens {
        let last = ex.tokens.len().saturating_sub(1);
        match tokenlens::target_settles(lens, last) {
            Some(l) => println!(
                "lens:       the target is the top token from layer {l} on (of {})",
                lens.len()
            ),
            None => println!("lens:       the target is not the top token at the last layers"),
        }
    }
    if let Some(c) = &t.contrast {
        println!(
            "contrast:   {:?} (id {}, logit {:.3}, p {}): scores explain logit difference {:.3}",
            c.text,
            c.id,
            c.logit,
            percent(c.prob),
            t.explained_value()
        );
    }
    let g = groups(&ex.tokens, level);
    print_methods(&ex.methods, &g, how);
    for c in &ex.candidates {
        let t = &c.target.token;
        println!(
            "\n--- candidate {:?} (id {}, logit {:.3}, p {}, rank {}) ---",
            t.text,
            t.id,
            t.logit,
            percent(t.prob),
            c.target.rank
        );
        print_methods(&c.methods, &g, how);
    }
    if let Some(f) = &ex.faithfulness {
        print_faithfulness(f);
    }
}

/// One line per method: ABPC beside the random baseline's, comprehensiveness and
/// sufficiency at 20% of the eligible tokens.
fn print_faithfulness(f: &tokenlens::Faithfulness) {
    println!(
        "\nfaithfulness (operator {}, {} eligible tokens, {} steps):",
        f.operator.name(),
        f.eligible.len(),
        f.steps.len()
    );
    let r = &f.random;
    for (method, m) in &f.methods {
        let label = method.label();
        println!(
            "  {label}: ABPC {:.2} (random {:.2} ± {:.2}) · comprehensiveness@20% {:.3} · sufficiency@20% {:.3}",
            m.abpc,
            r.abpc_mean,
            r.abpc_sd,
            m.comprehensiveness.get(1).copied().unwrap_or(f32::NAN),
            m.sufficiency.get(1).copied().unwrap_or(f32::NAN),
        );
    }
}

/// Each method's colored groups (and conservation).
fn print_methods(
    methods: &std::collections::BTreeMap<Method, MethodResult>,
    g: &[Group],
    how: Aggregate,
) {
    for (method, result) in methods {
        let scores = aggregate(&result.scores, g, how);
        let signed = method.is_signed();
        // The page's colors: blue-white-red for signed scores, viridis for magnitudes.
        let scale = ColorScale {
            signed,
            max: tokenlens::text::max_abs(&scores),
            gamma: 1.0,
        };
        println!(
            "\n{method}{}:",
            if signed {
                " (red +, blue −)"
            } else {
                " (dark to yellow: larger)"
            }
        );
        let mut line = String::new();
        for (grp, &s) in g.iter().zip(&scores) {
            let bg = scale.color(s);
            let fg = text_on(bg);
            line.push_str(&format!(
                "\x1b[48;2;{};{};{}m\x1b[38;2;{};{};{}m{}\x1b[0m",
                bg[0],
                bg[1],
                bg[2],
                fg[0],
                fg[1],
                fg[2],
                visible(&grp.text)
            ));
        }
        println!("{line}");
        match result.conservation.as_ref().map(|c| (c, c.path)) {
            Some((c, Some(p))) => println!(
                "completeness: input {:.3}, last layer {:.3} of the change {:.4} → {:.4} from the zero baseline",
                c.input, c.last_layer, p.baseline, p.input
            ),
            Some((c, None)) => println!(
                "conservation: input {:.3}, last layer {:.3} of the explained value",
                c.input, c.last_layer
            ),
            None => {}
        }
        if let Some(layers) = &result.neurons {
            print_neurons(layers);
        }
        if let Some(layers) = &result.heads {
            print_heads(layers);
        }
        if let Some(a) = &result.ablation {
            print_ablation("neurons", a.neurons.as_ref());
            print_ablation("heads", a.heads.as_ref());
        }
    }
}

/// An ablation curve: the target's log-probability as the top units are zeroed, and the
/// random draws' mean and range at each k.
fn print_ablation(name: &str, curve: Option<&tokenlens::AblationCurve>) {
    let Some(c) = curve else { return };
    let row = |v: &[f32]| v.iter().map(|x| format!("{x:>8.3}")).collect::<String>();
    let units: Vec<String> = c.units.iter().map(|(u, _)| u.to_string()).collect();
    println!(
        "ablation of the top {name} ({}), log p of the target with the first k zeroed:",
        units.join(", ")
    );
    println!(
        "  k        {}",
        (0..c.top.len())
            .map(|k| format!("{k:>8}"))
            .collect::<String>()
    );
    println!("  top      {}", row(&c.top));
    let at = |k: usize| -> Vec<f32> {
        c.random
            .iter()
            .filter_map(|d| d.log_probs.get(k))
            .copied()
            .collect()
    };
    let stat = |k: usize, f: fn(f32, f32) -> f32| at(k).into_iter().reduce(f).unwrap_or(f32::NAN);
    let mean: Vec<f32> = (0..c.top.len())
        .map(|k| at(k).iter().sum::<f32>() / at(k).len().max(1) as f32)
        .collect();
    println!(
        "  random   {} (mean of {} draws)",
        row(&mean),
        c.random.len()
    );
    let lo: Vec<f32> = (0..c.top.len()).map(|k| stat(k, f32::min)).collect();
    let hi: Vec<f32> = (0..c.top.len()).map(|k| stat(k, f32::max)).collect();
    println!("    min    {}", row(&lo));
    println!("    max    {}", row(&hi));
}

/// The layers whose neurons hold the most, each with its top neurons (`layer:index value`).
fn print_neurons(layers: &[tokenlens::NeuronLayer]) {
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by(|&a, &b| layers[b].total.abs().total_cmp(&layers[a].total.abs()));
    println!("neurons (layers holding the most; layer:index relevance):");
    for &l in order.iter().take(5) {
        let top: Vec<String> = layers[l]
            .top
            .iter()
            .take(5)
            .map(|n| format!("{l}:{} {}", n.index, tokenlens::text::sig3(n.value)))
            .collect();
        let total = tokenlens::text::sig3(layers[l].total);
        println!("  layer {l:>2} (Σ {total}): {}", top.join(", "));
    }
    print_block("MLP", layers.iter().map(|l| l.block));
}

/// A block's conservation over the layers (what it hands back over what it writes), where
/// the method has one: its range, and the layers furthest from 1.
fn print_block(name: &str, blocks: impl Iterator<Item = Option<tokenlens::BlockRelevance>>) {
    let ratios: Vec<(usize, f32)> = blocks
        .enumerate()
        .filter_map(|(l, b)| b.map(|b| (l, b.input / b.output)))
        .collect();
    let (Some(lo), Some(hi)) = (
        ratios.iter().map(|r| r.1).reduce(f32::min),
        ratios.iter().map(|r| r.1).reduce(f32::max),
    ) else {
        return;
    };
    if hi - lo < 5e-4 {
        println!("  {name} blocks hand back what they write ({lo:.3} in every layer)");
        return;
    }
    let mut worst = ratios.clone();
    worst.sort_by(|a, b| (b.1 - 1.0).abs().total_cmp(&(a.1 - 1.0).abs()));
    let worst: Vec<String> = worst
        .iter()
        .take(3)
        .map(|(l, r)| format!("layer {l} {r:.3}"))
        .collect();
    println!(
        "  {name} blocks hand back {lo:.3}-{hi:.3} of what they write ({})",
        worst.join(", ")
    );
}

/// The heads holding the most over all layers (`layer:head relevance`).
fn print_heads(layers: &[tokenlens::HeadLayer]) {
    let mut all: Vec<(usize, usize, f32)> = layers
        .iter()
        .enumerate()
        .flat_map(|(l, h)| h.heads.iter().enumerate().map(move |(i, &v)| (l, i, v)))
        .collect();
    all.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    let top: Vec<String> = all
        .iter()
        .take(10)
        .map(|(l, i, v)| format!("{l}:h{i} {}", tokenlens::text::sig3(*v)))
        .collect();
    println!(
        "heads (most relevant; layer:head relevance): {}",
        top.join(", ")
    );
    print_block("attention", layers.iter().map(|l| l.block));
}

/// A unit's card: a neuron's logit lens and activations, a head's attention from the last
/// token (and the keys each query attends to most).
pub(crate) fn print_unit(card: &tokenlens::UnitCard) {
    let quoted = |t: &str| format!("{t:?}");
    let list = |v: &[tokenlens::LensToken]| -> String {
        v.iter()
            .map(|t| format!("{} {}", quoted(&t.text), tokenlens::text::sig3(t.logit)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("{}", card.unit);
    if !card.promotes.is_empty() {
        println!("promotes:   {}", list(&card.promotes));
        println!("suppresses: {}", list(&card.suppresses));
    }
    if let Some(a) = &card.activations {
        println!("activation at each token:");
        for (t, v) in card.tokens.iter().zip(a) {
            println!("  {:>10}  {}", tokenlens::text::sig3(*v), quoted(&t.text));
        }
    }
    if let Some(rows) = &card.attention {
        println!("attention from the last token (the 5 keys it attends to most):");
        if let Some(last) = rows.last() {
            let mut keys: Vec<usize> = (0..last.len()).collect();
            keys.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
            for &k in keys.iter().take(5) {
                let text = card
                    .tokens
                    .get(k)
                    .map_or(String::new(), |t| quoted(&t.text));
                println!("  {:>6}  {k:>4} {text}", tokenlens::text::percent(last[k]));
            }
        }
    }
}

/// A neuron's top-activating corpus texts, the firing token in brackets.
pub(crate) fn print_contexts(c: &tokenlens::NeuronContexts) {
    println!(
        "where it fires most in the reference corpus ({} texts, {} tokens):",
        c.texts, c.tokens
    );
    for h in &c.hits {
        let (a, b) = (h.start.min(h.text.len()), h.end.min(h.text.len()));
        let (before, at, after) = (
            h.text.get(..a).unwrap_or(""),
            h.text.get(a..b).unwrap_or(""),
            h.text.get(b..).unwrap_or(""),
        );
        let line = format!("{before}[[{at}]]{after}").replace('\n', " ↵ ");
        println!(
            "  {:>8}  ({})  {line}",
            tokenlens::text::sig3(h.activation),
            h.source
        );
    }
}

/// Prints each answer token of the all-steps matrix with its probability and the three
/// tokens before it that `method` finds most relevant (largest |score|; special tokens left
/// out).
pub(crate) fn print_steps(
    gen: &tokenlens::Generation,
    rows: &[tokenlens::StepRow],
    method: Method,
) {
    println!("prompt: {:?}", gen.text);
    println!("answer: {:?} ({:?})", gen.answer, gen.stop);
    println!(
        "each answer token, and what {} finds most relevant to it:",
        method.name()
    );
    let tokens: Vec<&tokenlens::Token> = gen
        .tokens
        .iter()
        .chain(gen.generated.iter().map(|g| &g.token))
        .collect();
    for (row, g) in rows.iter().zip(&gen.generated) {
        let Some(scores) = row.scores.get(&method) else {
            continue;
        };
        let mut most: Vec<(usize, f32)> = scores
            .iter()
            .copied()
            .enumerate()
            .filter(|&(i, _)| tokens.get(i).is_some_and(|t| !t.special))
            .collect();
        most.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let most: Vec<String> = most
            .iter()
            .take(3)
            .map(|&(i, s)| format!("{:?} {s:+.3}", visible(&tokens[i].text)))
            .collect();
        println!(
            "{:>4} {:<16} p {:>6}  <- {}",
            row.step + 1,
            format!("{:?}", visible(&g.token.text)),
            percent(g.prob),
            most.join(", ")
        );
    }
}
