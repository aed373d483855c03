//! The prompt's units (tokens, words or sentences) inline, each colored by its score.

use leptos::prelude::*;
use tokenlens::colormap::ColorScale;
use tokenlens::Token;

use super::colorbar::Colorbar;
use super::{arrow_keys, cell_style, data_attr, focus_point, Shown, Tip};
use crate::display::{Display, Units};
use crate::format::{ranks, sig3};
use crate::state::Partial;
use tokenlens::granularity::{Aggregate, Granularity};
use tokenlens::Method;

/// The tokens section: the colorbar, the colored units of the method in view ("computing …"
/// until its scores arrive), its conservation line, and hover tooltips.
#[component]
pub fn TokensPanel(
    /// What is in view.
    shown: Shown,
    /// The hovered unit (shared between the token view and the grid).
    hovered: RwSignal<Option<usize>>,
    /// The tooltip.
    tip: RwSignal<Option<Tip>>,
) -> impl IntoView {
    let body = move || {
        shown.read(|r, u, m, d| {
            let res = r.methods.get(&m);
            let scores = res.map(|x| u.scores(&x.scores, d.aggregate));
            let scale = u.scale(&d, m.is_signed(), scores.as_deref().unwrap_or_default());
            let legend = scores.is_some().then(|| {
                view! { <Colorbar scale=scale label=format!("{} per {}", m.label(), d.granularity.name())/> }
            });
            let conservation = res.and_then(|x| x.conservation.clone()).map(|c| {
                view! {
                    <p class="conservation" data-testid="conservation">
                        {conservation_line(&c)}
                    </p>
                }
            });
            // Missing scores are coming while a run goes; after a cancel or an error, say so
            // rather than leave "computing" standing.
            let running = shown.running.get();
            let waiting = res.is_none().then(|| {
                let text = if running {
                    format!("computing {}…", m.label())
                } else {
                    format!("{}: not computed (the run stopped first); press Explain", m.label())
                };
                view! { <p class="waiting" data-testid="waiting">{text}</p> }
            });
            Some(view! {
                {legend}
                {waiting}
                <TokenView
                    units=u.labels(&r.tokens)
                    scores=scores
                    scale=scale
                    range=u.range
                    marks=d.sign_marks && scale.signed
                    hovered=hovered
                />
                {conservation}
            })
        })
    };
    // Hover and keyboard focus, delegated: one listener for all spans; both show the tooltip.
    let show = move |i: Option<usize>, at: Option<(f64, f64)>| {
        hovered.set(i);
        tip.set(i.zip(at).and_then(|(i, (x, y))| {
            let lines = untrack(|| shown.read(|r, u, m, d| tip_lines(r, &u, m, d, i)))?;
            Some(Tip { x, y, lines })
        }));
    };
    let over = move |ev: leptos::ev::MouseEvent| {
        let at = (f64::from(ev.client_x()), f64::from(ev.client_y()));
        show(data_attr(&ev, "data-token-index"), Some(at));
    };
    let focus = move |ev: leptos::ev::FocusEvent| {
        show(data_attr(&ev, "data-token-index"), focus_point(&ev));
    };
    let leave = move |_| show(None, None);
    // Arrows move along the tokens; Home and End go to the ends.
    let keys = move |ev: leptos::ev::KeyboardEvent| {
        arrow_keys(&ev, |el, key| match key {
            "ArrowRight" | "ArrowDown" => el.next_element_sibling(),
            "ArrowLeft" | "ArrowUp" => el.previous_element_sibling(),
            "Home" => el.parent_element()?.first_element_child(),
            "End" => el.parent_element()?.last_element_child(),
            _ => None,
        })
    };
    view! {
        <section
            class="token-section"
            on:mouseover=over
            on:mouseleave=leave
            on:focusin=focus
            on:focusout=move |_| show(None, None)
            on:keydown=keys
        >
            {body}
        </section>
    }
    .into_any()
}

/// The conservation (or, for a path method, completeness) line and what it means.
fn conservation_line(c: &tokenlens::Conservation) -> impl IntoView {
    let (input, last) = (c.input * 100.0, c.last_layer * 100.0);
    let (line, hint) = match c.path {
        Some(p) => (
            format!(
                "Completeness: inputs hold {input:.1}% of the target's change along the path ({:.3} at the zero baseline → {:.3}), the last layer {last:.1}%.",
                p.baseline, p.input
            ),
            completeness_hint(c.input),
        ),
        None => (
            format!("Conservation: inputs hold {input:.1}% of the explained value, the last layer {last:.1}%."),
            conservation_hint(c.input),
        ),
    };
    view! { {line} <span class="hint">{hint}</span> }
}

/// What a path method's completeness ratio means, in plain words.
fn completeness_hint(input: f32) -> String {
    if (0.95..=1.05).contains(&input) {
        " The token scores add up to the whole change: the path's integral is accurate.".into()
    } else {
        format!(" The token scores add up to {:.0}% of the change: the rest is the integration error of the path's points (the target bends sharply along it). Compare tokens with each other rather than with the change.", input * 100.0)
    }
}

