"""The latency engine: timing with adaptive stopping, memory peaks, noise checks. Never imports ``sources``."""
