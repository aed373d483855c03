//! The method registry: one row per attribution method, from which every surface derives
//! (the CLI's `--methods` and its help, JSON and URL names, errors, the page's toggles and
//! descriptions, the cost model, the engine's passes, the reference fixtures' coverage test).
//! A row says what the method is called, what it measures and how it runs; the engine's half
//! of "how" (rule kernels, reductions, multi-pass plans) lives in `crate::methods`.
//!
//! A new method: one row in [`registry!`] below, plus its file in `src/methods/` when it
//! needs a new rule set or a new kind of pass.

use serde::{Deserialize, Serialize};

/// The backward rules a pass runs under (the kernels are in `crate::methods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleSet {
    /// Ordinary gradients.
    Plain,
    /// AttnLRP, LXT's efficient mode.
    AttnLrp,
    /// CP-LRP: attention weights and the MLP gate held constant.
    CpLrp,
}

/// The passes a method's scores come from. Methods with the same pass share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// One backward pass from the saved forward pass.
    Backward(RuleSet),
    /// Integrated gradients: `steps` equally spaced points on the straight path from the
    /// zero embedding to the input (the baseline excluded, the input included), each a
    /// plain backward pass from its own forward pass (the input's is the one already run;
    /// the baseline gets a forward pass only); the gradients averaged (the right Riemann
    /// sum, Captum's `riemann_right`).
    Integrated {
        /// Points on the path after the baseline.
        steps: u16,
    },
}

impl Pass {
    /// What the pass costs in forward + backward passes.
    pub fn cost(self) -> u64 {
        match self {
            Pass::Backward(_) => 1,
            Pass::Integrated { steps } => u64::from(steps),
        }
    }
}

/// How a method turns its pass's gradient into one score per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// `‖g_t‖₂` over the hidden dimension.
    GradientNorm,
    /// `Σ_d e_t,d · g_t,d` (input × gradient; relevance under LRP rules; for integrated
    /// gradients, whose baseline is the zero embedding, the path's attribution).
    InputTimesGradient,
}

/// Which sum the scores are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// None.
    None,
    /// LRP's conservation: the scores sum to about the explained value.
    Conservation,
    /// A path method's completeness: the scores sum to the explained function at the input
    /// less at the baseline (up to the integration error).
    Completeness,
}

/// How a method runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runs {
    /// Its passes.
    pub pass: Pass,
    /// Its per-token scores from the pass's gradient.
    pub reduction: Reduction,
    /// The sum its scores are checked against.
    pub check: Check,
}

/// What every surface knows of a method: one row per method in [`METHODS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// The method.
    pub method: Method,
    /// Its name on the command line, in JSON and in URLs.
    pub name: &'static str,
    /// Its name on the page.
    pub label: &'static str,
    /// Whether scores can be negative (a diverging colormap).
    pub signed: bool,
    /// What it measures, in one line (the page's hint, `--help`).
    pub about: &'static str,
    /// How it runs.
    pub runs: Runs,
}

/// The table: each row makes a [`Method`] variant (named as JSON and URLs name it) and its
/// [`MethodInfo`].
macro_rules! registry {
    ($($variant:ident: $name:literal, $label:literal, signed $signed:literal,
       $pass:expr, $reduction:ident, $check:ident,
       $about:literal;)*) => {
        /// An attribution method (the rows of [`METHODS`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Method {
            $(
                #[doc = $about]
                #[serde(rename = $name)]
                $variant,
            )*
        }

        /// Every method, in display order (also the order of [`Method`]'s variants).
        pub const METHODS: &[MethodInfo] = &[$(MethodInfo {
            method: Method::$variant,
            name: $name,
            label: $label,
            signed: $signed,
            about: $about,
            runs: Runs { pass: $pass, reduction: Reduction::$reduction, check: Check::$check },
        },)*];

        impl Method {
            /// Every method, in display order.
            pub const ALL: &[Method] = &[$(Method::$variant),*];
        }
    };
}

