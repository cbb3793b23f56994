"""ExecuTorch (XNNPACK): placeholder, being written."""
