"""The speed-accuracy frontier on BCCD: AP50-95 against CPU latency, one line per recipe.

    python benchmarks/frontier.py train --points mnv3-small-dsh@416,yolov5n@320 --seeds 0 --threads 1
    python benchmarks/frontier.py time                 # on an idle machine: ORT fp32, batch 1, 1 and 2 threads
    python benchmarks/frontier.py int8                 # on an idle machine: OpenVINO INT8 mAP and latency
    python benchmarks/frontier.py report               # table (markdown), json and frontier.png

Protocol (issue 11): train from scratch at the size the model is deployed at, on BCCD train (205 images) with
hyp.small-data, 30 epochs, batch 16; score best.pt with pycocotools on BCCD val (87 images) and test (72 images)
at that size. Latency: the static ONNX export of best.pt at that size, ONNX Runtime fp32 on CPU, batch 1, with
mnv3det's session settings, median of `--runs`, every model timed in blocks taken in turn (round-robin by block,
never run by run: two live ORT pools would compete for the cores). Every step is a separate `mnv3det` process, so
the script measures exactly what a user gets. Results accumulate in benchmarks/results/frontier.json (one entry per
recipe, size and seed; a finished point is not trained again), so runs can be spread over several sessions.
`train --epochs 60` trains the same point on a longer schedule, stored and reported as a point of its own (key
`recipe@size/sN/e60`, folder `recipe-size-sN-e60`, a table beside the 30-epoch figures, dashed in the plot).
`train --start shipped` (or `--start PATH` of a `mnv3det pretrain` file) fine-tunes from pretrained weights instead
of scratch (issue 20): the start is part of the key (`recipe@size/sN/pt`, `/pt-LABEL` for a file) and the run folder,
and `report` sets each pretrained point beside the scratch point of the same recipe, size and schedule, with the
AP after 5, 10 and 30 epochs (the fast mAP on val from results.csv) and the per-class test AP.
`int8` deploys each size's seed-0 model in the fastest CPU format measured (benchmarks/bench_edge.py: OpenVINO
INT8 for both families), calibrated on BCCD train by `mnv3det export --format openvino-int8 --data`, which also
scores float and INT8 on BCCD val (mnv3det's evaluator); latency from mnv3det's timing worker, 1 and 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BCCD = Path(os.environ.get("MNV3DET_SHARED_DATASETS", ROOT.parent / "shared" / "datasets")) / "bccd"
RESULTS = ROOT / "benchmarks" / "results"
STORE = RESULTS / "frontier.json"
RUNS = ROOT / "runs" / "frontier"
BASELINE = "yolov5n"  # the curve every MobileNet recipe is compared with (drawn in black)


def mnv3det(*args: str, threads: int | None = None) -> str:
    cmd = [sys.executable, "-m", "mnv3det", *args] + (["--threads", str(threads)] if threads else [])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def load_store() -> dict:
    return json.loads(STORE.read_text()) if STORE.is_file() else {"points": {}}


def save_store(store: dict) -> None:
    STORE.parent.mkdir(parents=True, exist_ok=True)
    tmp = STORE.with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1, sort_keys=True))
    os.replace(tmp, STORE)


PROTOCOL_EPOCHS = 30  # the issue's schedule; a longer one is stored (and reported) as its own point


def schedule_suffix(epochs: int, sep: str) -> str:
    """'' for the protocol's 30 epochs, so every earlier key and run folder keeps its name; else e.g. '/e60'."""
    return "" if epochs == PROTOCOL_EPOCHS else f"{sep}e{epochs}"


SCRATCH = "scratch"  # the start of every point measured before issue 20


def start_label(start: str, label: str | None = None) -> str:
    """'scratch', 'pt' (the shipped weights) or 'pt-LABEL' (a pretrain file; LABEL defaults to its run folder)."""
    if start in (SCRATCH, "none"):
        return SCRATCH
    if start == "shipped":
        return "pt"
    return f"pt-{label or Path(start).resolve().parents[1].name}"


def start_suffix(start: str, sep: str) -> str:
    """'' for scratch (every earlier key and folder keeps its name), else e.g. '/pt'."""
    return "" if start == SCRATCH else f"{sep}{start}"


PROTOCOL_HYP = "hyp.small-data"


