"""`make bench`: Tenure against in-process onnxruntime, a bare grpc.aio handler, MLServer and PyTriton.

Run with `python -m bench` (see bench/README.md). The package is a harness, not part of the
service: nothing under tenure/, services/ or training/ imports it.
"""
