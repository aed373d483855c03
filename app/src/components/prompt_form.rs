//! The prompt form: prompt, model, template, target and contrast, the run buttons, and the
//! generation settings. It edits a [`Form`]; the page turns a submitted form into a view.

use leptos::prelude::*;
use tokenlens::{Precision, Sampling, TargetSpec};

use super::precision_select::PrecisionSelect;
use super::Checkbox;
use crate::pages::api::ModelList;
use crate::state::{GenSpec, Input, ViewState, DEFAULT_MAX_NEW};

/// What the next action will use: the form's fields.
#[derive(Clone, Copy)]
pub struct Form {
    /// The prompt.
    pub prompt: RwSignal<String>,
    /// The model's name.
    pub model: RwSignal<String>,
    /// Chat template on.
    pub chat: RwSignal<bool>,
    /// The template's `enable_thinking`.
    pub thinking: RwSignal<bool>,
    /// The target token's text (empty: the most likely token).
    pub target: RwSignal<String>,
    /// The contrast token's text (empty: none).
    pub contrast: RwSignal<String>,
    /// Greedy generation.
    pub greedy: RwSignal<bool>,
    /// Sampling settings (when not greedy).
    pub sampling: RwSignal<Sampling>,
    /// New tokens at most.
    pub max_new: RwSignal<usize>,
    /// A given answer to explain instead of generating one (empty: generate).
    pub answer: RwSignal<String>,
    /// A generation field whose text is not a number: its name and text.
    pub unreadable: RwSignal<Option<(&'static str, String)>>,
    /// How the products are computed.
    pub precision: RwSignal<Precision>,
    /// Edits to the model (steering).
    pub steer: RwSignal<Vec<tokenlens::Edit>>,
}

impl Form {
    /// A form showing view `v`'s settings.
    pub fn new(v: &ViewState) -> Self {
        let f = Form {
            prompt: RwSignal::new(String::new()),
            model: RwSignal::new(String::new()),
            chat: RwSignal::new(v.chat),
            thinking: RwSignal::new(v.thinking),
            target: RwSignal::new(String::new()),
            contrast: RwSignal::new(String::new()),
            greedy: RwSignal::new(false),
            sampling: RwSignal::new(Sampling::default()),
            max_new: RwSignal::new(DEFAULT_MAX_NEW),
            answer: RwSignal::new(String::new()),
            unreadable: RwSignal::new(None),
            precision: RwSignal::new(v.precision),
            steer: RwSignal::new(v.steer.clone()),
        };
        f.fill(v);
        f
    }

    /// Shows view `v`'s settings.
    pub fn fill(&self, v: &ViewState) {
        if !v.model.is_empty() {
            self.model.set(v.model.clone());
        }
        self.prompt.set(v.prompt.clone());
        self.chat.set(v.chat);
        self.thinking.set(v.thinking);
        self.precision.set(v.precision);
        self.steer.set(v.steer.clone());
        if let Some(g) = &v.generation {
            // Settings are shown as they are: an out-of-range temperature is not turned into
            // "greedy" (the settings' message says what is wrong).
            let greedy = g.sampling == Sampling::greedy();
            self.greedy.set(greedy);
            if !greedy {
                self.sampling.set(g.sampling);
            }
            self.max_new.set(g.max_new_tokens);
        }
        let given = v.generation.as_ref().and_then(|g| g.answer.clone());
        self.answer.set(given.unwrap_or_default());
        let text = |t: Option<&TargetSpec>| match t {
            Some(TargetSpec::Text(s)) => s.clone(),
            _ => String::new(),
        };
        let e = v.explain.as_ref();
        self.target.set(text(e.map(|e| &e.target)));
        self.contrast.set(text(e.and_then(|e| e.contrast.as_ref())));
    }

    /// What the model would read under the form's settings (tracked), continuing an answer
    /// generated with them when `answered`.
    pub fn input(&self, answered: bool) -> Input {
        Input::new(
            &self.model.get(),
            &self.prompt.get(),
            self.chat.get(),
            self.thinking.get(),
            self.precision.get(),
            answered.then(|| self.generation_tracked()),
            &self.steer.get(),
        )
    }

