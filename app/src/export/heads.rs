//! The layer × head relevance grid of a figure (with neurons and heads on), on one signed
//! scale as the page draws it.

use std::fmt::Write as _;
use tokenlens::colormap::{hex, ColorScale};

use super::{Figure, AXIS_W, CELL_H, CELL_W};
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

    /// The heads' scale: blue–white–red, ending at the largest |relevance|.
    fn heads_scale(&self) -> ColorScale {
        let max =
            self.heads
                .iter()
                .flatten()
                .fold(0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m });
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
        let scale = self.heads_scale();
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
}
