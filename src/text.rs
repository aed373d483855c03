//! Small helpers every surface shares, written once (wasm-safe: the page uses them too):
//! whitespace made visible, labels, HTML/XML escaping, number formats, the largest |score|,
//! and Spearman's rank correlation.

/// A token's whitespace made visible, one convention for the page, the exports, the CLI and
/// the figures: a line break is `↵`, a tab `→`, a carriage return is dropped, and with
/// `spaces` a space is `·` (where a token stands alone, as in a label; inline text keeps its
/// spaces).
pub fn visible_whitespace(text: &str, spaces: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('↵'),
            '\t' => out.push('→'),
            '\r' => {}
            ' ' if spaces => out.push('·'),
            c => out.push(c),
        }
    }
    out
}

/// [`visible_whitespace`] for text shown on several lines (a terminal, an HTML export): each
/// line break is marked `↵` and still breaks the line.
pub fn visible_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| visible_whitespace(line, false))
        .collect::<Vec<_>>()
        .join("↵\n")
}

/// A token as a label (an axis, a figure's row): whitespace visible, spaces included, and at
/// most `max` characters, the last of them `…` when it was cut.
pub fn label(text: &str, max: usize) -> String {
    let t = visible_whitespace(text, true);
    if t.chars().count() > max {
        let mut cut: String = t.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        t
    }
}

/// Escapes text for HTML and XML; control characters other than line breaks and tabs (not
/// allowed in XML) become U+FFFD.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `v` with 3 significant digits: `0.0123`, `4.56`, `789`, `1.23e-5`.
pub fn sig3(v: f32) -> String {
    significant(v, 3, -4..6, 2)
}

/// Two significant digits in at most five characters, for a value printed in a small cell.
pub fn short(v: f32) -> String {
    significant(v, 2, -2..3, 0)
}

/// `v` with `digits` significant digits where its order of magnitude is in `plain`, else in
/// scientific notation with `exp_decimals` decimals.
fn significant(v: f32, digits: i32, plain: std::ops::Range<i32>, exp_decimals: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let mag = v.abs().log10().floor() as i32;
    if plain.contains(&mag) {
        let decimals = (digits - 1 - mag).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.exp_decimals$e}")
    }
}

/// A probability as a percentage with one decimal: `77.3%`.
pub fn percent(p: f32) -> String {
    format!("{:.1}%", p * 100.0)
}

/// The largest |value| (0 for none).
pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Spearman's rank correlation of two score lists (average ranks for ties); None when they
/// differ in length, have fewer than two values, or either is constant.
pub fn spearman(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (average_ranks(a), average_ranks(b));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        num += (x - mean) * (y - mean);
        da += (x - mean).powi(2);
        db += (y - mean).powi(2);
    }
    (da > 0.0 && db > 0.0).then(|| (num / (da * db).sqrt()) as f32)
}

/// 1-based ranks, lowest value first; tied values share the mean of their ranks.
fn average_ranks(v: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut ranks = vec![0.0; v.len()];
    let mut k = 0;
    while k < idx.len() {
        let mut end = k + 1;
        while end < idx.len() && v[idx[end]] == v[idx[k]] {
            end += 1;
        }
        let rank = (k + end + 1) as f64 / 2.0;
        for &i in &idx[k..end] {
            ranks[i] = rank;
        }
        k = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_labels() {
        assert_eq!(visible_whitespace("a b\r\n\tc", false), "a b↵→c");
        assert_eq!(visible_whitespace("a b\n", true), "a·b↵");
        assert_eq!(visible_lines("a\tb\nc\n"), "a→b↵\nc↵\n");
        assert_eq!(label(" Paris", 14), "·Paris");
        assert_eq!(label("abcdefghij", 5), "abcd…");
        assert_eq!(label("abcde", 5), "abcde");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape_html("<b a=\"1\">&'x'\u{7}\n</b>"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;x&#39;\u{FFFD}\n&lt;/b&gt;"
        );
    }

    #[test]
    fn spearman_by_hand() {
        assert_eq!(max_abs(&[1.0, -3.0, 2.0]), 3.0);
        assert_eq!(max_abs(&[]), 0.0);
        let close = |x: Option<f32>, want: f32| (x.unwrap() - want).abs() < 1e-6;
        assert!(close(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0));
        assert!(close(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0));
        // Ties: ranks (1.5, 1.5, 3) against (1, 2, 3): r = 0.866.
        assert!(close(
            spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]),
            0.866_025_4
        ));
        // b's ranks are 1, 2, 3.5, 5, 3.5: ρ = 8 / √(10 · 9.5).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(close(
            spearman(&a, &[5.0, 6.0, 7.0, 8.0, 7.0]),
            8.0 / 95f32.sqrt()
        ));
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }

    #[test]
    fn short_values_fit_a_cell() {
        let got: Vec<String> = [0.0, 0.1234, -1.234, 12.34, 123.4, 0.001234, 12345.0]
            .map(short)
            .to_vec();
        assert_eq!(got, ["0", "0.12", "-1.2", "12", "123", "1e-3", "1e4"]);
        assert!(got.iter().all(|s| s.len() <= 5));
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(percent(0.7734), "77.3%");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(1.23456), "1.23");
        assert_eq!(sig3(-0.0123456), "-0.0123");
        assert_eq!(sig3(789.4), "789");
        assert_eq!(sig3(12345.0), "12345");
        assert_eq!(sig3(0.000012345), "1.23e-5");
        assert_eq!(sig3(1234567.0), "1.23e6");
    }
}
