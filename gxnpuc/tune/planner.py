"""`gxnpuc -t config.yaml`: choose clip ranges, per-channel ranges and the weights to leave
uncompressed, for a target output SNR or weight budget, and write `<config>.tuned.yaml`.

The loop of docs/tuning.md: compile once with every conv/fc weight compressed (the probe);
simulate the inputs once (gxnpuc.evaluate's runs); measure each weight's options with only that weight
compressed (gxnpuc.tune.sweep); start from every weight at its best range; then leave
weights in fp16 one simulated step at a time (the cheapest that reaches the target, else
the most output noise removed per byte) until the target is met; drop exclusions the
target does not need. Per-channel ranges are
a second path when allowed. The chosen step's config is compiled with plain `gxnpuc` and
simulated afresh before it is written: its numbers are what the tuner reports.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc import sim
from gxnpuc.tune import costmodel
from gxnpuc.tune import report as tune_report
from gxnpuc.tune import sweep as tune_sweep
from gxnpuc import evaluate
from gxnpuc.config import Config
from gxnpuc.errors import CompileError, ConfigError, GxnpucError
from gxnpuc.tune.sweep import Sweep, noise_ratio

if TYPE_CHECKING:
    from gxnpuc.evaluate.runs import Runs

PER_TENSOR, PER_CHANNEL = "per tensor", "per channel"
VENDOR = "min/max per tensor (vendor)"
MAX_TRIALS = 12  # exclusions simulated per greedy step
MATCH_DB = 1e-6  # a step's SNR and the recompiled tuned config's must agree this closely


@dataclass
class Target:
    snr_db: float | None = None  # minimum output SNR
    max_bytes: int | None = None  # maximum stored weight bytes

    def feasible(self, step) -> bool:
        return self.max_bytes is None or step.nbytes <= self.max_bytes

    def met(self, step) -> bool:
        return self.feasible(step) and (self.snr_db is None or step.snr >= self.snr_db)

    def text(self) -> str:
        parts = [f"output SNR >= {self.snr_db:g} dB"] if self.snr_db is not None else []
        parts += [f"weight bytes <= {self.max_bytes:,}"] if self.max_bytes is not None else []
        return " and ".join(parts)


@dataclass(eq=False)
class Step:
    """One measured choice (an Option per weight) and what it costs."""
    label: str
    path: str  # PER_TENSOR | PER_CHANNEL
    choice: dict  # weight name -> Option
    snrs: dict  # output -> SNR dB
    nbytes: int  # every stored weight, bias and parameter
    latency_sram: float  # seconds per inference, weights in SRAM (gxnpuc.tune.costmodel)
    latency_flash: float  # ... weights read from flash
    selectable: bool = True  # a plan the tuned config may choose (not an info row)
    parent: Step | None = None  # the step this one changed (greedy and prune steps)
    changed: str = ""  # the weight it changed

    @property
    def before(self) -> float | None:
        return None if self.parent is None else self.parent.snr

    @property
    def snr(self) -> float:
        return min(self.snrs.values())


@dataclass
class Result:
    cfg: Config
    target: Target
    source: str  # where the inputs came from
    samples: int
    steps: list
    chosen: Step
    met: bool
    candidates: dict  # path -> {name: Candidate}
    tuned_path: str
    text: str = ""  # the tuned config
    verified: dict = field(default_factory=dict)  # output -> SNR of the recompiled tuned config
    verified_bytes: int = 0
    notes: list = field(default_factory=list)

    @property
    def snr(self) -> float:
        return min(self.verified.values()) if self.verified else self.chosen.snr


# -- entry points ---------------------------------------------------------------------------
def main(cfg: Config, args) -> int:
    """The -t/--tune entry point (cli.run); inputs from -e DATA, else seeded random ones."""
    if not cfg.path:
        raise ConfigError("-t/--tune", "needs the config as a file, to write the tuned one beside it",
                          "gxnpuc -t config.yaml")
    result = tune(cfg, args.eval or "random")
    print(tune_report.text(result))
    plot = tune_report.save_plot(result, tune_report.plot_path(result.tuned_path))
    tune_report.write_atomic(result.tuned_path, result.text)
    from gxnpuc.config import display_path

    print(f"tuned config written: {display_path(result.tuned_path)}"
          + (f"; trade-off plot: {display_path(plot)}" if plot else ""))
    if not result.met:
        raise GxnpucError("--tune", f"target {result.target.text()} not met: the closest plan gives "
                          f"{evaluate.fmt_db(result.snr)} dB at {result.chosen.nbytes:,} weight bytes "
                          f"(written anyway)", _unmet_hint(result))
    return 0


def tune(cfg: Config, data: str = "random", samples: int | None = None, seed: int = 0,
         jobs: int | None = None, pool_min_seconds: float = tune_sweep.POOL_MIN_SECONDS) -> Result:
    """Measure, plan and verify; nothing is written (main writes result.text)."""
    with tune_sweep.blas_one_thread():
        return _tune(cfg, data, samples, seed, jobs, pool_min_seconds)


def _tune(cfg: Config, data, samples, seed, jobs, pool_min_seconds) -> Result:
    from gxnpuc import compiler

    target = resolve_target(cfg)
    base_cfg = probe_config(cfg)
    probe = compiler.compile(base_cfg)
    names = [sw.name for sw in evaluate.compressed_weights(probe)]
    if not names:
        raise GxnpucError("--tune", "the model has no conv or fully-connected weight to compress",
                          "a model with Conv / MatMul / Gemm weights")
    feeds, _, source = evaluate.load_inputs(data, probe.graph, samples, seed)
    n = len(next(iter(feeds.values())))
    with evaluate.progress(4 * n, "tune: simulate") as bar:
        runs = evaluate.simulate(cfg, probe, feeds, bar)
    if jobs is None and "tensorflow" in sys.modules and not os.environ.get(tune_sweep.JOBS_ENV):
        jobs = 1  # TensorFlow's threads do not survive fork; its models sweep serially
    planner = Planner(cfg, base_cfg, runs, names, target, jobs, pool_min_seconds)
    steps, cands = planner.run()
    chosen, met = pick(steps, target)
    if cfg.tune_target_snr_db is None and cfg.tune_max_weight_bytes is None:
        planner.notes.append(f"no target given (TUNE_TARGET_SNR_DB, TUNE_MAX_WEIGHT_BYTES, --target-snr, "
                             f"--max-weight-bytes): aiming at EVAL_SNR_THRESHOLD_DB, {target.snr_db:g} dB")
    result = Result(cfg, target, source, n, steps, chosen, met, cands, tuned_path(cfg.path),
                    notes=planner.notes)
    result.text = tune_report.tuned_text(result)
    verify(result, runs)
    return result


def resolve_target(cfg: Config) -> Target:
    snr, nbytes = cfg.tune_target_snr_db, cfg.tune_max_weight_bytes
    if snr is None and nbytes is None:
        snr = float(cfg.eval_snr_threshold_db)  # no target given: the --eval threshold
    return Target(None if snr is None else float(snr), nbytes)


def probe_config(cfg: Config):
    """Every conv/fc weight compressed, no exclusion or range of the user's: the tuner decides."""
    return dataclasses.replace(cfg, compress=True, conv2d_compress=True, exclude_compress_ops=(),
                               exclude_conv2d_compress_ops=(), weight_min_max={})


