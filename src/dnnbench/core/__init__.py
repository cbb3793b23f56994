"""Types shared by every layer: references, records, errors, registries. Imports nothing above it."""
