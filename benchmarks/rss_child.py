"""Child process for peak-RSS measurement (benchmarks.measure.peak_rss_bytes).

    python -m benchmarks.rss_child --wrap MODE MODEL.onnx OUT   runs the line below as its
        only child and prints that child's peak RSS in bytes (getrusage RUSAGE_CHILDREN)
    python -m benchmarks.rss_child MODE MODEL.onnx OUT          MODE baseline: only the imports
        a compile needs; MODE compile: gxnpuc compile + write of MODEL.onnx to OUT (vendor default)
"""
from __future__ import annotations

import resource
import subprocess
import sys


def child(mode: str, model_path: str, out_path: str) -> None:
    import numpy  # noqa: F401
    import onnx  # noqa: F401

    from gxnpuc import backend, compiler, ops  # noqa: F401
    from gxnpuc.config import Config
    from gxnpuc.frontend import onnx as _onnx_frontend  # noqa: F401

    if mode == "compile":
        cfg = Config(model_key="ONNX_FILE", model_path=model_path, output_file=out_path,
                     compress=True, conv2d_compress=True, fuse_bn=True)
        backend.write(compiler.compile(cfg), out_path, cfg.output_type)


def wrap(args: list[str]) -> int:
    done = subprocess.run([sys.executable, "-m", "benchmarks.rss_child", *args])
    if done.returncode:
        return done.returncode
    # Linux reports ru_maxrss in KiB
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--wrap":
        return wrap(argv[1:])
    child(*argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