def tuned_path(config_path: str) -> str:
    """configs/kws.yaml -> configs/kws.tuned.yaml; a tuned config is retuned in place."""
    stem, ext = os.path.splitext(config_path)
    if ext.lower() not in (".yaml", ".yml"):
        stem, ext = config_path, ".yaml"
    return stem + ext if stem.endswith(".tuned") else stem + ".tuned" + ext


# -- planning --------------------------------------------------------------------------------
class Planner:
    """Measures the options, walks each path greedily, and records every step."""

    def __init__(self, cfg: Config, base_cfg, runs: Runs, names, target, jobs, pool_min_seconds):
        self.cfg, self.runs, self.names, self.target = cfg, runs, names, target
        self.sweep = Sweep(runs, base_cfg, cfg.tune_clip_search)
        self.jobs, self.pool_min_seconds = jobs, pool_min_seconds
        self.measure = tune_sweep.Measurer(runs)
        model = runs.model
        self.other = {k: v for k, v in model.weights.items() if k not in set(names)}
        self.other_bytes = sum(int(sw.nbytes_stored) for sw in self.other.values())
        self.work = costmodel.op_work(model.graph)
        self.base = evaluate.output_snrs(runs, {k: evaluate.stacked(runs.base_envs, k) for k in model.graph.outputs})
        self.notes: list[str] = []

    def run(self) -> tuple[list[Step], dict]:
        allow_pc = bool(self.cfg.compress_per_channel or self.cfg.tune_per_channel)
        steps = [self.vendor_step()] if self.cfg.weight_clip != "minmax" else []
        cands = {PER_TENSOR: self.candidates(False)}
        steps += self.path(PER_TENSOR, cands[PER_TENSOR])
        if allow_pc:
            cands[PER_CHANNEL] = self.candidates(True)
            steps += self.path(PER_CHANNEL, cands[PER_CHANNEL])
        else:
            steps.append(self.per_channel_info())
        fp16 = {n: c.fp16 for n, c in cands[PER_TENSOR].items()}
        steps.append(self.step("nothing compressed (all fp16)", PER_TENSOR, fp16))
        return steps, cands

    def candidates(self, per_channel: bool) -> dict:
        desc = f"tune: ranges {PER_CHANNEL if per_channel else PER_TENSOR}"
        with evaluate.progress(len(self.names), desc) as bar:
            return tune_sweep.sweep(self.sweep, self.names, per_channel, self.base, bar,
                                    self.jobs, self.pool_min_seconds)

    def step(self, label: str, path: str, choice: dict, selectable: bool = True,
             parent: Step | None = None, changed: str = "") -> Step:
        snrs = self.measure(choice)
        weights = {**self.other, **{n: o.stored for n, o in choice.items()}}
        nbytes = self.other_bytes + sum(o.nbytes for o in choice.values())
        g, core = self.runs.model.graph, self.cfg.corename
        lat = [costmodel.latency_seconds(g, weights, core, flash, self.work) for flash in (False, True)]
        return Step(label, path, dict(choice), snrs, nbytes, lat[0], lat[1], selectable, parent, changed)

    def vendor_step(self) -> Step:
        """min/max per tensor for every weight: what the vendor tool gives (an info row)."""
        sw = dataclasses.replace(self.sweep, base_cfg=dataclasses.replace(self.sweep.base_cfg,
                                                                          weight_clip="minmax"))
        choice = {n: tune_sweep.make_option(sw, n, False) for n in self.names}
        return self.step(VENDOR, PER_TENSOR, choice, selectable=False)

    def per_channel_info(self) -> Step:
        choice = {n: tune_sweep.make_option(self.sweep, n, True) for n in self.names}
        return self.step(f"{PER_CHANNEL} ranges (not allowed: TUNE_PER_CHANNEL)", PER_CHANNEL,
                         choice, selectable=False)

    def path(self, path: str, cands: dict) -> list[Step]:
        """The config's own ranges, the searched ranges, then greedy exclusions and pruning."""
        method = self.cfg.weight_clip
        label = VENDOR if path == PER_TENSOR and method == "minmax" else f"{path}, {method} ranges"
        steps = [self.step(label, path, {n: c.default for n, c in cands.items()})]
        if any(c.start is not c.default for c in cands.values()):
            steps.append(self.step(f"{path}, ranges searched", path, {n: c.start for n, c in cands.items()}))
        start = steps[-1]
        steps += self.greedy(path, cands, start, "ratio")
        if self.target.snr_db is not None and self.target.met(steps[-1]):
            steps += self.prune(path, cands, steps[-1])
        steps += self.unclip(path, cands, steps[-1])
        if self.target.max_bytes is not None:  # greedy by ratio can fill a budget badly
            steps += [s for s in self.greedy(path, cands, start, "gain")
                      if not any(same_choice(s, t) for t in steps)]
        return steps

    def greedy(self, path: str, cands: dict, step: Step, by: str) -> list[Step]:
        """Exclusions one measured step at a time (next_exclusion), until the target is met."""
        out, tag = [], "" if by == "ratio" else " (largest gain first)"
        with evaluate.progress(None, f"tune: plan {path}") as bar:
            while not (self.target.snr_db is not None and self.target.met(step)):
                name = next_exclusion(cands, step, self.target, self.trial(bar), by)
                if name is None:
                    break
                step = self.step(f"exclude {name}{tag}", path, {**step.choice, name: cands[name].fp16},
                                 parent=step, changed=name)
                out.append(step)
        return out

    def unclip(self, path: str, cands: dict, step: Step) -> list[Step]:
        """Ranges chosen one weight at a time can hurt together: give each clipped weight its
        config range back where the whole model then measures better."""
        out = []
        for name, opt in step.choice.items():
            if opt.kind != "clip":
                continue
            back = {**step.choice, name: cands[name].default}
            if min(self.measure(back, commit=False).values()) > step.snr:
                step = self.step(f"{name}: {self.cfg.weight_clip} range again", path, back,
                                 parent=step, changed=name)
                if self.target.feasible(step):
                    out.append(step)
        return out

    def trial(self, bar):
        def run(choice: dict) -> dict:
            bar.update()
            return self.measure(choice, commit=False)
        return run

    def prune(self, path: str, cands: dict, step: Step) -> list[Step]:
        """Compress excluded weights again, largest saving first, where the target stays met."""
        out = []
        excluded = [n for n, o in step.choice.items()
                    if not o.compressed and cands[n].best.nbytes < cands[n].fp16.nbytes]
        excluded.sort(key=lambda n: cands[n].best.nbytes - cands[n].fp16.nbytes)
        for name in excluded:
            trial = self.step(f"compress {name} again", path, {**step.choice, name: cands[name].best},
                              parent=step, changed=name)
            if self.target.met(trial):
                step = trial
                out.append(trial)
        return out


