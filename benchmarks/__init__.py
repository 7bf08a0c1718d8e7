"""Benchmarks of gxnpuc against TensorFlow Lite and onnxruntime (`make bench` runs run.py).

Scripts that print tables, not tests; tests/test_benchmarks_smoke.py runs them on tiny sizes.
"""
