#!/usr/bin/env python3
"""Benchmark: TokenLens against PyTorch + transformers (+ lxt for AttnLRP), side by side.

Same GGUF weights (f32), same prompt text, same machine, one run. For prompts of about 48,
512 and 2048 tokens it times model load, a forward pass, saliency (forward + backward +
latent trace), AttnLRP (likewise, with lxt's efficient rules) and greedy generation of
--generate new tokens with a KV cache (transformers' `generate`), median of --repeat runs
after a warm-up, both sides using every core; and peak memory (each side and method set in
its own process). Prints a table with the ratios ours / PyTorch (times: < 1 = TokenLens
faster; generation tokens/s: > 1 = TokenLens faster).

Then the perturbation curves (faithfulness, operator replace) of every method's scores for a
--faithfulness-token prompt: the engine's batched passes after a shared prefix, against
PyTorch running the same distinct inputs whole in batches of 32 (no backward either side).

Then the All-steps matrix of a --steps-token greedy answer after a --steps-prompt-token
prompt, every method, against the per-step loop as Inseq runs it (a forward and a backward
pass per answer token and method, in PyTorch + lxt).

With --bf16, every length again with TokenLens' --precision bf16 and PyTorch + lxt with the
model cast to bf16 (oneDNN's AMX kernels), beside TokenLens f32. With --gen-models, generation
on each GGUF against llama.cpp's llama-bench (scripts/llama-cpp.sh builds it), prefill
included, with the bytes/s a decoding step reads against the machine's read bandwidth.

Run (after scripts/reference-env.sh and `cargo build --release`):
    ~/.cache/tokenlens/venv/bin/python scripts/bench.py [--lengths 48,512,2048] [--repeat 3]
        [--repeat-long 1] [--seed-prompt] [--generate 32] [--steps 64] [--steps-prompt 256]
        [--faithfulness 64] [--bf16] [--gen-models A.gguf,B.gguf [--gen-prompt 48]
        [--gen-tokens 128]]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import reference  # noqa: E402  (the same loader and tokenizer fix as the fixtures)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def timed(repeat, f):
    f()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return median(out)


def torch_side(mode, gguf, prompt_file, repeat, chat, generate, dtype="f32"):
    """One process per mode: 'plain' (forward + saliency) or 'attnlrp'. With dtype bf16 the
    model (and so the input embeddings) is cast to torch.bfloat16: PyTorch's CPU matmuls then
    run through oneDNN's AMX-BF16 kernels on this machine."""
    import torch
    from transformers.models.llama import modeling_llama

    torch.set_num_threads(os.cpu_count() or 1)
    if mode == "attnlrp":
        from lxt.efficient import monkey_patch
        from lxt.efficient.models.llama import attnLRP

        monkey_patch(modeling_llama, attnLRP)
    t = time.perf_counter()
    tok, model = reference.load(gguf)
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    load_s = time.perf_counter() - t
    text, ids = reference.encode(tok, open(prompt_file).read(), chat)
    ids_t = torch.tensor([ids])

    def forward():
        with torch.no_grad():
            model(input_ids=ids_t, use_cache=False).logits[0, -1].argmax()

    def method():
        # What the engine does: forward with the graph, top-k, backward of the argmax
        # logit, per-token scores from the embedding gradient, the per-layer trace.
        grad, emb, trace, _ = reference.attribute(model, ids, None)
        scores = grad.norm(dim=-1) if mode == "plain" else (emb * grad).sum(-1)
        return scores.tolist(), trace

    res = {"n_tokens": len(ids), "load_s": load_s}
    if mode == "plain":
        res["forward_s"] = timed(repeat, forward)
        res["methods_s"] = {"saliency": timed(repeat, method)}
        if generate:
            new = []

            def gen():
                with torch.no_grad():
                    out = model.generate(
                        ids_t, attention_mask=torch.ones_like(ids_t), do_sample=False,
                        temperature=None, top_p=None, top_k=None, max_new_tokens=generate,
                        pad_token_id=tok.eos_token_id)
                new.append(out.shape[1] - ids_t.shape[1])

            s = timed(repeat, gen)
            res["generate"] = {"new_tokens": new[-1], "s": s, "tokens_per_s": new[-1] / s}
    else:
        res["methods_s"] = {"attnlrp": timed(repeat, method)}
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def torch_steps(mode, gguf, prompt_file, answer_file):
    """The per-step loop as Inseq runs it, one process per rule set: for each answer token,
    a forward pass over the prompt and the answer before it and a backward pass of that
    token's logit, each method on its own (saliency and input x gradient are two attribution
    runs there). Scores only, as the engine's All-steps rows."""
    import torch
    from transformers.models.llama import modeling_llama

    torch.set_num_threads(os.cpu_count() or 1)
    if mode != "plain":
        from lxt.efficient import monkey_patch
        from lxt.efficient.models import llama as rules

        monkey_patch(modeling_llama, rules.attnLRP if mode == "attnlrp" else rules.cp_LRP)
    tok, model = reference.load(gguf)
    _, ids = reference.encode(tok, open(prompt_file).read(), False)
    answer = json.load(open(answer_file))
    out = {}
    for m in (["saliency", "input_x_gradient"] if mode == "plain" else [mode]):
        t = time.perf_counter()
        for k, target in enumerate(answer):
            ctx = torch.tensor([ids + answer[:k]])
            emb = model.get_input_embeddings()(ctx).detach().requires_grad_(True)
            model(inputs_embeds=emb, use_cache=False).logits[0, -1, target].backward()
            g = emb.grad[0]
            (g.norm(dim=-1) if m == "saliency" else (emb[0] * g).sum(-1)).tolist()
        out[m] = time.perf_counter() - t
    print(json.dumps({"n_tokens": len(ids), "s": out}))