def same_choice(a: Step, b: Step) -> bool:
    return a.choice.keys() == b.choice.keys() and all(o is b.choice[n] for n, o in a.choice.items())


def next_exclusion(cands: dict, step: Step, target: Target, trial, by: str = "ratio") -> str | None:
    """The compressed weight to leave in fp16 next, measured: each candidate's exclusion is
    simulated (trial(choice) -> SNRs). The cheapest that reaches the SNR target wins; else
    the most output noise removed per extra byte (by="ratio") or in all (by="gain"). Only
    weights within the byte budget count; with many weights, only the MAX_TRIALS most
    promising by their only-this-weight SNR."""
    worst = min(step.snrs, key=lambda k: step.snrs[k])
    ranked = []
    for name, opt in step.choice.items():
        extra = cands[name].fp16.nbytes - opt.nbytes
        if opt.compressed and (target.max_bytes is None or step.nbytes + extra <= target.max_bytes):
            est = noise_ratio(opt.only[worst]) - noise_ratio(cands[name].fp16.only[worst])
            ranked.append((est / max(extra, 1), name, extra))
    ranked.sort(reverse=True)
    now, finish, ratio = noise_ratio(step.snr), [], []
    for _, name, extra in ranked[:MAX_TRIALS]:
        snr = min(trial({**step.choice, name: cands[name].fp16}).values())
        if target.snr_db is not None and snr >= target.snr_db:
            finish.append((extra, -snr, name))
        gain = now - noise_ratio(snr)
        if gain > 0:
            ratio.append((gain / max(extra, 1) if by == "ratio" else gain, name))
    if finish:
        return min(finish)[2]
    return max(ratio)[1] if ratio else None


