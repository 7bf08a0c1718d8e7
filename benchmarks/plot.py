"""bench.png: four panels drawn from the table rows (compile time, SNR against weight bytes,
compile time against weight count, simulator time against onnxruntime)."""
from __future__ import annotations


def _compile(ax, rows) -> None:
    data = [r for r in rows if r.section == "compile" and r.metric == "wall time"]
    models = list(dict.fromkeys(r.model for r in data))
    items = list(dict.fromkeys(r.item for r in data))
    width = 0.8 / max(len(items), 1)
    for k, item in enumerate(items):
        vals = [next((r.value for r in data if r.model == m and r.item == item), 0) or 0 for m in models]
        ax.bar([i + k * width for i in range(len(models))], vals, width, label=item)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models)
    ax.set_yscale("log")
    ax.set_ylabel("wall time (s)")
    ax.set_title("compile time per model")
    ax.legend(fontsize=6)


def _accuracy(ax, rows) -> None:
    acc = [r for r in rows if r.section == "accuracy"]
    markers = "os^Dvx*P"
    for k, model in enumerate(dict.fromkeys(r.model for r in acc)):
        pts = {}
        for r in acc:
            if r.model == model and r.metric in ("weight bytes", "output SNR"):
                pts.setdefault(r.item, {})[r.metric] = r.ratio if r.metric == "weight bytes" else r.value
        for item, p in pts.items():
            if "weight bytes" in p and p.get("output SNR") is not None:
                ax.scatter(p["weight bytes"], min(p["output SNR"], 150), marker=markers[k % len(markers)], s=18)
                ax.annotate(item.replace("gxnpuc ", ""), (p["weight bytes"], min(p["output SNR"], 150)),
                            fontsize=5)
        ax.scatter([], [], marker=markers[k % len(markers)], c="k", label=model)
    ax.set_xlabel("weight bytes / fp32 weight bytes")
    ax.set_ylabel("output SNR (dB)")
    ax.set_title("accuracy against size")
    ax.legend(fontsize=6)


def _scaling(ax, rows) -> None:
    pts = [(float(r.note.split()[0].replace(",", "")), r.value) for r in rows
           if r.section == "scaling" and r.metric == "wall time" and r.note]
    if pts:
        xs, ys = zip(*sorted(pts))
        ax.loglog(xs, ys, "o-", label="gxnpuc compile + write")
        ax.loglog(xs, [ys[0] * x / xs[0] for x in xs], "k--", lw=0.8, label="linear from the first point")
        ax.legend(fontsize=6)
    ax.set_xlabel("weights")
    ax.set_ylabel("wall time (s)")
    ax.set_title("compile time against model size")


def _simulator(ax, rows) -> None:
    data = [r for r in rows if r.section == "simulator" and r.ratio is not None]
    labels = [f"{r.model}\n{r.item.replace('gxnpuc sim ', '')}" for r in data]
    ax.bar(range(len(data)), [r.ratio for r in data])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(data)), labels, fontsize=6)
    ax.set_ylabel("time per inference / onnxruntime (1 thread)")
    ax.set_title("simulator speed")


def save(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for ax, panel in zip(axes.flat, (_compile, _accuracy, _scaling, _simulator)):
        panel(ax, rows)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
