"""The latency engine (named so that ``dnnbench.bench`` stays the function): timing with adaptive stopping, memory peaks, noise checks. Never imports ``sources``."""
