//! The explain page: prompt in, streamed attributions out.

use leptos::prelude::*;
use leptos::server_fn::codec::{Json, StreamingText, TextStream};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokenlens::{
    ExplainRequest, Method, MethodResult, Prediction, StreamEvent, Target, TargetSpec, Token,
};

use crate::components::colorbar::Colorbar;
use crate::components::token_view::TokenView;
use crate::components::trace_grid::TraceGrid;
use crate::components::{data_attr, Tip};
use crate::format::{max_abs, ranks, sig3};

/// A model the server offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its name (what `explain` takes).
    pub name: String,
    /// Decoder layers.
    pub n_layers: usize,
    /// Whether it has a chat template.
    pub chat_template: bool,
}

/// The models this server has loaded, the default first.
#[server(endpoint = "models")]
pub async fn list_models() -> Result<Vec<ModelInfo>, ServerFnError> {
    let state = use_context::<crate::ssr::ServerState>()
        .ok_or_else(|| ServerFnError::new("server state is missing"))?;
    Ok(state
        .models
        .iter()
        .map(|m| ModelInfo {
            name: m.name.clone(),
            n_layers: m.engine.n_layers(),
            chat_template: m.engine.has_chat_template(),
        })
        .collect())
}

/// Explains a prompt, streaming newline-delimited JSON [`StreamEvent`]s: tokens,
/// prediction, one result per method, done (or an error).
#[server(input = Json, output = StreamingText, endpoint = "explain")]
pub async fn explain(model: String, request: ExplainRequest) -> Result<TextStream, ServerFnError> {
    use futures::StreamExt;
    let state = use_context::<crate::ssr::ServerState>()
        .ok_or_else(|| ServerFnError::new("server state is missing"))?;
    let rx = state.submit(&model, request).map_err(ServerFnError::new)?;
    let events = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    )
    .map(|ev| {
        serde_json::to_string(&ev)
            .map(|s| s + "\n")
            .map_err(|e| ServerFnError::new(e.to_string()))
    });
    Ok(TextStream::new(events))
}

/// What has arrived of one explanation so far.
#[derive(Clone, Debug, Default, PartialEq)]
struct Partial {
    tokens: Vec<Token>,
    query_span: Option<[usize; 2]>,
    n_layers: usize,
    prediction: Option<(Prediction, Target)>,
    methods: BTreeMap<Method, MethodResult>,
    done: bool,
}

fn stage_text(ev: &StreamEvent) -> Option<String> {
    match ev {
        StreamEvent::Stage { stage, method } => Some(match method {
            Some(m) => format!("{stage:?} pass: {}…", m.name()).to_lowercase(),
            None => format!("{stage:?}…").to_lowercase(),
        }),
        _ => None,
    }
}

fn method_label(m: Method) -> &'static str {
    match m {
        Method::Saliency => "Saliency",
        Method::InputXGradient => "Input × gradient",
        Method::Attnlrp => "AttnLRP",
        Method::CpLrp => "CP-LRP",
    }
}

