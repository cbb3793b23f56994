"""Datasets and quality metrics: image folders, labels, top-k accuracy with bootstrap CIs."""
