//! The explicit backward pass (`Decoder::backward`) against its twin, candle's autograd
//! through `Decoder::forward` with the same rules as stop-gradient arithmetic, on every tiny
//! family and the real default model, for every rule set; and a batch of seeds against the
//! same seeds one at a time. Tolerance: max |explicit − twin| / max |twin| ≤ 1e-4 (f32, two
//! orders of summation); batched vs single ≤ 1e-5.

use crate::util::{rel_err, root};
use candle_core::{Tensor, Var};
use tokenlens::kernels::Products;
use tokenlens::methods::attnlrp::{ATTNLRP, CP_LRP};
use tokenlens::models::decoder::{Decoder, Saved};
use tokenlens::models::{Derivatives, Ordinary};
use tokenlens::source::{self, ModelPath};
use tokenlens::{DType, Device};

const TWIN_TOL: f32 = 1e-4;
const BATCH_TOL: f32 = 1e-5;

fn decoder(model: &str) -> Decoder {
    let path = if model.starts_with("tests/") {
        ModelPath::HfDir(root().join(model))
    } else {
        source::resolve(model).expect("model fetched").1
    };
    let mut loaded = source::open(&path, DType::F32, &Device::Cpu, None).expect("opens");
    Decoder::load(loaded.config.clone(), loaded.weights.as_mut(), &Device::Cpu).expect("loads")
}

/// max |a − b| / max |b| over whole tensors.
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    rel_err(&flat(a), &flat(b))
}

fn ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// The twin: the gradient of `logit[target]` at the last position w.r.t. the embeddings,
/// and the trace, through candle's autograd over its own primitive ops (none of the fused
/// kernels or the vector-Jacobian products the explicit backward uses).
fn twin(
    dec: &Decoder,
    embeds: &Tensor,
    rules: &dyn Derivatives,
    target: u32,
) -> (Tensor, Vec<Vec<f32>>) {
    tokenlens::models::with_primitive_ops(|| twin_inner(dec, embeds, rules, target))
}

fn twin_inner(
    dec: &Decoder,
    embeds: &Tensor,
    rules: &dyn Derivatives,
    target: u32,
) -> (Tensor, Vec<Vec<f32>>) {
    let x = Var::from_tensor(embeds).unwrap();
    let out = dec.forward(x.as_tensor(), rules, true).unwrap();
    let row = dec
        .lm_head()
        .rows(target as usize, 1)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let y = dec
        .softcap(&(&out.last_hidden * row).unwrap().sum_all().unwrap())
        .unwrap();
    let grads = y.backward().unwrap();
    let trace = out
        .taps
        .iter()
        .zip(&out.layer_outputs)
        .map(|(tap, h)| {
            let g = grads.get(tap).unwrap();
            (h * g).unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap()
        })
        .collect();
    (grads.get(&x).unwrap().clone(), trace)
}

fn no_progress(_: usize, _: usize) -> tokenlens::Result<()> {
    Ok(())
}

fn explicit(
    dec: &Decoder,
    saved: &Saved,
    rules: &dyn Derivatives,
    seeds: &[(usize, u32)],
) -> (Tensor, Vec<Vec<Vec<f32>>>) {
    let seeds: Vec<_> = seeds
        .iter()
        .map(|&(p, t)| dec.seed(saved, p, &[(t, 1.0)]).unwrap())
        .collect();
    let g = dec
        .backward(saved, &seeds, rules, Products::F32, &mut no_progress)
        .unwrap();
    (g.input, g.trace)
}

