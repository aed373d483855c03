//! Inside the model in a figure (with neurons and heads on): the layer × head relevance
//! grid and each layer's top neurons, each on one signed scale as the page draws them.

use std::fmt::Write as _;
use tokenlens::colormap::{hex, ColorScale};

use super::{escape, Figure, AXIS_W, CELL_H, CELL_W, CHAR_W, FONT};
use crate::format::sig3;

/// Room above the grid for the head labels.
const HEADS_TOP: f64 = 14.0;

impl Figure {
    /// The height the heads' grid takes with its heading (0 without heads).
    pub(super) fn heads_height(&self) -> f64 {
        if self.heads.is_empty() {
            return 0.0;
        }
        18.0 + HEADS_TOP + self.heads.len() as f64 * CELL_H + 8.0
    }

    /// A blue–white–red scale ending at the largest finite |value|.
    fn signed_scale<'a>(&self, values: impl Iterator<Item = &'a f32>) -> ColorScale {
        let max = values.fold(0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m });
        ColorScale {
            signed: true,
            max,
            gamma: self.scale.gamma,
        }
    }

    /// The heading and the grid at `(x0, y0)`, its height [`Figure::heads_height`].
    pub(super) fn heads_svg(&self, x0: f64, y0: f64) -> String {
        let mut g = String::new();
        if self.heads.is_empty() {
            return g;
        }
        let scale = self.signed_scale(self.heads.iter().flatten());
        let _ = write!(
            g,
            r#"<text x="{x0}" y="{:.1}" font-size="13" font-weight="bold">Layer × head relevance (one blue–white–red scale, ±{})</text><g class="heads">"#,
            y0 + 10.0,
            sig3(scale.max)
        );
        let (gx, gy) = (x0 + AXIS_W, y0 + 18.0 + HEADS_TOP);
        let n = self.heads.first().map_or(0, Vec::len);
        for h in (0..n).step_by(2) {
            let _ = write!(
                g,
                r#"<text font-size="9" x="{:.1}" y="{:.1}">h{h}</text>"#,
                gx + h as f64 * CELL_W,
                gy - 3.0
            );
        }
        let layers = self.heads.len();
        for (l, row) in self.heads.iter().enumerate() {
            let y = gy + l as f64 * CELL_H;
            if l % 5 == 0 || l + 1 == layers {
                let _ = write!(
                    g,
                    r#"<text font-size="10" x="{:.1}" y="{:.1}" text-anchor="end">{l}</text>"#,
                    gx - 4.0,
                    y + CELL_H - 2.0
                );
            }
            for (h, v) in row.iter().enumerate() {
                let _ = write!(
                    g,
                    r#"<rect class="head" x="{:.1}" y="{y:.1}" width="{CELL_W}" height="{CELL_H}" fill="{}" data-layer="{l}" data-head="{h}" data-score="{v}"><title>layer {l} head {h} · {}</title></rect>"#,
                    gx + h as f64 * CELL_W,
                    hex(scale.color(*v)),
                    sig3(*v)
                );
            }
        }
        g.push_str("</g>");
        g
    }

    /// The height the neuron rows take with their heading (0 without neurons).
    pub(super) fn neurons_height(&self) -> f64 {
        if self.neurons.is_empty() {
            return 0.0;
        }
        18.0 + self.neurons.len() as f64 * ROW_H + 8.0
    }

    /// The width the neuron rows take.
    pub(super) fn neurons_width(&self) -> f64 {
        let chips = self.neurons.iter().map(|l| l.top.len()).max().unwrap_or(0);
        AXIS_W + TOTAL_W + chips as f64 * CHIP_W
    }

    /// Each layer's total and its top neurons as chips (index, colored by relevance) at
    /// `(x0, y0)`, height [`Figure::neurons_height`].
    pub(super) fn neurons_svg(&self, x0: f64, y0: f64) -> String {
        let mut g = String::new();
        if self.neurons.is_empty() {
            return g;
        }
        let scale = self.signed_scale(self.neurons.iter().flat_map(|l| &l.top).map(|n| &n.value));
        let _ = write!(
            g,
            r#"<text x="{x0}" y="{:.1}" font-size="13" font-weight="bold">Each layer's most relevant neurons (layer · Σ over all · the top by |relevance|, labeled by index; one scale, ±{})</text><g class="neurons">"#,
            y0 + 10.0,
            sig3(scale.max)
        );
        for (l, layer) in self.neurons.iter().enumerate() {
            let y = y0 + 18.0 + l as f64 * ROW_H;
            let _ = write!(
                g,
                r#"<text font-size="10" x="{:.1}" y="{:.1}" text-anchor="end">{l}</text><text font-size="10" x="{:.1}" y="{:.1}" data-layer-total="{}">{}</text>"#,
                x0 + AXIS_W - 4.0,
                y + CELL_H - 2.0,
                x0 + AXIS_W,
                y + CELL_H - 2.0,
                layer.total,
                escape(&sig3(layer.total)),
            );
            for (j, n) in layer.top.iter().enumerate() {
                let x = x0 + AXIS_W + TOTAL_W + j as f64 * CHIP_W;
                let _ = write!(
                    g,
                    r#"<g class="neuron" data-layer="{l}" data-neuron="{}" data-score="{}"><title>neuron {l}:{} · {}</title><rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{CELL_H}" fill="{}"/><text font-size="10" x="{:.1}" y="{:.1}">{}</text></g>"#,
                    n.index,
                    n.value,
                    n.index,
                    sig3(n.value),
                    CHIP_W - 2.0,
                    hex(scale.color(n.value)),
                    x + 2.0,
                    y + CELL_H - 2.0,
                    n.index
                );
            }
        }
        g.push_str("</g>");
        g
    }

    /// The HTML export's part: the head grid and the neuron rows, each an SVG.
    pub(super) fn inside_html(&self) -> String {
        let part = |w: f64, h: f64, body: String| {
            format!(
                r#"<div class="grid-wrap"><svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" font-family="{FONT}">{body}</svg></div>"#
            )
        };
        let mut out = String::new();
        if let Some(first) = self.heads.first() {
            let w = AXIS_W + first.len() as f64 * CELL_W + 8.0;
            out += &part(w, self.heads_height(), self.heads_svg(0.0, 0.0));
        }
        if !self.neurons.is_empty() {
            let w = self.neurons_width().max(560.0);
            out += &part(w, self.neurons_height(), self.neurons_svg(0.0, 0.0));
        }
        out
    }
}

/// A neuron chip's width: five digits and room around them.
const CHIP_W: f64 = 5.0 * CHAR_W + 8.0;
/// The layer total's column.
const TOTAL_W: f64 = 9.0 * CHAR_W;
/// A neuron row's height.
const ROW_H: f64 = CELL_H + 4.0;
