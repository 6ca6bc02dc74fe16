"""One context for torch's process-wide settings: the number of threads and the default dtype,
set for a block and restored after it, whatever the block raises (a fit in a sweep's process
must not change the next one's)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_settings(threads: int | None = None, dtype: torch.dtype | None = None) -> Iterator[None]:
    """Within the block, ``threads`` torch threads and ``dtype`` the default dtype (None:
    left as they are); both as before after it."""
    previous_threads, previous_dtype = torch.get_num_threads(), torch.get_default_dtype()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        if dtype is not None:
            torch.set_default_dtype(dtype)
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.set_default_dtype(previous_dtype)
