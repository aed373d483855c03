//! Chat templates (Jinja, from the model's metadata) rendered with `minijinja`, and the
//! position of the user's text inside the result.
//!
//! Rendering follows transformers' `apply_chat_template` (one user message,
//! `add_generation_prompt`): the same variables (`bos_token`, `eos_token`, `enable_thinking`)
//! and the same helpers it adds to Jinja (`raise_exception`, `strftime_now`, which Llama 3.x
//! templates call for their "Today Date" line). Python string and list methods real templates
//! use (`startswith`, `split`, `strip`, …) come from `minijinja-contrib`'s pycompat.

use crate::error::{Error, Result};
use minijinja::{context, Environment, ErrorKind};

/// A model's chat template with its special-token strings.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    /// The clock `strftime_now` reads; the local time when None (tests fix it).
    now: Option<jiff::civil::DateTime>,
}

/// A rendered prompt and where the user's text sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The full templated text.
    pub text: String,
    /// Byte range of the user's text in `text`, when it appears there verbatim.
    pub query: Option<std::ops::Range<usize>>,
}

/// Marker standing in for the user's text: private-use characters no template touches.
const MARKER: &str = "\u{E000}tokenlens-query\u{E001}";

/// The most steps (minijinja's fuel) one rendering may take. Each of the real templates in
/// `tests/fixtures/templates` renders one message in under 1,000; a template from a model
/// file that loops longer is refused rather than holding the worker.
const FUEL: u64 = 1_000_000;

impl ChatTemplate {
    /// A template from its Jinja source.
    pub fn new(source: String, bos_token: String, eos_token: String) -> Self {
        ChatTemplate {
            source,
            bos_token,
            eos_token,
            now: None,
        }
    }

    /// The same template with `strftime_now` reading a fixed time (for reproducible output).
    pub fn at(mut self, now: jiff::civil::DateTime) -> Self {
        self.now = Some(now);
        self
    }

    fn render_with(&self, content: &str, thinking: bool) -> Result<String> {
        let mut env = Environment::new();
        // transformers' Jinja environment: `trim_blocks=True, lstrip_blocks=True` (a tag's
        // or a comment's newline is dropped, as are the spaces before a tag on its line).
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| Error::Template(e.to_string()))?,
        );
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let now = self.now.unwrap_or_else(|| jiff::Zoned::now().datetime());
        // transformers: `datetime.now().strftime(format)`.
        env.add_function(
            "strftime_now",
            move |format: String| -> std::result::Result<String, minijinja::Error> {
                jiff::fmt::strtime::format(format.as_str(), now)
                    .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
            },
        );
        env.add_template("chat", &self.source)
            .map_err(|e| Error::Template(e.to_string()))?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => vec![context! { role => "user", content => content }],
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            enable_thinking => thinking,
        })
        .map_err(|e| match e.kind() {
            ErrorKind::OutOfFuel => Error::Template(format!(
                "it ran out of fuel: more than {FUEL} steps for one message"
            )),
            _ => Error::Template(e.to_string()),
        })
    }

    /// Renders a probe message once, to refuse at load a template that exhausts its fuel
    /// (other errors depend on the message and are reported when a request meets them).
    pub fn check_fuel(&self) -> Result<()> {
        match self.render_with("Hello", false) {
            Err(Error::Template(msg)) if msg.contains("fuel") => Err(Error::Template(msg)),
            _ => Ok(()),
        }
    }

    /// Renders one user message followed by the generation prompt. `thinking` sets
    /// `enable_thinking` (Qwen3's switch for its `<think>` block; other templates ignore it).
    ///
    /// The query's range is found by rendering once more with a marker in place of the text:
    /// when the marker's rendering, with the marker replaced by the text, equals the real one,
    /// the marker's offset is the text's. This works by character offsets, never by searching
    /// token sequences, so a query that repeats template words is still found exactly.
    pub fn render(&self, user: &str, thinking: bool) -> Result<Rendered> {
        let text = self.render_with(user, thinking)?;
        let marked = self.render_with(MARKER, thinking)?;
        // Templates that trim the message (Llama 3's `| trim`) hold the trimmed text.
        let query = marked.find(MARKER).and_then(|at| {
            [user, user.trim()].into_iter().find_map(|u| {
                let rebuilt = format!("{}{}{}", &marked[..at], u, &marked[at + MARKER.len()..]);
                (rebuilt == text).then_some(at..at + u.len())
            })
        });
        Ok(Rendered { text, query })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn finds_query_by_offset() {
        let t = ChatTemplate::new(CHATML.into(), "".into(), "".into());
        let r = t.render("user says user", false).unwrap();
        assert_eq!(
            r.text,
            "<|im_start|>user\nuser says user<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(&r.text[r.query.clone().unwrap()], "user says user");
        assert_eq!(r.query, Some(17..31));
    }

    #[test]
    fn template_that_transforms_text_has_no_span() {
        let t = ChatTemplate::new(
            "{{ messages[0]['content'] | upper }}".into(),
            "".into(),
            "".into(),
        );
        let r = t.render("abc", false).unwrap();
        assert_eq!(r.text, "ABC");
        assert_eq!(r.query, None);
    }

    /// A template that loops for ever (here 10⁹ steps) stops on its fuel within a second.
    #[test]
    fn endless_template_runs_out_of_fuel() {
        let t = ChatTemplate::new(
            "{% for a in range(100000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
                .into(),
            "".into(),
            "".into(),
        );
        let started = std::time::Instant::now();
        let err = t.check_fuel().unwrap_err();
        assert!(
            started.elapsed().as_secs_f32() < 1.0,
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("fuel"), "{err}");
        let ok = ChatTemplate::new(CHATML.into(), "".into(), "".into());
        assert!(ok.check_fuel().is_ok());
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new("{{ raise_exception('nope') }}".into(), "".into(), "".into());
        let err = t.render("x", false).unwrap_err();
        assert!(matches!(err, Error::Template(_)));
        assert!(err.to_string().contains("nope") && err.to_string().contains("--raw"));
    }
}
