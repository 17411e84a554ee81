"""State tables: the YAML language, its loader and validator, and the compiled model."""

from sessiond.table.loader import load_table, load_table_text
from sessiond.table.model import Alternative, Entry, Table

__all__ = ["Alternative", "Entry", "Table", "load_table", "load_table_text"]
