"""The `gxnpuc` command: argparse, the order of work and output, and exit codes.

Exit 0 on success, 1 on a user error (one line `gxnpuc: error: ...`, never a traceback),
2 on bad command-line usage, 3 on an internal error (a bug: one line, and the traceback
with GXNPUC_DEBUG=1), 130 when interrupted. Heavy modules load only when needed, so
`gxnpuc --help` and `-V` are instant.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

from gxnpuc import __version__
from gxnpuc.errors import GxnpucError

DEBUG_ENV = "GXNPUC_DEBUG"
FRAMEWORKS = ("TF", "ONNX", "PT", "TFLITE")  # PT: PyTorch, which comes in as ONNX (torch.onnx.export)

EPILOG = """\
examples:
  gxnpuc config.yaml              compile; print the summary
  gxnpuc -w -s config.yaml        also list compressed weights and save their histograms
  gxnpuc -e inputs.npz config.yaml   accuracy against the source framework
  gxnpuc -t config.yaml           tune compression; writes config.tuned.yaml
  gxnpuc -L -f ONNX --markdown    supported ONNX ops as a Markdown table
  cat config.yaml | gxnpuc        read the config from stdin (paths relative to the current folder)

exit status: 0 ok, 1 error in the config or model, 2 bad command line, 3 internal error
(set GXNPUC_DEBUG=1 to see its traceback), 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gxnpuc", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compile ONNX / TensorFlow models for GX8002-class NPUs (GRUS).")
    p.add_argument("config", nargs="?", help="the build configuration (config.yaml); '-' reads stdin")
    p.add_argument("-w", "--weight", "--weights", action="store_true", dest="weights",
                   help="also print each compressed weight as `name: [d0, d1, ...]`")
    p.add_argument("-s", "--save", "--save-hist", action="store_true", dest="save",
                   help="also save a histogram .jpg per compressed weight to npu_jpgs/ beside the output")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="per-op table: name, NPU op, shapes, weights, FLOPs, bytes")
    p.add_argument("-m", "--meminfo", action="store_true",
                   help="per-op memory: activation buffers, weights, offsets")
    p.add_argument("-e", "--eval", metavar="DATA",
                   help="accuracy report on the inputs in DATA (.npz), or `random`")
    p.add_argument("--dump-dir", metavar="DIR", help="with -e: save every layer's output as .npy here")
    p.add_argument("--runtime", action="store_true",
                   help="with -e: also run the C runtime (runtime/, built with gcc) and compare it bit for bit")
    p.add_argument("-t", "--tune", action="store_true",
                   help="search compression settings; write <config>.tuned.yaml")
    p.add_argument("--target-snr", type=float, metavar="DB",
                   help="with -t: minimum output SNR in dB (overrides TUNE_TARGET_SNR_DB)")
    p.add_argument("--max-weight-bytes", type=int, metavar="N",
                   help="with -t: maximum stored weight bytes (overrides TUNE_MAX_WEIGHT_BYTES)")
    p.add_argument("-L", "--list", action="store_true", help="list the supported ops and exit")
    p.add_argument("-c", "--core", metavar="CORE", help="with -L: the target core (GRUS)")
    p.add_argument("-f", "--framework", metavar="TF|ONNX|PT|TFLITE", type=str.upper,
                   help="with -L: only this framework's ops (PT: PyTorch layers, via torch.onnx.export)")
    p.add_argument("--markdown", action="store_true", help="with -L: a Markdown table")
    p.add_argument("-V", "--version", action="version", version=f"gxnpuc {__version__}")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check flag combinations; usage errors exit 2 through argparse."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_combinations(parser, args)
    return args


