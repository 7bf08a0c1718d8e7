"""The measuring half of `gxnpuc --tune`: every way to store each weight, and its effect.

For each compressible weight: its clip-range candidates, each compressed by the compiler's
own compress_graph (so the tuned config gives exactly these codes), scored by the output
SNR with only that weight compressed (eval's sweep: resume from the first layer that reads
it, nothing recompiled) or by the weight's own SNR. The sweep over weights runs in forked
worker processes when the first weight shows that the rest would take long enough for two
cores to pay. `Measurer` simulates a whole choice (one option per weight), resuming from
the first layer that changed since its last run.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc import compress, evaluate, numerics, sim
from gxnpuc.compress import StoredWeight
from gxnpuc.config import Config
from gxnpuc.ir import Graph

if TYPE_CHECKING:
    from gxnpuc.evaluate.runs import Runs

CLIP_SEARCHES = ("output", "weight", "percentile", "none")
POOL_MIN_SECONDS = 3.0  # fork workers only when the serial rest of the sweep would take longer
JOBS_ENV = "GXNPUC_JOBS"  # worker processes for the sweep (default: the machine's cores, max 2)


@dataclass
class Option:
    """One way to store one weight: fp16, or 8-bit codes with the range a config gives it."""
    name: str
    kind: str  # fp16 | default (the config's own range) | clip (a WEIGHT_MIN_MAX entry)
    clip: tuple | None  # the [lo, hi] this option writes into WEIGHT_MIN_MAX
    stored: StoredWeight  # the one the compiler makes for it
    weight_snr: float  # the weight as decoded against its float values, dB
    only: dict | None = None  # output -> SNR dB with only this weight stored this way

    @property
    def nbytes(self) -> int:
        return int(self.stored.nbytes_stored)

    @property
    def compressed(self) -> bool:
        return bool(self.stored.compressed)

    @property
    def values(self) -> np.ndarray:
        return numerics.stored_values(self.stored)


@dataclass
class Candidate:
    """A compressible weight: fp16, its config-default compression, the best range found."""
    name: str
    family: str  # conv | fc
    fp16: Option
    default: Option
    best: Option  # the best 8-bit option
    tried: int  # ranges measured

    @property
    def start(self) -> Option:
        """Where the plan starts: the best 8-bit option, or fp16 where that is no larger
        (a small per-channel weight whose lo/step pairs outweigh the bytes the codes save)."""
        return self.fp16 if self.fp16.nbytes <= self.best.nbytes else self.best


@dataclass
class Sweep:
    """What the sweep workers share (inherited by fork, never pickled)."""
    runs: evaluate.Runs  # of the probe model (every candidate compressed)
    base_cfg: Config  # every candidate compressed, no user range or exclusion
    search: str  # one of CLIP_SEARCHES

    @property
    def graph(self) -> Graph:
        return self.runs.model.graph


# -- one weight ----------------------------------------------------------------------------
def stored_as(graph: Graph, cfg: Config, name: str):
    """The StoredWeight compress_graph gives `name` under cfg, on the nodes that read it only."""
    sub = Graph(tensors=graph.tensors, nodes=[n for n in graph.nodes if name in n.inputs])
    return compress.compress_graph(sub, cfg)[name]


def option_cfg(base_cfg, name: str, per_channel: bool, clip=None, fp16: bool = False):
    """The config a choice for `name` stands for (the tuned config writes the same keys)."""
    return replace(base_cfg, compress_per_channel=per_channel,
                   weight_min_max={name: tuple(clip)} if clip else {},
                   exclude_compress_ops=(name,) if fp16 else ())


def make_option(sw: Sweep, name: str, per_channel: bool, clip=None, fp16: bool = False) -> Option:
    stored = stored_as(sw.graph, option_cfg(sw.base_cfg, name, per_channel, clip, fp16), name)
    w = np.asarray(sw.graph.tensors[name].data)
    kind = "fp16" if fp16 else "clip" if clip else "default"
    return Option(name, kind, tuple(clip) if clip else None, stored,
                  evaluate.snr_db(w, numerics.stored_values(stored)))


def clip_ranges(w: np.ndarray, search: str) -> list[tuple[float, float]]:
    """Candidate WEIGHT_MIN_MAX ranges: eval's (percentile cuts + MSE-optimal), or the
    percentile cuts alone for the cheap search; rounded to pasteable numbers."""
    if search == "none":
        return []
    return evaluate.clip_candidates(w, mse=search != "percentile")


def only_snrs(sw: Sweep, opt: Option) -> dict:
    """Output SNR per output with only this weight stored as `opt` (eval's resumed sweep)."""
    return evaluate.output_snrs(sw.runs, evaluate.outputs_with(sw.runs, opt.name, opt.values))


def measure_weight(sw: Sweep, name: str, per_channel: bool) -> list[tuple]:
    """[(clip or None, only-SNRs or None)] for the ranges the search measured.

    output: every range simulated; weight / percentile: ranges ranked by the weight's own
    SNR and only the config default and the winner simulated; none: the default only.
    """
    w = np.asarray(sw.graph.tensors[name].data)
    opts = [make_option(sw, name, per_channel)]
    opts += [make_option(sw, name, per_channel, clip) for clip in clip_ranges(w, sw.search)]
    if sw.search in ("weight", "percentile") and len(opts) > 1:
        top = max(opts[1:], key=lambda o: o.weight_snr)
        opts = [opts[0]] + ([top] if top.weight_snr > opts[0].weight_snr else [])
    return [(o.clip, only_snrs(sw, o)) for o in opts]


def candidate(sw: Sweep, name: str, per_channel: bool, measured: list[tuple], base: dict) -> Candidate:
    """Rebuild the measured options (compression is deterministic) and keep the best."""
    fp16 = make_option(sw, name, per_channel, fp16=True)
    fp16.only = dict(base)
    opts = []
    for clip, only in measured:
        opt = make_option(sw, name, per_channel, clip)
        opt.only = only
        opts.append(opt)
    # best output SNR; a clip must beat the config's own range, ties go to fewer bytes
    best = max(opts, key=lambda o: (worst(o.only or {}), -o.nbytes, o.kind == "default"))
    return Candidate(name, fp16.stored.family, fp16, opts[0], best, len(opts))


def worst(snrs: dict) -> float:
    return min(snrs.values())


# -- all weights ---------------------------------------------------------------------------
_SHARED: dict = {}  # the Sweep forked workers inherit


def _work(job: tuple) -> tuple:
    name, per_channel = job
    return name, measure_weight(_SHARED["sweep"], name, per_channel)


def jobs_default() -> int:
    env = os.environ.get(JOBS_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(2, os.cpu_count() or 1))


def blas_one_thread():
    """A context holding numpy's BLAS to one thread (nullcontext without threadpoolctl).

    The simulator's matmuls are small: with the default two BLAS threads the sweep of the
    KWS example took 11 s of wall time on a busy 2-core machine, with one thread 2 s (the
    threads spin waiting for each other). Workers of the pool run with one thread too.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def idle_cores() -> float:
    """Cores nobody else is using now (cpu count minus the 1-minute load average)."""
    try:
        return (os.cpu_count() or 1) - os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1.0


def _can_fork() -> bool:
    """fork shares the simulated runs for free; each worker must hold BLAS to one thread,
    or two workers times the BLAS threads oversubscribe the cores (measured: 3x slower)."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return "fork" in multiprocessing.get_all_start_methods()


def _init_worker() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def sweep(sw: Sweep, names: list[str], per_channel: bool, base: dict, bar=None,
          jobs: int | None = None, pool_min_seconds: float = POOL_MIN_SECONDS) -> dict[str, Candidate]:
    """Candidate per weight. Weights run here, timed, until the rest would take longer than
    pool_min_seconds serially and another core is idle; then the rest go to `jobs` forked
    workers (jobs=None: GXNPUC_JOBS or the machine's cores, at most 2; 1 = always serial).
    pool_min_seconds=0 forces the pool (tests)."""
    jobs = jobs_default() if jobs is None else jobs
    measured: dict[str, list] = {}
    t0 = time.perf_counter()
    for k, name in enumerate(names):
        measured[name] = measure_weight(sw, name, per_channel)
        _tick(bar)
        rest = names[k + 1:]
        est = (time.perf_counter() - t0) / (k + 1) * len(rest)
        if rest and jobs > 1 and _can_fork() and est >= pool_min_seconds \
                and (pool_min_seconds == 0 or idle_cores() >= 1):
            measured.update(_pooled(sw, rest, per_channel, jobs, bar))
            break
    return {n: candidate(sw, n, per_channel, measured[n], base) for n in names}


def _pooled(sw: Sweep, names: list[str], per_channel: bool, jobs: int, bar) -> dict:
    _SHARED["sweep"] = sw
    out = {}
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(names)), mp_context=ctx,
                                 initializer=_init_worker) as pool:
            for name, result in pool.map(_work, [(n, per_channel) for n in names]):
                out[name] = result
                _tick(bar)
    finally:
        _SHARED.clear()
    return out


