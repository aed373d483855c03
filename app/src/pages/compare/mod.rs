//! `/compare`: two explanations one above the other (A and B), aligned by characters, with
//! their difference: two methods, two models on the same text, a prompt and an edit of it,
//! or the model under two steering settings (before and after an edit). The URL holds both views; Share stores both with their sealed results as one
//! permalink, which opens here.

mod run;

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;
use tokenlens::Method;

use super::api::{list_models, share};
use crate::compare::{align, Segment, Side};
use crate::components::compare_rows::CompareRows;
use crate::components::steer_input::SteerInput;
use crate::state::{pin_steered, retarget, side_context, CompareView, Context, Partial, Snapshot};
use run::CompareRun;

/// The side of a stored comparison, replayed.
fn stored(s: &Snapshot) -> Option<(Context, Partial)> {
    let p = s.replay().ok()?.explanation?;
    Some((side_context(&s.view), p))
}

/// A side's scores of `method` over the text it explains: the user's text with a chat
/// template, the whole text without.
fn side(r: &Partial, method: Method) -> Option<Side> {
    let scores = &r.methods.get(&method)?.scores;
    let range = match r.query_span {
        Some([a, b]) if b > a => (r.tokens.get(a)?.start, r.tokens.get(b - 1)?.end),
        _ => (0, r.text.len()),
    };
    let tokens: Vec<(usize, usize, f32)> = r
        .tokens
        .iter()
        .zip(scores)
        .map(|(t, &v)| (t.start, t.end, v))
        .collect();
    Some(Side::new(&r.text, range, &tokens))
}

/// What a row is: model, its edits, method and the token explained.
fn label(v: &crate::state::ViewState, r: &Partial, default_model: &str) -> String {
    let model = if v.model.is_empty() {
        default_model
    } else {
        &v.model
    };
    let target = r
        .target
        .as_ref()
        .map(|t| format!(" · explaining {:?}", t.token.text))
        .unwrap_or_default();
    let steer = match v.steer.is_empty() {
        true => String::new(),
        false => format!(" · steered {}", tokenlens::format_edits(&v.steer)),
    };
    format!("{model}{steer} · {}{target}", v.method.label())
}

