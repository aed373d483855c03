//! The model's prediction, the token explained (and its contrast), and the top candidates,
//! each a button that explains it instead ("vs": why the target rather than it).

use leptos::prelude::*;
use tokenlens::{Prediction, Score, SpanTarget, Target, TargetSpec};

use crate::format::{percent, sig3};
use crate::state::ExplainSpec;

/// What an explanation explained: the prediction, the target, and the answer step it is
/// about (None: the prompt's next token).
#[derive(Clone, Debug, PartialEq)]
pub struct Explained {
    /// The model's top candidates.
    pub prediction: Prediction,
    /// The token explained.
    pub target: Target,
    /// The answer token explained, if any.
    pub step: Option<usize>,
    /// The answer's token at that step, as generated (sampled or greedy).
    pub generated: Option<tokenlens::GeneratedToken>,
    /// The precision it was computed in.
    pub precision: tokenlens::Precision,
    /// Why that is not the precision asked for, when it is not.
    pub precision_note: Option<String>,
}

/// The prediction panel; `on_explain` receives the view a candidate button asks for.
#[component]
pub fn PredictionPanel(
    /// What is explained (None: nothing yet).
    #[prop(into)]
    explained: Signal<Option<Explained>>,
    /// Explain another target.
    on_explain: Callback<ExplainSpec>,
) -> impl IntoView {
    let body = move || {
        explained.get().map(|Explained { prediction: p, target: t, step, generated, precision, precision_note }| {
            let target_id = t.token.id;
            let top = p
                .top
                .iter()
                .map(|c| {
                    let id = c.id;
                    let chosen = c.id == target_id;
                    let contrasted = t.contrast.as_ref().is_some_and(|x| x.id == id);
                    let pick = move |contrast: Option<TargetSpec>| {
                        let target = match contrast {
                            Some(_) => TargetSpec::Id(target_id),
                            None => TargetSpec::Id(id),
                        };
                        on_explain.run(ExplainSpec {
                            target,
                            contrast,
                            step,
                            score: t.score,
                            ..ExplainSpec::default()
                        })
                    };
                    view! {
                        <li>
                            <button
                                type="button"
                                class="candidate"
                                class:chosen=chosen
                                title="explain this token instead"
                                data-token-id=id.to_string()
                                on:click=move |_| pick(None)
                            >
                                <span class="cand-text">{format!("{:?}", c.text)}</span>
                                <span class="cand-prob">{percent(c.prob)}</span>
                            </button>
                            <button
                                type="button"
                                class="versus"
                                class:chosen=contrasted
                                disabled=chosen
                                title="why the target rather than this token"
                                data-token-id=id.to_string()
                                on:click=move |_| pick(Some(TargetSpec::Id(id)))
                            >
                                "vs"
                            </button>
                        </li>
                    }
                })
                .collect_view();
            let heading = heading(&p, step, generated.as_ref());
            // A target text of several tokens: only its first is explained.
            let split = (t.pieces.len() > 1).then(|| {
                let pieces: Vec<String> = t.pieces.iter().map(|x| format!("{x:?}")).collect();
                view! {
                    <p class="warn" data-testid="target-split" data-pieces=t.pieces.len()>
                        {format!(
                            "The target text is {} tokens ({}): explaining the first of them, {:?}. To explain another token, pick one of the candidates below or type a single token.",
                            t.pieces.len(),
                            pieces.join(" + "),
                            t.token.text,
                        )}
                    </p>
                }
            });
            let contrast = t.contrast.clone().map(|c| {
                view! {
                    <p data-testid="contrast">
                        "rather than " <strong>{format!("{:?}", c.text)}</strong>
                        {format!(
                            " (id {}, p = {:.3}): scores explain logit({:?}) − logit({:?}) = {}",
                            c.id,
                            c.prob,
                            t.token.text,
                            c.text,
                            sig3(t.explained_value()),
                        )}
                    </p>
                }
            });
            if let Some(span) = t.span.clone() {
                return view! {
                    <div class="prediction" data-testid="prediction">
                        <SpanLine span=span/>
                        <p><super::PrecisionBadge precision=precision note=precision_note.clone()/></p>
                    </div>
                }
                .into_any();
            }
            // The score switch: the same target, its logit or its log-probability.
            let rescore = {
                let (id, contrast) = (target_id, t.contrast.as_ref().map(|c| c.id));
                move |score: Score| {
                    on_explain.run(ExplainSpec {
                        target: TargetSpec::Id(id),
                        contrast: contrast.map(TargetSpec::Id),
                        step,
                        score,
                        ..ExplainSpec::default()
                    })
                }
            };
            let score_switch = Score::ALL
                .into_iter()
                .map(|s| {
                    let label = match s {
                        Score::Logit => " logit",
                        Score::LogProb => " log-probability",
                    };
                    view! {
                        <label>
                            <input
                                type="radio"
                                name="score"
                                value=s.name()
                                checked=t.score == s
                                on:change=move |_| rescore(s)
                            />
                            {label}
                        </label>
                    }
                })
                .collect_view();
            let log_prob = t.log_prob.filter(|_| t.contrast.is_none()).map(|lp| {
                view! {
                    <p class="hint" data-testid="score-note" data-log-prob=lp.to_string()>
                        {format!(
                            "The scores explain its log-probability, log p = {} (its logit less the log-sum-exp over the vocabulary): comparable with a span's. The backward pass starts from its gradient, onehot − softmax; the relevance sums to {} (the logit less its softmax-weighted mean).",
                            sig3(lp),
                            sig3(t.explained_value()),
                        )}
                    </p>
                }
            });
            view! {
                <div class="prediction" data-testid="prediction">
                    {heading}
                    <p data-testid="target">
                        "Explaining: " <strong>{format!("{:?}", t.token.text)}</strong>
                        {format!(
                            " (id {}, rank {}, p = {:.3}, logit {}) ",
                            t.token.id,
                            t.rank,
                            t.token.prob,
                            sig3(t.token.logit),
                        )}
                        <super::PrecisionBadge precision=precision note=precision_note.clone()/>
                    </p>
                    <p class="score-switch" role="radiogroup" aria-label="what is explained">
                        "Explain its" {score_switch}
                    </p>
                    {log_prob}
                    {contrast}
                    {split}
                    <ol class="top-k">{top}</ol>
                </div>
            }
            .into_any()
        })
    };
    body.into_any()
}

