//! The faithfulness panel: is the map in view faithful? Tokens are taken out of the input in
//! the order each method ranks them (most relevant first, MoRF; least relevant first, LeRF)
//! and the target's logit is recorded after each step, beside a band of random orders. One
//! line of scores per method and a chart of the curves of the method in view.

use leptos::prelude::*;
use tokenlens::{
    Curve, Faithfulness, Method, MethodFaithfulness, Operator, RandomBand, Token, FRACTIONS,
};

use super::{Shown, Tip};
use crate::format::sig3;

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
            let on = operator.get().is_some();
            let measured = r.faithfulness.as_ref().map(|f| {
                view! {
                    <Measured f=f.clone() query_span=r.query_span/>
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
            })
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

/// What was measured, in a sentence: the operator and the eligible tokens.
pub fn measured_line(f: &Faithfulness, query_span: Option<[usize; 2]>) -> String {
    let in_query = match query_span {
        Some([a, b]) => f.eligible.iter().all(|i| (a..b).contains(i)),
        None => false,
    };
    let whose = if in_query {
        "of the user's text"
    } else {
        "of the prompt"
    };
    let neutral = match (f.operator, f.neutral_id) {
        (Operator::Replace, Some(id)) => format!(" (token id {id})"),
        _ => String::new(),
    };
    format!(
        "Measured by {}{neutral}: {} tokens {whose} can be taken out, in {} steps; special and \
         template tokens, and the last token (the one that predicts), never move. The random band \
         is the mean ± s.d. of {} seeded orders.",
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
fn Measured(f: Faithfulness, query_span: Option<[usize; 2]>) -> AnyView {
    view! {
        <p
            class="hint"
            data-testid="faith-measured"
            data-operator=f.operator.name()
            data-eligible=f.eligible.len()
        >
            {measured_line(&f, query_span)}
        </p>
    }
    .into_any()
}

/// One line of scores per method, and what they mean.
#[component]
fn ScoreLines(f: Faithfulness) -> AnyView {
    let pct = (FRACTIONS[QUOTED_FRACTION] * 100.0).round();
    let lines = Method::ALL
        .into_iter()
        .filter_map(|m| {
            let s = f.methods.get(m.name())?;
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

// Chart geometry (px).
const W: f64 = 440.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 30.0;

/// Maps steps and logits into the chart.
struct Axes {
    steps: usize,
    lo: f32,
    hi: f32,
}

impl Axes {
    fn x(&self, i: usize) -> f64 {
        let span = self.steps.saturating_sub(1).max(1) as f64;
        LEFT + i as f64 / span * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f32) -> f64 {
        let span = f64::from((self.hi - self.lo).max(1e-6));
        TOP + f64::from(self.hi - v) / span * (H - TOP - BOTTOM)
    }

    fn polyline(&self, values: &[f32]) -> String {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", self.x(i), self.y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The tokens step `i` takes out of `curve`, as quoted text.
fn taken_out(curve: &Curve, steps: &[usize], i: usize, tokens: &[Token]) -> String {
    let from = i.checked_sub(1).and_then(|p| steps.get(p)).copied();
    let (Some(from), Some(&to)) = (from, steps.get(i)) else {
        return "nothing yet".into();
    };
    let names: Vec<String> = curve
        .order
        .get(from..to)
        .unwrap_or_default()
        .iter()
        .map(|&p| {
            let text = tokens.get(p).map_or("?", |t| t.text.as_str());
            format!("{text:?} (position {p})")
        })
        .collect();
    match names.len() {
        0 => "nothing".into(),
        1..=4 => names.join(", "),
        n => format!("{}, … ({n} tokens)", names[..3].join(", ")),
    }
}

/// MoRF, LeRF and the random band of the method in view (else the first measured).
#[component]
fn CurveChart(
    f: Faithfulness,
    tokens: Vec<Token>,
    method: Method,
    tip: RwSignal<Option<Tip>>,
) -> AnyView {
    let name = if f.methods.contains_key(method.name()) {
        method.name().to_string()
    } else {
        match f.methods.keys().next() {
            Some(k) => k.clone(),
            None => return ().into_any(),
        }
    };
    let Some(s) = f.methods.get(&name) else {
        return ().into_any();
    };
    let label = Method::from_name(&name).map_or(name.clone(), |m| m.label().to_string());
    let band = &f.random;
    let upper: Vec<f32> = band
        .logit_mean
        .iter()
        .zip(&band.logit_sd)
        .map(|(m, d)| m + d)
        .collect();
    let lower: Vec<f32> = band
        .logit_mean
        .iter()
        .zip(&band.logit_sd)
        .map(|(m, d)| m - d)
        .collect();
    let all = s
        .morf
        .logit
        .iter()
        .chain(&s.lerf.logit)
        .chain(&upper)
        .chain(&lower);
    let (lo, hi) = all.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(*v), b.max(*v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return ().into_any();
    }
    let ax = Axes {
        steps: f.steps.len(),
        lo,
        hi,
    };
    let band_points = {
        let mut p = ax.polyline(&upper);
        let back: Vec<String> = lower
            .iter()
            .enumerate()
            .rev()
            .map(|(i, v)| format!("{:.1},{:.1}", ax.x(i), ax.y(*v)))
            .collect();
        p.push(' ');
        p.push_str(&back.join(" "));
        p
    };
    let e = f.eligible.len();
    let points = |which: &'static str, curve: &Curve| {
        curve
            .logit
            .iter()
            .zip(&curve.prob)
            .enumerate()
            .map(|(i, (&l, &p))| {
                let out = f.steps.get(i).copied().unwrap_or(0);
                let lines = vec![
                    format!(
                        "{} {label}, step {i}: {out} of {e} tokens out",
                        which.to_uppercase()
                    ),
                    format!("taken out here: {}", taken_out(curve, &f.steps, i, &tokens)),
                    format!("target logit {} · probability {}", sig3(l), sig3(p)),
                ];
                point(&ax, which, i, l, Some(p), lines, tip)
            })
            .collect_view()
    };
    let random_points = band
        .logit_mean
        .iter()
        .zip(&band.logit_sd)
        .enumerate()
        .map(|(i, (&m, &d))| {
            let out = f.steps.get(i).copied().unwrap_or(0);
            let lines = vec![
                format!("random orders, step {i}: {out} of {e} tokens out"),
                format!("target logit {} ± {} (mean ± s.d.)", sig3(m), sig3(d)),
            ];
            point(&ax, "random", i, m, None, lines, tip)
        })
        .collect_view();
    let morf_points = points("morf", &s.morf);
    let lerf_points = points("lerf", &s.lerf);
    let (y_hi, y_lo) = (ax.y(hi), ax.y(lo));
    view! {
        <figure class="faith-chart" data-testid="faith-chart" data-method=name.clone()>
            <figcaption>
                {format!("{label}: the target's logit as tokens are taken out")}
                <span class="key morf">"MoRF (most relevant first)"</span>
                <span class="key lerf">"LeRF (least relevant first)"</span>
                <span class="key random">"random orders, mean ± s.d."</span>
            </figcaption>
            <svg width=W height=H viewBox=format!("0 0 {W} {H}") role="img">
                <polygon class="band" points=band_points></polygon>
                <polyline class="random" points=ax.polyline(&band.logit_mean)></polyline>
                <polyline class="morf" points=ax.polyline(&s.morf.logit)></polyline>
                <polyline class="lerf" points=ax.polyline(&s.lerf.logit)></polyline>
                {random_points}
                {morf_points}
                {lerf_points}
                <line class="axis" x1=LEFT y1=TOP x2=LEFT y2=H - BOTTOM></line>
                <line class="axis" x1=LEFT y1=H - BOTTOM x2=W - RIGHT y2=H - BOTTOM></line>
                <text x=LEFT - 4.0 y=y_hi + 4.0 text-anchor="end">{sig3(hi)}</text>
                <text x=LEFT - 4.0 y=y_lo text-anchor="end">{sig3(lo)}</text>
                <text x=LEFT y=H - 10.0>"0"</text>
                <text x=W - RIGHT y=H - 10.0 text-anchor="end">{format!("{e} tokens out")}</text>
            </svg>
        </figure>
    }
    .into_any()
}

/// One hoverable point of a curve: step `i` at logit `logit`.
fn point(
    ax: &Axes,
    curve: &'static str,
    i: usize,
    logit: f32,
    prob: Option<f32>,
    lines: Vec<String>,
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    view! {
        <circle
            class=curve
            cx=format!("{:.1}", ax.x(i))
            cy=format!("{:.1}", ax.y(logit))
            r=if curve == "random" { "2.5" } else { "3.5" }
            data-curve=curve
            data-step=i
            data-logit=logit.to_string()
            data-prob=prob.map(|p| p.to_string())
            on:mouseenter=move |ev| {
                tip.set(Some(Tip {
                    x: f64::from(ev.client_x()),
                    y: f64::from(ev.client_y()),
                    lines: lines.clone(),
                }))
            }
            on:mouseleave=move |_| tip.set(None)
        ></circle>
    }
}
