"""Kenpin's benchmarks: the LFV-30 accuracy and speed benchmark of the engine, and anomalib's
PatchCore as its peer. Not part of the runtime: bench imports the engine, the engine never
imports bench. `python -m bench --help` or `python manage.py benchmark --help`.
"""