registry! {
    Saliency: "saliency", "Saliency", signed false,
        Pass::Backward(RuleSet::Plain), GradientNorm, None,
        "how strongly the target reacts to each token: the gradient's L2 norm (unsigned)";
    InputXGradient: "input_x_gradient", "Input × gradient", signed true,
        Pass::Backward(RuleSet::Plain), InputTimesGradient, None,
        "embedding times gradient, summed: a first-order share of the target (signed)";
    Attnlrp: "attnlrp", "AttnLRP", signed true,
        Pass::Backward(RuleSet::AttnLrp), InputTimesGradient, Conservation,
        "layer-wise relevance with attention-aware rules; sums to about the logit (signed)";
    CpLrp: "cp_lrp", "CP-LRP", signed true,
        Pass::Backward(RuleSet::CpLrp), InputTimesGradient, Conservation,
        "relevance with attention and the MLP gate held constant (signed)";
    IntegratedGradients: "integrated_gradients", "Integrated gradients", signed true,
        Pass::Integrated { steps: 32 }, InputTimesGradient, Completeness,
        "gradients averaged along the path from a zero embedding, times the input; sums to the target's change along it (signed, 32 passes)";
}

impl Method {
    /// Its row of [`METHODS`].
    pub fn info(self) -> &'static MethodInfo {
        // Rows follow the variants' order: the macro writes both from one list.
        &METHODS[self as usize]
    }

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The name on the page.
    pub fn label(self) -> &'static str {
        self.info().label
    }

    /// Parses a method name as [`Method::name`] writes it.
    pub fn from_name(name: &str) -> Option<Method> {
        METHODS.iter().find(|i| i.name == name).map(|i| i.method)
    }

    /// Every name, comma-separated (for messages and `--help`).
    pub fn names() -> String {
        METHODS
            .iter()
            .map(|i| i.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// True when scores can be negative (use a diverging colormap).
    pub fn is_signed(self) -> bool {
        self.info().signed
    }

    /// How it runs.
    pub fn runs(self) -> Runs {
        self.info().runs
    }

    /// The methods of one pass (a backward pass from the saved forward pass), in display
    /// order: what switching between costs nothing once one is computed.
    pub fn single_pass() -> Vec<Method> {
        Method::ALL
            .iter()
            .copied()
            .filter(|m| m.runs().pass.cost() == 1)
            .collect()
    }
}

impl std::fmt::Display for Method {
    /// Its name, as JSON and URLs write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The distinct passes `methods` need, in first-use order.
pub fn passes(methods: &[Method]) -> Vec<Pass> {
    let mut out: Vec<Pass> = Vec::new();
    for m in methods {
        let p = m.runs().pass;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// What `methods` cost in forward + backward passes (at least one: a request with no
/// method still runs a forward pass).
pub fn pass_cost(methods: &[Method]) -> u64 {
    passes(methods).iter().map(|p| p.cost()).sum::<u64>().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows follow the variants, and each name round-trips through serde and the parser.
    #[test]
    fn rows_follow_the_variants() {
        for (i, row) in METHODS.iter().enumerate() {
            assert_eq!(row.method as usize, i);
            assert_eq!(Method::from_name(row.name), Some(row.method));
            let json = serde_json::to_string(&row.method).unwrap();
            assert_eq!(json, format!("\"{}\"", row.name));
        }
        assert_eq!(METHODS.len(), Method::ALL.len());
    }

    #[test]
    fn methods_that_share_a_pass_share_its_cost() {
        use Method::*;
        assert_eq!(pass_cost(&[]), 1);
        assert_eq!(pass_cost(&[Saliency, InputXGradient]), 1);
        assert_eq!(pass_cost(&[Saliency, Attnlrp, CpLrp]), 3);
        assert_eq!(pass_cost(&[Saliency, IntegratedGradients]), 33);
    }
}
