//! A comparison as a figure: the three rows (A, B, B − A) as tracks, wrapped into lines,
//! with a title and a legend. SVG, which the page also rasterizes to PNG.

use std::fmt::Write as _;
use tokenlens::colormap::{hex, text_on, ColorScale};

use super::Segment;
use crate::export::{escape, CHAR_W, FONT, PAD};
use crate::format::sig3;

const TRACK_H: f64 = 18.0;
const LABEL_W: f64 = 48.0;
const WIDTH: f64 = 1100.0;

fn seg_text(s: &Segment, track: usize) -> String {
    let t = match track {
        0 => s.a_text.clone(),
        1 => s.b_text.clone(),
        _ if s.edited => format!("{}→{}", s.a_text, s.b_text),
        _ => s.a_text.clone(),
    };
    tokenlens::text::visible_whitespace(&t, false)
}

fn seg_width(s: &Segment) -> f64 {
    let chars = (0..3)
        .map(|t| seg_text(s, t).chars().count())
        .max()
        .unwrap_or(0);
    chars.max(1) as f64 * CHAR_W + 4.0
}

/// The figure: SVG text, width and height in px.
pub fn svg(
    segments: &[Segment],
    title: &str,
    a_label: &str,
    b_label: &str,
    scale: &ColorScale,
) -> (String, u32, u32) {
    // Lines of segments that fit the width.
    let mut lines: Vec<Vec<&Segment>> = vec![Vec::new()];
    let mut x = 0.0;
    for s in segments {
        let w = seg_width(s);
        if x + w > WIDTH - LABEL_W - 2.0 * PAD && lines.last().is_some_and(|l| !l.is_empty()) {
            lines.push(Vec::new());
            x = 0.0;
        }
        if let Some(l) = lines.last_mut() {
            l.push(s);
        }
        x += w;
    }
    let head = PAD + 56.0;
    let line_h = 3.0 * TRACK_H + 10.0;
    let h = head + lines.len() as f64 * line_h + PAD;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" font-family="{FONT}" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        out,
        r##"<text x="{PAD}" y="{}" font-size="14" font-weight="bold">{}</text><text x="{PAD}" y="{}">A: {}</text><text x="{PAD}" y="{}">B: {}</text><text x="{PAD}" y="{}" fill="#596072">shares of each row's total |score|; one scale, ±{} (blue − … red +)</text>"##,
        PAD + 12.0,
        escape(title),
        PAD + 28.0,
        escape(a_label),
        PAD + 42.0,
        escape(b_label),
        PAD + 56.0,
        sig3(scale.max),
    );
    for (i, line) in lines.iter().enumerate() {
        let y0 = head + 8.0 + i as f64 * line_h;
        for (t, name) in ["A", "B", "B−A"].iter().enumerate() {
            let y = y0 + t as f64 * TRACK_H;
            let _ = write!(
                out,
                r##"<text x="{PAD}" y="{}" fill="#596072">{name}</text>"##,
                y + 13.0
            );
            let mut x = PAD + LABEL_W;
            for s in line {
                let w = seg_width(s);
                let v = [s.a, s.b, s.diff()][t];
                let bg = scale.color(v);
                let _ = write!(
                    out,
                    r#"<g data-track="{t}" data-value="{v}"><rect x="{x}" y="{y}" width="{w}" height="{}" fill="{}"/><text x="{}" y="{}" fill="{}">{}</text></g>"#,
                    TRACK_H - 2.0,
                    hex(bg),
                    x + 2.0,
                    y + 12.0,
                    hex(text_on(bg)),
                    escape(&seg_text(s, t)),
                );
                x += w;
            }
        }
    }
    out.push_str("</svg>");
    (out, WIDTH as u32, h.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_segment_is_drawn_on_three_tracks_and_text_is_escaped() {
        let seg = |a: &str, b: &str, x: f32, y: f32, edited: bool| Segment {
            a_text: a.into(),
            b_text: b.into(),
            a: x,
            b: y,
            edited,
        };
        let segs = vec![
            seg("<a>", "<a>", 0.5, 0.25, false),
            seg("cat", "dog", 0.5, 0.75, true),
        ];
        let scale = ColorScale {
            signed: true,
            max: 0.75,
            gamma: 1.0,
        };
        let (svg, w, h) = svg(&segs, "t & u", "A model", "B model", &scale);
        assert_eq!(svg.matches("<g data-track").count(), 6);
        assert!(svg.contains("&lt;a&gt;") && svg.contains("t &amp; u"));
        assert!(svg.contains("cat→dog"));
        assert!(svg.contains(r#"data-track="2" data-value="0.25""#));
        assert!(w > 0 && h > 0);
    }
}
