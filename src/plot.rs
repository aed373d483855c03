//! Figures for the CLI: the token heatmap (as the first seed draws it) and the layer × token
//! latent relevance trace (as LXT's docs draw it). PNG or SVG by the output's extension.

use anyhow::{bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use tokenlens::colormap::{bwr, viridis, Rgb};
use tokenlens::{Explanation, Method};

/// Fonts tried in order when `TOKENLENS_FONT` is not set.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn load_font() -> anyhow::Result<()> {
    let path = match std::env::var_os("TOKENLENS_FONT") {
        Some(p) => std::path::PathBuf::from(p),
        None => FONT_CANDIDATES
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_file())
            .context("no TrueType font found for figure labels; install fonts-dejavu-core or set TOKENLENS_FONT")?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading font {}", path.display()))?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable font", path.display()))?;
    Ok(())
}

fn color(c: Rgb) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A token as a figure label: whitespace made visible, long tokens shortened.
fn label(text: &str) -> String {
    tokenlens::text::label(text, 18)
}

fn method_of(ex: &Explanation, m: Method) -> anyhow::Result<&tokenlens::MethodResult> {
    ex.methods
        .get(&m)
        .with_context(|| format!("no result for {m}"))
}

/// A figure drawn the same way on the SVG and the bitmap backends.
trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>;
}

fn de(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e:?}")
}

fn font(size: f64) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

fn fmt_score(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 0.01 && v.abs() < 1000.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// A white figure of width `w` with `title` centred on top; returns the width.
fn frame<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    w: u32,
) -> anyhow::Result<i32> {
    let w = w as i32;
    area.fill(&WHITE).map_err(de)?;
    let style = font(16.0).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw_text(title, &style, (w / 2, 8)).map_err(de)?;
    Ok(w)
}

/// A horizontal colorbar with its ends and (for signed maps) its center labelled.
fn colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y, w, h): (i32, i32, i32, i32),
    signed: bool,
    max: f32,
    caption: &str,
) -> anyhow::Result<()> {
    for i in 0..w {
        let t = i as f32 / (w - 1).max(1) as f32;
        let c = if signed {
            bwr(2.0 * t - 1.0)
        } else {
            viridis(t)
        };
        area.draw(&Rectangle::new(
            [(x + i, y), (x + i + 1, y + h)],
            color(c).filled(),
        ))
        .map_err(de)?;
    }
    area.draw(&Rectangle::new(
        [(x, y), (x + w, y + h)],
        BLACK.stroke_width(1),
    ))
    .map_err(de)?;
    let below = font(12.0).pos(Pos::new(HPos::Center, VPos::Top));
    let (lo, mid) = if signed {
        (-max, Some(0.0))
    } else {
        (0.0, None)
    };
    area.draw_text(&fmt_score(lo), &below, (x, y + h + 3))
        .map_err(de)?;
    area.draw_text(&fmt_score(max), &below, (x + w, y + h + 3))
        .map_err(de)?;
    if let Some(m) = mid {
        area.draw_text(&fmt_score(m), &below, (x + w / 2, y + h + 3))
            .map_err(de)?;
    }
    area.draw_text(
        caption,
        &font(13.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
        (x + w / 2, y - 4),
    )
    .map_err(de)?;
    Ok(())
}

/// One row of token cells colored by score, labels below (the first seed's figure).
struct Heatmap {
    title: String,
    caption: String,
    tokens: Vec<String>,
    scores: Vec<f32>,
    signed: bool,
}

const CELL: i32 = 26;
const LABEL_SPACE: i32 = 130;

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        let w = (self.tokens.len() as i32 * CELL + 140).max(760);
        (w as u32, (170 + LABEL_SPACE) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let w = frame(area, &self.title, self.size().0)?;
        let max = tokenlens::text::max_abs(&self.scores);
        colorbar(
            area,
            (w / 2 - 200, 62, 400, 14),
            self.signed,
            max,
            &self.caption,
        )?;
        let (x0, y0) = (100, 110);
        area.draw_text(
            "score",
            &font(13.0).pos(Pos::new(HPos::Right, VPos::Center)),
            (x0 - 8, y0 + 25),
        )
        .map_err(de)?;
        for (i, (tok, &s)) in self.tokens.iter().zip(&self.scores).enumerate() {
            let x = x0 + i as i32 * CELL;
            let v = if max > 0.0 { s / max } else { 0.0 };
            let c = if self.signed { bwr(v) } else { viridis(v) };
            area.draw(&Rectangle::new(
                [(x, y0), (x + CELL, y0 + 50)],
                color(c).filled(),
            ))
            .map_err(de)?;
            let style = font(12.0)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Right, VPos::Center));
            area.draw_text(&label(tok), &style, (x + CELL / 2, y0 + 56))
                .map_err(de)?;
        }
        Ok(())
    }
}

