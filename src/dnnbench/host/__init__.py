"""The machine a cell runs on: environment capture (provenance) and the peak-compute probe."""
