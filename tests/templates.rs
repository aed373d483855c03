//! Real chat templates render exactly as transformers' `apply_chat_template` (one user
//! message, `add_generation_prompt=True`, `enable_thinking` off and on), and the user's text
//! is found inside the result.
//!
//! Reference: `tests/fixtures/templates.json`, written by `scripts/template_reference.py`
//! (transformers 4.52.4) from the templates in `tests/fixtures/templates/` (sources in its
//! SOURCES.md), with `strftime_now` pinned to the time recorded there; the renderer's clock is
//! pinned to the same time.

use crate::util::root;
use serde::Deserialize;
use std::collections::BTreeMap;
use tokenlens::chat_template::ChatTemplate;

#[derive(Deserialize)]
struct Fixture {
    now: String,
    templates: BTreeMap<String, Template>,
}

#[derive(Deserialize)]
struct Template {
    bos_token: String,
    eos_token: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    thinking: bool,
    text: String,
}

#[test]
fn real_templates_render_as_transformers() {
    let fx: Fixture = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/templates.json")).unwrap(),
    )
    .unwrap();
    let now: jiff::civil::DateTime = fx.now.parse().unwrap();
    assert!(fx.templates.len() >= 17, "expected the seventeen templates");
    let mut failures = Vec::new();
    for (name, t) in &fx.templates {
        let source =
            std::fs::read_to_string(root().join("tests/fixtures/templates").join(name)).unwrap();
        let tmpl = ChatTemplate::new(source, t.bos_token.clone(), t.eos_token.clone()).at(now);
        for case in &t.cases {
            match tmpl.render(&case.prompt, case.thinking) {
                Err(e) => failures.push(format!("{name}: {e}")),
                Ok(r) if r.text != case.text => failures.push(format!(
                    "{name} (thinking {}):\n  want {:?}\n  got  {:?}",
                    case.thinking, case.text, r.text
                )),
                Ok(r) => {
                    // Templates that trim the message (Llama 3) hold the trimmed text.
                    let span = r.query.map(|q| &r.text[q]);
                    let found =
                        span == Some(case.prompt.as_str()) || span == Some(case.prompt.trim());
                    if !found {
                        failures.push(format!("{name}: query span {span:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn thinking_changes_only_templates_that_read_it() {
    let fx: Fixture = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/templates.json")).unwrap(),
    )
    .unwrap();
    let now: jiff::civil::DateTime = fx.now.parse().unwrap();
    // Our renderer, not the fixture: thinking off closes an empty think block for Qwen3, and
    // changes nothing for Gemma 3, whose template does not read it.
    let render = |name: &str, thinking: bool| {
        let t = &fx.templates[name];
        let source =
            std::fs::read_to_string(root().join("tests/fixtures/templates").join(name)).unwrap();
        ChatTemplate::new(source, t.bos_token.clone(), t.eos_token.clone())
            .at(now)
            .render("Why is the sky blue?", thinking)
            .unwrap()
            .text
    };
    let (off, on) = (
        render("Qwen__Qwen3.jinja", false),
        render("Qwen__Qwen3.jinja", true),
    );
    assert!(off.ends_with("<think>\n\n</think>\n\n"), "{off:?}");
    assert!(on.ends_with("<|im_start|>assistant\n"), "{on:?}");
    let gemma = "google__gemma-3-4b-it.jinja";
    assert_eq!(render(gemma, false), render(gemma, true));
}
