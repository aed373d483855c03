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

/// Text color readable on `bg` (black on light, white on dark).
pub fn text_on(bg: Rgb) -> Rgb {
    let l = 0.299 * bg[0] as f32 + 0.587 * bg[1] as f32 + 0.114 * bg[2] as f32;
    if l > 140.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

/// `#rrggbb`.
pub fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

#[cfg(test)]
mod tests {
    use super::*;

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
