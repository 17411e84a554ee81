"""A bounded text -> parsed-value memo for header texts that recur in every message of a call.

The values must be immutable (they are shared by every message that carries the text).
Bounded: emptied when full, so hostile traffic with endless new texts costs a parse each, as
without the memo; texts longer than ``max_len`` are not kept (memory held: at most
``max_size * max_len`` characters). Parse errors are raised by the caller's parser and never
kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Memo(Generic[T]):
    def __init__(self, max_size: int = 4096, max_len: int = 512) -> None:
        self.max_size = max_size
        self.max_len = max_len
        self._values: dict[str, T] = {}

    def get(self, text: str) -> T | None:
        return self._values.get(text)

    def put(self, text: str, value: T) -> T:
        """Keep ``value`` for ``text`` (unless the text is too long); returns ``value``."""
        if len(text) <= self.max_len:
            if len(self._values) >= self.max_size:
                self._values.clear()
            self._values[text] = value
        return value

    def parse(self, text: str, parser: Callable[[str], T]) -> T:
        """The value kept for ``text``, else ``parser(text)``, kept (its errors raise)."""
        value = self._values.get(text)
        if value is None:
            value = self.put(text, parser(text))
        return value
