//! Attribution methods. Each method is a set of backward rules ([`crate::models::Rules`])
//! plus a way to turn the input gradient into one score per token: a row of [`ENGINE`]
//! (its other half, name, label and sign, is a row of [`crate::types::METHODS`]). A new
//! method: its file with its rules and reference, and a row in each table.

pub mod attnlrp;
pub mod gradient;

use crate::models::Rules;
use crate::types::Method;

/// How a method turns d(target)/d(embeddings) into one score per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// `‖g_t‖₂` over the hidden dimension.
    GradientNorm,
    /// `Σ_d e_t,d · g_t,d` (input × gradient; relevance under LRP rules).
    InputTimesGradient,
}

/// The engine's half of a method.
#[derive(Debug, Clone, Copy)]
pub struct MethodRules {
    /// The method.
    pub method: Method,
    /// Its backward pass's rules; methods with the same rules share one backward pass.
    pub rules: &'static Rules,
    /// Its per-token scores.
    pub reduction: Reduction,
    /// Whether its scores should sum to the explained logit (LRP's conservation, reported).
    pub conserves: bool,
}

/// Every method's rules and reduction, in [`Method`]'s order.
pub const ENGINE: [MethodRules; 4] = [
    MethodRules {
        method: Method::Saliency,
        rules: &Rules::PLAIN,
        reduction: Reduction::GradientNorm,
        conserves: false,
    },
    MethodRules {
        method: Method::InputXGradient,
        rules: &Rules::PLAIN,
        reduction: Reduction::InputTimesGradient,
        conserves: false,
    },
    MethodRules {
        method: Method::Attnlrp,
        rules: &attnlrp::ATTNLRP,
        reduction: Reduction::InputTimesGradient,
        conserves: true,
    },
    MethodRules {
        method: Method::CpLrp,
        rules: &attnlrp::CP_LRP,
        reduction: Reduction::InputTimesGradient,
        conserves: true,
    },
];

impl MethodRules {
    /// A method's row.
    pub fn of(method: Method) -> &'static MethodRules {
        // Rows follow the variants' order (a test holds them together).
        &ENGINE[method as usize]
    }

    /// The per-token scores from `embeds` and the gradient `grad`, both `(seq, hidden)`.
    pub fn scores(
        &self,
        embeds: &candle_core::Tensor,
        grad: &candle_core::Tensor,
    ) -> candle_core::Result<Vec<f32>> {
        match self.reduction {
            Reduction::GradientNorm => gradient::l2_norm(grad),
            Reduction::InputTimesGradient => gradient::dot(embeds, grad),
        }
    }
}

/// The distinct backward passes `methods` need, in first-use order.
pub fn passes(methods: &[Method]) -> Vec<&'static Rules> {
    let mut out: Vec<&'static Rules> = Vec::new();
    for &m in methods {
        let r = MethodRules::of(m).rules;
        if !out.iter().any(|o| std::ptr::eq(*o, r)) {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::METHODS;

    /// Both tables list every method once, in the variants' order.
    #[test]
    fn tables_follow_the_variants() {
        for (i, (a, b)) in METHODS.iter().zip(&ENGINE).enumerate() {
            assert_eq!(a.method as usize, i);
            assert_eq!(b.method, a.method);
            assert_eq!(Method::from_name(a.name), Some(a.method));
        }
        assert_eq!(METHODS.len(), ENGINE.len());
        assert_eq!(passes(&Method::ALL).len(), 3);
    }
}