    /// Whether the form asks for something other than what view `v` computed (tracked): a
    /// result shown under it is then out of date. `default_model`: what an empty model means.
    pub fn differs_from(&self, v: &ViewState, default_model: &str) -> bool {
        if v.generation.is_none() && v.explain.is_none() {
            return false;
        }
        let input = self.input(v.generation.is_some()).resolved(default_model)
            != v.input().resolved(default_model);
        let text = |t: Option<&TargetSpec>| match t {
            Some(TargetSpec::Text(s)) => s.clone(),
            _ => String::new(),
        };
        // A step's or a span's target comes from the answer, not the form's target box.
        let target = v.explain.as_ref().is_some_and(|e| {
            e.step.is_none()
                && e.span.is_none()
                && (self.target.get() != text(Some(&e.target))
                    || self.contrast.get() != text(e.contrast.as_ref()))
        });
        input || target
    }

    fn generation_tracked(&self) -> GenSpec {
        GenSpec {
            sampling: if self.greedy.get() {
                Sampling::greedy()
            } else {
                self.sampling.get()
            },
            max_new_tokens: self.max_new.get(),
            answer: Some(self.answer.get()).filter(|a| !a.is_empty()),
        }
    }

    /// What is wrong with the generation settings (tracked), if anything.
    pub fn generation_problem(&self) -> Option<String> {
        // A given answer uses none of the generation settings.
        if !self.answer.with(String::is_empty) {
            return None;
        }
        if let Some((name, text)) = self.unreadable.get() {
            return Some(format!("{name}: {text:?} is not a number"));
        }
        if self.max_new.get() == 0 {
            return Some("max new tokens must be at least 1".into());
        }
        if self.greedy.get() {
            return None;
        }
        self.sampling.with(|s| s.check(usize::MAX).err())
    }

