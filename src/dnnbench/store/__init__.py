"""The results store: the only code that knows the database schema. SQLite by default, any SQLAlchemy URL."""

from dnnbench.store.store import CellRow, Store, check_writable, default_store_url, open_store

__all__ = ["CellRow", "Store", "check_writable", "default_store_url", "open_store"]