/// What an input conservation ratio means, in plain words.
fn conservation_hint(input: f32) -> String {
    let pct = (input * 100.0).round();
    let lost = 100.0 - pct;
    if (0.9..=1.1).contains(&input) {
        " The token scores add up to about the whole explained value: little relevance was lost on the way down.".into()
    } else if input < 0.9 {
        format!(" The token scores add up to {pct}% of it: the other {lost}% is absorbed inside the layers (the rules conserve relevance only approximately, e.g. at the softmax and at stabilizers). Compare tokens with each other rather than with the logit.")
    } else {
        format!(" The token scores add up to {pct}% of it: more than the logit, so positive and negative contributions partly cancel. Compare tokens with each other rather than with the logit.")
    }
}

/// What the tooltip of unit `i` says: its text and ids, and the score of method `m`.
fn tip_lines(r: &Partial, u: &Units, m: Method, d: Display, i: usize) -> Option<Vec<String>> {
    let g = u.groups.get(i)?;
    let first = r.tokens.get(g.start)?;
    let mut lines = if g.end - g.start == 1 {
        vec![format!("{:?} (id {}, #{})", first.text, first.id, g.start)]
    } else {
        vec![format!("{:?} (tokens #{}–#{})", g.text, g.start, g.end - 1)]
    };
    if first.generated {
        lines.push("generated".into());
    }
    // A character over several byte-level tokens: their bytes.
    let pieces: Vec<&str> = r
        .tokens
        .get(g.start..g.end)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.piece.as_deref())
        .collect();
    if !pieces.is_empty() {
        lines.push(format!("bytes: {}", pieces.join(" ")));
    }
    if let Some(res) = r.methods.get(&m) {
        let scores = u.scores(&res.scores, d.aggregate);
        let how = match (d.granularity, d.aggregate) {
            (Granularity::Token, _) => "",
            (_, Aggregate::Sum) => " (sum)",
            (_, Aggregate::MaxAbs) => " (max |score|)",
        };
        // Ranked among the units shown.
        let (a, b) = u.range;
        let shown = scores.get(a..b).unwrap_or_default();
        let rank = i.checked_sub(a).and_then(|k| ranks(shown).get(k).copied());
        if let (Some(score), Some(rank)) = (scores.get(i), rank) {
            lines.push(format!(
                "{}{how}: {} (rank {rank} of {})",
                m.label(),
                sig3(*score),
                shown.len()
            ));
        }
    }
    Some(lines)
}

/// Units `range` of `units`, colored by `scores` through `scale`. Each span carries
/// `data-token-index` (the unit's index: the token's at token granularity) and `data-score`
/// (the raw or aggregated score, as in the CLI's JSON). Hover handling is delegated to the
/// parent through `hovered`.
#[component]
pub fn TokenView(
    /// One pseudo-token per unit.
    units: Vec<Token>,
    /// One score per unit, or None while it is being computed.
    scores: Option<Vec<f32>>,
    /// How scores become colors.
    scale: ColorScale,
    /// The unit range shown.
    range: (usize, usize),
    /// Mark each score's sign with + or − (CSS classes `pos` and `neg`).
    marks: bool,
    /// The hovered unit index.
    hovered: RwSignal<Option<usize>>,
) -> impl IntoView {
    let spans = units
        .iter()
        .enumerate()
        .skip(range.0)
        .take(range.1.saturating_sub(range.0))
        .map(|(i, tok)| {
            let score = scores.as_ref().and_then(|s| s.get(i).copied());
            let style = score
                .map(|s| cell_style(scale.color(s)))
                .unwrap_or_default();
            let class = if tok.special { "tok special" } else { "tok" };
            // A visible mark before each line break, drawn by CSS so that the span's text
            // stays the token's text. Empty parts are left out: server rendering writes an
            // empty text node as a space, which would widen every ↵ on a permalink page.
            let text = tok
                .text
                .split('\n')
                .enumerate()
                .map(|(j, part)| {
                    let mark = (j > 0).then(|| view! { <span class="nl-mark"></span>"\n" });
                    let part = (!part.is_empty()).then(|| part.to_string());
                    view! { {mark}{part} }
                })
                .collect_view();
            view! {
                <span
                    class=class
                    class:gen=tok.generated
                    class:pos=marks && score.is_some_and(|s| s > 0.0)
                    class:neg=marks && score.is_some_and(|s| s < 0.0)
                    class:hovered=move || hovered.get() == Some(i)
                    data-token-index=i.to_string()
                    data-score=score.map(|s| s.to_string())
                    style=style
                    // One tab stop for all tokens; arrows move between them.
                    tabindex=if i == range.0 { "0" } else { "-1" }
                >
                    {text}
                </span>
            }
        })
        .collect_view();
    view! {
        <div class="tokens" data-testid="tokens" role="group" aria-label="the tokens, colored by score: arrow keys move, each says its score">
            {spans}
        </div>
    }
}