    /// The generation settings.
    pub fn generation(&self) -> GenSpec {
        untrack(|| self.generation_tracked())
    }
}

/// The form. Buttons are off until `can_run`; Cancel is on while `running`.
#[component]
pub fn PromptForm(
    /// The fields.
    form: Form,
    /// The server's models (None while loading).
    #[prop(into)]
    models: Signal<Option<Result<ModelList, String>>>,
    /// The page is live and no run is going.
    #[prop(into)]
    can_run: Signal<bool>,
    /// A run is going.
    #[prop(into)]
    running: Signal<bool>,
    /// Explain the next token.
    on_submit: Callback<()>,
    /// Generate an answer.
    on_generate: Callback<()>,
    /// Cancel the run.
    on_cancel: Callback<()>,
    /// A model was picked.
    on_pick_model: Callback<String>,
) -> AnyView {
    let Form {
        prompt,
        model,
        chat,
        thinking,
        target,
        contrast,
        ..
    } = form;
    let model_options = move || {
        models.get().map(|res| match res {
            Ok(list) => {
                // A view from a link may name a model this server does not have.
                let current = model.get_untracked();
                let missing = (!current.is_empty()
                    && !list.models.iter().any(|m| m.name == current)
                    && !list.loading.contains(&current))
                .then(|| {
                    view! {
                        <option value=current.clone() disabled=true selected=true>{format!("{current} (not on this server)")}</option>
                    }
                });
                let ready = list
                    .models
                    .into_iter()
                    .map(|m| {
                        let label = format!("{} ({} layers)", m.name, m.n_layers);
                        let on = m.name == current;
                        view! { <option value=m.name.clone() selected=on>{label}</option> }
                    })
                    .collect_view();
                let loading = list
                    .loading
                    .into_iter()
                    .map(|spec| {
                        view! { <option value=spec.clone() disabled=true>{format!("{spec} (loading…)")}</option> }
                    })
                    .collect_view();
                view! { {missing}{ready}{loading} }.into_any()
            }
            Err(e) => view! { <option value="">{format!("models unavailable: {e}")}</option> }.into_any(),
        })
    };
    // The picked model (the default while none is picked): why it cannot multiply in bf16
    // here, and whether its bf16 is emulated.
    let picked_info = Memo::new(move |_| {
        let list = models.get()?.ok()?;
        let picked = model.get();
        match picked.is_empty() {
            true => list.models.into_iter().next(),
            false => list.models.into_iter().find(|m| m.name == picked),
        }
    });
    let bf16_unavailable =
        Signal::derive(move || picked_info.with(|i| i.as_ref()?.bf16_unavailable.clone()));
    let bf16_emulated =
        Signal::derive(move || picked_info.with(|i| i.as_ref().is_some_and(|i| i.bf16_emulated)));
    let text_input = move |name: &'static str,
                           label: &'static str,
                           placeholder: &'static str,
                           value: RwSignal<String>| {
        view! {
            <label>
                {label}
                <input
                    type="text"
                    name=name
                    placeholder=placeholder
                    prop:value=move || value.get()
                    on:input=move |ev| value.set(event_target_value(&ev))
                />
            </label>
        }
    };
    view! {
        <form
            class="controls"
            on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                on_submit.run(());
            }
        >
            // No server-rendered text inside: Leptos writes a textarea's children unescaped
            // (a prompt holding "</textarea>" would break out), so only the property is set.
            <textarea
                name="prompt"
                rows="3"
                placeholder="Type a prompt"
                aria-label="Prompt (Ctrl+Enter or ⌘+Enter explains its next token)"
                prop:value=move || prompt.get()
                on:input=move |ev| prompt.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Enter" && (ev.ctrl_key() || ev.meta_key()) && can_run.get_untracked() {
                        ev.prevent_default();
                        on_submit.run(());
                    }
                }
            ></textarea>
            <div class="row">
                <label>
                    "Model "
                    <select
                        name="model"
                        prop:value=move || model.get()
                        on:change=move |ev| on_pick_model.run(event_target_value(&ev))
                    >
                        <Suspense fallback=|| view! { <option>"loading…"</option> }>{model_options}</Suspense>
                    </select>
                </label>
                <label><Checkbox name="chat" label=" chat template" value=chat/></label>
                <label title="The chat template's enable_thinking: the model may reason in a <think> block before answering (Qwen3; other templates ignore it)">
                    <Checkbox name="thinking" label=" thinking" value=thinking disabled=Signal::derive(move || !chat.get())/>
                </label>
                <PrecisionSelect value=form.precision bf16_unavailable=bf16_unavailable bf16_emulated=bf16_emulated/>
                {text_input("target", "Target ", "most likely token", target)}
                {text_input("contrast", "rather than ", "(optional)", contrast)}
                <super::steer_input::SteerInput value=form.steer/>
                <button type="submit" name="submit" disabled=move || !can_run.get()>
                    "Explain next token"
                </button>
                <button
                    type="button"
                    name="generate"
                    disabled=move || !can_run.get() || form.generation_problem().is_some()
                    on:click=move |_| on_generate.run(())
                    title="Generate an answer, or take the given answer (Generation settings) as the model's"
                >
                    {move || match form.answer.with(String::is_empty) {
                        true => "Generate",
                        false => "Use given answer",
                    }}
                </button>
                <button type="button" name="cancel" disabled=move || !running.get() on:click=move |_| on_cancel.run(())>
                    "Cancel"
                </button>
            </div>
            <GenerationSettings form=form/>
        </form>
    }
    .into_any()
}

