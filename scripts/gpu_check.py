#!/usr/bin/env python3
"""The GPU check, run on the GPU machine by `scripts/gpu-check.sh run` (no network, no Rust).

1. Makes the models there (files too large to copy): random weights with transformers, shaped
   like SmolLM2-135M (Llama) and Qwen3-4B, with the tiny fixtures' tokenizer (49,152 pieces),
   saved as bf16 safetensors; plus the repository's tiny fixtures as they are.
2. Agreement: the same binary's scores and traces, every method, on the CPU (f32: the
   reference) and on the GPU in f32 (the fixtures' tolerance) and in bf16 (looser, stated at
   F32_TOL and BF16_TOL below).
3. Saliency against PyTorch on the same GPU and weights (f32, 1e-3 relative).
4. Timings: saliency and AttnLRP (forward + backward + trace) at 48, 512, 2,048 and 8,192
   tokens, with the achieved TFLOP/s (useful FLOPs: 2 x params x tokens forward, twice that
   backward) against the GPU's bf16 dense peak.

Writes results.json and results.md into --out; exits non-zero when an agreement fails.
`--device cpu --small` runs the same logic on a CPU with small shapes (a dry run).
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = "saliency,input_x_gradient,attnlrp,cp_lrp"
PROMPT = "The Eiffel Tower is in the city of Paris, and the Colosseum is in the city of"
# Scores: worst error over the largest |score|; trace: 1 − Pearson correlation of the grid.
# f32: the fixtures' tolerance. bf16 keeps 8 bits of mantissa through every layer, and on
# random weights the target logit barely stands out, so its gradient is a small difference of
# large terms: a CPU dry run measured up to 0.45 and 0.08 on the SmolLM2 shape.
F32_TOL = {"scores": 1e-3, "trace": 1e-5}
BF16_TOL = {"scores": 0.5, "trace": 0.1}
# H200 (and H100) SXM: bf16 dense tensor-core peak, TFLOP/s.
BF16_PEAK = {"H200": 989.0, "H100": 989.0}


def shapes(small):
    """(name, fixture whose tokenizer it takes, config kwargs)."""
    smol = dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
    qwen = dict(model_type="qwen3", hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                tie_word_embeddings=True)
    if small:
        smol.update(num_hidden_layers=4)
        qwen.update(hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=64)
    return [("smollm2-135m-shape", "tiny-llama", smol), ("qwen3-4b-shape", "tiny-qwen3", qwen)]


def make_model(out_dir, name, fixture, kw, device):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    d = out_dir / name
    if (d / "config.json").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    src = ROOT / "tests" / "fixtures" / fixture
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src / f).exists():
            shutil.copy(src / f, d / f)
    vocab = json.loads((src / "config.json").read_text())["vocab_size"]
    model_type = kw.pop("model_type")
    cfg = AutoConfig.for_model(model_type, vocab_size=vocab, bos_token_id=1, eos_token_id=2, **kw)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg)
    model = model.to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    (d / "params.txt").write_text(str(n))
    del model
    return d


def tokenlens(binary, *args, timeout=600):
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])}…: {r.stderr.strip()[-400:]}")
    return json.loads(r.stdout)


def explain(binary, model, device, dtype):
    return tokenlens(binary, "explain", "--model", str(model), "--prompt", PROMPT, "--raw",
                     "--methods", METHODS, "--json", "--device", device, "--dtype", dtype)


def rel_err(a, b):
    scale = max(max(abs(x) for x in b), 1e-30)
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a) ** 0.5
    vb = sum((y - mb) ** 2 for y in b) ** 0.5
    return cov / (va * vb) if va > 0 and vb > 0 else 1.0


def agreement(binary, model, gpu, dtype, reference):
    """Per method, GPU against CPU f32: the scores' worst error relative to their largest
    |value|, and 1 − the Pearson correlation of the whole trace (the layer × token grid)."""
    got = explain(binary, model, gpu, dtype)
    worst = {}
    for m, r in reference["methods"].items():
        g = got["methods"][m]
        flat = lambda t: [x for row in t for x in row]  # noqa: E731
        worst[m] = {"scores": rel_err(g["scores"], r["scores"]),
                    "trace": 1.0 - pearson(flat(g["trace"]), flat(r["trace"]))}
    return worst


def torch_saliency(model_dir, ids, target, device):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device=device, dtype=torch.float32)
    model.eval()
    emb = model.get_input_embeddings()(torch.tensor([ids], device=device)).detach()
    emb.requires_grad_(True)
    logits = model(inputs_embeds=emb).logits
    logits[0, -1, target].backward()
    sal = emb.grad[0].norm(dim=-1).tolist()
    del model
    return sal


def prompt_of(model_dir, n):
    """A raw prompt of about n tokens under the model's tokenizer."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    words = (PROMPT + " ").split() * (n // 4 + 8)
    lo, hi = 1, len(words)
    while lo < hi:  # the most words whose encoding has at most n tokens
        mid = (lo + hi + 1) // 2
        if len(tok.encode(" ".join(words[:mid])).ids) <= n:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def timings(binary, model_dir, device, dtype, lengths, out_dir, peak):
    params = int((model_dir / "params.txt").read_text())
    rows = []
    for n in lengths:
        pf = out_dir / f"prompt-{n}.txt"
        pf.write_text(prompt_of(model_dir, n))
        try:
            r = tokenlens(binary, "bench", "--model", str(model_dir), "--prompt-file", str(pf),
                          "--methods", "saliency,attnlrp", "--repeat", "1", "--device", device,
                          "--dtype", dtype, timeout=300)
        except Exception as e:  # noqa: BLE001 - a row that failed says why, the rest go on
            rows.append({"tokens": n, "dtype": dtype, "error": str(e)})
            continue
        t = r["n_tokens"]
        flops = 6.0 * params * t  # forward 2·P·T, backward twice that
        row = {"tokens": t, "dtype": dtype, "forward_s": r["forward_s"]}
        for m, s in r["methods_s"].items():
            row[f"{m}_s"] = s
            row[f"{m}_tflops"] = flops / s / 1e12
            if peak:
                row[f"{m}_of_peak"] = flops / s / 1e12 / peak
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the tokenlens binary (built with --features cuda)")
    ap.add_argument("--out", default="gpu-check-out")
    ap.add_argument("--models", default="/tmp/tokenlens-gpu-models")
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run)")
    ap.add_argument("--small", action="store_true", help="small shapes, for a dry run")
    ap.add_argument("--lengths", default="48,512,2048,8192")
    args = ap.parse_args()
    out, models = Path(args.out), Path(args.models)
    out.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    started = time.time()
    gpu_name, peak = "cpu", None
    if args.device.startswith("cuda"):
        import torch
        gpu_name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in BF16_PEAK.items() if k in gpu_name), None)
    results = {"device": gpu_name, "bf16_peak_tflops": peak, "agreement": [], "saliency_vs_torch": [],
               "timings": [], "failures": []}

    def fail(msg):
        print("FAIL", msg, flush=True)
        results["failures"].append(msg)

    def save():
        """Writes what is known so far: a run cut short by its time limit still reports."""
        results["seconds"] = time.time() - started
        (out / "results.json").write_text(json.dumps(results, indent=1))
        lines = [f"# GPU check on {gpu_name} ({results['seconds']:.0f} s)", "",
                 "| model | dtype | scores: worst rel. err | trace: 1 − Pearson | tolerances | ok |",
                 "|---|---|---|---|---|---|"]
        for a in results["agreement"]:
            s_err = max(v["scores"] for v in a["worst"].values())
            t_err = max(v["trace"] for v in a["worst"].values())
            tol = a["tolerance"]
            lines.append(f"| {a['model']} | {a['dtype']} | {s_err:.2e} | {t_err:.2e} | "
                         f"{tol['scores']}, {tol['trace']} | {a['ok']} |")
        lines += ["", "| model | saliency vs PyTorch rel. err |", "|---|---|"]
        lines += [f"| {s['model']} | {s['rel_err']:.2e} |" for s in results["saliency_vs_torch"]]
        lines += ["", "| model | dtype | tokens | forward s | saliency s | AttnLRP s | AttnLRP TFLOP/s | of bf16 peak |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in results["timings"]:
            for r in t["rows"]:
                if "error" in r:
                    lines.append(f"| {t['model']} | {r['dtype']} | {r['tokens']} | {r['error'][:80]} |||||")
                    continue
                of_peak = r.get("attnlrp_of_peak")
                lines.append(f"| {t['model']} | {r['dtype']} | {r['tokens']} | {r['forward_s']:.3f} | "
                             f"{r['saliency_s']:.3f} | {r['attnlrp_s']:.3f} | {r['attnlrp_tflops']:.1f} | "
                             f"{'' if of_peak is None else f'{of_peak:.1%}'} |")
        if results["failures"]:
            lines += ["", "Failures:"] + [f"- {f}" for f in results["failures"]]
        (out / "results.md").write_text("\n".join(lines) + "\n")
        return lines

    made = []
    for name, fixture, kw in shapes(args.small):
        t = time.time()
        made.append(make_model(models, name, fixture, dict(kw), args.device))
        print(f"made {name} in {time.time() - t:.1f} s", flush=True)
    fixtures = [ROOT / "tests" / "fixtures" / f for f in
                ("tiny-llama", "tiny-llama31", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3")]

    # 2. Agreement, CPU f32 against the GPU in f32 and bf16.
    for model in fixtures + made:
        try:
            reference = explain(args.bin, model, "cpu", "f32")
        except Exception as e:  # noqa: BLE001
            fail(f"{model.name}: cpu f32: {e}")
            continue
        for dtype, tol in (("f32", F32_TOL), ("bf16", BF16_TOL)):
            try:
                worst = agreement(args.bin, model, args.device, dtype, reference)
            except Exception as e:  # noqa: BLE001
                fail(f"{model.name}: {args.device} {dtype}: {e}")
                continue
            ok = all(v["scores"] <= tol["scores"] and v["trace"] <= tol["trace"] for v in worst.values())
            results["agreement"].append({"model": model.name, "dtype": dtype, "tolerance": tol,
                                         "worst": worst, "ok": ok})
            print(model.name, dtype, json.dumps(worst), "ok" if ok else "FAIL", flush=True)
            if not ok:
                fail(f"{model.name} {dtype}: {worst} over {tol}")

    save()

    # 3. Saliency against PyTorch on the same device and weights.
    for model in made:
        try:
            ours = explain(args.bin, model, args.device, "f32")
            ids = [t["id"] for t in ours["tokens"]]
            theirs = torch_saliency(model, ids, ours["target"]["id"], args.device)
            err = rel_err(ours["methods"]["saliency"]["scores"], theirs)
            ok = err <= F32_TOL["scores"]
            results["saliency_vs_torch"].append({"model": model.name, "rel_err": err, "ok": ok})
            print(model.name, "saliency vs torch", err, flush=True)
            if not ok:
                fail(f"{model.name}: saliency vs torch rel err {err}")
        except Exception as e:  # noqa: BLE001
            fail(f"{model.name}: saliency vs torch: {e}")

    save()

    # 4. Timings.
    lengths = [int(x) for x in args.lengths.split(",")]
    for model in made:
        for dtype in ("bf16", "f32"):
            rows = timings(args.bin, model, args.device, dtype, lengths, out, peak)
            results["timings"].append({"model": model.name, "rows": rows})
            save()

    print("\n".join(save()))
    sys.exit(1 if results["failures"] else 0)


if __name__ == "__main__":
    main()
