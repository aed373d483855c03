//! One Gated DeltaNet layer against transformers' `Qwen3_5GatedDeltaNet` on the same weights
//! (`tests/fixtures/gated_deltanet/`, written by `scripts/gated_deltanet_reference.py`): the
//! output, the input's cotangents for two seeds under the ordinary gradient, AttnLRP and
//! CP-LRP (the rules in PyTorch: `scripts/lxt_qwen3_5.py`), and generation's steps. Tolerance:
//! max |ours − ref| / max |ref| ≤ 1e-4 (f32).

use crate::util::rel_err;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use tokenlens::kernels::Products;
use tokenlens::methods::attnlrp::{ATTNLRP, CP_LRP};
use tokenlens::models::config::DeltaNet;
use tokenlens::models::decoder::{DeltaNetCache, GatedDeltaNet, WeightSource};
use tokenlens::models::{Derivatives, Ordinary};

const TOL: f32 = 1e-4;

struct Map(HashMap<String, Tensor>);

impl WeightSource for Map {
    fn get(&mut self, name: &str) -> tokenlens::Result<Tensor> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("no {name}")).into())
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.0.get(name).map(|t| t.dims().to_vec())
    }
    fn dense_bytes(&self, _: DType) -> u64 {
        0
    }
}

#[derive(serde::Deserialize)]
struct Reference {
    len: usize,
    hidden: usize,
    seeds: usize,
    key_heads: usize,
    value_heads: usize,
    key_dim: usize,
    value_dim: usize,
    kernel: usize,
    eps: f64,
    x: Vec<f32>,
    d_out: Vec<f32>,
    out: Vec<f32>,
    d_x: HashMap<String, Vec<f32>>,
}

fn fixture() -> (GatedDeltaNet, Reference) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gated_deltanet");
    let r: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let weights =
        candle_core::safetensors::load(dir.join("layer.safetensors"), &Device::Cpu).unwrap();
    let shape = DeltaNet {
        key_heads: r.key_heads,
        value_heads: r.value_heads,
        key_dim: r.key_dim,
        value_dim: r.value_dim,
        kernel: r.kernel,
        layout: Default::default(),
    };
    let layer = GatedDeltaNet::load(&mut Map(weights), "linear_attn", shape, r.eps).unwrap();
    (layer, r)
}

#[test]
fn output_and_cotangents_match_transformers() {
    let (layer, r) = fixture();
    let x = Tensor::from_slice(&r.x, (r.len, r.hidden), &Device::Cpu).unwrap();
    let (out, saved) = layer.forward_saved(&x, Products::F32).unwrap();
    let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    let err = rel_err(&out, &r.out);
    assert!(err <= TOL, "output differs by {err:e}");
    let d_out = Tensor::from_slice(&r.d_out, (r.seeds, r.len, r.hidden), &Device::Cpu).unwrap();
    let rules: [(&str, &dyn Derivatives); 3] = [
        ("plain", &Ordinary),
        ("attnlrp", &ATTNLRP),
        ("cp_lrp", &CP_LRP),
    ];
    for (name, dv) in rules {
        let dx = layer.backward(&saved, &d_out, dv, Products::F32).unwrap();
        let dx: Vec<f32> = dx.flatten_all().unwrap().to_vec1().unwrap();
        let err = rel_err(&dx, &r.d_x[name]);
        assert!(err <= TOL, "{name}: input cotangents differ by {err:e}");
    }
}

/// Generation's steps (a prompt, then one token at a time, then a few at once) give the
/// whole pass's outputs.
#[test]
fn cached_steps_equal_the_whole_pass() {
    let (layer, r) = fixture();
    let x = Tensor::from_slice(&r.x, (r.len, r.hidden), &Device::Cpu).unwrap();
    let (whole, _) = layer.forward_saved(&x, Products::F32).unwrap();
    let mut cache = DeltaNetCache::default();
    let mut parts = Vec::new();
    let mut at = 0;
    for n in [2, 1, 1, 30, 1, r.len - 35] {
        parts.push(
            layer
                .forward_cached(&x.narrow(0, at, n).unwrap(), &mut cache, Products::F32)
                .unwrap(),
        );
        at += n;
    }
    let steps: Vec<f32> = Tensor::cat(&parts, 0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let whole: Vec<f32> = whole.flatten_all().unwrap().to_vec1().unwrap();
    let err = rel_err(&steps, &whole);
    assert!(err <= 1e-6, "steps differ from the whole pass by {err:e}");
}
