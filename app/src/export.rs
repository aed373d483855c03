//! Exports of a view: a figure (SVG, which the page also rasterizes to PNG), a standalone
//! HTML file, and the explanation as JSON in the CLI's schema. Pure string building, so the
//! same code runs in the browser and in tests.

use std::fmt::Write as _;
use tokenlens::colormap::{hex, text_on, ColorScale};
use tokenlens::{Explanation, Token};

use crate::components::axis_label;

mod inside;
use crate::format::sig3;
use crate::state::Partial;

/// Everything a figure shows, already in units (tokens, words or sentences).
#[derive(Clone, Debug)]
pub struct Figure {
    /// First line: model, method, target.
    pub title: String,
    /// Second line: the prompt or settings.
    pub subtitle: String,
    /// The units in view, with their scores.
    pub units: Vec<(Token, f32)>,
    /// How scores become colors.
    pub scale: ColorScale,
    /// What the legend says.
    pub legend: String,
    /// `[layer][unit]` trace values for the units in view; empty for no grid.
    pub trace: Vec<Vec<f32>>,
    /// One color scale per layer.
    pub layer_scales: Vec<ColorScale>,
    /// The perturbation curves' scores, a line per method after what was measured; empty
    /// when not measured.
    pub faithfulness: Vec<String>,
    /// `[layer][head]` relevance, with neurons and heads on; empty otherwise.
    pub heads: Vec<Vec<f32>>,
    /// Each layer's total and top neurons, with neurons and heads on; empty otherwise.
    pub neurons: Vec<tokenlens::NeuronLayer>,
}

// Figure geometry (px). Monospace text so widths are known without measuring.
pub(crate) const FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";
pub(crate) const CHAR_W: f64 = 7.3;
pub(crate) const PAD: f64 = 16.0;
const TOK_H: f64 = 18.0;
const LINE_GAP: f64 = 4.0;
pub(crate) const CELL_W: f64 = 14.0;
pub(crate) const CELL_H: f64 = 12.0;
const LABELS_H: f64 = 96.0;
pub(crate) const AXIS_W: f64 = 40.0;
const MIN_W: f64 = 720.0;

pub use tokenlens::text::escape_html as escape;

/// A token's text as one line: line breaks shown as ↵.
fn one_line(text: &str) -> String {
    tokenlens::text::visible_whitespace(text, false)
}

fn token_width(text: &str) -> f64 {
    one_line(text).chars().count().max(1) as f64 * CHAR_W + 4.0
}

impl Figure {
    fn width(&self) -> f64 {
        let grid = (AXIS_W + self.units.len() as f64 * CELL_W).max(self.neurons_width());
        (grid + 2.0 * PAD).max(MIN_W)
    }

    /// Token boxes laid out in lines: (x, y, unit index); and the height they take.
    fn layout(&self) -> (Vec<(f64, f64, usize)>, f64) {
        let max_x = self.width() - PAD;
        let (mut x, mut y) = (PAD, 0.0);
        let mut boxes = Vec::with_capacity(self.units.len());
        for (i, (tok, _)) in self.units.iter().enumerate() {
            let w = token_width(&tok.text);
            if x + w > max_x && x > PAD {
                x = PAD;
                y += TOK_H + LINE_GAP;
            }
            boxes.push((x, y, i));
            x += w;
            if tok.text.ends_with('\n') {
                x = PAD;
                y += TOK_H + LINE_GAP;
            }
        }
        (boxes, y + TOK_H)
    }

    /// The figure's size in px (what [`Figure::svg`] declares).
    pub fn size(&self) -> (u32, u32) {
        let (_, tokens_h) = self.layout();
        let mut h = PAD + 20.0 + 24.0 + 36.0 + tokens_h + 24.0;
        if !self.trace.is_empty() {
            h += 18.0 + LABELS_H + self.trace.len() as f64 * CELL_H + 8.0;
        }
        h += self.heads_height() + self.neurons_height();
        (self.width().round() as u32, (h + PAD).round() as u32)
    }

