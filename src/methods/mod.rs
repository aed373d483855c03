//! Attribution methods. Each method is a set of backward rules ([`crate::models::Rules`])
//! plus a way to turn the input gradient into one score per token.

pub mod attnlrp;
pub mod gradient;

use crate::models::Rules;
use crate::types::Method;

/// The backward pass a method needs. Methods that share a pass (saliency and
/// input×gradient both use plain gradients) are computed from one backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pass {
    /// Ordinary gradients.
    Plain,
    /// AttnLRP rules.
    AttnLrp,
    /// CP-LRP rules.
    CpLrp,
}

impl Pass {
    /// The pass a method runs on.
    pub fn of(method: Method) -> Pass {
        match method {
            Method::Saliency | Method::InputXGradient => Pass::Plain,
            Method::Attnlrp => Pass::AttnLrp,
            Method::CpLrp => Pass::CpLrp,
        }
    }

    /// Its rules.
    pub fn rules(self) -> &'static Rules {
        match self {
            Pass::Plain => &Rules::PLAIN,
            Pass::AttnLrp => &attnlrp::ATTNLRP,
            Pass::CpLrp => &attnlrp::CP_LRP,
        }
    }
}
