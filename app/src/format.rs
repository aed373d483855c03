//! Number formatting and score ranking for the page (pure functions); the number formats
//! every surface shares are `tokenlens::text`'s.

pub use tokenlens::text::{percent, short, sig3};

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
