//! Qwen3.5 from a GGUF as llama.cpp's converter writes it (`conversion/qwen.py`,
//! `Qwen3NextModel` and `_LinearAttentionVReorderBase`): the DeltaNet's shape as `ssm.*` keys,
//! its layers as `attention.recurrent_layers`, value heads reordered from grouped to tiled in
//! every tensor that has them, `A_log` stored as `ssm_a = −exp(A_log)`, the convolution
//! squeezed, every norm but the DeltaNet's output norm stored as `1 + w`. The tiny Qwen3.5
//! has 2 key heads and 4 value heads, so a reader that ignored the reorder would pair the
//! wrong heads.

use crate::tiny_gguf::{gguf_explains_as_directory_within, tiny_gguf, Convert, Extra, Weights};
use candle_core::quantized::gguf_file::Value;
use candle_core::Tensor;
use tokenlens::Engine;

/// The converter's `_reorder_v_heads`: along `dim`, blocks of `width` per value head move
/// from grouped order (key head `k`'s `r` value heads consecutive, `k·r + j`) to tiled
/// (`j·key_heads + k`).
fn tile(t: &Tensor, dim: usize, key_heads: usize, r: usize, width: usize) -> Tensor {
    let idx: Vec<u32> = (0..key_heads * r)
        .flat_map(|g| {
            let h = (g % key_heads) * r + g / key_heads;
            (0..width).map(move |i| (h * width + i) as u32)
        })
        .collect();
    let idx = Tensor::new(idx, t.device()).unwrap();
    t.index_select(&idx, dim).unwrap()
}

/// Only the values' part of `t` along dim 0 (after the queries' and keys' `qk` rows) tiled.
fn tile_values(t: &Tensor, qk: usize, key_heads: usize, r: usize, width: usize) -> Tensor {
    let rows = t.dim(0).unwrap();
    let v = tile(&t.narrow(0, qk, rows - qk).unwrap(), 0, key_heads, r, width);
    Tensor::cat(&[&t.narrow(0, 0, qk).unwrap(), &v], 0).unwrap()
}

fn qwen35_extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, w: &Weights) -> Extra {
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (hk, hv, dk, dv) = (
        n("linear_num_key_heads"),
        n("linear_num_value_heads"),
        n("linear_key_head_dim"),
        n("linear_value_head_dim"),
    );
    let r = hv / hk;
    let head = n("head_dim");
    let partial = cfg["rope_parameters"]["partial_rotary_factor"]
        .as_f64()
        .unwrap();
    let types = cfg["layer_types"].as_array().unwrap();
    let u = |x: usize| Value::U32(x as u32);
    let md = vec![
        (key("ssm.conv_kernel"), u(n("linear_conv_kernel_dim"))),
        (key("ssm.state_size"), u(dk)),
        (key("ssm.group_count"), u(hk)),
        (key("ssm.time_step_rank"), u(hv)),
        (key("ssm.inner_size"), u(hv * dv)),
        (
            key("attention.recurrent_layers"),
            Value::Array(
                types
                    .iter()
                    .map(|t| Value::Bool(t == "linear_attention"))
                    .collect(),
            ),
        ),
        (key("full_attention_interval"), u(4)),
        (key("attention.key_length"), u(head)),
        (key("attention.value_length"), u(head)),
        (
            key("rope.dimension_count"),
            u((head as f64 * partial) as usize),
        ),
    ];
    let f32 = |t: &Tensor| t.to_dtype(candle_core::DType::F32).unwrap();
    let mut tensors = Vec::new();
    for (name, t) in w {
        let t = f32(t);
        if name == "model.norm.weight" {
            tensors.push(("output_norm.weight".into(), (t + 1.0).unwrap()));
            continue;
        }
        let Some(rest) = name.strip_prefix("model.layers.") else {
            continue;
        };
        let (l, tail) = rest.split_once('.').unwrap();
        let blk = |part: &str| format!("blk.{l}.{part}");
        let (out, t) = match tail {
            "input_layernorm.weight" => (blk("attn_norm.weight"), (t + 1.0).unwrap()),
            "post_attention_layernorm.weight" => {
                (blk("post_attention_norm.weight"), (t + 1.0).unwrap())
            }
            "self_attn.q_norm.weight" => (blk("attn_q_norm.weight"), (t + 1.0).unwrap()),
            "self_attn.k_norm.weight" => (blk("attn_k_norm.weight"), (t + 1.0).unwrap()),
            "linear_attn.in_proj_qkv.weight" => (
                blk("attn_qkv.weight"),
                tile_values(&t, 2 * hk * dk, hk, r, dv),
            ),
            "linear_attn.in_proj_z.weight" => (blk("attn_gate.weight"), tile(&t, 0, hk, r, dv)),
            "linear_attn.in_proj_b.weight" => (blk("ssm_beta.weight"), tile(&t, 0, hk, r, 1)),
            "linear_attn.in_proj_a.weight" => (blk("ssm_alpha.weight"), tile(&t, 0, hk, r, 1)),
            "linear_attn.conv1d.weight" => (
                blk("ssm_conv1d.weight"),
                tile_values(&t.squeeze(1).unwrap(), 2 * hk * dk, hk, r, dv),
            ),
            "linear_attn.dt_bias" => (blk("ssm_dt.bias"), tile(&t, 0, hk, r, 1)),
            "linear_attn.A_log" => (
                blk("ssm_a"),
                tile(&t.exp().unwrap().neg().unwrap(), 0, hk, r, 1),
            ),
            "linear_attn.norm.weight" => (blk("ssm_norm.weight"), t),
            "linear_attn.out_proj.weight" => (blk("ssm_out.weight"), tile(&t, 1, hk, r, dv)),
            _ => continue,
        };
        tensors.push((out, t));
    }
    (md, tensors)
}

