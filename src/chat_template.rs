//! Chat templates (Jinja, from the model's metadata) rendered with `minijinja`, and the
//! position of the user's text inside the result.

use crate::error::{Error, Result};
use minijinja::{context, Environment, ErrorKind};

/// A model's chat template with its special-token strings.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
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

impl ChatTemplate {
    /// A template from its Jinja source.
    pub fn new(source: String, bos_token: String, eos_token: String) -> Self {
        ChatTemplate {
            source,
            bos_token,
            eos_token,
        }
    }

    fn render_with(&self, content: &str) -> Result<String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
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
            enable_thinking => false,
        })
        .map_err(|e| Error::Template(e.to_string()))
    }

    /// Renders one user message followed by the generation prompt.
    ///
    /// The query's range is found by rendering once more with a marker in place of the text:
    /// when the marker's rendering, with the marker replaced by the text, equals the real one,
    /// the marker's offset is the text's. This works by character offsets, never by searching
    /// token sequences, so a query that repeats template words is still found exactly.
    pub fn render(&self, user: &str) -> Result<Rendered> {
        let text = self.render_with(user)?;
        let marked = self.render_with(MARKER)?;
        let query = marked.find(MARKER).and_then(|at| {
            let rebuilt = format!("{}{}{}", &marked[..at], user, &marked[at + MARKER.len()..]);
            (rebuilt == text).then_some(at..at + user.len())
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
        let r = t.render("user says user").unwrap();
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
        let r = t.render("abc").unwrap();
        assert_eq!(r.text, "ABC");
        assert_eq!(r.query, None);
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new("{{ raise_exception('nope') }}".into(), "".into(), "".into());
        assert!(matches!(t.render("x"), Err(Error::Template(_))));
    }
}