def hyp_suffix(hyp: str, sep: str) -> str:
    """'' for the protocol's preset, else e.g. '/hyp-af-bce' (a variant's file stem): a point of its own."""
    return "" if hyp == PROTOCOL_HYP else f"{sep}hyp-{Path(hyp).stem.removeprefix('hyp.')}"


def key(recipe: str, imgsz: int, seed: int, epochs: int = PROTOCOL_EPOCHS, start: str = SCRATCH,
        hyp: str = PROTOCOL_HYP) -> str:
    return f"{recipe}@{imgsz}/s{seed}{schedule_suffix(epochs, '/')}{start_suffix(start, '/')}{hyp_suffix(hyp, '/')}"


def score(weights: Path, imgsz: int, split: str, threads: int) -> dict:
    """pycocotools AP (and AP per class) of `weights` on a BCCD split at `imgsz`, from `mnv3det val`'s results.json."""
    name = f"{weights.parents[1].name}-{split}"
    mnv3det("val", "--weights", str(weights), "--data", str(BCCD), "--split", split, "--imgsz", str(imgsz),
            "--no-plots", "--project", str(RUNS / "val"), "--name", name, "--exist-ok", threads=threads)
    result = json.loads((RUNS / "val" / name / "results.json").read_text())
    return {"map": result["map"], "map50": result["map50"],
            "per_class": {c["name"]: round(c["ap"], 4) for c in result.get("per_class", [])}}


HISTORY_EPOCHS = (5, 10, 30)  # where the fast val mAP of results.csv is kept: how fast a start learns


def val_history(results_csv: Path) -> dict[str, float]:
    """{"5": AP50-95, ...} from the run's results.csv (fast mAP on val, 1-based epochs)."""
    import csv

    rows = list(csv.DictReader(results_csv.open())) if results_csv.is_file() else []
    out = {}
    for epoch in HISTORY_EPOCHS:
        if epoch <= len(rows) and rows[epoch - 1].get("metrics/mAP50-95") not in (None, ""):
            out[str(epoch)] = round(float(rows[epoch - 1]["metrics/mAP50-95"]), 4)
    return out


def recipe_name(recipe: str) -> str:
    """A shipped recipe's name, or the stem of a recipe yaml given by path (benchmarks/recipes/: a variant)."""
    return Path(recipe).stem if recipe.endswith((".yaml", ".yml")) else recipe


def train_point(recipe_arg: str, imgsz: int, seed: int, args: argparse.Namespace) -> dict:
    recipe, start = recipe_name(recipe_arg), start_label(args.start, args.start_label)
    name = (f"{recipe}-{imgsz}-s{seed}{schedule_suffix(args.epochs, '-')}{start_suffix(start, '-')}"
            f"{hyp_suffix(args.hyp, '-')}")
    pretrained = "none" if start == SCRATCH else args.start
    t0 = time.time()
    mnv3det("train", "--recipe", recipe_arg, "--data", str(BCCD), "--hyp", args.hyp, "--epochs", str(args.epochs),
            "--imgsz", str(imgsz), "--batch", "16", "--seed", str(seed), "--workers", str(args.workers), "--no-plots",
            "--pretrained", pretrained, "--project", str(RUNS), "--name", name, "--exist-ok", threads=args.threads)
    minutes = (time.time() - t0) / 60
    weights = RUNS / name / "weights" / "best.pt"
    return {"recipe": recipe, "recipe_arg": recipe_arg, "imgsz": imgsz, "seed": seed, "epochs": args.epochs,
            "start": start, "hyp": args.hyp, "pretrained": pretrained, "train_min": round(minutes, 1), "load_after": os.getloadavg()[0],
            "weights": str(weights.relative_to(ROOT)), "val_history": val_history(RUNS / name / "results.csv"),
            "val": score(weights, imgsz, "val", args.threads), "test": score(weights, imgsz, "test", args.threads)}


