//! Colormaps shared by the CLI's figures and the web page (no dependencies; compiles for
//! wasm).
//!
//! - [`viridis`]: sequential, for unsigned scores (saliency), as the first seed draws them.
//! - [`bwr`]: diverging blue-white-red centered at 0, for signed scores and traces, as LXT
//!   draws them (matplotlib's `bwr`).

/// An sRGB color.
pub type Rgb = [u8; 3];

/// matplotlib's viridis sampled at 9 evenly spaced points (0, 1/8, …, 1).
const VIRIDIS: [Rgb; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    let m = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round() as u8;
    [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])]
}

/// Viridis at `t` in [0, 1] (clamped; NaN is 0).
pub fn viridis(t: f32) -> Rgb {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    lerp(VIRIDIS[i], VIRIDIS[i + 1], x - i as f32)
}

/// Blue-white-red at `v` in [-1, 1] (clamped; NaN is white): -1 blue, 0 white, 1 red.
pub fn bwr(v: f32) -> Rgb {
    let v = if v.is_nan() { 0.0 } else { v.clamp(-1.0, 1.0) };
    if v >= 0.0 {
        lerp([255, 255, 255], [255, 0, 0], v)
    } else {
        lerp([255, 255, 255], [0, 0, 255], -v)
    }
}

/// WCAG 2 relative luminance of an sRGB color (0: black, 1: white).
pub fn luminance(c: Rgb) -> f32 {
    let lin = |v: u8| {
        let v = f32::from(v) / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
}

/// WCAG 2 contrast ratio of two colors (1 to 21; body text wants at least 4.5).
pub fn contrast(a: Rgb, b: Rgb) -> f32 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// Black or white text, whichever contrasts more with `bg`: at least 4.58:1 on any color
/// (the worst background is the one equally far from both), so text passes WCAG AA on
/// every colormap.
pub fn text_on(bg: Rgb) -> Rgb {
    const BLACK: Rgb = [0, 0, 0];
    const WHITE: Rgb = [255, 255, 255];
    if contrast(BLACK, bg) >= contrast(WHITE, bg) {
        BLACK
    } else {
        WHITE
    }
}

/// `#rrggbb`.
pub fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token text on every color either colormap draws is readable (WCAG AA, 4.5:1).
    #[test]
    fn text_contrasts_at_least_4_5_on_every_color() {
        let samples = (0..=200).map(|i| i as f32 / 200.0);
        let colors: Vec<Rgb> = samples
            .clone()
            .map(viridis)
            .chain(samples.clone().map(bwr))
            .chain(samples.map(|t| bwr(-t)))
            .collect();
        for c in colors {
            let r = contrast(text_on(c), c);
            assert!(r >= 4.5, "{c:?}: {r}");
        }
        // Pure red took white text before (4.0:1); black reads better (5.3:1).
        assert_eq!(text_on([255, 0, 0]), [0, 0, 0]);
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-3);
    }

    #[test]
    fn ends_and_center() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(2.0), viridis(1.0));
        assert_eq!(bwr(0.0), [255, 255, 255]);
        assert_eq!(bwr(1.0), [255, 0, 0]);
        assert_eq!(bwr(-1.0), [0, 0, 255]);
        assert_eq!(bwr(-0.5), [128, 128, 255]);
        assert_eq!(bwr(f32::NAN), [255, 255, 255]);
        assert_eq!(hex([255, 0, 16]), "#ff0010");
        assert_eq!(text_on([255, 255, 255]), [0, 0, 0]);
        assert_eq!(text_on(viridis(0.0)), [255, 255, 255]);
    }
}

/// How scores map to colors: the page's color controls and the CLI's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorScale {
    /// Diverging colors around 0 (signed scores) or sequential ones over |score|.
    pub signed: bool,
    /// The |score| that gets the end color; larger ones are clipped.
    pub max: f32,
    /// Exponent on the normalized magnitude (< 1 brightens small scores).
    pub gamma: f32,
}

impl ColorScale {
    /// The normalized value of a score: in [-1, 1] when signed, [0, 1] otherwise.
    pub fn normalize(&self, score: f32) -> f32 {
        let v = if self.signed { score } else { score.abs() };
        if self.max.is_nan() || self.max <= 0.0 || v.is_nan() {
            return 0.0;
        }
        let m = (v.abs() / self.max).min(1.0);
        let g = if self.gamma > 0.0 { self.gamma } else { 1.0 };
        m.powf(g).copysign(v)
    }

    /// The color of a score.
    pub fn color(&self, score: f32) -> Rgb {
        let v = self.normalize(score);
        if self.signed {
            bwr(v)
        } else {
            viridis(v)
        }
    }
}

/// The `q`-quantile (0..=1) of |scores| (nearest rank), 0 for no scores: a clip point that
/// keeps one outlier (often the first token) from washing out the rest.
pub fn abs_quantile(scores: &[f32], q: f32) -> f32 {
    let mut a: Vec<f32> = scores
        .iter()
        .map(|s| s.abs())
        .filter(|s| !s.is_nan())
        .collect();
    if a.is_empty() {
        return 0.0;
    }
    a.sort_by(f32::total_cmp);
    let k = ((q.clamp(0.0, 1.0) * a.len() as f32).ceil() as usize).clamp(1, a.len());
    a[k - 1]
}

#[cfg(test)]
mod scale_tests {
    use super::*;

    #[test]
    fn scale_clips_and_bends() {
        let s = ColorScale {
            signed: true,
            max: 2.0,
            gamma: 0.5,
        };
        assert_eq!(s.normalize(-8.0), -1.0);
        assert!((s.normalize(0.5) - 0.5).abs() < 1e-6); // (0.25)^0.5
        assert_eq!(s.color(0.0), bwr(0.0));
        let u = ColorScale {
            signed: false,
            max: 4.0,
            gamma: 1.0,
        };
        assert_eq!(u.normalize(-2.0), 0.5);
        assert_eq!(abs_quantile(&[1.0, -4.0, 2.0, 3.0], 1.0), 4.0);
        assert_eq!(abs_quantile(&[1.0, -4.0, 2.0, 3.0], 0.75), 3.0);
        assert_eq!(abs_quantile(&[], 0.9), 0.0);
    }
}