    /// The figure as a standalone SVG document: title, colored tokens, legend, grid.
    pub fn svg(&self) -> String {
        let w = self.width();
        let mut s = String::new();
        let mut y = PAD;
        let mut body = String::new();
        // Title.
        let _ = write!(
            body,
            r#"<text x="{PAD}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
            y + 12.0,
            escape(&self.title)
        );
        y += 20.0;
        let _ = write!(
            body,
            r##"<text x="{PAD}" y="{}" font-size="12" fill="#444">{}</text>"##,
            y + 11.0,
            escape(&one_line(&self.subtitle))
        );
        y += 24.0;
        // Legend: the colorbar, through the same scale as the tokens.
        body.push_str(&self.legend_svg(PAD, y, &self.legend));
        y += 36.0;
        // Tokens.
        let (boxes, tokens_h) = self.layout();
        body.push_str(r#"<g class="tokens">"#);
        for (x, dy, i) in boxes {
            let (tok, score) = &self.units[i];
            let bg = self.scale.color(*score);
            let tw = token_width(&tok.text);
            let _ = write!(
                body,
                r#"<g class="tok" data-token-index="{i}" data-score="{score}"><title>{} · {}</title><rect x="{x:.1}" y="{:.1}" width="{tw:.1}" height="{TOK_H}" fill="{}"/><text x="{:.1}" y="{:.1}" fill="{}" xml:space="preserve">{}</text></g>"#,
                escape(&format!("{:?}", tok.text)),
                sig3(*score),
                y + dy,
                hex(bg),
                x + 2.0,
                y + dy + 13.0,
                hex(text_on(bg)),
                escape(&one_line(&tok.text)),
            );
        }
        body.push_str("</g>");
        y += tokens_h + 24.0;
        // Grid.
        if !self.trace.is_empty() {
            let _ = write!(
                body,
                r#"<text x="{PAD}" y="{}" font-size="13" font-weight="bold">Layer × unit relevance (each layer on its own blue–white–red scale)</text>"#,
                y + 10.0
            );
            y += 18.0;
            body.push_str(&self.grid_svg(PAD, y));
            y += LABELS_H + self.trace.len() as f64 * CELL_H + 8.0;
        }
        body.push_str(&self.heads_svg(PAD, y));
        y += self.heads_height();
        body.push_str(&self.neurons_svg(PAD, y));
        y += self.neurons_height();
        let h = y + PAD;
        debug_assert_eq!((w.round() as u32, h.round() as u32), self.size());
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="{FONT}" font-size="12"><rect width="100%" height="100%" fill="white"/>{body}</svg>"#,
        );
        s
    }

