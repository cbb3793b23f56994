"""OpenVINO: placeholder, being written."""