/// Greedy or sampled, the sampling settings, and the answer's length.
#[component]
fn GenerationSettings(form: Form) -> AnyView {
    let Form {
        greedy,
        sampling,
        max_new,
        unreadable,
        answer,
        ..
    } = form;
    let unfolded = RwSignal::new(false);
    // Notes whether field `name`'s text `v` was read, so that what cannot be is said.
    let note = move |name: &'static str, v: &str, ok: bool| {
        if ok {
            if unreadable.with_untracked(|u| u.as_ref().is_some_and(|(n, _)| *n == name)) {
                unreadable.set(None);
            }
        } else {
            unreadable.set(Some((name, v.to_string())));
        }
    };
    let num_input = move |name: &'static str,
                          label: &'static str,
                          step: &'static str,
                          get: Signal<String>,
                          set: Callback<String>| {
        view! {
            <label class="num">
                {label}
                <input
                    type="number"
                    name=name
                    step=step
                    // The attribute is what the server renders (the field's default, which
                    // tells an early edit apart); the property follows the state.
                    value=get.get_untracked()
                    prop:value=move || get.get()
                    // A given answer is read, not sampled: these settings do not apply.
                    disabled=move || !answer.with(String::is_empty)
                    on:change=move |ev| set.run(event_target_value(&ev))
                />
            </label>
        }
    };
    let sampling_input = move |name,
                               label,
                               step,
                               read: fn(&Sampling) -> String,
                               write: fn(&mut Sampling, &str) -> bool| {
        num_input(
            name,
            label,
            step,
            Signal::derive(move || sampling.with(read)),
            Callback::new(move |v: String| {
                let mut s = sampling.get_untracked();
                let ok = write(&mut s, v.trim());
                if ok {
                    sampling.set(s);
                }
                note(label.trim(), v.trim(), ok);
            }),
        )
    };
    view! {
        // Folded under Generate until asked for; open while a setting is wrong, so that the
        // message and the field show.
        <details
            class="gen-fold"
            prop:open=move || {
                unfolded.get() || form.generation_problem().is_some() || !answer.with(String::is_empty)
            }
            on:toggle=move |ev| {
                use leptos::wasm_bindgen::JsCast;
                if let Some(d) = ev.target().and_then(|t| t.dyn_into::<leptos::web_sys::HtmlDetailsElement>().ok()) {
                    unfolded.set(d.open());
                }
            }
        >
        <summary>"Generation settings"</summary>
        <div class="row gen-settings">
            <span class="label">"Generation: "</span>
            <label><Checkbox name="greedy" label=" greedy" value=greedy disabled=Signal::derive(move || !answer.with(String::is_empty))/></label>
            {sampling_input("temperature", "temperature ", "0.05",
                |s| s.temperature.to_string(),
                |s, v| v.parse().map(|x| s.temperature = x).is_ok())}
            {sampling_input("sample_top_k", "top-k ", "1",
                |s| s.top_k.to_string(),
                |s, v| v.parse().map(|x| s.top_k = x).is_ok())}
            {sampling_input("top_p", "top-p ", "0.05",
                |s| s.top_p.to_string(),
                |s, v| v.parse().map(|x| s.top_p = x).is_ok())}
            {sampling_input("seed", "seed ", "1",
                |s| s.seed.to_string(),
                |s, v| v.parse().map(|x| s.seed = x).is_ok())}
            {num_input("max_new_tokens", "max new tokens ", "1",
                Signal::derive(move || max_new.get().to_string()),
                Callback::new(move |v: String| {
                    let parsed = v.trim().parse();
                    note("max new tokens", v.trim(), parsed.is_ok());
                    if let Ok(x) = parsed {
                        max_new.set(x)
                    }
                }))}
            {move || form.generation_problem().map(|msg| view! {
                <span class="error inline" role="alert" data-testid="gen-error">{msg}</span>
            })}
        </div>
        <label class="given-answer">
            "Given answer "
            <span class="hint">"(optional: the model's answer is this text instead of a sampled one, each token explained as a generated one is)"</span>
            <textarea
                name="answer"
                rows="2"
                placeholder="e.g. Paris is the capital of France."
                prop:value=move || answer.get()
                on:input=move |ev| answer.set(event_target_value(&ev))
            ></textarea>
        </label>
        </details>
    }
    .into_any()
}