def _check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.list:
        if args.config:
            parser.error("-L/--list takes no config file")
        if args.framework and args.framework not in FRAMEWORKS:
            parser.error(f"-f/--framework: {args.framework!r} is not one of TF, ONNX, PT, TFLITE")
        return
    for flag, given in (("-c/--core", args.core), ("-f/--framework", args.framework),
                        ("--markdown", args.markdown)):
        if given:
            parser.error(f"{flag} only goes with -L/--list")
    if args.dump_dir and not args.eval:
        parser.error("--dump-dir only goes with -e/--eval")
    if args.runtime and not args.eval:
        parser.error("--runtime only goes with -e/--eval")
    if (args.target_snr is not None or args.max_weight_bytes is not None) and not args.tune:
        parser.error("--target-snr and --max-weight-bytes only go with -t/--tune")
    if args.max_weight_bytes is not None and args.max_weight_bytes <= 0:
        parser.error("--max-weight-bytes must be a positive number of bytes")
    if args.config is None and args.eval and args.eval.lower().endswith((".yaml", ".yml")):
        parser.error(f"-e/--eval takes the inputs first: gxnpuc -e inputs.npz {args.eval} "
                     f"(or -e random {args.eval})")
    if args.config is None and sys.stdin is not None and _stdin_is_tty():
        parser.error("a config file is required (e.g. gxnpuc config.yaml); see gxnpuc --help")


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        return True


# -- output that survives a closed pipe (gxnpuc -w config.yaml | head) ----------------------------
class _Out:
    def __init__(self):
        self.broken = False

    def __call__(self, text: str) -> None:
        if self.broken or not text:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            self.broken = True  # the reader left; finish the build quietly
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass


def _warn(line: str) -> None:
    print(f"gxnpuc: warning: {_one_line(line)}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- the work -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run gxnpuc with these arguments (sys.argv[1:] when None); return the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ logs would break one-line errors
    debug = bool(os.environ.get(DEBUG_ENV))
    with _sigterm_as_interrupt():  # kill / CI timeouts unwind like Ctrl-C: no temporary file stays
        try:
            args = parse_args(argv)
            with warnings.catch_warnings():
                if not debug:
                    warnings.simplefilter("ignore")  # library chatter is not for users
                return run(args, _Out())
        except SystemExit as exc:  # argparse: --help, -V (0) and usage errors (2)
            return exc.code if isinstance(exc.code, int) else 2
        except GxnpucError as err:
            return _fail(f"error: {err}", debug, 1)
        except KeyboardInterrupt:
            return _fail("interrupted", debug, 130)
        except MemoryError:
            return _fail("error: out of memory (the model or an INPUT_OPS shape is too large for this "
                         "machine)", debug, 1)
        except OSError as exc:  # disk full, permission denied, ... while writing outputs
            where = f"{exc.filename}: " if exc.filename else ""
            return _fail(f"error: {where}{exc.strerror or exc}", debug, 1)
        except Exception as exc:  # noqa: BLE001 - anything else is a bug: say so in one line
            return _fail(f"internal error: {type(exc).__name__}: {exc} (a bug in gxnpuc; rerun with "
                         f"{DEBUG_ENV}=1 to see the traceback)", debug, 3)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While gxnpuc runs, SIGTERM raises KeyboardInterrupt, so the writers clean up and exit 130."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous, installed = signal.signal(signal.SIGTERM, interrupt), True
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM here
        previous, installed = None, False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _fail(message: str, debug: bool, code: int) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    print(f"gxnpuc: {_one_line(message)}", file=sys.stderr)
    return code


def run(args: argparse.Namespace, out=print) -> int:
    """Do what the flags ask, in the documented order; raise GxnpucError on user errors."""
    if args.list:
        from gxnpuc import report

        out(report.list_ops(args.core or "GRUS", args.framework, args.markdown))
        return 0
    from gxnpuc import outputs

    reads = [p for p in (args.config, args.eval) if p and p not in ("-", "random")]
    with outputs.transaction(reads) as tx:  # every output is committed here, or none
        cfg = load_config(args)
        plan_outputs(tx, cfg, args)
        if args.tune:
            return _optional("gxnpuc.tune", "-t/--tune").main(cfg, args) or 0
        model = compile_and_write(cfg, args, out)
        if args.eval:
            return _optional("gxnpuc.evaluate", "-e/--eval").main(cfg, args, model) or 0
        return 0


def plan_outputs(tx, cfg, args: argparse.Namespace) -> None:
    """Before any work: every input recorded, every output path that this run names checked."""
    tx.add_input(cfg.model_path)
    tx.add_input(cfg.path)
    if args.tune:
        from gxnpuc.tune import tuned_path
        from gxnpuc.tune.report import plot_path

        tuned = tuned_path(cfg.path) if cfg.path else ""
        if tuned and os.path.abspath(tuned) == cfg.path:
            tx.may_replace.add(cfg.path)  # a tuned config is retuned in place, on purpose
        for path in (tuned, plot_path(tuned)) if tuned else ():
            tx.check(path)
        return
    tx.check(cfg.output_file)
    if args.eval:
        from gxnpuc.evaluate.report import report_paths

        for path in report_paths(cfg.output_file):
            tx.check(path)


def load_config(args: argparse.Namespace):
    """The Config from the file, or from stdin (`-`, or piped in as the vendor tool allowed)."""
    import dataclasses

    from gxnpuc import config
    from gxnpuc.errors import ConfigError

    if args.config in (None, "-"):
        try:
            raw = sys.stdin.buffer.read(config.MAX_CONFIG_BYTES + 1)
        except (AttributeError, OSError, ValueError):
            raw = b""
        if not raw.strip():
            if args.config is None:
                build_parser().error("a config file is required (e.g. gxnpuc config.yaml)")
            raise ConfigError("<stdin>", "the config is empty", "`KEY: value` lines, e.g. ONNX_FILE: model.onnx")
        cfg = config.loads(raw, "<stdin>", os.getcwd())
    else:
        cfg = config.load(args.config)
    for line in cfg.warnings:
        _warn(line)
    tune = {k: v for k, v in (("tune_target_snr_db", args.target_snr),
                              ("tune_max_weight_bytes", args.max_weight_bytes)) if v is not None}
    return dataclasses.replace(cfg, **tune) if tune else cfg


def compile_and_write(cfg, args: argparse.Namespace, out):
    """Compile; print -w, -v, -m; stage -s pictures and the output file; then the summary.

    Files are staged in the run's gxnpuc.outputs transaction (run() opens it) and committed
    only when the whole run succeeded, so a failed build (also a failed -e after compiling)
    never leaves a partial or stale-but-new output file.
    """
    from gxnpuc import backend, compiler, report

    model = compiler.compile(cfg)
    for line in model.graph.meta.get("warnings", []):
        _warn(line)
    if getattr(args, "eval", None):  # bad -e data is an error before anything is written
        _optional("gxnpuc.evaluate", "-e/--eval").sequence.load(args.eval, model)
    if args.weights:
        lines = report.weight_lines(model)
        for line in lines + report.folded_lines(model):
            out(line)
        if not lines:
            _warn("no weight is compressed, so -w lists nothing (turn on COMPRESS / CONV2D_COMPRESS)")
    if args.verbose:
        out(report.op_table(model))
    if args.meminfo:
        out(report.mem_table(model))
    if args.save:
        _save_histograms(model, cfg, out)
    text = report.summary(model, cfg)
    backend.write(model, cfg.output_file, cfg.output_type)
    out(text)
    return model


def _save_histograms(model, cfg, out) -> None:
    from gxnpuc import config, report

    folder = os.path.join(os.path.dirname(cfg.output_file), "npu_jpgs")
    paths = report.save_histograms(model, cfg, folder)
    if paths:
        out(f"saved {len(paths)} histogram(s) to {config.display_path(folder)}{os.sep}")
    else:
        _warn("no weight is compressed, so -s saved no histogram (turn on COMPRESS / CONV2D_COMPRESS)")


def _optional(module: str, flag: str):
    """A module of a later stage of the project; a clear user error until it exists."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise GxnpucError(flag, "is not available in this version of gxnpuc yet",
                          "compile without it") from None


if __name__ == "__main__":
    sys.exit(main())