const QWEN35: Convert = Convert {
    arch: "qwen35",
    post_norms: true,
    permute_qk: false,
    extra: qwen35_extra,
};

/// The tiled value heads sum `out_proj`'s columns in another order than the directory's, so
/// the two differ by f32 rounding, which the tiny random hybrid amplifies (see
/// `util::BF16_SENSITIVE`): 4.6e-5 at most measured (saliency), against exactly 0 for the
/// families whose files keep the order. Read without the reorder (value heads paired with
/// the wrong key heads), the prediction itself differs.
const TOL: f32 = 2e-4;

#[test]
fn qwen35_gguf_explains_as_its_hugging_face_directory() {
    gguf_explains_as_directory_within("tiny-qwen3_5", &QWEN35, TOL);
}

/// A file with a multi-token-prediction layer (as the converter writes Qwen3.5 by default)
/// counts it in `block_count` and lists it as attention: the model's own layers are read,
/// the explanation is the same.
#[test]
fn qwen35_gguf_with_a_prediction_layer_reads_the_model_layers() {
    fn extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, w: &Weights) -> Extra {
        let (mut md, tensors) = qwen35_extra(cfg, key, w);
        for (k, v) in md.iter_mut() {
            if let (true, Value::Array(flags)) = (k.ends_with("recurrent_layers"), &mut *v) {
                flags.push(Value::Bool(false));
            }
        }
        md.push((key("block_count"), Value::U32(5)));
        md.push((key("nextn_predict_layers"), Value::U32(1)));
        (md, tensors)
    }
    let c = Convert { extra, ..QWEN35 };
    gguf_explains_as_directory_within("tiny-qwen3_5", &c, TOL);
}

/// A recurrent-layer list of the wrong length is refused with the key named.
#[test]
fn qwen35_gguf_with_a_short_layer_list_is_refused() {
    fn extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, w: &Weights) -> Extra {
        let (mut md, tensors) = qwen35_extra(cfg, key, w);
        for (k, v) in md.iter_mut() {
            if k.ends_with("recurrent_layers") {
                *v = Value::Array(vec![Value::Bool(true); 3]);
            }
        }
        (md, tensors)
    }
    let gguf = tiny_gguf("tiny-qwen3_5", &Convert { extra, ..QWEN35 });
    let err = match Engine::load(gguf.to_str().unwrap()) {
        Ok(_) => panic!("loaded with 3 recurrent-layer flags for 4 blocks"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("attention.recurrent_layers has 3 entries for 4 blocks"),
        "{err}"
    );
    let _ = std::fs::remove_file(gguf);
}

/// Generation from the GGUF (its matrices as stored, the DeltaNet's states carried between
/// tokens) continues as the directory does for 24 greedy tokens.
#[test]
fn qwen35_gguf_generates_as_its_hugging_face_directory() {
    let gguf = tiny_gguf("tiny-qwen3_5", &QWEN35);
    let dir = crate::util::root().join("tests/fixtures/tiny-qwen3_5");
    let req = crate::generation::greedy("Rivers flow to the sea because", true, 24);
    let a = Engine::load(gguf.to_str().unwrap())
        .unwrap()
        .generate(&req)
        .unwrap();
    let b = Engine::load(dir.to_str().unwrap())
        .unwrap()
        .generate(&req)
        .unwrap();
    assert_eq!(a.ids(), b.ids());
    assert_eq!(a.ids().len(), 24, "stopped early: {:?}", a.stop);
    let _ = std::fs::remove_file(gguf);
}

/// Qwen3.5-MoE's converter adds the experts' counts and widths (no `feed_forward_length`:
/// no layer has a dense MLP), the router and the stacked experts as Qwen3-MoE's, the shared
/// expert as `ffn_{gate,up,down}_shexp` and its gate as a vector, `ffn_gate_inp_shexp`.
#[test]
fn qwen35_moe_gguf_explains_as_its_hugging_face_directory() {
    fn extra(cfg: &serde_json::Value, key: &dyn Fn(&str) -> String, w: &Weights) -> Extra {
        let (mut md, mut tensors) = qwen35_extra(cfg, key, w);
        let n = |k: &str| Value::U32(cfg[k].as_u64().unwrap() as u32);
        md.extend([
            (key("expert_count"), n("num_experts")),
            (key("expert_used_count"), n("num_experts_per_tok")),
            (
                key("expert_feed_forward_length"),
                n("moe_intermediate_size"),
            ),
            (
                key("expert_shared_feed_forward_length"),
                n("shared_expert_intermediate_size"),
            ),
        ]);
        for (name, t) in w {
            if let Some(rest) = name.strip_suffix(".mlp.shared_expert_gate.weight") {
                let l = rest.strip_prefix("model.layers.").unwrap();
                let v = t
                    .to_dtype(candle_core::DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap();
                tensors.push((format!("blk.{l}.ffn_gate_inp_shexp.weight"), v));
            }
        }
        (md, tensors)
    }
    let c = Convert {
        arch: "qwen35moe",
        extra,
        ..QWEN35
    };
    gguf_explains_as_directory_within("tiny-qwen3_5-moe", &c, TOL);
}