/// The page.
#[component]
pub fn ExplainPage() -> impl IntoView {
    let models = OnceResource::new(list_models());
    let prompt = RwSignal::new("What is the capital of France?".to_string());
    let model = RwSignal::new(String::new());
    let chat = RwSignal::new(true);
    let target_text = RwSignal::new(String::new());
    let view_method = RwSignal::new(Method::Saliency);
    let query_only = RwSignal::new(false);
    let running = RwSignal::new(false);
    let stage = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let result = RwSignal::new(None::<Partial>);
    let run_id = RwSignal::new(0u64);
    let hovered = RwSignal::new(None::<usize>);
    let tip = RwSignal::new(None::<Tip>);

    let run = move |target: TargetSpec| {
        let id = run_id.get_untracked() + 1;
        run_id.set(id);
        running.set(true);
        error.set(None);
        result.set(None);
        tip.set(None);
        stage.set(Some("sending…".into()));
        let current = move || run_id.get_untracked() == id;
        let fail = move |msg: String| {
            if current() {
                error.set(Some(msg));
                running.set(false);
                stage.set(None);
            }
        };
        let request = ExplainRequest {
            prompt: prompt.get_untracked(),
            chat_template: chat.get_untracked(),
            target,
            // Gradient methods first: they share one backward pass and color the page first.
            methods: vec![
                Method::Saliency,
                Method::InputXGradient,
                Method::Attnlrp,
                Method::CpLrp,
            ],
            top_k: 10,
            seed_with_logit: false,
        };
        let model_name = model.get_untracked();
        leptos::task::spawn_local(async move {
            use futures::StreamExt;
            let stream = match explain(model_name, request).await {
                Ok(s) => s,
                Err(e) => return fail(e.to_string()),
            };
            let mut stream = stream.into_inner();
            let mut buf = String::new();
            while let Some(chunk) = stream.next().await {
                if !current() {
                    return; // cancelled or superseded; dropping the stream ends the request
                }
                match chunk {
                    Ok(text) => buf.push_str(&text),
                    Err(e) => return fail(e.to_string()),
                }
                // Chunks may hold several lines or part of one.
                while let Some(pos) = buf.find('\n') {
                    let line: String = buf.drain(..=pos).collect();
                    let ev: StreamEvent = match serde_json::from_str(line.trim_end()) {
                        Ok(ev) => ev,
                        Err(e) => return fail(format!("malformed event from the server: {e}")),
                    };
                    if let Some(s) = stage_text(&ev) {
                        stage.set(Some(s));
                    }
                    match ev {
                        StreamEvent::Tokens {
                            tokens,
                            query_span,
                            n_layers,
                            ..
                        } => result.set(Some(Partial {
                            tokens,
                            query_span,
                            n_layers,
                            ..Partial::default()
                        })),
                        StreamEvent::Prediction { prediction, target } => result.update(|r| {
                            if let Some(r) = r {
                                r.prediction = Some((prediction, target))
                            }
                        }),
                        StreamEvent::Method { method, result: m } => result.update(|r| {
                            if let Some(r) = r {
                                r.methods.insert(method, m);
                            }
                        }),
                        StreamEvent::Done => {
                            result.update(|r| {
                                if let Some(r) = r {
                                    r.done = true
                                }
                            });
                            running.set(false);
                            stage.set(Some("done".into()));
                            return;
                        }
                        StreamEvent::Error { message } => return fail(message),
                        StreamEvent::Stage { .. } => {}
                    }
                }
            }
            fail("the connection closed before the result was complete".into());
        });
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let t = target_text.get_untracked();
        run(if t.is_empty() {
            TargetSpec::Argmax
        } else {
            TargetSpec::Text(t)
        });
    };
    let cancel = move |_| {
        run_id.update(|i| *i += 1);
        running.set(false);
        stage.set(Some("cancelled".into()));
    };

    let range = move |r: &Partial| match (query_only.get(), r.query_span) {
        (true, Some([a, b])) => (a, b),
        _ => (0, r.tokens.len()),
    };

    let model_options = move || {
        models.get().map(|res| match res {
            Ok(list) => list
                .into_iter()
                .map(|m| {
                    let label = format!("{} ({} layers)", m.name, m.n_layers);
                    view! { <option value=m.name.clone()>{label}</option> }
                })
                .collect_view()
                .into_any(),
            Err(e) => {
                view! { <option value="">{format!("models unavailable: {e}")}</option> }.into_any()
            }
        })
    };
    // The picker starts on the server's first (default) model.
    Effect::new(move || {
        if let Some(Ok(list)) = models.get() {
            if model.get_untracked().is_empty() {
                if let Some(first) = list.first() {
                    model.set(first.name.clone());
                }
            }
        }
    });

    let method_toggles = move || {
        Method::ALL
            .into_iter()
            .map(|m| {
                let arrived =
                    move || result.with(|r| r.as_ref().is_some_and(|r| r.methods.contains_key(&m)));
                view! {
                    <label class="method" class:pending=move || !arrived()>
                        <input
                            type="radio"
                            name="method"
                            value=m.name()
                            prop:checked=move || view_method.get() == m
                            on:change=move |_| view_method.set(m)
                        />
                        {method_label(m)}
                    </label>
                }
            })
            .collect_view()
    };

    let prediction_view = move || {
        result.with(|r| {
            r.as_ref().and_then(|r| r.prediction.clone()).map(|(p, t)| {
                let top = p
                    .top
                    .iter()
                    .map(|c| {
                        let id = c.id;
                        let chosen = c.id == t.token.id;
                        view! {
                            <li>
                                <button
                                    class="candidate"
                                    class:chosen=chosen
                                    title="explain this token instead"
                                    data-token-id=id.to_string()
                                    on:click=move |_| run(TargetSpec::Id(id))
                                >
                                    <span class="cand-text">{format!("{:?}", c.text)}</span>
                                    <span class="cand-prob">{format!("{:.1}%", c.prob * 100.0)}</span>
                                </button>
                            </li>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="prediction" data-testid="prediction">
                        <p>
                            "Next token: " <strong>{format!("{:?}", p.best.text)}</strong>
                            {format!(" (p = {:.3}, logit {})", p.best.prob, sig3(p.best.logit))}
                        </p>
                        <p data-testid="target">
                            "Explaining: " <strong>{format!("{:?}", t.token.text)}</strong>
                            {format!(
                                " (id {}, rank {}, p = {:.3}, logit {})",
                                t.token.id,
                                t.rank,
                                t.token.prob,
                                sig3(t.token.logit),
                            )}
                        </p>
                        <ol class="top-k">{top}</ol>
                    </div>
                }
            })
        })
    };

    let tokens_view = move || {
        result.with(|r| {
            r.as_ref().map(|r| {
                let m = view_method.get();
                let res = r.methods.get(&m);
                let range = range(r);
                let scores = res.map(|x| x.scores.clone());
                let legend = scores.as_ref().map(|s| {
                    view! {
                        <Colorbar
                            signed=m.is_signed()
                            max=max_abs(&s[range.0..range.1])
                            label=format!("{} score", method_label(m))
                        />
                    }
                });
                let conservation = res.and_then(|x| x.conservation.clone()).map(|c| {
                    view! {
                        <p class="conservation">
                            {format!(
                                "Conservation: inputs hold {:.1}% of the logit, the last layer {:.1}%.",
                                c.input * 100.0,
                                c.last_layer * 100.0,
                            )}
                        </p>
                    }
                });
                let waiting = res
                    .is_none()
                    .then(|| view! { <p class="waiting">{format!("computing {}…", method_label(m))}</p> });
                view! {
                    {legend}
                    {waiting}
                    <TokenView
                        tokens=r.tokens.clone()
                        scores=scores
                        signed=m.is_signed()
                        range=range
                        hovered=hovered
                    />
                    {conservation}
                }
            })
        })
    };

    let grid_view = move || {
        result.with(|r| {
            r.as_ref().and_then(|r| {
                let m = view_method.get();
                let res = r.methods.get(&m)?;
                Some(view! {
                    <h2>{format!("Layer × token relevance ({}, {} layers)", method_label(m), r.n_layers)}</h2>
                    <TraceGrid
                        tokens=r.tokens.clone()
                        trace=res.trace.clone()
                        normalized=res.trace_normalized.clone()
                        range=range(r)
                        hovered=hovered
                        tip=tip
                    />
                })
            })
        })
    };

    // Token hover, delegated: one listener for all spans.
    let token_hover = move |ev: leptos::ev::MouseEvent| {
        let i: Option<usize> = data_attr(&ev, "data-token-index");
        hovered.set(i);
        tip.set(i.and_then(|i| {
            result.with_untracked(|r| {
                let r = r.as_ref()?;
                let m = view_method.get_untracked();
                let tok = r.tokens.get(i)?;
                let mut lines = vec![format!("{:?} (id {}, #{i})", tok.text, tok.id)];
                if let Some(res) = r.methods.get(&m) {
                    let rank = ranks(&res.scores)[i];
                    lines.push(format!(
                        "{}: {} (rank {rank} of {})",
                        method_label(m),
                        sig3(res.scores[i]),
                        res.scores.len()
                    ));
                }
                Some(Tip {
                    x: ev.client_x() as f64,
                    y: ev.client_y() as f64,
                    lines,
                })
            })
        }));
    };
    let token_leave = move |_| {
        hovered.set(None);
        tip.set(None);
    };

    view! {
        <main>
            <header>
                <h1>"TokenLens"</h1>
                <p class="tagline">"Why did the model say that?"</p>
            </header>
            <form class="controls" on:submit=submit>
                <textarea
                    name="prompt"
                    rows="3"
                    placeholder="Type a prompt"
                    prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev))
                ></textarea>
                <div class="row">
                    <label>
                        "Model "
                        <select
                            name="model"
                            prop:value=move || model.get()
                            on:change=move |ev| model.set(event_target_value(&ev))
                        >
                            <Suspense fallback=|| view! { <option>"loading…"</option> }>
                                {model_options}
                            </Suspense>
                        </select>
                    </label>
                    <label>
                        <input
                            type="checkbox"
                            name="chat"
                            prop:checked=move || chat.get()
                            on:change=move |ev| chat.set(event_target_checked(&ev))
                        />
                        " chat template"
                    </label>
                    <label>
                        "Target "
                        <input
                            type="text"
                            name="target"
                            placeholder="most likely token"
                            prop:value=move || target_text.get()
                            on:input=move |ev| target_text.set(event_target_value(&ev))
                        />
                    </label>
                    <button type="submit" name="submit" disabled=move || running.get()>
                        "Explain"
                    </button>
                    <button type="button" name="cancel" disabled=move || !running.get() on:click=cancel>
                        "Cancel"
                    </button>
                </div>
            </form>
            <div class="status" data-testid="status" class:running=move || running.get()>
                {move || stage.get()}
            </div>
            {move || error.get().map(|e| view! { <div class="error" role="alert" data-testid="error">{e}</div> })}
            {prediction_view}
            <div class="view-controls">
                <span class="label">"Method: "</span>
                {method_toggles}
                <label class="query-only">
                    <input
                        type="checkbox"
                        name="query_only"
                        prop:checked=move || query_only.get()
                        on:change=move |ev| query_only.set(event_target_checked(&ev))
                    />
                    " query only"
                </label>
            </div>
            <section class="token-section" on:mouseover=token_hover on:mouseleave=token_leave>
                {tokens_view}
            </section>
            <section class="grid-section">{grid_view}</section>
            {move || {
                tip.get().map(|t| {
                    let style = format!("left:{}px;top:{}px", t.x + 14.0, t.y + 14.0);
                    let lines = t.lines.into_iter().map(|l| view! { <div>{l}</div> }).collect_view();
                    view! { <div class="tooltip" data-testid="tooltip" style=style>{lines}</div> }
                })
            }}
        </main>
    }
}