def cmd_train(args: argparse.Namespace) -> None:
    store = load_store()
    for point in args.points.split(","):
        recipe, imgsz = point.split("@")
        for seed in (int(s) for s in args.seeds.split(",")):
            k = key(recipe_name(recipe), int(imgsz), seed, args.epochs, start_label(args.start, args.start_label), args.hyp)
            if k in store["points"] and not args.again:
                print(f"{k}: done already ({store['points'][k]['val']})")
                continue
            print(f"{k}: training ({time.strftime('%H:%M')}, load {os.getloadavg()[0]:.1f})", flush=True)
            result = train_point(recipe, int(imgsz), seed, args)
            store = load_store()  # another `train` process may have added points meanwhile
            store["points"][k] = result
            save_store(store)
            print(f"{k}: {store['points'][k]}", flush=True)


def time_in_turn(files: dict[str, tuple[str, Path, int]], rounds: int, runs: int) -> tuple[dict[str, float], dict]:
    """{key: (format, file, imgsz)} -> ({'key/t1': ms, 'key/t2': ms} medians over rounds, the load record). Each
    timing is mnv3det's worker in a fresh process (its pool the only one alive), every file at 1 and 2 threads in
    blocks taken in turn, round by round."""
    from mnv3det.deploy.runtime.timing import time_in_subprocess

    before = os.getloadavg()[0]
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for k, (fmt, path, imgsz) in files.items():
            for threads in (1, 2):
                timed = time_in_subprocess(fmt, path, (imgsz, imgsz), threads, runs)
                if "error" in timed:
                    raise RuntimeError(f"timing {k} ({path}): {timed['error']}")
                samples.setdefault(f"{k}/t{threads}", []).append(float(timed["median_ms"]))
    load = {"before": round(before, 2), "after": round(os.getloadavg()[0], 2), "rounds": rounds, "runs": runs}
    return {k: round(statistics.median(v), 2) for k, v in samples.items()}, load


def cmd_time(args: argparse.Namespace) -> None:
    """Export each trained model (static ONNX at its size; the recipe with fresh weights stands in for a lost
    checkpoint, as in bench_heads.py) and time it, blocks taken in turn over `rounds`. `--points` times only those
    (recipe, size) pairs, side by side, and merges their figures into the store with the run's load; without it every
    point is timed and the table replaced."""
    wanted = set(args.points.split(",")) if args.points else None
    store = load_store()
    models = {}  # (recipe, imgsz) -> onnx path (latency does not depend on the seed's weights)
    for point in store["points"].values():
        k = (point["recipe"], point["imgsz"])
        if k in models or (wanted is not None and f"{k[0]}@{k[1]}" not in wanted):
            continue
        out = RUNS / "onnx" / f"{point['recipe']}-{point['imgsz']}.onnx"
        weights = ROOT / point["weights"]
        if weights.is_file():
            mnv3det("export", "--weights", str(weights), "--imgsz", str(point["imgsz"]), "--static", "--runs", "1",
                    "-o", str(out))
        else:  # run folders are not kept forever; latency depends on the graph and size, not on the weights
            from bench_heads import export_point

            out.parent.mkdir(parents=True, exist_ok=True)
            export_point(point.get("recipe_arg", point["recipe"]), point["imgsz"], out.parent, out)
        models[k] = out
    timed, load = time_in_turn({f"{r}@{s}": ("onnx", path, s) for (r, s), path in models.items()}, args.rounds,
                               args.runs)
    store = load_store()
    if wanted is None:
        store["latency"], store["latency_load"], store["latency_runs"] = timed, load, []
    else:
        store.setdefault("latency", {}).update(timed)
        store.setdefault("latency_runs", []).append({**load, "points": sorted(wanted), "date": time.strftime("%Y-%m-%d")})
    save_store(store)
    print(json.dumps(timed, indent=1))


def int8_key(point: dict) -> str:
    """'recipe@size' for a scratch start (every earlier key keeps its name), else e.g. 'recipe@size/pt'."""
    return f"{point['recipe']}@{point['imgsz']}{start_suffix(point.get('start', SCRATCH), '/')}"