    fn legend_svg(&self, x: f64, y: f64, label: &str) -> String {
        let bar_w = 240.0;
        let label_w = label.chars().count() as f64 * CHAR_W + 12.0;
        let mut g =
            String::from(r#"<defs><linearGradient id="legend" x1="0" x2="1" y1="0" y2="0">"#);
        for i in 0..=20 {
            let t = i as f32 / 20.0;
            let v = if self.scale.signed {
                (2.0 * t - 1.0) * self.scale.max
            } else {
                t * self.scale.max
            };
            let _ = write!(
                g,
                r#"<stop offset="{}%" stop-color="{}"/>"#,
                i * 5,
                hex(self.scale.color(v))
            );
        }
        g.push_str("</linearGradient></defs>");
        let low = if self.scale.signed {
            sig3(-self.scale.max)
        } else {
            "0".into()
        };
        let low_w = low.chars().count() as f64 * CHAR_W + 6.0;
        let bx = x + label_w + low_w;
        let _ = write!(
            g,
            r##"<g class="legend"><text x="{x}" y="{ty:.1}">{}</text><text x="{lx:.1}" y="{ty:.1}">{}</text><rect x="{bx:.1}" y="{y:.1}" width="{bar_w}" height="14" fill="url(#legend)" stroke="#888" stroke-width="0.5"/><text x="{:.1}" y="{ty:.1}">{}</text></g>"##,
            escape(label),
            escape(&low),
            bx + bar_w + 6.0,
            escape(&sig3(self.scale.max)),
            ty = y + 11.0,
            lx = x + label_w,
        );
        g
    }

    fn grid_svg(&self, x0: f64, y0: f64) -> String {
        let mut g = String::from(r#"<g class="grid">"#);
        let gx = x0 + AXIS_W;
        let gy = y0 + LABELS_H;
        for (i, (tok, _)) in self.units.iter().enumerate() {
            let x = gx + i as f64 * CELL_W + CELL_W / 2.0 + 4.0;
            let _ = write!(
                g,
                r#"<text font-size="10" transform="translate({x:.1},{:.1}) rotate(-90)">{}</text>"#,
                gy - 4.0,
                escape(&axis_label(&tok.text))
            );
        }
        let layers = self.trace.len();
        for (l, row) in self.trace.iter().enumerate() {
            let y = gy + l as f64 * CELL_H;
            if l % 5 == 0 || l + 1 == layers {
                let _ = write!(
                    g,
                    r#"<text font-size="10" x="{:.1}" y="{:.1}" text-anchor="end">{l}</text>"#,
                    gx - 4.0,
                    y + CELL_H - 2.0
                );
            }
            for (i, v) in row.iter().enumerate() {
                let _ = write!(
                    g,
                    r#"<rect class="cell" x="{:.1}" y="{y:.1}" width="{CELL_W}" height="{CELL_H}" fill="{}" data-layer="{l}" data-token-index="{i}" data-score="{v}"><title>layer {l} · {} · {}</title></rect>"#,
                    gx + i as f64 * CELL_W,
                    hex(self.layer_scales[l].color(*v)),
                    escape(&format!("{:?}", self.units[i].0.text)),
                    sig3(*v)
                );
            }
        }
        let _ = write!(
            g,
            r#"<text font-size="10" transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">layer</text></g>"#,
            x0 + 8.0,
            gy + layers as f64 * CELL_H / 2.0
        );
        g
    }

    /// A standalone HTML page: the tokens colored inline (hover: the exact score), the
    /// legend and the grid; no scripts, no network.
    pub fn html(&self) -> String {
        let mut tokens = String::new();
        for (i, (tok, score)) in self.units.iter().enumerate() {
            let bg = self.scale.color(*score);
            let _ = write!(
                tokens,
                r#"<span class="tok" data-token-index="{i}" data-score="{score}" title="{} · score {}" style="background-color:{};color:{}">{}</span>"#,
                escape(&format!("{:?}", tok.text)),
                sig3(*score),
                hex(bg),
                hex(text_on(bg)),
                // A visible mark for a line break, so a newline token shows its color.
                escape(&tokenlens::text::visible_lines(&tok.text)),
            );
        }
        let grid = if self.trace.is_empty() {
            String::new()
        } else {
            let h = LABELS_H + self.trace.len() as f64 * CELL_H + 8.0;
            let w = AXIS_W + self.units.len() as f64 * CELL_W + 8.0;
            format!(
                r#"<h2>Layer × unit relevance</h2><p class="note">Each layer on its own blue–white–red scale; hover a cell for its value.</p><div class="grid-wrap"><svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" font-family="{FONT}">{}</svg></div>"#,
                self.grid_svg(0.0, 0.0)
            )
        };
        let inside = self.inside_html();
        let faithfulness = match self.faithfulness.split_first() {
            Some((measured, lines)) => {
                let items: String = lines
                    .iter()
                    .map(|l| format!("<li>{}</li>", escape(l)))
                    .collect();
                format!(
                    r#"<h2>Faithfulness</h2><p class="note">{}</p><ul data-testid="faithfulness">{items}</ul>"#,
                    escape(measured)
                )
            }
            None => String::new(),
        };
        let legend_w = 240.0 + (self.legend.chars().count() as f64 + 16.0) * CHAR_W + 80.0;
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · TokenLens</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }} h2 {{ font-size: 15px; margin: 24px 0 4px; }}
.sub, .note {{ color: #555; font-size: 13px; margin: 0 0 12px; }}
.tokens {{ font-family: {FONT}; font-size: 14px; line-height: 1.9; white-space: pre-wrap; word-break: break-word; }}
.tok {{ padding: 2px 0; border-radius: 2px; }} .tok:hover {{ outline: 2px solid #222; }}
.grid-wrap {{ overflow-x: auto; }}
.grid-wrap rect:hover {{ stroke: #000; stroke-width: 1; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="sub">{sub}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{legend_w:.0}" height="20" font-family="{FONT}" font-size="12">{legend}</svg>
<div class="tokens" data-testid="tokens">{tokens}</div>
{grid}
{inside}
{faithfulness}
<p class="note">Exported from TokenLens.</p>
</body></html>
"#,
            title = escape(&self.title),
            sub = escape(&self.subtitle),
            legend = self.legend_svg(0.0, 2.0, &self.legend),
        )
    }
}

/// The explanation in the CLI's `explain --json` schema (the page always seeds with 1), once
/// it has its prediction.
pub fn explanation(r: &Partial) -> Option<Explanation> {
    r.predicted().map(|_| r.ex.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str) -> Token {
        Token {
            id: 0,
            text: text.into(),
            start: 0,
            end: 0,
            special: false,
            generated: false,
            piece: None,
        }
    }

    fn figure() -> Figure {
        let scale = ColorScale {
            signed: true,
            max: 2.0,
            gamma: 1.0,
        };
        Figure {
            title: "model · AttnLRP · \"<Paris>\"".into(),
            subtitle: "What & why?\n".into(),
            units: vec![
                (tok("What"), 1.5),
                (tok(" is\n"), -2.0),
                (tok("\u{1}x"), 0.0),
            ],
            scale,
            legend: "AttnLRP per token".into(),
            trace: vec![vec![0.1, -0.2, 0.3]; 2],
            layer_scales: vec![scale; 2],
            faithfulness: vec!["Measured by <zero>".into(), "AttnLRP: ABPC 3.1".into()],
            heads: Vec::new(),
            neurons: Vec::new(),
        }
    }

    #[test]
    fn svg_is_escaped_and_carries_every_score() {
        let svg = figure().svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("&quot;&lt;Paris&gt;&quot;") && svg.contains("What &amp; why?↵"));
        assert!(!svg.contains('\u{1}'), "control characters are not XML");
        assert_eq!(svg.matches("class=\"tok\"").count(), 3);
        assert_eq!(svg.matches("class=\"cell\"").count(), 6);
        assert!(svg.contains("data-score=\"-2\""));
        let (w, h) = figure().size();
        assert!(
            svg.contains(&format!("width=\"{w}\" height=\"{h}\"")),
            "{w}x{h}"
        );
    }

    #[test]
    fn html_has_tokens_with_scores_and_no_scripts() {
        let html = figure().html();
        assert_eq!(html.matches("class=\"tok\"").count(), 3);
        assert!(html.contains("data-score=\"1.5\""));
        assert!(!html.contains("<script"));
        assert!(html.contains("Measured by &lt;zero&gt;</p>"), "escaped");
        assert!(html.contains("<li>AttnLRP: ABPC 3.1</li>"));
        let mut bare = figure();
        bare.faithfulness.clear();
        assert!(!bare.html().contains("Faithfulness"));
    }

    #[test]
    fn heads_are_drawn_with_their_scores_and_counted_in_the_size() {
        let mut f = figure();
        let (w0, h0) = f.size();
        f.heads = vec![vec![0.5, -1.0, 0.25], vec![0.0, 2.0, -0.5]];
        let (w, h) = f.size();
        assert_eq!(w, w0);
        assert!(h > h0 + 2 * CELL_H as u32);
        let svg = f.svg();
        assert!(svg.contains(&format!("width=\"{w}\" height=\"{h}\"")));
        assert_eq!(svg.matches("class=\"head\"").count(), 6);
        assert!(svg.contains("data-layer=\"1\" data-head=\"1\" data-score=\"2\""));
        assert!(svg.contains("Layer × head relevance"));
        assert_eq!(f.html().matches("class=\"head\"").count(), 6);
        assert!(!figure().svg().contains("class=\"head\""));
    }

    #[test]
    fn neurons_are_drawn_with_their_scores_and_counted_in_the_size() {
        let neuron = |index, value| tokenlens::Neuron {
            index,
            value,
            per_token: Vec::new(),
        };
        let mut f = figure();
        let (w0, h0) = f.size();
        f.neurons = vec![
            tokenlens::NeuronLayer {
                total: 1.25,
                top: vec![neuron(1297, 0.5), neuron(7, -0.25)],
                block: None,
            };
            3
        ];
        let (w, h) = f.size();
        assert_eq!(w, w0);
        assert!(h > h0 + 3 * CELL_H as u32);
        let svg = f.svg();
        assert!(svg.contains(&format!("width=\"{w}\" height=\"{h}\"")));
        assert_eq!(svg.matches("class=\"neuron\"").count(), 6);
        assert!(svg.contains("data-layer=\"2\" data-neuron=\"7\" data-score=\"-0.25\""));
        assert_eq!(svg.matches("data-layer-total=\"1.25\"").count(), 3);
        assert_eq!(f.html().matches("class=\"neuron\"").count(), 6);
        assert!(!figure().html().contains("class=\"neuron\""));
    }
}
