"""One small name → factory table for everything the bench builds by name: landscapes, peers, tuning spaces and
samplers.

The idea is ``evogm_opt.registry``'s (a name means one thing everywhere, and registering it twice is an error, so
a second definition cannot silently replace the first), with one addition the bench needs: a *family* of names
that share a prefix and carry their parameters in the name (``bbob-f10``, ``merge-f15-R200``,
``evogm+popsize=6``). A family registers a parser of the whole name; an exact name is looked up before any
family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Family(Generic[T]):
    """Names ``prefix…`` parsed by ``parse(name)``; ``form`` says how such a name is written, for error messages."""

    prefix: str
    parse: Callable[[str], T]
    form: str


class Registry(Mapping[str, T]):
    """Exact names (a read-only mapping, in registration order) plus families of parametric names.

    ``registry[name]`` is the exact entry (a KeyError otherwise, as for a dict); :meth:`resolve` also parses
    family names and raises a ValueError that lists what would have been accepted.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "peer", "landscape", …: the word used in messages
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}
        self._families: dict[str, Family[T]] = {}

    def add(self, name: str, entry: T, summary: str = "") -> T:
        """Register ``entry`` under ``name``; a name registered already is refused."""
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} name {name!r} must be non-empty, without spaces at the ends")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        self._summaries[name] = summary
        return entry

    def add_family(self, prefix: str, parse: Callable[[str], T], form: str) -> None:
        """Register every name that starts with ``prefix``; ``parse(name)`` builds the entry or raises ValueError.
        Two families may not share a prefix (which of them would a name mean?)."""
        if not prefix:
            raise ValueError(f"a {self.kind} family needs a non-empty prefix")
        if prefix in self._families:
            raise ValueError(f"{self.kind} names {prefix!r}… are already registered ({self._families[prefix].form})")
        self._families[prefix] = Family(prefix, parse, form)

    def resolve(self, name: str) -> T:
        """The entry for ``name``: an exact name first, else the family with the longest matching prefix."""
        if name in self._entries:
            return self._entries[name]
        matching = [f for f in self._families.values() if name.startswith(f.prefix)]
        if matching:
            return max(matching, key=lambda f: len(f.prefix)).parse(name)
        raise ValueError(f"unknown {self.kind} {name!r}; available: {self.choices()}")

    def choices(self) -> str:
        """Every exact name, then each family's form: what a valid name looks like, for messages and ``--help``."""
        return ", ".join([*self._entries, *(f.form for f in self._families.values())])

    def summary(self, name: str) -> str:
        return self._summaries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