def cmd_int8(args: argparse.Namespace) -> None:
    """Export each chosen (recipe, size, start) to OpenVINO INT8 (seed 0's weights of the protocol schedule and hyp;
    kept in the store, so `--export-only` can run on a busy machine first), then time them in turn on an idle one."""
    wanted = set(args.points.split(",")) if args.points else None
    start = start_label(args.start)
    store = load_store()
    candidates: dict[str, list[dict]] = {}  # int8 key -> the protocol points of that recipe, size and start
    for point in store["points"].values():
        if (point["epochs"] != PROTOCOL_EPOCHS or point.get("start", SCRATCH) != start
                or point.get("hyp", PROTOCOL_HYP) != PROTOCOL_HYP
                or (wanted is not None and f"{point['recipe']}@{point['imgsz']}" not in wanted)):
            continue
        candidates.setdefault(int8_key(point), []).append(point)
    chosen = []
    for k, points in sorted(candidates.items()):
        # seed 0's model, else the lowest seed whose weights are still on disk (run folders are not kept forever)
        kept = sorted((p for p in points if (ROOT / p["weights"]).is_file()), key=lambda p: p["seed"])
        if k in store.setdefault("int8_export", {}) and (ROOT / store["int8_export"][k]["path"]).exists():
            chosen.append(k)
            continue
        if not kept:
            print(f"{k}: skipped, no weights on disk for any seed ({', '.join(p['weights'] for p in points)})")
            continue
        point = kept[0]
        chosen.append(k)
        out = RUNS / "int8" / f"{k.replace('@', '-').replace('/', '-')}_openvino_int8_model"
        result = json.loads(mnv3det("export", "--weights", str(ROOT / point["weights"]), "--format", "openvino-int8",
                                    "--data", str(BCCD), "--imgsz", str(point["imgsz"]), "--runs", "1", "-o", str(out),
                                    "--json"))
        store = load_store()  # a `train` process may have added points meanwhile
        store.setdefault("int8_export", {})[k] = {"path": str(Path(result["path"]).relative_to(ROOT)), "seed": point["seed"],
                                                  "imgsz": point["imgsz"], "quantization": result.get("quantization")}
        save_store(store)
        print(f"{k} (seed {point['seed']}): {result.get('quantization')}", flush=True)
    if args.export_only:
        return
    exported = {k: store["int8_export"][k] for k in chosen}
    timed, load = time_in_turn({k: ("openvino-int8", ROOT / e["path"], e["imgsz"]) for k, e in exported.items()},
                               args.rounds, args.runs)
    store = load_store()
    for k, e in exported.items():  # merged into the store: a run over some points keeps the others' figures
        store.setdefault("int8", {})[k] = {"val_map_float": e["quantization"]["map50_95_float"],
                                           "val_map_int8": e["quantization"]["map50_95_int8"],
                                           "ms_t1": timed[f"{k}/t1"], "ms_t2": timed[f"{k}/t2"], "load": load,
                                           "seed": e.get("seed", 0)}
    save_store(store)
    print(json.dumps({k: store["int8"][k] for k in exported}, indent=1))


def summary_rows(store: dict) -> list[dict]:
    """One row per recipe, size, schedule and start: mean (and spread) over seeds, with the latencies."""
    groups: dict[tuple[str, int, int, str, str], list[dict]] = {}
    for p in store["points"].values():
        groups.setdefault((p["recipe"], p["imgsz"], p["epochs"], p.get("start", SCRATCH), p.get("hyp", PROTOCOL_HYP)),
                          []).append(p)
    rows = []
    for (recipe, imgsz, epochs, start, hyp), pts in sorted(groups.items()):
        lat = store.get("latency", {})
        vals = [p["val"]["map"] for p in pts]
        rows.append({"recipe": recipe, "imgsz": imgsz, "epochs": epochs, "start": start, "hyp": hyp, "seeds": len(pts),
                     "points": pts,
                     "val_map": statistics.mean(vals), "val_spread": max(vals) - min(vals),
                     "val_map50": statistics.mean(p["val"]["map50"] for p in pts),
                     "test_map": statistics.mean(p["test"]["map"] for p in pts),
                     "test_map50": statistics.mean(p["test"]["map50"] for p in pts),
                     "ms_t1": lat.get(f"{recipe}@{imgsz}/t1"), "ms_t2": lat.get(f"{recipe}@{imgsz}/t2"),
                     "train_min": statistics.mean(p["train_min"] for p in pts)})
    return rows


