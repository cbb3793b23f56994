"""Static analysis: params, MACs/FLOPs, activation memory. Never times anything."""
