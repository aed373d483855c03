//! The faithfulness panel: is the map in view faithful? Tokens are taken out of the input in
//! the order each method ranks them (most relevant first, MoRF; least relevant first, LeRF)
//! and the target's logit is recorded after each step, beside a band of random orders. One
//! line of scores per method and a chart of the curves of the method in view.

use leptos::prelude::*;
use tokenlens::{Faithfulness, Method, MethodFaithfulness, Operator, RandomBand, Token, FRACTIONS};

mod chart;

use super::{Shown, Tip};
use crate::format::sig3;
use chart::CurveChart;

/// Where comprehensiveness and sufficiency are quoted in the score line: 20% of the tokens.
const QUOTED_FRACTION: usize = 1;

/// The panel: a switch and an operator, then (once measured) the scores and the chart.
#[component]
pub fn FaithfulnessPanel(
    /// What is in view.
    shown: Shown,
    /// The view's operator: Some while the curves are asked for.
    #[prop(into)]
    operator: Signal<Option<Operator>>,
    /// Asks for the curves with an operator (a new run), or turns them off.
    on_change: Callback<Option<Operator>>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let choice = RwSignal::new(operator.get_untracked().unwrap_or_default());
    let body = move || {
        shown.read(|r, _, m, _| {
            // The panel comes with the map: once a method is in.
            if r.methods.is_empty() {
                return None;
            }
            let span = r.target.as_ref().is_some_and(|t| t.span.is_some());
            if span {
                return Some(view! {
                    <h2>"Is the map faithful?"</h2>
                    <p class="hint" data-testid="faith-span">
                        "Perturbation curves follow one token's logit as tokens are taken out; a span has several tokens, each conditioned on the ones before it, so it has no curves. Click a single answer token to measure its map."
                    </p>
                }
                .into_any());
            }
            let on = operator.get().is_some();
            let measured = r.faithfulness.as_ref().map(|f| {
                view! {
                    <Measured f=f.clone() tokens=r.tokens.clone() query_span=r.query_span/>
                    <ScoreLines f=f.clone()/>
                    <CurveChart f=f.clone() tokens=r.tokens.clone() method=m tip=tip/>
                }
            });
            let pending = (on && measured.is_none()).then(|| {
                let text = if shown.running.get() {
                    "measuring: forward passes with tokens taken out (progress in the status line)…"
                } else {
                    "not measured for this result: press Explain to measure"
                };
                view! { <p class="pending" data-testid="faith-pending">{text}</p> }
            });
            Some(view! {
                <h2>"Is the map faithful?"</h2>
                <div class="faith-controls">
                    <label>
                        <input
                            type="checkbox"
                            data-testid="faith-on"
                            prop:checked=on
                            prop:disabled=move || shown.running.get()
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                on_change.run(on.then(|| choice.get_untracked()));
                            }
                        />
                        "measure perturbation curves (forward passes only; tens of seconds on a CPU for a long prompt)"
                    </label>
                    <label>
                        "take tokens out by "
                        <select
                            data-testid="faith-operator"
                            prop:disabled=move || shown.running.get()
                            on:change=move |ev| {
                                let Some(op) = Operator::from_name(&event_target_value(&ev)) else {
                                    return;
                                };
                                choice.set(op);
                                if operator.get_untracked().is_some() {
                                    on_change.run(Some(op));
                                }
                            }
                        >
                            {Operator::ALL
                                .into_iter()
                                .map(|o| {
                                    view! {
                                        <option value=o.name() selected=move || choice.get() == o>
                                            {operator_label(o)}
                                        </option>
                                    }
                                })
                                .collect_view()}
                        </select>
                    </label>
                </div>
                {pending}
                {measured}
            }
            .into_any())
        })
    };
    view! { <section class="faithfulness" data-testid="faithfulness">{body}</section> }.into_any()
}

/// How an operator takes a token out, in the page's words.
fn operator_label(o: Operator) -> &'static str {
    match o {
        Operator::Replace => "replacing it with a neutral token",
        Operator::Zero => "zeroing its embedding",
        Operator::Delete => "deleting it",
    }
}