def cmd_report(args: argparse.Namespace) -> None:
    store = load_store()
    every_row = summary_rows(store)
    all_rows = [r for r in every_row if r["hyp"] == PROTOCOL_HYP]
    scratch = [r for r in all_rows if r["start"] == SCRATCH]
    rows = [r for r in scratch if r["epochs"] == PROTOCOL_EPOCHS]
    longer = [r for r in scratch if r["epochs"] != PROTOCOL_EPOCHS]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = ["| recipe | size | seeds | val AP50-95 (spread) | val AP50 | test AP50-95 | test AP50 | ms 1 thread | ms 2 threads | train min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        spread = f" ({r['val_spread']:.3f})" if r["seeds"] > 1 else ""
        lines.append(f"| {r['recipe']} | {r['imgsz']} | {r['seeds']} | {r['val_map']:.3f}{spread} | {r['val_map50']:.3f} | "
                     f"{r['test_map']:.3f} | {r['test_map50']:.3f} | {fmt(r['ms_t1'], '.1f')} | {fmt(r['ms_t2'], '.1f')} | "
                     f"{r['train_min']:.0f} |")
    load = store.get("latency_load")
    if load:
        lines.append(f"\nLatency: ORT fp32, batch 1, median of {load['runs']} runs x {load['rounds']} rounds taken in turn; "
                     f"load average {load['before']:.2f} before, {load['after']:.2f} after.")
    for run in store.get("latency_runs", []):  # `time --points`: re-timed together, side by side, in a later run
        lines.append(f"Re-timed together on {run['date']} ({', '.join(run['points'])}): {run['runs']} runs x {run['rounds']} "
                     f"rounds; load average {run['before']:.2f} before, {run['after']:.2f} after.")
    lines += longer_schedule_lines(longer, rows)
    lines += pretrained_lines(all_rows)
    lines += int8_lines(store)
    lines += variant_lines([r for r in every_row if r["hyp"] != PROTOCOL_HYP], all_rows)
    table = "\n".join(lines)
    (RESULTS / "frontier.md").write_text(table + "\n")
    print(table)
    plot([("ONNX Runtime fp32; val AP (picks best.pt), pycocotools, mean over seeds", all_rows, "val_map"),
          ("ONNX Runtime fp32; test AP (never seen in training), pycocotools, mean over seeds", all_rows, "test_map"),
          ("OpenVINO INT8; val AP by mnv3det, seed 0", int8_rows(store), "val_map")], RESULTS / "frontier.png")


def variant_lines(variants: list[dict], protocol: list[dict]) -> list[str]:
    """Points trained with another hyp file (`train --hyp`), each beside the protocol point it varies."""
    if not variants:
        return []
    base = {(r["recipe"], r["imgsz"], r["epochs"], r["start"]): r for r in protocol}
    lines = ["", "| recipe | size | start | hyp | seeds | val AP50-95 | test AP50-95 | protocol hyp: val / test |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in variants:
        b = base.get((r["recipe"], r["imgsz"], r["epochs"], r["start"]))
        at = f"{b['val_map']:.3f} / {b['test_map']:.3f} ({b['seeds']} seeds)" if b else "-"
        lines.append(f"| {r['recipe']} | {r['imgsz']} | {r['start']} | {Path(r['hyp']).name} | {r['seeds']} | "
                     f"{r['val_map']:.3f} | {r['test_map']:.3f} | {at} |")
    lines.append("\nHyp variants (`train --hyp FILE`): the same protocol with one hyp file changed; not in the plot.")
    return lines


def longer_schedule_lines(longer: list[dict], protocol: list[dict]) -> list[str]:
    """The points trained on a longer schedule, each beside the same recipe and size at the protocol's 30 epochs."""
    if not longer:
        return []
    base = {(r["recipe"], r["imgsz"]): r for r in protocol}
    lines = ["", "| recipe | size | epochs | seeds | val AP50-95 (spread) | test AP50-95 | val / test at 30 epochs | "
             "ms 1 thread |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in longer:
        spread = f" ({r['val_spread']:.3f})" if r["seeds"] > 1 else ""
        b = base.get((r["recipe"], r["imgsz"]))
        at30 = f"{b['val_map']:.3f} / {b['test_map']:.3f}" if b else "-"
        ms = "-" if r["ms_t1"] is None else f"{r['ms_t1']:.1f}"
        lines.append(f"| {r['recipe']} | {r['imgsz']} | {r['epochs']} | {r['seeds']} | {r['val_map']:.3f}{spread} | "
                     f"{r['test_map']:.3f} | {at30} | {ms} |")
    lines.append("\nLonger schedule: the same protocol and latencies, only `--epochs` differs (dashed lines in the plot).")
    return lines


def pretrained_lines(rows: list[dict]) -> list[str]:
    """Each pretrained start beside scratch at the same recipe, size and schedule: AP, gain, the AP after 5/10/30
    epochs (fast val mAP; mean over seeds) and the per-class test AP."""
    pretrained = [r for r in rows if r["start"] != SCRATCH]
    if not pretrained:
        return []
    base = {(r["recipe"], r["imgsz"], r["epochs"]): r for r in rows if r["start"] == SCRATCH}

    def history(r: dict) -> str:
        means = []
        for e in HISTORY_EPOCHS:
            got = [p["val_history"][str(e)] for p in r["points"] if str(e) in p.get("val_history", {})]
            means.append(f"{statistics.mean(got):.3f}" if got else "-")
        return " / ".join(means)

    def per_class(r: dict) -> str:
        names = sorted({n for p in r["points"] for n in p["test"].get("per_class", {})})
        return ", ".join(f"{n} {statistics.mean(p['test']['per_class'][n] for p in r['points'] if n in p['test'].get('per_class', {})):.3f}"
                         for n in names) or "-"

    lines = ["", "| recipe | size | epochs | start | seeds | val AP50-95 | test AP50-95 | test gain over scratch | "
             "val AP at epoch 5 / 10 / 30 | test AP per class |", "|---|---:|---:|---|---:|---:|---:|---:|---|---|"]
    for r in sorted(pretrained, key=lambda r: (r["recipe"], r["imgsz"], r["epochs"], r["start"])):
        b = base.get((r["recipe"], r["imgsz"], r["epochs"]))
        for row, gain in ((b, ""), (r, f"{(r['test_map'] - b['test_map']) * 100:+.1f}" if b else "-")):
            if row is None:
                continue
            lines.append(f"| {row['recipe']} | {row['imgsz']} | {row['epochs']} | {row['start']} | {row['seeds']} | "
                         f"{row['val_map']:.3f} | {row['test_map']:.3f} | {gain} | {history(row)} | {per_class(row)} |")
    lines.append("\nPretrained starts (issue 20): the same protocol, fine-tuned from `mnv3det pretrain` weights; gain in "
                 "points of test AP50-95 (mean over seeds). Epoch 5/10/30 columns: the fast mAP on val from results.csv.")
    return lines


def int8_lines(store: dict) -> list[str]:
    """The OpenVINO INT8 table (seed 0 per recipe, size and start), if `int8` has run."""
    if not store.get("int8"):
        return []
    lines = ["", "| recipe @ size / start (seed) | val AP50-95 float | val AP50-95 OpenVINO INT8 | ms 1 thread | ms 2 threads | "
             "load before / after |", "|---|---:|---:|---:|---:|---:|"]
    for k, v in sorted(store["int8"].items()):
        load = v.get("load", store.get("int8_load"))  # rows timed before per-row loads share the first run's
        lines.append(f"| {k} ({v.get('seed', 0)}) | {v['val_map_float']:.3f} | {v['val_map_int8']:.3f} | {v['ms_t1']:.2f} | {v['ms_t2']:.2f} | "
                     f"{load['before']:.2f} / {load['after']:.2f} |")
    lines.append("\nOpenVINO INT8 (nncf, calibrated on BCCD train), mnv3det's evaluator on val; median of the runs x rounds "
                 "of each timing run, each model in its own process, blocks in turn (rows of one run are side by side).")
    return lines


def int8_rows(store: dict) -> list[dict]:
    """The OpenVINO INT8 points in the shape `plot` takes (seed 0's model per recipe, size and start)."""
    rows = []
    for k, v in store.get("int8", {}).items():
        point, _, start = k.partition("/")
        recipe, imgsz = point.split("@")
        rows.append({"recipe": recipe, "imgsz": int(imgsz), "epochs": PROTOCOL_EPOCHS, "start": start or SCRATCH,
                     "val_map": v["val_map_int8"], "ms_t1": v["ms_t1"]})
    return rows


def plot(panels: list[tuple[str, list[dict], str]], path: Path) -> None:
    """AP50-95 (the row key each panel names) against 1-thread latency: one panel per (runtime, split), one line per
    recipe, sizes labelled; the baseline in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(title, rows, y) for title, rows, y in panels if any(r["ms_t1"] for r in rows)]
    if not panels:  # nothing timed yet (`time` has not run)
        return
    recipes = sorted({r["recipe"] for _, rows, _ in panels for r in rows})
    colour = {recipe: f"C{i}" for i, recipe in enumerate(r for r in recipes if r != BASELINE)}  # same in every panel
    colour[BASELINE] = "black"
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), dpi=110, squeeze=False)
    for ax, (title, rows, y) in zip(axes[0], panels):
        lines = sorted({(r["recipe"], r["epochs"], r.get("start", SCRATCH)) for r in rows})
        for recipe, epochs, start in lines:
            pts = sorted((r for r in rows if (r["recipe"], r["epochs"], r.get("start", SCRATCH)) == (recipe, epochs, start)
                          and r["ms_t1"]), key=lambda r: r["ms_t1"])
            if not pts:
                continue
            longer, pretrained = epochs != PROTOCOL_EPOCHS, start != SCRATCH
            label = recipe + (f", {epochs} epochs" if longer else "") + (f", {start}" if pretrained else "")
            ax.plot([p["ms_t1"] for p in pts], [p[y] for p in pts], marker="^" if pretrained else "s" if longer else "o",
                    linestyle=":" if pretrained else "--" if longer else "-", label=label,
                    color=colour[recipe], linewidth=2.5 if recipe == BASELINE else 1.5)
            for p in pts:
                ax.annotate(str(p["imgsz"]), (p["ms_t1"], p[y]), textcoords="offset points", xytext=(4, -10),
                            fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("latency, ms (1 thread, batch 1)")
        ax.set_ylabel(f"AP50-95, BCCD {y.split('_')[0]}")
        ax.grid(alpha=0.3)
    legend = {}  # label -> line, over every panel: one legend under the figure, clear of the curves
    for ax in axes[0]:
        for line, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, line)
    labels = sorted(legend, key=lambda label: (label.startswith(BASELINE), label))
    fig.legend([legend[label] for label in labels], labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("mnv3det speed-accuracy frontier on BCCD (solid: from scratch; dotted: from pretrained weights)")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--points", required=True, help="recipe@size,... e.g. mnv3-small@416,yolov5n@320; a recipe may be a "
                                                    "yaml path (benchmarks/recipes/NAME.yaml@416: key and folder NAME)")
    t.add_argument("--seeds", default="0")
    t.add_argument("--epochs", type=int, default=PROTOCOL_EPOCHS, help="another schedule is kept apart: a point per epochs")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--again", action="store_true", help="re-train points already in the store")
    t.add_argument("--hyp", default=PROTOCOL_HYP, help="another preset or yaml (a variant: its own key, /hyp-STEM)")
    t.add_argument("--start", default=SCRATCH, help="scratch, shipped (the recipe's shipped pretrained weights) or the "
                                                     "path of a `mnv3det pretrain` weights file")
    t.add_argument("--start-label", default=None, help="name of a --start file in keys and folders (default: its run)")
    tm = sub.add_parser("time")
    tm.add_argument("--rounds", type=int, default=3)
    tm.add_argument("--runs", type=int, default=30)
    tm.add_argument("--points", default=None, help="recipe@size,...: time only these, side by side (merged into the store)")
    i8 = sub.add_parser("int8")
    i8.add_argument("--rounds", type=int, default=3)
    i8.add_argument("--runs", type=int, default=50)
    i8.add_argument("--export-only", action="store_true", help="export (and score) only; time later on an idle machine")
    i8.add_argument("--points", default=None, help="recipe@size,... (default: every recipe and size of the start)")
    i8.add_argument("--start", default=SCRATCH, help="the start whose seed-0 models to deploy: scratch or shipped")
    sub.add_parser("report")
    args = ap.parse_args()
    if not BCCD.is_dir() and args.cmd in ("train", "int8"):
        sys.exit(f"BCCD not found at {BCCD}; set MNV3DET_SHARED_DATASETS to the folder holding bccd/")
    {"train": cmd_train, "time": cmd_time, "int8": cmd_int8, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