def _tick(bar) -> None:
    if bar is not None:
        bar.update()


# -- whole choices ---------------------------------------------------------------------------
class Measurer:
    """Output SNRs of a whole choice {weight: Option}, simulated on every sample.

    Each call resumes from its previous run at the first node reading a weight that changed,
    so a greedy step costs only the layers after the weight it touched.
    """

    def __init__(self, runs: Runs):
        self.runs = runs
        self.graph = runs.model.graph
        self.first: dict[str, int] = {}
        self.last: dict[str, Option] | None = None
        self.envs: list[dict] | None = None

    def _start(self, choice: dict) -> int:
        if self.last is None:
            return 0
        changed = [n for n, o in choice.items() if self.last.get(n) is not o]
        if not changed:
            return len(self.graph.nodes)
        return min(self.first.setdefault(n, evaluate.first_reader(self.graph, n)) for n in changed)

    def __call__(self, choice: dict, commit: bool = True) -> dict[str, float]:
        """SNR per output; commit=False measures a trial and keeps the last committed run
        as the one to resume from."""
        consts = {**self.runs.base_consts, **{n: o.values for n, o in choice.items()}}
        start = self._start(choice)
        envs = sim.run_samples(self.graph, self.runs.samples, consts, cast=numerics.round_f16, keep=commit,
                               start=start if self.envs is not None else 0, envs=self.envs)
        if commit:
            self.last, self.envs = dict(choice), envs
        outs = [sim.finish_outputs(self.runs.model, e, "npu") for e in envs]
        return evaluate.output_snrs(self.runs, {k: evaluate.stacked(outs, k) for k in self.graph.outputs})


def noise_ratio(snr_db: float) -> float:
    """Noise power over signal power for an SNR in dB (inf dB -> 0)."""
    return 0.0 if math.isinf(snr_db) and snr_db > 0 else 10.0 ** (-snr_db / 10.0)