/// What was measured, in a sentence: the operator and the eligible tokens (of `tokens`, the
/// explanation's).
pub fn measured_line(f: &Faithfulness, tokens: &[Token], query_span: Option<[usize; 2]>) -> String {
    let generated = |i: &usize| tokens.get(*i).is_some_and(|t| t.generated);
    let in_query = match query_span {
        Some([a, b]) => f
            .eligible
            .iter()
            .all(|i| (a..b).contains(i) || generated(i)),
        None => false,
    };
    let answer = match f.eligible.iter().any(generated) {
        true => " and the answer so far",
        false => "",
    };
    let (whose, fixed) = match in_query {
        true => ("of the user's text", "special and template tokens"),
        false => ("of the prompt", "special tokens"),
    };
    let neutral = match (f.operator, f.neutral_id) {
        (Operator::Replace, Some(id)) => format!(" (token id {id})"),
        _ => String::new(),
    };
    format!(
        "Measured by {}{neutral}: {} tokens {whose}{answer} can be taken out, in {} steps; \
         {fixed}, and the last token (the one that predicts), never move. The random band is the \
         mean ± s.d. of {} seeded orders.",
        operator_label(f.operator),
        f.eligible.len(),
        f.steps.len().saturating_sub(1),
        f.random.seeds.len(),
    )
}

/// A method's line of scores, e.g. "AttnLRP: ABPC 3.1 (random 0.2 ± 0.4) ·
/// comprehensiveness@20% 0.41 · sufficiency@20% 0.05".
pub fn score_line(label: &str, s: &MethodFaithfulness, random: &RandomBand) -> String {
    let pct = (FRACTIONS[QUOTED_FRACTION] * 100.0).round();
    let at = |v: &[f32]| v.get(QUOTED_FRACTION).map_or("–".into(), |x| sig3(*x));
    format!(
        "{label}: ABPC {} (random {} ± {}) · comprehensiveness@{pct}% {} · sufficiency@{pct}% {}",
        sig3(s.abpc),
        sig3(random.abpc_mean),
        sig3(random.abpc_sd),
        at(&s.comprehensiveness),
        at(&s.sufficiency),
    )
}

/// What was measured.
#[component]
fn Measured(f: Faithfulness, tokens: Vec<Token>, query_span: Option<[usize; 2]>) -> AnyView {
    view! {
        <p
            class="hint"
            data-testid="faith-measured"
            data-operator=f.operator.name()
            data-eligible=f.eligible.len()
        >
            {measured_line(&f, &tokens, query_span)}
        </p>
    }
    .into_any()
}

/// One line of scores per method, and what they mean.
#[component]
fn ScoreLines(f: Faithfulness) -> AnyView {
    let pct = (FRACTIONS[QUOTED_FRACTION] * 100.0).round();
    let lines = Method::ALL
        .iter()
        .copied()
        .filter_map(|m| {
            let s = f.methods.get(&m)?;
            let c = s.comprehensiveness.get(QUOTED_FRACTION).copied();
            let suf = s.sufficiency.get(QUOTED_FRACTION).copied();
            let above = s.abpc > f.random.abpc_mean + f.random.abpc_sd;
            let text = score_line(m.label(), s, &f.random);
            Some(view! {
                <li
                    data-method=m.name()
                    data-abpc=s.abpc.to_string()
                    data-random-abpc=f.random.abpc_mean.to_string()
                    data-comprehensiveness=c.map(|v| v.to_string())
                    data-sufficiency=suf.map(|v| v.to_string())
                    class:weak=!above
                >
                    {text}
                </li>
            })
        })
        .collect_view();
    view! {
        <ul class="faith-lines" data-testid="faith-lines">{lines}</ul>
        <p class="hint">
            "ABPC: the mean gap, in logits, between taking the least relevant tokens out first and the most relevant first: higher is more faithful, and a map says something only above the random band (lines below it are greyed). Comprehensiveness: how much the target's probability drops with the top "
            {pct}
            "% of tokens out (higher is better). Sufficiency: how much it drops with only the top "
            {pct}
            "% left (lower is better)."
        </p>
    }
    .into_any()
}