def pick(steps: list[Step], target: Target) -> tuple[Step, bool]:
    """The fewest bytes that meet the target; else the best SNR within the budget; else the
    fewest bytes."""
    sel = [s for s in steps if s.selectable]
    feasible = [s for s in sel if target.feasible(s)]
    if target.snr_db is not None:
        ok = [s for s in feasible if s.snr >= target.snr_db]
        if ok:
            return min(ok, key=lambda s: (s.nbytes, -s.snr)), True
    if feasible:
        return max(feasible, key=lambda s: (s.snr, -s.nbytes)), target.snr_db is None
    return min(sel, key=lambda s: (s.nbytes, -s.snr)), False


def _unmet_hint(result: Result) -> str:
    fp16 = next(s for s in result.steps if s.label.startswith("nothing compressed"))
    return (f"without compression the model gives {evaluate.fmt_db(fp16.snr)} dB at "
            f"{fp16.nbytes:,} B; lower TUNE_TARGET_SNR_DB / --target-snr or raise "
            f"TUNE_MAX_WEIGHT_BYTES / --max-weight-bytes")


# -- the tuned config compiles to exactly what was measured ----------------------------------
def verify(result: Result, runs: Runs) -> None:
    """Compile result.text with plain gxnpuc, check every chosen weight decodes to the same
    values, simulate afresh as --eval does, and keep those numbers as the result's."""
    from gxnpuc import compiler, config, report

    cfg = result.cfg
    tuned = config.loads(result.text.encode("utf-8"), result.tuned_path, os.path.dirname(cfg.path))
    model = compiler.compile(tuned)
    for name, opt in result.chosen.choice.items():
        if not _stored_alike(model.weights.get(name), opt):
            raise CompileError("--tune", f"internal error: the tuned config stores {name!r} differently "
                               "from what was measured", "please report this bug")
    outs = sim.run_model_samples(model, runs.samples, "npu")
    result.verified = evaluate.output_snrs(runs, {k: evaluate.stacked(outs, k) for k in model.graph.outputs})
    result.verified_bytes = int(report.weight_stats(model)["stored"])
    drift = max(_db_apart(v, result.chosen.snrs[k]) for k, v in result.verified.items())
    if drift > MATCH_DB or result.verified_bytes != result.chosen.nbytes:
        raise CompileError("--tune", f"internal error: the tuned config gives {result.snr:.6g} dB and "
                           f"{result.verified_bytes:,} B, the tuner measured {result.chosen.snr:.6g} dB "
                           f"and {result.chosen.nbytes:,} B", "please report this bug")


def _stored_alike(sw, opt) -> bool:
    return (sw is not None and bool(sw.compressed) == opt.compressed
            and np.array_equal(sw.decode(), opt.stored.decode()))


def _db_apart(a: float, b: float) -> float:
    return 0.0 if a == b else abs(a - b)  # inf == inf: exact on both sides
