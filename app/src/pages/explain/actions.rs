//! What the page's Share and Export buttons do: store the view and make a link; draw the
//! figure in view and download it.

use leptos::prelude::*;
use tokenlens::Method;

use super::runs::Results;
use crate::display::{Display, Units};
use crate::export::Figure;
use crate::pages::api::share;
use crate::state::{Partial, Snapshot, ViewState};

/// Share's outcome: the link or why there is none, and whether it reached the clipboard.
#[derive(Clone, Copy)]
pub struct ShareState {
    /// The last link, or why there is none.
    pub link: RwSignal<Option<Result<String, String>>>,
    /// Whether it reached the clipboard (None while none is out).
    pub copied: RwSignal<Option<bool>>,
}

impl ShareState {
    /// Nothing shared yet.
    pub fn new() -> Self {
        ShareState {
            link: RwSignal::new(None),
            copied: RwSignal::new(None),
        }
    }

    /// Forgets the last link (a new run makes it stale).
    pub fn clear(self) {
        self.link.set(None);
        self.copied.set(None);
    }

    /// Stores the view `shown` with the sealed results and puts its link in view (and on
    /// the clipboard; with `to_address`, in the address bar instead). What the server would
    /// refuse (nothing sealed, over `limit` bytes) is said at once.
    pub fn share(self, shown: ViewState, results: Results, limit: Option<u64>, to_address: bool) {
        // Only records computed for this view's contexts (a stored view replays to them).
        let (input, context) = (shown.input(), shown.context());
        let answer = results.answer.with_untracked(|a| {
            let a = a.as_ref().filter(|a| a.input() == input)?;
            a.sealed.clone()
        });
        let for_view = results
            .result_for
            .with_untracked(|k| k.as_ref().is_some_and(|k| k.covers(&context)));
        let result = results.result.with_untracked(|r| {
            let r = r.as_ref().filter(|_| for_view)?;
            r.sealed.clone()
        });
        let for_view = results
            .matrix_for
            .with_untracked(|k| k.is_some() && *k == shown.matrix_context());
        let matrix = results.matrix.with_untracked(|m| {
            let m = m.as_ref().filter(|_| for_view)?;
            m.sealed.clone()
        });
        let snapshot = Snapshot::of(shown, answer, result, matrix);
        let size = serde_json::to_string(&snapshot).map_or(0, |j| j.len() as u64);
        let refused = match (snapshot.replay(), limit) {
            (Err(e), _) => Some(format!("nothing to share yet: {e}")),
            (_, Some(limit)) if size > limit => Some(format!(
                "this view is too large to share ({}; this server stores views up to {})",
                crate::format::size(size),
                crate::format::size(limit),
            )),
            _ => None,
        };
        if let Some(msg) = refused {
            self.link.set(Some(Err(msg)));
            return;
        }
        self.link.set(Some(Ok("saving…".into())));
        self.copied.set(None);
        leptos::task::spawn_local(async move {
            let link = share(snapshot).await.map_err(|e| e.to_string()).map(|id| {
                let origin = window().location().origin().unwrap_or_default();
                format!("{origin}/s/{id}")
            });
            let copied = match &link {
                Ok(l) if to_address => {
                    crate::browser::show_address(l);
                    None
                }
                Ok(l) => Some(crate::browser::copy_text(l).await),
                Err(_) => None,
            };
            self.link.set(Some(link));
            self.copied.set(copied);
        });
    }
}

/// What is in view, as the figure and the JSON export need it.
pub struct InView<'a> {
    /// The view.
    pub view: &'a ViewState,
    /// The explanation.
    pub result: &'a Partial,
    /// Its units in view.
    pub units: &'a Units,
    /// The method in view.
    pub method: Method,
    /// Units and colors.
    pub display: Display,
}

