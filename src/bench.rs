//! `tokenlens bench`: times the engine on one prompt, for `scripts/bench.py` to set beside
//! PyTorch's times. Prints one JSON object.

use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;
use tokenlens::{
    Engine, ExplainRequest, GenerateRequest, Method, Precision, Sampling, StepsRequest,
};

/// Options of `tokenlens bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// File holding the prompt (sent raw unless --chat).
    #[arg(long, required_unless_present_any = ["sgemm", "delta_rule"])]
    prompt_file: Option<PathBuf>,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Model: alias, .gguf or directory.
    #[arg(short, long, default_value = tokenlens::source::DEFAULT_MODEL)]
    model: String,
    /// Comma-separated methods to time (each: forward + backward + trace).
    #[arg(long, value_delimiter = ',', default_value = "saliency,attnlrp")]
    methods: Vec<String>,
    /// Timed repetitions after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The prompt limit (default: the model's context, or what fits in memory).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Instead of the model: time f32 matrix products `MxKxN` (comma-separated) with
    /// candle's kernel and with OpenBLAS, in GFLOP/s.
    #[arg(long, value_delimiter = ',')]
    sgemm: Vec<String>,
    /// Instead of the model: time the gated delta rule (Qwen3.5's linear attention, heads
    /// of 128) on `HEADSxTOKENS` (comma-separated) random inputs: the forward in its
    /// recurrent and chunked forms, and the backward of one seed in both.
    #[arg(long, value_delimiter = ',')]
    delta_rule: Vec<String>,
    /// Also time greedy generation of this many new tokens (KV cache); 0 skips it.
    #[arg(long, default_value_t = 0)]
    generate: usize,
    /// Also time the All-steps matrix, every one-pass method, of a greedy answer of this many tokens
    /// (one forward pass, one batched pass per method's pass); 0 skips it. The answer's ids
    /// are printed, for the PyTorch side to explain the same tokens.
    #[arg(long, default_value_t = 0)]
    steps: usize,
    /// Time no explanation (with --generate: generation alone).
    #[arg(long)]
    skip_explain: bool,
    /// Also time the perturbation curves (operator replace) of every method's scores, once
    /// (no warm-up: they take seconds); prints the inputs, for the PyTorch side to run the same.
    #[arg(long)]
    faithfulness: bool,
    /// Also time how soon a cancel lands: every one-pass method over the prompt, cancelled at 5%, 40%
    /// and 80% of the job's time; prints the longest wait from the cancel to the job's end.
    #[arg(long)]
    cancel: bool,
    #[command(flatten)]
    device: crate::DeviceArgs,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn time(repeat: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// GFLOP/s of `a (m×k) · b (k×n)` for each shape, candle's kernel, OpenBLAS's (when
/// loaded) and the bf16 product (oneMKL, when loaded; `a` rounded to bf16 in each call, `b`
/// held in bf16 as weights are), as JSON.
/// The sizes of a shape written `AxBx…` (`form` names them in the error).
fn sizes(shape: &str, form: &str) -> anyhow::Result<Vec<usize>> {
    shape
        .split('x')
        .map(|x| x.parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("shape {shape}: expected {form}"))
}

fn sgemm(shapes: &[String], repeat: usize) -> anyhow::Result<()> {
    use tokenlens::kernels;
    let dev = tokenlens::Device::Cpu;
    let mut out = serde_json::Map::new();
    for shape in shapes {
        let [m, k, n] = sizes(shape, "MxKxN")?[..] else {
            anyhow::bail!("shape {shape}: expected MxKxN");
        };
        let a = candle_core::Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let b = candle_core::Tensor::randn(0f32, 1.0, (k, n), &dev)?;
        let flops = 2.0 * (m * k * n) as f64;
        let reps = (2e10 / flops).clamp(3.0, 200.0) as usize * repeat.max(1);
        let rate = |f: &dyn Fn() -> candle_core::Result<candle_core::Tensor>| {
            let s = time(1, || {
                for _ in 0..reps {
                    f()?;
                }
                Ok(())
            })?;
            anyhow::Ok(flops * reps as f64 / s / 1e9)
        };
        let candle = rate(&|| a.matmul(&b))?;
        let openblas = if kernels::backend().starts_with("f32: OpenBLAS") {
            Some(rate(&|| kernels::matmul(&a, &b))?)
        } else {
            None
        };
        let bf16 = if kernels::bf16_available() {
            let b16 = kernels::to_bf16(&b)?;
            Some(rate(&|| kernels::matmul_bf16(&a, &b16))?)
        } else {
            None
        };
        out.insert(
            shape.clone(),
            serde_json::json!({ "candle": candle, "openblas": openblas, "bf16": bf16 }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// `--delta-rule`: both forms of the forward and the backward, on random inputs shaped as
/// Qwen3.5's (keys and values of 128, q and k unit vectors, log decays in [−1, 0)).
fn delta_rule(shapes: &[String], repeat: usize) -> anyhow::Result<()> {
    use tokenlens::models::gated_delta::{self, Dims, Form, Inputs, Scales};
    let dev = tokenlens::Device::Cpu;
    let rand = |n: usize, lo: f64, hi: f64| -> anyhow::Result<Vec<f32>> {
        Ok(candle_core::Tensor::rand(lo as f32, hi as f32, n, &dev)?.to_vec1()?)
    };
    let unit = |rows: usize, w: usize| -> anyhow::Result<Vec<f32>> {
        let t = candle_core::Tensor::randn(0f32, 1.0, (rows, w), &dev)?;
        let norm = t.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(t.broadcast_div(&norm)?.flatten_all()?.to_vec1()?)
    };
    let mut out = serde_json::Map::new();
    for shape in shapes {
        let [heads, len] = sizes(shape, "HEADSxTOKENS")?[..] else {
            anyhow::bail!("shape {shape}: expected HEADSxTOKENS");
        };
        let (dk, dv) = (128, 128);
        let (q, k, v) = (
            unit(heads * len, dk)?,
            unit(heads * len, dk)?,
            rand(heads * len * dv, -1.0, 1.0)?,
        );
        let (g, beta) = (
            rand(heads * len, -1.0, -1e-3)?,
            rand(heads * len, 0.0, 1.0)?,
        );
        let dims = Dims { heads, len, dk, dv };
        let x = Inputs {
            dims,
            q: &q,
            k: &k,
            v: &v,
            g: &g,
            beta: &beta,
        };
        let d_out = rand(heads * len * dv, -1.0, 1.0)?;
        let forward = |form| {
            time(repeat, || {
                Ok(gated_delta::forward_in(&x, None, form).map(drop)?)
            })
        };
        let recurrent = forward(Form::Recurrent)?;
        let chunked = forward(Form::Chunked)?;
        let backward = |form| {
            time(repeat, || {
                Ok(gated_delta::backward_in(&x, &d_out, &Scales::GRADIENT, form).map(drop)?)
            })
        };
        let (back_recurrent, back_chunked) = (backward(Form::Recurrent)?, backward(Form::Chunked)?);
        out.insert(
            shape.clone(),
            serde_json::json!({
                "forward_recurrent_s": recurrent,
                "forward_chunked_s": chunked,
                "chunked_speedup": recurrent / chunked,
                "backward_recurrent_s": back_recurrent,
                "backward_chunked_s": back_chunked,
                "backward_chunked_speedup": back_recurrent / back_chunked,
            }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// A greedy generation of `n` tokens.
fn greedy(prompt: &str, chat: bool, n: usize, precision: Precision) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.to_string(),
        chat_template: chat,
        thinking: false,
        sampling: Sampling::greedy(),
        max_new_tokens: n,
        precision,
        steer: Vec::new(),
        answer: None,
    }
}

/// The prompt and `steps` greedy tokens after it, never stopping at an end of turn (as
/// llama-bench's `-pg` runs them): the seconds in all and per step (median), the weights one
/// step reads, the bytes/s that makes and the machine's read bandwidth (measured before the
/// model was loaded).
fn decode_step(
    engine: &Engine,
    prompt: &str,
    chat: bool,
    precision: Precision,
    steps: usize,
    bandwidth: Option<f64>,
) -> anyhow::Result<serde_json::Value> {
    use tokenlens::kernels::Products;
    use tokenlens::models::decoder::KvCache;
    let p = match precision {
        Precision::F32 => Products::F32,
        _ => Products::Stored,
    };
    let dec = engine.decoder();
    let ids: Vec<u32> = engine
        .tokenize(prompt, chat, false)?
        .tokens
        .iter()
        .map(|t| t.id)
        .collect();
    let mut cache = KvCache::default();
    let start = Instant::now();
    let mut logits = dec.forward_cached(&ids, &mut cache, p)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps.max(1) {
        let id = logits.argmax(0)?.to_scalar::<u32>()?;
        let t = Instant::now();
        logits = dec.forward_cached(&[id], &mut cache, p)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let total_s = start.elapsed().as_secs_f64();
    let n = times.len();
    let step_s = median(times);
    let bytes = dec.decode_bytes(p) as f64;
    let bandwidth = bandwidth.unwrap_or_else(tokenlens::kernels::read_bandwidth);
    Ok(serde_json::json!({
        "prompt_tokens": ids.len(),
        "new_tokens": n,
        "prefill_s": prefill_s,
        "total_s": total_s,
        "tokens_per_s": n as f64 / total_s,
        "bytes_per_step": bytes,
        "step_s": step_s,
        "bytes_per_s": bytes / step_s,
        "read_bandwidth_bytes_per_s": bandwidth,
        "share_of_bandwidth": bytes / step_s / bandwidth,
    }))
}

/// Runs the benchmark and prints its JSON.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !args.sgemm.is_empty() {
        return sgemm(&args.sgemm, args.repeat);
    }
    if !args.delta_rule.is_empty() {
        return delta_rule(&args.delta_rule, args.repeat);
    }
    let path = args.prompt_file.clone().unwrap_or_default();
    let prompt =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // Before the model is loaded, so that its 1 GiB buffer is not in the model's peak memory.
    let bandwidth = (args.generate > 0).then(tokenlens::kernels::read_bandwidth);
    let t = Instant::now();
    let engine = Engine::load_with(&args.device.options(&args.model, args.max_tokens)?)?;
    let load_s = t.elapsed().as_secs_f64();
    let precision = args.device.precision;
    let mut req = ExplainRequest::new(prompt);
    req.chat_template = args.chat;
    req.precision = precision;
    let n_tokens = engine.tokenize(&req.prompt, args.chat, false)?.tokens.len();

    req.methods = vec![];
    let explain = !args.skip_explain;
    let time_explain = |req: &ExplainRequest| -> anyhow::Result<Option<f64>> {
        if !explain {
            return Ok(None);
        }
        Ok(Some(time(args.repeat, || {
            Ok(engine.explain(req).map(|_| ())?)
        })?))
    };
    let forward_s = time_explain(&req)?;
    let mut ran_in = Precision::F32;
    let mut methods = serde_json::Map::new();
    for name in args.methods.iter().filter(|_| explain) {
        let m =
            Method::from_name(name).ok_or_else(|| tokenlens::Error::UnknownMethod(name.clone()))?;
        req.methods = vec![m];
        let s = time(args.repeat, || {
            ran_in = engine.explain(&req)?.precision;
            Ok(())
        })?;
        methods.insert(name.clone(), s.into());
    }
    // The methods asked for in one request (one forward pass, one backward per rule set).
    req.methods = args
        .methods
        .iter()
        .filter_map(|m| Method::from_name(m))
        .collect();
    let together_s = time_explain(&req)?;
    // Every one-pass method in one request (what the page asks for).
    req.methods = Method::single_pass();
    let all_methods_s = time_explain(&req)?;
    let mut generation = serde_json::Value::Null;
    if args.generate > 0 {
        let greq = greedy(&req.prompt, args.chat, args.generate, precision);
        let (mut n, mut gen_in) = (0, Precision::F32);
        let s = time(args.repeat, || {
            let g = engine.generate(&greq)?;
            (n, gen_in) = (g.generated.len(), g.precision);
            Ok(())
        })?;
        generation = serde_json::json!({
            "new_tokens": n, "s": s, "tokens_per_s": n as f64 / s, "precision": gen_in,
            "decode": decode_step(&engine, &req.prompt, args.chat, gen_in, args.generate, bandwidth)?,
        });
    }
    let mut steps = serde_json::Value::Null;
    if args.steps > 0 {
        let answer = engine
            .generate(&greedy(&req.prompt, args.chat, args.steps, precision))?
            .ids();
        let sreq = StepsRequest {
            steer: Vec::new(),
            prompt: req.prompt.clone(),
            chat_template: args.chat,
            thinking: false,
            generated: answer.clone(),
            methods: Method::single_pass(),
            precision,
        };
        let s = time(args.repeat, || {
            engine.explain_steps_streaming(&sreq, &mut |_| std::ops::ControlFlow::Continue(()))?;
            Ok(())
        })?;
        steps = serde_json::json!({ "answer": answer, "s": s });
    }
    let faithfulness = if args.faithfulness {
        curves(&engine, &req)?
    } else {
        serde_json::Value::Null
    };
    let cancel = if args.cancel {
        cancel_latency(&engine, &req)?
    } else {
        serde_json::Value::Null
    };
    let out = serde_json::json!({
        "n_tokens": n_tokens,
        "layer_matrix_params": engine.layer_matrix_params(),
        "load_s": load_s,
        "forward_s": forward_s,
        "methods_s": methods,
        "generate": generation,
        "peak_rss_mib": peak_rss_mib(),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "matmul": tokenlens::kernels::backend(),
        "precision": ran_in,
        "all_methods_s": all_methods_s,
        "methods_together_s": together_s,
        "steps": steps,
        "faithfulness": faithfulness,
        "cancel": cancel,
    });
    println!("{out}");
    Ok(())
}

/// Times the curves of every method's scores for `req`'s prompt (all methods): the seconds,
/// the distinct inputs run, and what the PyTorch side needs to run the same inputs.
fn curves(engine: &Engine, req: &ExplainRequest) -> anyhow::Result<serde_json::Value> {
    let ex = engine.explain(req)?;
    let tok = engine.tokenize(&req.prompt, req.chat_template, false)?;
    let scores: tokenlens::faithfulness::MethodScores = ex
        .methods
        .iter()
        .map(|(m, r)| (*m, r.scores.clone()))
        .collect();
    let spec = tokenlens::FaithfulnessSpec {
        operator: tokenlens::Operator::Replace,
        query_only: false,
    };
    let mut inputs = 0;
    let t = Instant::now();
    let products = match ex.precision {
        Precision::F32 => tokenlens::kernels::Products::F32,
        _ => tokenlens::kernels::Products::Stored,
    };
    let target = ex.target.as_ref().context("no target")?.token.id;
    let f = engine.faithfulness(&tok, target, &scores, spec, products, &mut |done, _| {
        inputs = done;
        Ok(())
    })?;
    let s = t.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "s": s,
        "inputs": inputs,
        "ids": tok.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
        "target": target,
        "neutral_id": f.neutral_id,
        "eligible": f.eligible,
        "scores": scores,
        "abpc": f.methods.iter().map(|(m, x)| (*m, x.abpc)).collect::<std::collections::BTreeMap<_, _>>(),
    }))
}

/// How long a job runs on after its cancel (the sink answers `Break` from the first event
/// after the cancel time): the job's time and the worst wait over three cancel points.
fn cancel_latency(engine: &Engine, req: &ExplainRequest) -> anyhow::Result<serde_json::Value> {
    let t = Instant::now();
    engine.explain(req)?;
    let whole = t.elapsed();
    let mut worst = 0f64;
    for frac in [0.05, 0.4, 0.8] {
        let at = whole.mul_f64(frac);
        let start = Instant::now();
        let r = engine.explain_streaming(req, &mut |_| {
            if start.elapsed() >= at {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        });
        anyhow::ensure!(
            matches!(r, Err(tokenlens::Error::Cancelled)),
            "the job cancelled at {at:?} was not cancelled"
        );
        worst = worst.max(start.elapsed().saturating_sub(at).as_secs_f64());
    }
    Ok(serde_json::json!({ "job_s": whole.as_secs_f64(), "worst_wait_s": worst }))
}
