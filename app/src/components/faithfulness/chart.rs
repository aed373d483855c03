//! The faithfulness chart: MoRF and LeRF logits of one method against the random band, each
//! point hoverable (the step, the tokens it took out, the value).

use leptos::prelude::*;
use tokenlens::{Curve, Faithfulness, Method, Token};

use crate::components::{arrow_keys, focus_point, Tip};
use crate::format::sig3;

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
pub fn CurveChart(
    f: Faithfulness,
    tokens: Vec<Token>,
    method: Method,
    tip: RwSignal<Option<Tip>>,
) -> AnyView {
    let name = if f.methods.contains_key(&method) {
        method
    } else {
        match f.methods.keys().next() {
            Some(k) => *k,
            None => return ().into_any(),
        }
    };
    let Some(s) = f.methods.get(&name) else {
        return ().into_any();
    };
    let label = name.label().to_string();
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
        <figure class="faith-chart" data-testid="faith-chart" data-method=name.name()>
            <figcaption>
                {format!("{label}: the target's logit as tokens are taken out")}
                <span class="key morf">"MoRF (most relevant first)"</span>
                <span class="key lerf">"LeRF (least relevant first)"</span>
                <span class="key random">"random orders, mean ± s.d."</span>
            </figcaption>
            <svg
                width=W
                height=H
                viewBox=format!("0 0 {W} {H}")
                role="group"
                aria-label="MoRF, LeRF and random curves: arrow keys move between points"
                on:keydown=move |ev| {
                    arrow_keys(&ev, |el, key| {
                        let next = match key {
                            "ArrowRight" | "ArrowDown" => el.next_element_sibling(),
                            "ArrowLeft" | "ArrowUp" => el.previous_element_sibling(),
                            _ => None,
                        }?;
                        (next.tag_name() == "circle").then_some(next)
                    })
                }
            >
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
            // One tab stop (MoRF's first point); arrows move along the points.
            tabindex=if curve == "morf" && i == 0 { "0" } else { "-1" }
            on:mouseenter={
                let lines = lines.clone();
                move |ev| {
                    tip.set(Some(Tip {
                        x: f64::from(ev.client_x()),
                        y: f64::from(ev.client_y()),
                        lines: lines.clone(),
                    }))
                }
            }
            on:focus=move |ev| {
                tip.set(focus_point(&ev).map(|(x, y)| Tip { x, y, lines: lines.clone() }))
            }
            on:mouseleave=move |_| tip.set(None)
            on:blur=move |_| tip.set(None)
        ></circle>
    }
}
