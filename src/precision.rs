//! What a request's [`Precision`] means for its passes: `auto` resolved against the machine
//! and the request's size, and the products each kind of pass runs with.

use crate::kernels::{self, Products};
use crate::{Precision, StreamEvent};

/// How a request's passes multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// What the request runs in: `F32` or `Bf16`, never `Auto`.
    pub precision: Precision,
    /// The passes attribution differentiates: the saved forward and the backward passes.
    pub attribution: Products,
    /// Forward-only passes: the prediction's and the lens' output layer, the perturbation
    /// curves, generation.
    pub forward: Products,
    /// Why bf16, asked for, is not what the request runs in.
    pub fallback: Option<&'static str>,
}

impl Plan {
    /// Every product in f32.
    pub const F32: Plan = Plan {
        precision: Precision::F32,
        attribution: Products::F32,
        forward: Products::F32,
        fallback: None,
    };

    /// bf16 attribution, forward passes on the weights as stored.
    const BF16: Plan = Plan {
        precision: Precision::Bf16,
        attribution: Products::Bf16,
        forward: Products::Stored,
        fallback: None,
    };

    /// The `precision` event a stream sends for this plan (none for f32 asked for).
    pub fn event(&self) -> Option<StreamEvent> {
        (self.precision != Precision::F32 || self.fallback.is_some()).then(|| {
            StreamEvent::Precision {
                precision: self.precision,
                note: self.note(),
            }
        })
    }

    /// What a reader is told beside the result when it is not in the precision asked for.
    pub fn note(&self) -> Option<String> {
        self.fallback
            .map(|why| format!("bf16 was asked for; every product ran in f32: {why}"))
    }
}

/// An explanation `auto` keeps in f32: at most about this long in f32 on this machine.
const AUTO_F32_SECONDS: f64 = 1.0;

/// What a whole f32 pass achieves per thread, in FLOP/s: OpenBLAS' sgemm gives an explanation
/// 140-180 GFLOP/s on this project's 2-core machine (BENCHMARKS.md). A fixed figure, not a
/// measured one, so that `auto` picks the same precision for the same request every time.
const F32_FLOPS_PER_THREAD: f64 = 70e9;

impl crate::Engine {
    /// The FLOPs of one forward pass over `tokens` tokens (≈ 2 × the layers' matrix
    /// parameters × tokens).
    pub(crate) fn forward_flops(&self, tokens: usize) -> f64 {
        2.0 * self.layer_matrix_params() as f64 * tokens as f64
    }

    /// Seconds an explanation of `tokens` tokens with `backward` backward passes would take
    /// in f32 here (each backward pass costs about a forward pass).
    pub fn f32_seconds(&self, tokens: usize, backward: usize) -> f64 {
        let rate = F32_FLOPS_PER_THREAD * kernels::threads() as f64;
        self.forward_flops(tokens) * (1 + backward) as f64 / rate
    }

    /// The plan of an explanation (or All-steps matrix) of `tokens` tokens with `backward`
    /// backward passes: `auto` is f32 where that takes at most about a second here, bf16
    /// above; bf16 where the machine has no bf16 products is f32 (logged).
    pub(crate) fn explanation_plan(
        &self,
        asked: Precision,
        tokens: usize,
        backward: usize,
    ) -> Plan {
        match asked {
            Precision::F32 => Plan::F32,
            Precision::Auto if self.f32_seconds(tokens, backward) <= AUTO_F32_SECONDS => Plan::F32,
            _ => self.bf16_or_f32(asked),
        }
    }

    /// The plan of a generation: `auto` generates on the weights as stored when the model's
    /// file quantizes them (as llama.cpp does), else as `bf16`.
    pub(crate) fn generation_plan(&self, asked: Precision) -> Plan {
        match asked {
            Precision::F32 => Plan::F32,
            _ if self.decoder().has_stored_blocks() => Plan::BF16,
            _ => self.bf16_or_f32(asked),
        }
    }

    /// Why this engine's explanations cannot multiply in bf16 (they run in f32), if they
    /// cannot: a CPU without bf16 instructions, or oneMKL not installed. bf16 products on a
    /// GPU are candle's (cuBLAS, tensor cores), always there.
    pub fn bf16_unavailable(&self) -> Option<&'static str> {
        match self.device().is_cpu() {
            true => kernels::bf16_unavailable_reason(),
            false => None,
        }
    }

    /// Whether this engine's bf16 products are emulated (`TOKENLENS_BF16=emulate` on a CPU
    /// without bf16 units): bf16's numbers, no faster than f32.
    pub fn bf16_emulated(&self) -> bool {
        self.device().is_cpu() && kernels::bf16_emulated()
    }

    /// bf16 where the machine has it, else f32, noted as a fallback where bf16 was `asked`
    /// for (`auto` is f32 on such a machine by definition, and where bf16 is only emulated:
    /// it would be no faster).
    fn bf16_or_f32(&self, asked: Precision) -> Plan {
        if asked == Precision::Auto && self.device().is_cpu() && !kernels::bf16_units() {
            return Plan::F32;
        }
        match self.bf16_unavailable() {
            None => Plan::BF16,
            Some(why) => {
                if asked != Precision::Bf16 {
                    return Plan::F32;
                }
                tracing::warn!(%why, "bf16 asked for: computing in f32");
                Plan {
                    fallback: Some(why),
                    ..Plan::F32
                }
            }
        }
    }
}