def torch_faithfulness(gguf, input_file):
    """The distinct inputs of the engine's curves (same eligible set, orders, steps, random
    seeds), each run whole by transformers in batches; prints the time and saliency's ABPC."""
    import torch
    import faithfulness_reference as fr

    torch.set_num_threads(os.cpu_count() or 1)
    inp = json.load(open(input_file))
    _, model = reference.load(gguf)
    ids, elig, neutral, target = inp["ids"], inp["eligible"], inp["neutral_id"], inp["target"]
    st, e = fr.steps(len(elig)), len(elig)
    sets = {}

    def want(out):
        return sets.setdefault(tuple(sorted(out)), None)

    def curve(o):
        for k in st:
            want(o[:k])

    orders = {}
    for m, s in inp["scores"].items():
        morf, lerf = fr.order(s, elig, True), fr.order(s, elig, False)
        orders[m] = (morf, lerf)
        curve(morf)
        curve(lerf)
        for k in fr.fraction_counts(e):
            want(morf[:k])
            want(lerf[:e - k])
    for seed in range(fr.RANDOM_ORDERS):
        p = fr.permutation(elig, seed)
        curve(p)
        curve(p[::-1])
    keys = list(sets)

    def run():
        for i in range(0, len(keys), 32):
            batch = keys[i:i + 32]
            x = torch.tensor([[neutral if j in set(b) else t for j, t in enumerate(ids)]
                              for b in batch])
            with torch.no_grad():
                logits = model(input_ids=x, use_cache=False).logits[:, -1].double()
            for b, l in zip(batch, logits):
                sets[b] = float(l[target])

    with torch.no_grad():  # warm-up, as the engine's side has run the methods before
        model(input_ids=torch.tensor([ids]), use_cache=False)
    t = time.perf_counter()
    run()
    s = time.perf_counter() - t
    morf, lerf = orders["saliency"]
    abpc = sum(sets[tuple(sorted(lerf[:k]))] - sets[tuple(sorted(morf[:k]))] for k in st) / len(st)
    print(json.dumps({"s": s, "inputs": len(keys), "abpc_saliency": abpc}))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def generation_against_llama_cpp(args):
    """Each GGUF of --gen-models: TokenLens' prompt + greedy tokens (its default precision:
    the weights as stored) against llama-bench's `-pg` with the same prompt length and new
    tokens, 2 threads each side; both include the prompt's prefill."""
    bin_dir = subprocess.run(["bash", os.path.join(HERE, "llama-cpp.sh")], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    threads = os.cpu_count() or 1
    out = []
    for gguf in [g for g in args.gen_models.split(",") if g]:
        words = (reference.LONG + " ") * (1 + args.gen_prompt // 40)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(" ".join(words.split()[:args.gen_prompt]))
            path = f.name
        ours = run_json([args.binary, "bench", "--prompt-file", path, "--model", gguf,
                         "--methods", "saliency", "--repeat", "1",
                         "--generate", str(args.gen_tokens), "--skip-explain"])
        os.remove(path)
        d = ours["generate"]["decode"]
        p, n = d["prompt_tokens"], d["new_tokens"]
        r = subprocess.run([os.path.join(bin_dir, "llama-bench"), "-m", gguf, "-t", str(threads),
                            "-p", "0", "-n", str(n), "-pg", f"{p},{n}", "-r", "3", "-o", "json"],
                           check=True, capture_output=True, text=True)
        tests = json.loads(r.stdout)
        both = next(t for t in tests if t["n_prompt"] == p)
        theirs = n / (both["avg_ns"] / 1e9)
        # llama.cpp's decoding alone (tg): the same weights read a token, so its bytes/s is
        # the ceiling this machine shows for a decoding step, beside ours.
        tg = next(t for t in tests if t["n_prompt"] == 0)
        their_step = tg["avg_ns"] / 1e9 / n
        out.append((os.path.basename(gguf), p, n, d["tokens_per_s"], theirs, d, their_step))
        print(f"done generation {os.path.basename(gguf)}", file=sys.stderr)
    return out


def make_prompt(tok, n):
    ids = []
    while len(ids) < n:
        ids += tok(reference.LONG + " ", add_special_tokens=False).input_ids
    return tok.decode(ids[:n])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.expanduser(
        "~/.cache/tokenlens/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--lengths", default="48,512,2048", help="comma-separated; may be empty")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repeat-long", type=int, default=1,
                    help="repetitions for prompts over 1,000 tokens")
    ap.add_argument("--generate", type=int, default=32, help="new tokens to generate (0: skip)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "tokenlens"))
    ap.add_argument("--torch-side", choices=["plain", "attnlrp"], help="internal")
    ap.add_argument("--prompt-file", help="internal")
    ap.add_argument("--chat", action="store_true", help="internal")
    ap.add_argument("--seed-prompt", action="store_true",
                    help="also time the first seed's query, chat-templated")
    ap.add_argument("--steps", type=int, default=64,
                    help="All steps: answer tokens explained, every method (0: skip)")
    ap.add_argument("--steps-prompt", type=int, default=256, help="All steps: prompt tokens")
    ap.add_argument("--torch-steps", choices=["plain", "attnlrp", "cp_lrp"], help="internal")
    ap.add_argument("--answer-file", help="internal")
    ap.add_argument("--faithfulness", type=int, default=64,
                    help="perturbation curves: prompt tokens (0: skip)")
    ap.add_argument("--torch-faithfulness", help="internal")
    ap.add_argument("--torch-dtype", default="f32", choices=["f32", "bf16"], help="internal")
    ap.add_argument("--bf16", action="store_true",
                    help="also time every length with --precision bf16, against TokenLens f32 and "
                         "PyTorch + lxt in bf16")
    ap.add_argument("--gen-models", default="",
                    help="comma-separated GGUFs: generation against llama.cpp's llama-bench on "
                         "each (prompt --gen-prompt tokens, --gen-tokens new tokens)")
    ap.add_argument("--gen-prompt", type=int, default=48)
    ap.add_argument("--gen-tokens", type=int, default=128)
    args = ap.parse_args()
    if args.torch_side:
        return torch_side(args.torch_side, args.gguf, args.prompt_file, args.repeat, args.chat,
                          args.generate, args.torch_dtype)
    if args.torch_steps:
        return torch_steps(args.torch_steps, args.gguf, args.prompt_file, args.answer_file)
    if args.torch_faithfulness:
        return torch_faithfulness(args.gguf, args.torch_faithfulness)

    tok, _ = reference.load(args.gguf, tokenizer_only=True)
    bf16_rows = []
    gen_rows = generation_against_llama_cpp(args) if args.gen_models else []
    rows = []
    alls = []
    flops = []
    cases = [(str(n), make_prompt(tok, int(n)), False) for n in args.lengths.split(",") if n]
    if args.seed_prompt:
        cases.insert(0, ("seed query (chat)", reference.PROMPTS["seed_query"][0], True))
    for label, prompt, chat in cases:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(prompt)
            path = f.name
        flag = ["--chat"] if chat else []
        repeat = args.repeat if len(prompt) < 4000 else args.repeat_long
        # f32 against PyTorch's f32 (auto would pick bf16 past about a second).
        ours = run_json([args.binary, "bench", "--prompt-file", path, "--model", args.gguf,
                         "--methods", "saliency,attnlrp", "--repeat", str(repeat),
                         "--generate", str(args.generate), "--precision", "f32"] + flag)
        assert ours["precision"] == "f32", ours["precision"]
        py = [sys.executable, __file__, "--gguf", args.gguf, "--prompt-file", path,
              "--repeat", str(repeat), "--generate", str(args.generate)] + flag + ["--torch-side"]
        plain = run_json(py + ["plain"])
        lrp = run_json(py + ["attnlrp"])
        assert ours["n_tokens"] == plain["n_tokens"] == lrp["n_tokens"], (ours, plain, lrp)
        theirs = {
            "load": plain["load_s"], "forward": plain["forward_s"],
            "saliency + trace": plain["methods_s"]["saliency"],
            "attnlrp + trace": lrp["methods_s"]["attnlrp"],
        }
        mine = {
            "load": ours["load_s"], "forward": ours["forward_s"],
            "saliency + trace": ours["methods_s"]["saliency"],
            "attnlrp + trace": ours["methods_s"]["attnlrp"],
        }
        name = f"{ours['n_tokens']}" + (f" ({label})" if not label.isdigit() else "")
        for k in theirs:
            rows.append((name, k, mine[k], theirs[k]))
        if args.generate:
            g, pg = ours["generate"], plain["generate"]
            rows.append((name, f"generation tok/s ({g['new_tokens']} / {pg['new_tokens']} new)",
                         g["tokens_per_s"], pg["tokens_per_s"]))
        alls.append((name, ours["all_methods_s"], ours["methods_s"]["attnlrp"]))
        flops.append((name, ours["n_tokens"], ours["layer_matrix_params"],
                      {m: ours["methods_s"][m] for m in ("saliency", "attnlrp")}))
        rows.append((name, "peak memory (MiB)", ours["peak_rss_mib"],
                     max(plain["peak_rss_mib"], lrp["peak_rss_mib"])))
        if args.bf16:
            b16 = run_json([args.binary, "bench", "--prompt-file", path, "--model", args.gguf,
                            "--methods", "saliency,attnlrp", "--repeat", str(repeat),
                            "--precision", "bf16"] + flag)
            assert b16["precision"] == "bf16", b16["precision"]
            py16 = [sys.executable, __file__, "--gguf", args.gguf, "--prompt-file", path,
                    "--repeat", str(repeat), "--generate", "0", "--torch-dtype", "bf16"] + flag
            tb = {m: run_json(py16 + ["--torch-side", m]) for m in ("plain", "attnlrp")}
            for m, k in (("saliency", "plain"), ("attnlrp", "attnlrp")):
                bf16_rows.append((name, f"{m} + trace", ours["methods_s"][m],
                                  b16["methods_s"][m], tb[k]["methods_s"][m]))
        os.remove(path)
        print(f"done {label}", file=sys.stderr)

    steps = None
    if args.steps:
        # All steps of a greedy answer, every method: the engine's one forward and one batched
        # backward per rule set, against the per-step loop (one process per rule set).
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(make_prompt(tok, args.steps_prompt))
            path = f.name
        ours = run_json([args.binary, "bench", "--prompt-file", path, "--model", args.gguf,
                         "--methods", "saliency", "--repeat", "1", "--steps", str(args.steps)])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(ours["steps"]["answer"], f)
            answer_path = f.name
        loop = {}
        for mode in ("plain", "attnlrp", "cp_lrp"):
            r = run_json([sys.executable, __file__, "--gguf", args.gguf, "--prompt-file", path,
                          "--answer-file", answer_path, "--torch-steps", mode])
            assert r["n_tokens"] == ours["n_tokens"], (r, ours["n_tokens"])
            loop.update(r["s"])
        os.remove(path)
        os.remove(answer_path)
        steps = (ours["n_tokens"], len(ours["steps"]["answer"]), ours["steps"]["s"], loop)
        print("done all steps", file=sys.stderr)

    curves = None
    if args.faithfulness:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(make_prompt(tok, args.faithfulness))
            path = f.name
        ours = run_json([args.binary, "bench", "--prompt-file", path, "--model", args.gguf,
                         "--methods", "saliency", "--repeat", "1", "--faithfulness"])
        os.remove(path)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(ours["faithfulness"], f)
            inputs_path = f.name
        theirs = run_json([sys.executable, __file__, "--gguf", args.gguf,
                           "--torch-faithfulness", inputs_path])
        os.remove(inputs_path)
        mine = ours["faithfulness"]
        assert mine["inputs"] == theirs["inputs"], (mine["inputs"], theirs["inputs"])
        curves = (ours["n_tokens"], len(mine["eligible"]), mine, theirs)
        print("done faithfulness", file=sys.stderr)

    import platform
    import torch

    # Matrix products of the model's shapes (SmolLM2-135M: hidden 576, MLP 1536) at each
    # length: candle's kernel, OpenBLAS (as the engine loads it) and PyTorch, in GFLOP/s.
    shapes = [f"{n}x{k}x{m}" for n in (args.lengths.split(",") if args.lengths else [])
              for k, m in ((576, 1536), (1536, 576), (576, 576))]
    sgemm_rows = []
    if shapes:
        torch.set_num_threads(os.cpu_count() or 1)
        ours = run_json([args.binary, "bench", "--sgemm", ",".join(shapes)])
        for shape in shapes:
            m, k, n = map(int, shape.split("x"))
            a, b = torch.randn(m, k), torch.randn(k, n)
            reps = max(3, min(200, int(2e10 / (2 * m * k * n))))
            s = timed(1, lambda: [a @ b for _ in range(reps)])
            sgemm_rows.append((shape, ours[shape]["candle"], ours[shape]["openblas"],
                               2 * m * k * n * reps / s / 1e9))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    if gen_rows:
        print("\n| model (GGUF) | prompt + new tokens | TokenLens tok/s | llama.cpp tok/s | ratio "
              "| decode step | weights read | GB/s (share of read bandwidth) "
              "| llama.cpp decode step | llama.cpp GB/s (share) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for model, p, n, ours_ts, theirs_ts, d, their_step in gen_rows:
            bw, read = d["read_bandwidth_bytes_per_s"], d["bytes_per_step"]
            print(f"| {model} | {p} + {n} | {ours_ts:.1f} | {theirs_ts:.1f} | "
                  f"{ours_ts / theirs_ts:.2f}× | {d['step_s'] * 1e3:.1f} ms | "
                  f"{read / 1e6:.0f} MB | {d['bytes_per_s'] / 1e9:.1f} of {bw / 1e9:.1f} "
                  f"({d['share_of_bandwidth']:.0%}) | {their_step * 1e3:.1f} ms | "
                  f"{read / their_step / 1e9:.1f} ({read / their_step / bw:.0%}) |")
    if bf16_rows:
        print("\n| prompt tokens | what | TokenLens f32 | TokenLens bf16 | bf16 speed-up "
              "| PyTorch + lxt bf16 | TokenLens bf16 / PyTorch bf16 |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for name, what, f32, b16, tb in bf16_rows:
            print(f"| {name} | {what} | {f32:.3f} s | {b16:.3f} s | {f32 / b16:.2f}× | "
                  f"{tb:.3f} s | {b16 / tb:.2f}× |")
    print("| prompt tokens | what | TokenLens | PyTorch | ratio |")
    print("|---:|---|---:|---:|---:|")
    for real, k, a, b in rows:
        unit = "" if ("memory" in k or "tok/s" in k) else " s"
        fmt = (lambda v: f"{v:.0f}") if "memory" in k else (
            (lambda v: f"{v:.1f}") if "tok/s" in k else (lambda v: f"{v:.3f}"))
        print(f"| {real} | {k} | {fmt(a)}{unit} | {fmt(b)}{unit} | {a / b:.2f}× |")
    for name, all_s, one_s in alls:
        print(f"\n{name} tokens: all four methods in one request {all_s:.3f} s = "
              f"{all_s / one_s:.2f}× one method (AttnLRP + trace, {one_s:.3f} s)")
    if steps:
        n, g, mine, loop = steps
        total = sum(loop.values())
        each = ", ".join(f"{m} {t:.1f} s" for m, t in loop.items())
        print(f"\nAll steps, {g} answer tokens after {n} prompt tokens, all four methods: "
              f"TokenLens {mine:.2f} s; the per-step loop as Inseq runs it (PyTorch + lxt) "
              f"{total:.1f} s ({each}): {total / mine:.1f}× faster")
    if curves:
        n, e, mine, theirs = curves
        print(f"\nFaithfulness curves, {n} prompt tokens ({e} eligible), four methods and 10 random "
              f"orders, {mine['inputs']} distinct inputs: TokenLens {mine['s']:.1f} s, PyTorch "
              f"(the same inputs whole, batches of 32) {theirs['s']:.1f} s: "
              f"{mine['s'] / theirs['s']:.2f}×; saliency's ABPC {mine['abpc']['saliency']:.4f} "
              f"vs {theirs['abpc_saliency']:.4f}")
    if sgemm_rows and flops:
        # Issue 20's count of a pass's useful work: 2 × matrix params × tokens forward, twice
        # that backward (lm_head's one target row and attention's products not counted), set
        # against the best OpenBLAS rate measured above for the nearest length.
        print("\nFLOP rate of a whole explanation (6 × layer matrix params × tokens), against "
              "the best OpenBLAS sgemm rate of that length's shapes:")
        for name, n, params, times in flops:
            near = min((int(s.split("x")[0]) for s, *_ in sgemm_rows), key=lambda m: abs(m - n))
            peak = max(o for s, _, o, _ in sgemm_rows if int(s.split("x")[0]) == near and o)
            useful = 6 * params * n
            each = "; ".join(f"{m} + trace {useful / t / 1e9:.0f} GFLOP/s = "
                             f"{useful / t / 1e9 / peak:.0%}" for m, t in times.items())
            print(f"- {name} tokens ({useful / 1e9:.0f} GFLOP): {each} of {peak:.0f} GFLOP/s")
    if sgemm_rows:
        print("\n| sgemm M×K×N | candle GFLOP/s | OpenBLAS GFLOP/s | PyTorch GFLOP/s |")
        print("|---|---:|---:|---:|")
        for shape, c, o, t in sgemm_rows:
            ob = f"{o:.0f}" if o is not None else "not loaded"
            print(f"| {shape} | {c:.0f} | {ob} | {t:.0f} |")


if __name__ == "__main__":
    main()