/// The first line: the model's next token; for an answer step, the token the answer has
/// there (sampled or greedy, with its probability) and, when it differs, the most likely one.
fn heading(
    p: &Prediction,
    step: Option<usize>,
    generated: Option<&tokenlens::GeneratedToken>,
) -> AnyView {
    let best = format!("{:?}", p.best.text);
    let best_detail = format!(" (p = {:.3}, logit {})", p.best.prob, sig3(p.best.logit));
    match (step, generated) {
        (Some(k), Some(g)) => {
            let same = g.token.id == p.best.id;
            let most_likely = (!same).then(|| {
                view! {
                    "; the most likely token there was " <strong>{best.clone()}</strong>
                    {format!(" (p = {:.3})", p.best.prob)}
                }
            });
            let note = if same {
                " — also the most likely token"
            } else {
                ""
            };
            view! {
                <p data-testid="heading" data-generated=g.token.id data-best=p.best.id>
                    {format!("Answer token {}: ", k + 1)} <strong>{format!("{:?}", g.token.shown())}</strong>
                    {format!(" (p = {:.3} in the answer){note}", g.prob)}
                    {most_likely}
                </p>
            }
            .into_any()
        }
        _ => view! {
            <p data-testid="heading" data-best=p.best.id>
                "Model's next token: " <strong>{best}</strong> {best_detail}
            </p>
        }
        .into_any(),
    }
}

/// An explained span: its tokens with their log-probabilities, and the total.
#[component]
fn SpanLine(span: SpanTarget) -> impl IntoView {
    let text: String = span.tokens.iter().map(|k| k.text.as_str()).collect();
    let parts = span
        .tokens
        .iter()
        .map(|k| {
            view! {
                <li data-token-id=k.id data-log-prob=k.log_prob.to_string()>
                    {format!("{:?} {}", k.text, sig3(k.log_prob))}
                </li>
            }
        })
        .collect_view();
    view! {
        <p
            data-testid="span-target"
            data-start=span.span.start
            data-end=span.span.end
            data-log-prob=span.log_prob.to_string()
        >
            "Explaining the span " <strong>{format!("{text:?}")}</strong>
            {format!(
                " (answer tokens {} to {}): Σ log p = {}, the sum of each token's log-probability given everything before it. Relevance goes to the prompt, the answer before the span and the span's own tokens that later ones read.",
                span.span.start + 1,
                span.span.end,
                sig3(span.log_prob),
            )}
        </p>
        <ol class="span-tokens" data-testid="span-tokens">{parts}</ol>
    }
}
