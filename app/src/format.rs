//! Number formatting and score ranking for the page (pure functions).

/// `v` with 3 significant digits: `0.0123`, `4.56`, `789`, `1.23e-5`.
pub fn sig3(v: f32) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let mag = v.abs().log10().floor() as i32;
    if (-4..6).contains(&mag) {
        let decimals = (2 - mag).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.2e}")
    }
}

/// Two significant digits in at most five characters, for a value printed in a small cell.
pub fn short(v: f32) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let mag = v.abs().log10().floor() as i32;
    if (-2..3).contains(&mag) {
        let decimals = (1 - mag).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.0e}")
    }
}

/// 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st, …
pub fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// 1-based rank of each score, highest first (ties share the better rank).
pub fn ranks(scores: &[f32]) -> Vec<usize> {
    scores
        .iter()
        .map(|s| 1 + scores.iter().filter(|o| *o > s).count())
        .collect()
}

/// A size for messages: `812 B`, `51 KB`, `3.4 MB`.
pub fn size(bytes: u64) -> String {
    const KB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KB {
        format!("{bytes} B")
    } else if b < KB * KB {
        format!("{:.0} KB", b / KB)
    } else {
        format!("{:.1} MB", b / (KB * KB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
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
        assert_eq!(sig3(0.0), "0");
        assert_eq!(sig3(1.23456), "1.23");
        assert_eq!(sig3(-0.0123456), "-0.0123");
        assert_eq!(sig3(789.4), "789");
        assert_eq!(sig3(12345.0), "12345");
        assert_eq!(sig3(0.000012345), "1.23e-5");
        assert_eq!(sig3(1234567.0), "1.23e6");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(100), "100 B");
        assert_eq!(size(52_428), "51 KB");
        assert_eq!(size(3_565_158), "3.4 MB");
    }

    #[test]
    fn ranks_highest_first() {
        assert_eq!(ranks(&[0.5, 2.0, -1.0, 2.0]), vec![3, 1, 4, 1]);
    }
}
