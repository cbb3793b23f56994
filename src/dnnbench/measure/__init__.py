"""Measurement: timing, memory, power sensors, worker subprocesses, environment fingerprint.

Never imports ``dnnbench.sources``: the api layer hands it a loaded model (or a picklable loader).
"""
