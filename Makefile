# Two set-up commands work on a fresh machine with Python 3.11 and pip: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: setup.cfg setup.py | $(BIN)/python
	$(BIN)/pip install -q -e '.[eval,tf]'
	touch $@

$(VENV)/.installed-test: setup.cfg setup.py | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python examples/make_kws.py examples/build
	$(BIN)/gxnpuc -w -s -e examples/build/kws_inputs.npz configs/kws_onnx.yaml
	@echo
	@echo "== the same model.h run by the C runtime (runtime/gxnpu.c) with the system gcc =="
	$(BIN)/python examples/runtime_demo.py examples/build/kws_model.h examples/build/kws_inputs.npz
	@echo
	@echo "== the same workflow on a TensorFlow model (Keras Conv1D TDNN, frozen .pb) =="
	$(BIN)/python examples/make_kws_tf.py examples/build
	$(BIN)/gxnpuc -w -e examples/build/kws_tf_inputs.npz configs/kws_tf.yaml
	$(BIN)/python examples/runtime_demo.py examples/build/kws_tf_model.h examples/build/kws_tf_inputs.npz

test: $(VENV)/.installed-test
	$(BIN)/ruff check gxnpuc tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run.py

# Regenerate the generated parts of docs/ (tests fail when they are stale).
docs: $(VENV)/.installed-test
	$(BIN)/gxnpuc -L --markdown > docs/ops.md
	$(BIN)/python -m gxnpuc.config docs/config.md
	$(BIN)/python -m gxnpuc.report docs/ir.md
	$(BIN)/python tests/test_bad_input.py > docs/errors.md

clean:
	rm -rf $(VENV) examples/build build *.egg-info
