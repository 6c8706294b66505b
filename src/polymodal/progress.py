"""Progress bars: one shared look for every long phase, shown only when asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
S = TypeVar("S", bound=Sized)


def bar(total: int, desc: str, unit: str, progress: bool) -> tqdm:
    """A bar counting ``total`` ``unit``\\ s (samples, steps, epochs: what it counts, never
    tqdm's "it"), shown on stderr when ``progress`` and removed when done."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, leave=False)


def chunked(fn: Callable[[slice], T], n: int, size: int = 256, progress: bool = False, desc: str = "") -> list[T]:
    """``fn`` applied to consecutive slices of ``size`` of ``n`` samples, with a bar counting
    samples when ``progress``. The models treat samples independently, so the chunks give
    what one call on all samples would, in less memory."""
    out = []
    with bar(n, desc, "sample", progress) as counter:
        for start in range(0, n, size):
            out.append(fn(slice(start, min(start + size, n))))
            counter.update(min(size, n - start))
    return out


def counted(parts: Iterable[S], desc: str, progress: bool = False) -> Iterator[S]:
    """``parts`` (chunks of a table, say) passed through one by one, with a bar counting
    their rows when ``progress``."""
    with tqdm(desc=desc, unit="row", disable=not progress, leave=False) as bar:
        for part in parts:
            yield part
            bar.update(len(part))