impl InView<'_> {
    /// The figure of what is in view: units, colors, legend and grid, as the page shows
    /// them; None until the method's scores are in.
    fn figure(&self) -> Option<Figure> {
        let (d, m, u, v, r) = (
            self.display,
            self.method,
            self.units,
            self.view,
            self.result,
        );
        let res = r.methods.get(&m)?;
        let (a, b) = u.range;
        let scores = u.scores(&res.scores, d.aggregate);
        let in_view = scores.get(a..b)?;
        let labels = u.labels(&r.tokens);
        // The grid as the page draws it: relevance, or the lens' p(target).
        use crate::components::trace_grid::lens;
        let by_lens = r.lens.as_ref().filter(|_| d.lens_colors);
        let (full, layer_scales): (Vec<Vec<f32>>, Vec<_>) = match by_lens {
            Some(l) => {
                let probs = lens::target_probs(&lens::per_unit(l, u));
                let scales = probs.iter().map(|_| lens::scale(d.gamma)).collect();
                (probs, scales)
            }
            None => {
                let full = u.trace(&res.trace, d.aggregate);
                let scales = full.iter().map(|row| u.scale(&d, true, row)).collect();
                (full, scales)
            }
        };
        let trace: Vec<Vec<f32>> = full
            .iter()
            .map(|row| row.get(a..b).map(<[f32]>::to_vec))
            .collect::<Option<_>>()?;
        let target = r.target.as_ref().map(|t| {
            if let Some(span) = &t.span {
                let text: String = span.tokens.iter().map(|k| k.text.as_str()).collect();
                return format!("the span {text:?} (Σ log p)");
            }
            let vs = t
                .contrast
                .as_ref()
                .map(|c| format!(" rather than {:?}", c.text))
                .unwrap_or_default();
            format!("{:?}{vs}", t.token.text)
        });
        let model = if v.model.is_empty() {
            "default model"
        } else {
            &v.model
        };
        Some(Figure {
            title: format!(
                "{model} · {} · explaining {}{}",
                m.label(),
                target.unwrap_or_default(),
                if by_lens.is_some() {
                    " · grid: logit lens p(target)"
                } else {
                    ""
                }
            ),
            subtitle: format!("Prompt: {}", v.prompt),
            scale: u.scale(&d, m.is_signed(), &scores),
            units: labels
                .get(a..b)?
                .iter()
                .cloned()
                .zip(in_view.iter().copied())
                .collect(),
            legend: format!("{} per {}", m.label(), d.granularity.name()),
            faithfulness: faithfulness_lines(r),
            heads: res
                .heads
                .as_ref()
                .map(|l| l.iter().map(|l| l.heads.clone()).collect())
                .unwrap_or_default(),
            neurons: res.neurons.clone().unwrap_or_default(),
            layer_scales,
            trace,
        })
    }

    /// Downloads what is in view as `format` (png, svg, html or json); errors reach `done`.
    pub fn export(&self, format: &str, done: impl Fn(Result<(), String>) + 'static) {
        let base = format!("tokenlens-{}", self.method.name());
        let download = crate::browser::download_text;
        if format == "json" {
            let json = crate::export::explanation(self.result)
                .and_then(|e| serde_json::to_string_pretty(&e).ok());
            return done(match json {
                Some(j) => download(&format!("{base}.json"), "application/json", &j),
                None => Err("nothing to export yet".into()),
            });
        }
        let Some(fig) = self.figure() else {
            return done(Err(
                "nothing to export yet: wait for the method's scores".into()
            ));
        };
        match format {
            "svg" => done(download(
                &format!("{base}.svg"),
                "image/svg+xml",
                &fig.svg(),
            )),
            "html" => done(download(&format!("{base}.html"), "text/html", &fig.html())),
            _ => {
                let (w, h) = fig.size();
                leptos::task::spawn_local(async move {
                    let name = format!("{base}.png");
                    done(crate::browser::download_png(&name, &fig.svg(), w, h, 2).await);
                });
            }
        }
    }
}

/// The measured line and a score line per method, for the HTML export.
fn faithfulness_lines(r: &Partial) -> Vec<String> {
    use crate::components::faithfulness::{measured_line, score_line};
    let Some(f) = &r.faithfulness else {
        return Vec::new();
    };
    let methods = Method::ALL.iter().copied().filter_map(|m| {
        let s = f.methods.get(&m)?;
        Some(score_line(m.label(), s, &f.random))
    });
    std::iter::once(measured_line(f, &r.tokens, r.query_span))
        .chain(methods)
        .collect()
}
