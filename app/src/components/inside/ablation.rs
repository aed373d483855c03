//! The ablation check: the target's log-probability as the method's most relevant heads
//! (neurons) are zeroed one after another, against the band of random ones from the same
//! layers. A relevance no better than random keeps its curve inside the band.

use leptos::prelude::*;
use tokenlens::{Ablation, AblationCurve};

use super::super::Switch;
use crate::format::sig3;

// Chart geometry (px).
const W: f64 = 300.0;
const H: f64 = 160.0;
const LEFT: f64 = 40.0;
const PAD: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// One kind's chart: the top curve, the random draws' min-max band and mean.
#[component]
fn Chart(name: &'static str, curve: AblationCurve) -> impl IntoView {
    let k = curve.top.len();
    let at = |i: usize| -> Vec<f32> {
        curve
            .random
            .iter()
            .filter_map(|d| d.log_probs.get(i).copied())
            .collect()
    };
    let lo: Vec<f32> = (0..k)
        .map(|i| at(i).into_iter().fold(f32::INFINITY, f32::min))
        .collect();
    let hi: Vec<f32> = (0..k)
        .map(|i| at(i).into_iter().fold(f32::NEG_INFINITY, f32::max))
        .collect();
    let all = curve
        .top
        .iter()
        .chain(&lo)
        .chain(&hi)
        .copied()
        .filter(|v| v.is_finite());
    let (min, max) = all.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let span = f64::from((max - min).max(1e-6));
    let x =
        move |i: usize| LEFT + i as f64 / (k.saturating_sub(1).max(1)) as f64 * (W - LEFT - PAD);
    let y = move |v: f32| PAD + f64::from(max - v) / span * (H - PAD - BOTTOM);
    let line = |v: &[f32]| -> String {
        v.iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let band = {
        let upper: Vec<String> = (0..k)
            .map(|i| format!("{:.1},{:.1}", x(i), y(hi[i])))
            .collect();
        let lower: Vec<String> = (0..k)
            .rev()
            .map(|i| format!("{:.1},{:.1}", x(i), y(lo[i])))
            .collect();
        [upper, lower].concat().join(" ")
    };
    let points = curve
        .top
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let unit = i
                .checked_sub(1)
                .and_then(|j| curve.units.get(j))
                .map(|u| u.0.to_string());
            let title = match &unit {
                Some(u) => format!("{i} zeroed (the last {u}): log p {}", sig3(v)),
                None => format!("the model as it is: log p {}", sig3(v)),
            };
            view! {
                <circle class="top" cx=format!("{:.1}", x(i)) cy=format!("{:.1}", y(v)) r="3"
                    data-k=i.to_string() data-log-prob=v.to_string()><title>{title}</title></circle>
            }
        })
        .collect_view();
    let units: Vec<String> = curve.units.iter().map(|u| u.0.to_string()).collect();
    let last = |v: &[f32]| v.last().map_or("–".to_string(), |x| sig3(*x));
    view! {
        <figure class="ablation-chart" data-testid=format!("ablation-{name}")>
            <svg width=W.to_string() height=H.to_string()>
                <polygon class="band" points=band/>
                <polyline class="top" points=line(&curve.top)/>
                {points}
                <text class="axis" x="0" y=format!("{:.1}", y(max) + 4.0)>{sig3(max)}</text>
                <text class="axis" x="0" y=format!("{:.1}", y(min))>{sig3(min)}</text>
                <text class="axis" x=LEFT.to_string() y=(H - 6.0).to_string()>{format!("{name} zeroed: 0 … {}", k - 1)}</text>
            </svg>
            <figcaption>
                {format!(
                    "Top {name} ({}) zeroed: log p {} → {}; {} random of the same layers: {} to {}.",
                    units.join(", "),
                    curve.top.first().map_or("–".into(), |v| sig3(*v)),
                    last(&curve.top),
                    curve.random.len(),
                    last(&lo),
                    last(&hi),
                )}
            </figcaption>
        </figure>
    }
}

/// The panel: its switch, then a chart per kind once computed.
#[component]
pub fn AblationPanel(
    ablation: Option<Ablation>,
    asked: Signal<bool>,
    on_toggle: Callback<bool>,
) -> impl IntoView {
    let charts = ablation.map(|a| {
        view! {
            {a.heads.map(|c| view! { <Chart name="heads" curve=c/> })}
            {a.neurons.map(|c| view! { <Chart name="neurons" curve=c/> })}
        }
    });
    view! {
        <div class="ablation">
            <h3>"Ablation check"</h3>
            <Switch
                name="ablation"
                label="zero the top 8 against random ones"
                checked=asked
                on_toggle=on_toggle
                title="Zero the method's 8 most relevant heads (and neurons) one after another and follow the target's log-probability, next to 4 draws of random units of the same layers (a forward pass per point; switching it recomputes)."
            />
            <div class="ablation-charts">{charts}</div>
        </div>
    }
    .into_any()
}