/// The page; `snapshot`: a stored comparison to show instead of the URL's.
#[component]
pub fn ComparePage(#[prop(optional)] snapshot: Option<Snapshot>) -> impl IntoView {
    let query = use_query_map();
    let shared = snapshot.is_some();
    let initial = match &snapshot {
        Some(s) => CompareView {
            a: s.view.clone(),
            b: s.against
                .as_ref()
                .map(|b| b.view.clone())
                .unwrap_or_default(),
        },
        None => CompareView::from_params(&query.get_untracked()),
    };
    let (stored_a, stored_b) = match &snapshot {
        Some(s) => (stored(s), s.against.as_deref().and_then(stored)),
        None => (None, None),
    };
    let run = CompareRun::new(stored_a, stored_b);
    let shown = RwSignal::new(initial.clone());
    let models = Resource::new(|| (), |_| list_models());
    let default_model = move || {
        models.with(|m| {
            m.as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|l| l.models.first().map(|m| m.name.clone()))
                .unwrap_or_default()
        })
    };
    // B's settings as typed.
    let b_model = RwSignal::new(initial.b.model.clone());
    let b_prompt = RwSignal::new(initial.b.prompt.clone());
    let b_chat = RwSignal::new(initial.b.chat);
    let b_steer = RwSignal::new(initial.b.steer.clone());
    let navigate = StoredValue::new(use_navigate());
    let go = move |v: CompareView, push: bool| {
        if shared {
            shown.set(v);
            return;
        }
        let options = NavigateOptions {
            replace: !push,
            scroll: false,
            ..NavigateOptions::default()
        };
        navigate.with_value(|n| n(&format!("/compare{}", v.to_query()), options));
    };
    if !shared {
        // The URL drives the view: on load and on every navigation.
        Effect::new(move |_| {
            let v = query.with(CompareView::from_params);
            b_model.set(v.b.model.clone());
            b_prompt.set(v.b.prompt.clone());
            b_chat.set(v.b.chat);
            b_steer.set(v.b.steer.clone());
            shown.set(v.clone());
            leptos::task::spawn_local(run.compute(v));
        });
    }
    let on_compare = move |_| {
        let mut v = shown.get_untracked();
        v.b.model = b_model.get_untracked();
        v.b.prompt = b_prompt.get_untracked();
        // A model without a chat template reads the text as is (the rows compare the user's
        // text either way).
        v.b.chat = b_chat.get_untracked();
        v.b.query_only = v.b.chat;
        v.b.steer = b_steer.get_untracked();
        let a_target = run
            .a
            .with_untracked(|r| Some(r.as_ref()?.1.target.as_ref()?.token.id));
        pin_steered(&v.a, &mut v.b, a_target);
        if v.b.model != v.a.model {
            let texts = run.a.with_untracked(|r| {
                let t = r.as_ref()?.1.target.as_ref()?;
                Some((
                    t.token.text.clone(),
                    t.contrast.as_ref().map(|c| c.text.clone()),
                ))
            });
            let (t, c) = texts.map_or((None, None), |(t, c)| (Some(t), c));
            retarget(&mut v.b, t, c);
        }
        go(v, true);
    };
    let pick_method = move |which: char, m: Method| {
        let mut v = shown.get_untracked();
        match which {
            'a' => v.a.method = m,
            _ => v.b.method = m,
        }
        go(v, false);
    };

    let segments = Memo::new(move |_| -> Option<Vec<Segment>> {
        let v = shown.get();
        let a = run.a.with(|r| side(&r.as_ref()?.1, v.a.method))?;
        let b = run.b.with(|r| side(&r.as_ref()?.1, v.b.method))?;
        Some(align(&a, &b))
    });
    let rows = move || {
        let segments = segments.get()?;
        let v = shown.get();
        let d = default_model();
        let a_label = run
            .a
            .with(|r| r.as_ref().map(|(_, p)| label(&v.a, p, &d)))?;
        let b_label = run
            .b
            .with(|r| r.as_ref().map(|(_, p)| label(&v.b, p, &d)))?;
        Some(view! {
            <CompareRows segments=segments a_label=a_label b_label=b_label gamma=v.a.display.gamma/>
        })
    };

    // Share: both views with their sealed results, as one permalink.
    let link = RwSignal::new(None::<Result<String, String>>);
    let on_share = move |_| {
        let v = shown.get_untracked();
        let sealed = |s: RwSignal<Option<(Context, Partial)>>| {
            s.with_untracked(|r| r.as_ref().and_then(|(_, p)| p.sealed.clone()))
        };
        let mut a = Snapshot::of(v.a.clone(), None, sealed(run.a), None);
        a.against = Some(Box::new(Snapshot::of(
            v.b.clone(),
            None,
            sealed(run.b),
            None,
        )));
        if let Err(e) = a.replay() {
            link.set(Some(Err(format!("nothing to share yet: {e}"))));
            return;
        }
        link.set(Some(Ok("saving…".into())));
        leptos::task::spawn_local(async move {
            let l = share(a).await.map_err(|e| e.to_string()).map(|id| {
                let origin = window().location().origin().unwrap_or_default();
                format!("{origin}/s/{id}")
            });
            link.set(Some(l));
        });
    };
    let on_export = move |format: &'static str| {
        let v = shown.get_untracked();
        let d = default_model();
        let done = move |r: Result<(), String>| run.error.set(r.err());
        let sides = run
            .a
            .with_untracked(|a| run.b.with_untracked(|b| a.clone().zip(b.clone())));
        let (Some(segments), Some(((_, a), (_, b)))) = (segments.get_untracked(), sides) else {
            return done(Err("nothing to export yet".into()));
        };
        let (a_label, b_label) = (label(&v.a, &a, &d), label(&v.b, &b, &d));
        let download = crate::browser::download_text;
        match format {
            "json" => {
                let side = |v: &crate::state::ViewState, p: &Partial| {
                    serde_json::json!({
                        "method": v.method.name(),
                        "steer": tokenlens::format_edits(&v.steer),
                        "explanation": crate::export::explanation(p),
                    })
                };
                let doc = serde_json::json!({
                    "a": side(&v.a, &a),
                    "b": side(&v.b, &b),
                    "segments": segments,
                });
                done(download(
                    "tokenlens-compare.json",
                    "application/json",
                    &doc.to_string(),
                ))
            }
            _ => {
                let scale =
                    crate::components::compare_rows::shared_scale(&segments, v.a.display.gamma);
                let title = "TokenLens comparison";
                let (svg, w, h) =
                    crate::compare::figure::svg(&segments, title, &a_label, &b_label, &scale);
                if format == "svg" {
                    return done(download("tokenlens-compare.svg", "image/svg+xml", &svg));
                }
                leptos::task::spawn_local(async move {
                    done(
                        crate::browser::download_png("tokenlens-compare.png", &svg, w, h, 2).await,
                    );
                });
            }
        }
    };

    let method_select = move |which: char| {
        let options = Method::ALL
            .iter()
            .copied()
            .map(|m| {
                let selected = move || {
                    let v = shown.get();
                    (if which == 'a' { v.a.method } else { v.b.method }) == m
                };
                view! { <option value=m.name() selected=selected>{m.label()}</option> }
            })
            .collect_view();
        view! {
            // Off while a run goes: a switch then would restart the explanation in flight.
            <select
                name=format!("{which}_method")
                prop:disabled=move || run.running.get()
                on:change=move |ev| {
                    if let Some(m) = Method::from_name(&event_target_value(&ev)) {
                        pick_method(which, m);
                    }
                }
            >
                {options}
            </select>
        }
    };
    let model_options = move || {
        models.get().and_then(Result::ok).map(|l| {
            l.models
                .into_iter()
                .map(|m| {
                    let name = m.name.clone();
                    let selected = move || {
                        let b = b_model.get();
                        b == name || (b.is_empty() && default_model() == name)
                    };
                    view! { <option value=m.name.clone() selected=selected>{m.name.clone()}</option> }
                })
                .collect_view()
        })
    };
    view! {
        <main class="compare-page">
            <header>
                <h1><a href="/">"TokenLens"</a></h1>
                <p class="tagline">"Compare two explanations"</p>
            </header>
            <div class="cmp-side" data-testid="side-a">
                <strong>"A"</strong>
                <span class="cmp-prompt">{move || format!("{:?}", shown.get().a.prompt)}</span>
                {move || method_select('a')}
                <a href=move || format!("/{}", shown.get().a.to_query())>"open A"</a>
            </div>
            <div class="cmp-side" data-testid="side-b">
                <strong>"B"</strong>
                <select name="b_model" prop:disabled=shared on:change=move |ev| {
                    let name = event_target_value(&ev);
                    let chat = models.with_untracked(|m| {
                        m.as_ref()
                            .and_then(|r| r.as_ref().ok())
                            .and_then(|l| l.models.iter().find(|m| m.name == name))
                            .map(|m| m.chat_template)
                    });
                    if let Some(chat) = chat {
                        b_chat.set(chat);
                    }
                    b_model.set(name);
                }>
                    {model_options}
                </select>
                {move || method_select('b')}
                <textarea
                    name="b_prompt"
                    rows="2"
                    prop:disabled=shared
                    prop:value=move || b_prompt.get()
                    on:input=move |ev| b_prompt.set(event_target_value(&ev))
                ></textarea>
                <SteerInput value=b_steer/>
                <button type="button" name="compare" prop:disabled=move || shared || run.running.get() on:click=on_compare>
                    "Compare"
                </button>
            </div>
            <p class="hint">
                "B starts as A: pick another method (no recomputation), another model (the same text, tokenized its own way), edit B's prompt (change a word) or its steering (B then explains the token A explains), and press Compare."
            </p>
            <p class="status" data-testid="status" aria-live="polite">{move || run.stage.get()}</p>
            {move || run.error.get().map(|e| view! { <div class="error" role="alert" data-testid="error">{e}</div> })}
            {rows}
            <div class="row">
                <button type="button" name="share" prop:disabled=move || run.running.get() on:click=on_share>"Share"</button>
                {move || link.get().map(|l| match l {
                    Ok(l) => view! { <a data-testid="share-link" href=l.clone()>{l.clone()}</a> }.into_any(),
                    Err(e) => view! { <span class="error" data-testid="share-error">{e}</span> }.into_any(),
                })}
                <span class="export">
                    "Export: "
                    <button type="button" name="export_svg" on:click=move |_| on_export("svg")>"SVG"</button>
                    <button type="button" name="export_png" on:click=move |_| on_export("png")>"PNG"</button>
                    <button type="button" name="export_json" on:click=move |_| on_export("json")>"JSON"</button>
                </span>
            </div>
        </main>
    }
    .into_any()
}
