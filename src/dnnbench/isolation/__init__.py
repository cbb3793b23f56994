"""Worker processes for bench cells: a fresh interpreter or a fork server, one protocol between them."""
