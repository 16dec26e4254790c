"""Registries: named implementations of a small protocol, found by name (backbones in
`artgan.model.backbones`, tuners in `artgan.tuning.tuners`, pruning rules in
`artgan.tuning.pruners`).

Each such package defines its protocol and one `Registry`, and registers its
implementations at its end; the names a spec accepts are the registry's (`names()`).
"""

from typing import Generic, Protocol, TypeVar

from artgan.errors import ArtganError


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(dict[str, T], Generic[T]):
    """{name: implementation} of one `kind` ("backbone", "tuner", ...). `reserved` names
    mean "none of these" (`scratch`, `none`): valid in a spec, never registered."""

    def __init__(self, kind: str, reserved: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.kind, self.reserved = kind, reserved

    def register(self, item: T) -> T:
        """Make `item` choosable by its name everywhere artgan names a `kind`."""
        if item.name in self or item.name in self.reserved:
            raise ArtganError(f"{self.kind} {item.name!r} is registered twice")
        self[item.name] = item
        return item

    def find(self, name: str) -> T:
        """The implementation named `name`; an `ArtganError` listing the names there are."""
        try:
            return self[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ArtganError(f"unknown {self.kind} {name!r}; expected one of {known}") from None

    def names(self) -> list[str]:
        """Every name a spec may give: the reserved ones, then the registered ones."""
        return [*self.reserved, *self]
