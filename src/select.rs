//! Picking the best few of many (a vocabulary's logits, a layer's neurons) without ordering
//! the rest.

use std::cmp::Ordering;

/// The indices of `0..n` of the `k` best under `better` (`Less`: its first index is the
/// better), best first. The `k` are selected before they are sorted, so the top 10 of a
/// 260k vocabulary cost one pass over it, not a sort.
pub(crate) fn top_k_by(
    n: usize,
    k: usize,
    better: impl Fn(usize, usize) -> Ordering,
) -> Vec<usize> {
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let by = |a: &usize, b: &usize| better(*a, *b);
    let mut idx: Vec<usize> = (0..n).collect();
    if k < n {
        idx.select_nth_unstable_by(k - 1, by);
        idx.truncate(k);
    }
    idx.sort_by(by);
    idx
}

/// The indices of the `k` largest `values`, largest first.
pub(crate) fn largest(values: &[f32], k: usize) -> Vec<usize> {
    top_k_by(values.len(), k, |a, b| values[b].total_cmp(&values[a]))
}

/// The indices of the `k` smallest `values`, smallest first.
pub(crate) fn smallest(values: &[f32], k: usize) -> Vec<usize> {
    top_k_by(values.len(), k, |a, b| values[a].total_cmp(&values[b]))
}

/// The indices of the `k` values of largest magnitude, largest first.
pub(crate) fn largest_magnitude(values: &[f32], k: usize) -> Vec<usize> {
    top_k_by(values.len(), k, |a, b| {
        values[b].abs().total_cmp(&values[a].abs())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_then_orders() {
        let v = [0.5, -3.0, 2.0, 7.0, -1.0, 2.5];
        assert_eq!(largest(&v, 3), [3, 5, 2]);
        assert_eq!(smallest(&v, 2), [1, 4]);
        assert_eq!(largest_magnitude(&v, 2), [3, 1]);
        assert_eq!(largest(&v, 10), [3, 5, 2, 0, 4, 1]);
        assert!(largest(&v, 0).is_empty() && largest(&[], 3).is_empty());
    }
}
