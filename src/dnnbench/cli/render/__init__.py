"""Renderers: display only. Each takes what an api call returned and prints it; none computes or measures."""
