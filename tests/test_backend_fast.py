"""The fast header writer, header parser, weight section and raw container give the same
bytes as the plain code they replaced (tests/compress_reference.py, verbatim).

The parser's fast path only takes bodies laid out exactly as the writer lays them out;
hand-edited headers (other line lengths, upper-case digits, spaces, short or long bodies,
a missing `};`) must still parse as before.
"""
from __future__ import annotations

import numpy as np
import pytest

import compress_reference as ref
from gxnpuc import backend
from gxnpuc.backend import c_header, container, sections
from gxnpuc.compress import compress_graph
from gxnpuc.config import Config
from gxnpuc.ir import Graph, Node, Tensor

SIZES = [1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 160, 1000, 4097]


def blob(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def old_header_bytes(data: bytes, rows: int) -> bytes:
    return "".join(ref.hex_rows(data, rows)).encode("ascii")


@pytest.mark.parametrize("rows", [1, 3, 1 << 14])
def test_hex_rows_equal_the_old_writer(rows, monkeypatch):
    monkeypatch.setattr(c_header, "ROWS_PER_CHUNK", rows)
    for n in SIZES:
        data = blob(n, n)
        pieces = list(c_header.hex_rows(data))
        assert all(isinstance(p, bytes) for p in pieces)
        assert b"".join(pieces) == old_header_bytes(data, rows), n


def header(body: bytes, n: int, name: str = "weight_content") -> bytes:
    return (b"// head\nconst unsigned char " + name.encode() + b"[%d] __attribute__ ((aligned (16))) = {\n" % n
            + body + b"};\nconst unsigned int x = 1;\n")


def parse_both(text: bytes) -> tuple[dict, dict]:
    old = {k: ref.array_bytes(v) for k, v in ref.arrays(text.decode("latin-1")).items()}
    return c_header.arrays(text), old


@pytest.mark.parametrize("n", SIZES)
def test_parser_reads_the_writers_layout(n, monkeypatch):
    monkeypatch.setattr(c_header, "ROWS_PER_CHUNK", 2)  # the parser also works in chunks of lines
    data = blob(n, 100 + n)
    text = header(b"".join(c_header.hex_rows(data)), n)
    new, old = parse_both(text)
    assert new == old == {"weight_content": data}


def edits(data: bytes) -> dict[str, bytes]:
    """Ways a person or another tool might have changed an array body."""
    cells = [b"0x%02x," % b for b in data]
    lines8 = b"".join(b"".join(cells[i:i + 8]) + b"\n" for i in range(0, len(cells), 8))
    normal = b"".join(c_header.hex_rows(data))
    return {"8 a line": lines8, "upper case": normal.upper().replace(b"0X", b"0x"),
            "0X prefix": normal.replace(b"0x", b"0X"), "spaces": normal.replace(b",", b", "),
            "one digit": normal.replace(b"0x0", b"0x"), "short": normal[:-7], "long": normal + b"0x11,\n",
            "bad digit": normal[:2] + b"g" + normal[3:], "crlf": normal.replace(b"\n", b"\r\n"),
            "no comma at end": normal[:-2] + b"\n"}


@pytest.mark.parametrize("n", [1, 16, 37, 64])
def test_parser_reads_edited_bodies_as_before(n):
    data = blob(n, 7)
    for what, body in edits(data).items():
        new, old = parse_both(header(body, n))
        assert new == old, what


def test_parser_handles_missing_close_and_odd_heads_as_before():
    data = blob(40, 3)
    body = b"".join(c_header.hex_rows(data))
    texts = [header(body, 40).replace(b"};", b"}"),  # no `};` at all
             header(body, 40) + header(body[:-6], 39, "cmd_content"),  # two arrays
             b"const unsigned char x[3] = {\n0x01,0x02,\n" + header(body, 40),  # unclosed first array
             b"const unsigned char \xe9t\xe9[2] = {\n0x01,0x02,\n};\n" + header(body, 40),  # latin-1 name
             header(body, 41), header(body, 39)]  # declared size off by one
    for text in texts:
        new, old = parse_both(text)
        assert new == old


# -- whole files ---------------------------------------------------------------------------------
def model_with_every_packing():
    rng = np.random.default_rng(5)
    g = Graph(meta={"framework": "onnx"})
    sparse = rng.uniform(-1, 127 / 128, (40, 24)).astype(np.float32)
    sparse[rng.random(sparse.shape) < 0.9] = 0
    sparse[:, 0], sparse[:, 1] = -1, 127 / 128  # step 2^-7 from -1 (per channel too): code 128 is 0.0
    consts = {"w_dense": rng.standard_normal((24, 40)).astype(np.float32), "w_sparse": sparse,
              "b": rng.standard_normal(40).astype(np.float32), "scale": np.float32(2.5),
              "idx": np.arange(24, dtype=np.int64), "w_t": rng.standard_normal((24, 24)).astype(np.float32).T}
    for name, value in consts.items():
        g.tensors[name] = Tensor(name, tuple(np.shape(value)), np.asarray(value).dtype.name, np.asarray(value))
    for name, shape in (("x", (1, 24)), ("y", (1, 40)), ("z", (1, 24)), ("u", (1, 24)), ("v", (1, 24)), ("s", (1, 24))):
        g.tensors[name] = Tensor(name, shape)
    g.nodes = [Node("fc1", "fc", ["x", "w_dense", "b"], ["y"], {"transpose_w": False}, "MatMul"),
               Node("fc2", "fc", ["y", "w_sparse"], ["z"], {"transpose_w": True}, "Gemm"),
               Node("fc3", "fc", ["z", "w_t"], ["u"], {"transpose_w": False}, "MatMul"),
               Node("mul", "binary", ["u", "scale"], ["v"], {"fn": "mul"}, "Mul"),
               Node("add", "binary", ["v", "idx"], ["s"], {"fn": "add"}, "Add")]
    g.inputs, g.outputs = ["x"], ["s"]
    return g


@pytest.mark.parametrize("per_channel", [False, True])
def test_weight_section_and_raw_container_equal_the_old_packing(per_channel, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    g = model_with_every_packing()
    cfg = Config(compress=True, conv2d_compress=True, compress_per_channel=per_channel,
                 exclude_compress_ops=("fc3",))
    model = backend.build(g, compress_graph(g, cfg), cfg)
    assert {sw.packing for sw in model.weights.values()} == {"dense", "bitmap", "fp16", "int32"}
    sec = backend.encode(model)
    names = [n for n in sections.tensor_order(model) if n in model.weights]
    weight, layout = ref.pack_weights(names, model.weights, 16)
    assert bytes(sec.weight) == weight and sec.weight_layout == layout
    assert bytes(container.pack(sec)) == ref.container_pack(sec)
    path = tmp_path / "m.npu"
    backend.write(model, str(path), "raw")
    blob_raw = path.read_bytes()
    assert container.unpack(blob_raw).weight == weight
    broken = bytearray(blob_raw)
    broken[-1] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        container.unpack(bytes(broken))
    text = b"".join(backend.chunks(model, "c_code"))
    assert c_header.parse(text).weight == weight == c_header.parse(text.decode("latin-1")).weight


def test_source_hash_equals_sha256_of_the_bytes(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setattr(backend, "HASH_WINDOW", 1 << 16)  # several mapped windows
    data = blob(300_000, 9)
    (tmp_path / "m.onnx").write_bytes(data)
    assert backend.source_hash(str(tmp_path / "m.onnx")) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert backend.source_hash(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()
    folder = tmp_path / "saved_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(data[:1000])
    (folder / "variables" / "variables.index").write_bytes(b"")
    want = hashlib.sha256(b"saved_model.pb\0" + data[:1000] + b"variables/variables.index\0").hexdigest()
    assert backend.source_hash(str(folder)) == want
