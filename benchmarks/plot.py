"""bench.png, drawn from the table rows: compile time per tool, compile time against weight
count, simulator time against onnxruntime, and output SNR against weight bytes per model."""
from __future__ import annotations


def _compile(ax, rows) -> None:
    data = [r for r in rows if r.section == "compile" and r.metric == "wall time"
            and not r.item.startswith("gxnpuc stage") and r.value]
    models = list(dict.fromkeys(r.model for r in data))
    items = list(dict.fromkeys(r.item for r in data))
    width = 0.8 / max(len(items), 1)
    for k, item in enumerate(items):
        vals = [next((r.value for r in data if r.model == m and r.item == item), 0) for m in models]
        ax.bar([i + k * width for i in range(len(models))], vals, width, label=item)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models)
    ax.set_yscale("log")
    ax.set_ylabel("wall time (s), log scale")
    ax.set_title("compile time per model (imports excluded)")
    ax.legend(fontsize=6)


def _scaling(ax, rows) -> None:
    pts = [(float(r.note.split()[0].replace(",", "")), r.value) for r in rows
           if r.section == "scaling" and r.metric == "wall time" and r.note and r.value]
    if pts:
        xs, ys = zip(*sorted(pts))
        ax.loglog(xs, ys, "o-", label="gxnpuc compile + write")
        ax.loglog(xs, [ys[0] * x / xs[0] for x in xs], "k--", lw=0.8, label="linear from the first point")
        ax.legend(fontsize=6)
    ax.set_xlabel("weights")
    ax.set_ylabel("wall time (s)")
    ax.set_title("compile time against model size")


def _simulator(ax, rows) -> None:
    data = [r for r in rows if r.section == "simulator" and r.ratio is not None and r.metric == "time per inference"]
    labels = [f"{r.model}: {r.item.replace('gxnpuc sim ', '')}" for r in data]
    ax.barh(range(len(data)), [r.ratio for r in data])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(data)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("time per inference / onnxruntime fp32, 1 thread (log)")
    ax.set_title("simulator speed")


def _accuracy(ax, rows, model: str) -> None:
    pts: dict = {}
    for r in rows:
        if r.section == "accuracy" and r.model == model and r.metric in ("weight bytes", "output SNR"):
            pts.setdefault(r.item, {})[r.metric] = r.ratio if r.metric == "weight bytes" else r.value
    for item, p in pts.items():
        snr, size = p.get("output SNR"), p.get("weight bytes")
        if snr is None or size is None or snr == float("inf"):
            continue
        peer = not item.startswith("gxnpuc")
        ax.scatter(size, snr, marker="s" if peer else "o", c="tab:red" if peer else "tab:blue", s=20)
        ax.annotate(item.replace("gxnpuc ", ""), (size, snr), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("weight bytes / fp32 weight bytes")
    ax.set_ylabel("output SNR vs Keras fp32 (dB)")
    ax.set_title(f"{model}: accuracy against size (red: peers)")


def save(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows if r.section == "accuracy"))[:3]
    fig, axes = plt.subplots(2, 3, figsize=(17, 10))
    _compile(axes[0, 0], rows)
    _scaling(axes[0, 1], rows)
    _simulator(axes[0, 2], rows)
    for ax, model in zip(axes[1], models):
        _accuracy(ax, rows, model)
    for ax in axes[1][len(models):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
