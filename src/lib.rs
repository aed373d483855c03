//! TokenLens: why did a language model say what it said?
//!
//! The engine loads a causal LLM (Llama, Qwen2/3, Gemma 3; GGUF or Hugging Face
//! safetensors) with [candle](https://github.com/huggingface/candle), runs a forward pass
//! that keeps its activations, and attributes a predicted token to the input tokens by
//! explicit backward passes:
//!
//! - gradient-norm **saliency** and **input×gradient**,
//! - **AttnLRP** and **CP-LRP** as LXT's efficient mode computes them,
//! - **integrated gradients** as Captum computes them,
//! - the **latent relevance trace** (layer × token) for each.
//!
//! Each method is a row of [`METHODS`] (`types/method.rs`); its rules and passes are in
//! [`methods`].
//!
//! ```no_run
//! use tokenlens::{Engine, ExplainRequest, Method};
//! let engine = Engine::load("smollm2-135m")?;
//! let ex = engine.explain(&ExplainRequest::new("What is the capital of France?"))?;
//! if let Some((prediction, _target)) = ex.predicted() {
//!     println!("{} {:?}", prediction.best.text, ex.methods[&Method::Saliency].scores);
//! }
//! # Ok::<(), tokenlens::Error>(())
//! ```
//!
//! [`types`] holds the serde types shared with the web front end; it, [`colormap`],
//! [`granularity`] and [`text`] compile without the `engine` feature (for wasm).
#![deny(missing_docs)]

pub mod colormap;
pub mod granularity;
pub mod text;
pub mod types;

#[cfg(feature = "engine")]
mod ablation;
#[cfg(feature = "engine")]
mod candidates;
#[cfg(feature = "engine")]
pub mod chat_template;
#[cfg(feature = "engine")]
mod context;
#[cfg(feature = "engine")]
mod contexts;
#[cfg(feature = "engine")]
mod cost;
#[cfg(feature = "engine")]
mod engine;
#[cfg(feature = "engine")]
mod error;
#[cfg(feature = "engine")]
pub mod faithfulness;
#[cfg(feature = "engine")]
mod generate;
#[cfg(feature = "engine")]
mod gguf_header;
#[cfg(feature = "engine")]
pub mod heap;
#[cfg(feature = "engine")]
pub mod kernels;
#[cfg(feature = "engine")]
mod lens;
#[cfg(feature = "engine")]
pub mod methods;
#[cfg(feature = "engine")]
pub mod models;
#[cfg(feature = "engine")]
mod pieces;
#[cfg(feature = "engine")]
pub mod pre_tokenizer;
#[cfg(feature = "engine")]
mod precision;
#[cfg(feature = "engine")]
pub mod sampling;
#[cfg(feature = "engine")]
mod select;
#[cfg(feature = "engine")]
pub mod source;
#[cfg(feature = "engine")]
mod steps;
#[cfg(feature = "engine")]
mod target;
#[cfg(feature = "engine")]
pub mod tokenizer;
#[cfg(feature = "engine")]
mod unit;

/// The device and dtype types [`LoadOptions`] takes.
#[cfg(feature = "engine")]
pub use candle_core::{DType, Device};
#[cfg(feature = "engine")]
pub use context::Tokenized;
#[cfg(feature = "engine")]
pub use engine::{Engine, LoadOptions};
#[cfg(feature = "engine")]
pub use error::{Error, Result};
pub use types::*;
