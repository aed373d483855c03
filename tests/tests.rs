//! Integration tests: one binary (see Cargo.toml), a module per area.

mod gguf_vocab;
mod util;

mod answer;
mod backward;
mod cancel;
mod cli;
mod cli_files;
mod delta_rule;
mod errors;
mod faithfulness;
mod families;
mod fuzz_loaders;
mod gated_deltanet;
mod gemma4_gguf;
mod generation;
mod integrated_gradients;
mod lens;
mod llama_vocabs;
mod model_files;
mod neurons;
mod pieces;
mod precision;
mod qwen35_gguf;
mod reference;
mod span;
mod steer;
mod templates;
mod tiny_gguf;
mod tokenizers;
mod units;