#[test]
fn explicit_backward_equals_autograd_and_batches_exactly() {
    for model in [
        "tests/fixtures/tiny-llama",
        "tests/fixtures/tiny-llama31",
        "tests/fixtures/tiny-qwen2",
        "tests/fixtures/tiny-qwen3",
        "tests/fixtures/tiny-qwen3-moe",
        "tests/fixtures/tiny-gemma3",
        "tests/fixtures/tiny-gemma4",
        "tests/fixtures/tiny-gemma4-moe",
        source::DEFAULT_MODEL,
    ] {
        let dec = decoder(model);
        let vocab = dec.config().vocab_size;
        let n = 11;
        let embeds = dec.embed(&ids(n, vocab)).unwrap();
        let saved = dec
            .forward_saved(&embeds, Products::F32, &mut no_progress)
            .unwrap();
        // The saved forward gives the twin's logits.
        let out = dec.forward(&embeds, &Ordinary, false).unwrap();
        let want = dec
            .lm_head()
            .forward(&out.last_hidden.unsqueeze(0).unwrap(), Products::F32)
            .unwrap();
        let want = dec.softcap(&want.squeeze(0).unwrap()).unwrap();
        let got = dec
            .logits_at(&saved, &[n - 1], Products::F32)
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert!(rel(&got, &want) < 1e-5, "{model}: logits differ");
        let target = got.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        let sets: [(&str, &dyn Derivatives); 3] = [
            ("plain", &Ordinary),
            ("attnlrp", &ATTNLRP),
            ("cp_lrp", &CP_LRP),
        ];
        for (pass, rules) in sets {
            let (g_twin, t_twin) = twin(&dec, &embeds, rules, target);
            let (g, t) = explicit(&dec, &saved, rules, &[(n - 1, target)]);
            // Two zero (or non-finite) gradients would agree: neither may be.
            for (what, v) in [
                (
                    "explicit",
                    g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                ),
                (
                    "twin",
                    g_twin.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                ),
                ("trace", t[0].concat()),
            ] {
                assert!(
                    v.iter().all(|x| x.is_finite()),
                    "{model} {pass}: {what} not finite"
                );
                assert!(
                    v.iter().any(|&x| x != 0.0),
                    "{model} {pass}: {what} all zero"
                );
            }
            let e = rel(&g.squeeze(0).unwrap(), &g_twin);
            assert!(e < TWIN_TOL, "{model} {pass:?}: input gradient off by {e}");
            // The trace, every layer against the largest value of any layer.
            let flat = |t: &[Vec<f32>]| t.iter().flatten().copied().collect::<Vec<_>>();
            let e = rel_err(&flat(&t[0]), &flat(&t_twin));
            assert!(e < TWIN_TOL, "{model} {pass:?}: trace off by {e}");
            // Four seeds at once (two targets at the last position, two earlier positions)
            // equal the four one at a time; positions after a seed get exactly nothing.
            let seeds = [(n - 1, target), (n - 1, 7), (n - 4, 3), (2, target)];
            let (gb, tb) = explicit(&dec, &saved, rules, &seeds);
            for (i, &s) in seeds.iter().enumerate() {
                let (g1, t1) = explicit(&dec, &saved, rules, &[s]);
                let e = rel(&gb.get(i).unwrap(), &g1.squeeze(0).unwrap());
                assert!(
                    e < BATCH_TOL,
                    "{model} {pass:?} seed {s:?}: batched differs by {e}"
                );
                let e = rel_err(&flat(&tb[i]), &flat(&t1[0]));
                assert!(
                    e <= BATCH_TOL,
                    "{model} {pass:?} seed {s:?}: trace differs by {e}"
                );
                let after = gb.get(i).unwrap().narrow(0, s.0 + 1, n - s.0 - 1).unwrap();
                let z = after.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(
                    z.iter().all(|&v| v == 0.0),
                    "{model}: gradient after the seed"
                );
            }
        }
    }
}

/// Models never mention attribution: the rules are the methods' (`src/methods/rules.rs`),
/// handed to the decoder as its `Derivatives`.
#[test]
fn models_never_mention_attribution() {
    let mut found = Vec::new();
    let mut dirs = vec![crate::util::root().join("src/models")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
            for (i, line) in text.lines().enumerate() {
                if ["lrp", "relevance", "rule", "attribut"]
                    .iter()
                    .any(|w| line.contains(w))
                {
                    found.push(format!("{}:{}: {line}", path.display(), i + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "models mention attribution:\n{}",
        found.join("\n")
    );
}