/// Tokens × layers, each layer normalized by its max |value| (LXT's latent trace figure).
struct TraceFigure {
    title: String,
    tokens: Vec<String>,
    /// `[layer][token]`, in [-1, 1].
    normalized: Vec<Vec<f32>>,
}

const TCELL: i32 = 16;

impl Figure for TraceFigure {
    fn size(&self) -> (u32, u32) {
        let w = 170 + self.normalized.len() as i32 * TCELL + 40;
        let h = 130 + self.tokens.len() as i32 * TCELL + 40;
        (w.max(600) as u32, h as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        let w = frame(area, &self.title, self.size().0)?;
        colorbar(
            area,
            (w / 2 - 150, 58, 300, 12),
            true,
            1.0,
            "relevance (normalized per layer)",
        )?;
        let (x0, y0) = (170, 110);
        let n_layers = self.normalized.len() as i32;
        for (l, row) in self.normalized.iter().enumerate() {
            for (t, &v) in row.iter().enumerate() {
                let (x, y) = (x0 + l as i32 * TCELL, y0 + t as i32 * TCELL);
                area.draw(&Rectangle::new(
                    [(x, y), (x + TCELL, y + TCELL)],
                    color(bwr(v)).filled(),
                ))
                .map_err(de)?;
            }
            if l % 5 == 0 || l as i32 == n_layers - 1 {
                let x = x0 + l as i32 * TCELL + TCELL / 2;
                area.draw_text(
                    &l.to_string(),
                    &font(11.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
                    (x, y0 - 3),
                )
                .map_err(de)?;
            }
        }
        area.draw_text(
            "layer",
            &font(12.0).pos(Pos::new(HPos::Right, VPos::Bottom)),
            (x0 - 6, y0 - 3),
        )
        .map_err(de)?;
        for (t, tok) in self.tokens.iter().enumerate() {
            let y = y0 + t as i32 * TCELL + TCELL / 2;
            area.draw_text(
                &label(tok),
                &font(11.0).pos(Pos::new(HPos::Right, VPos::Center)),
                (x0 - 6, y),
            )
            .map_err(de)?;
        }
        Ok(())
    }
}

/// Writes the heatmap of `method`'s scores; `query_only` keeps the user's tokens (as the first
/// seed does) when the prompt was templated.
pub fn heatmap(ex: &Explanation, m: Method, query_only: bool, path: &Path) -> anyhow::Result<()> {
    let (method, r) = (m.name(), method_of(ex, m)?);
    let [a, b] = match ex.query_span {
        Some(span) if query_only => span,
        _ => [0, ex.tokens.len()],
    };
    let target = ex.target.as_ref().context("no target")?;
    let fig = Heatmap {
        title: format!(
            "{} of the next token {:?} ({})",
            method, target.token.text, ex.model
        ),
        caption: if m.is_signed() {
            format!("{method} (red +, blue −)")
        } else {
            format!("{method} (gradient norm)")
        },
        tokens: ex.tokens[a..b].iter().map(|t| t.text.clone()).collect(),
        scores: r.scores[a..b].to_vec(),
        signed: m.is_signed(),
    };
    save(&fig, path)
}

/// Writes the layer × token latent relevance trace of `method`.
pub fn trace(ex: &Explanation, m: Method, path: &Path) -> anyhow::Result<()> {
    let (method, r) = (m.name(), method_of(ex, m)?);
    let target = ex.target.as_ref().context("no target")?;
    let fig = TraceFigure {
        title: format!(
            "Latent relevance trace ({method}) for {:?}",
            target.token.text
        ),
        tokens: ex.tokens.iter().map(|t| t.text.clone()).collect(),
        normalized: r.trace_normalized.clone(),
    };
    save(&fig, path)
}

fn save(fig: &impl Figure, path: &Path) -> anyhow::Result<()> {
    load_font()?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "svg" => {
            let area = SVGBackend::new(path, fig.size()).into_drawing_area();
            fig.draw(&area)?;
            area.present()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        "png" => {
            let area = BitMapBackend::new(path, fig.size()).into_drawing_area();
            fig.draw(&area)?;
            area.present()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        _ => bail!("output must end in .png or .svg, not {}", path.display()),
    }
    Ok(())
}
