"""torch_settings (bayes_spheres/torch_context.py): threads and default dtype set inside the
block and restored after it, also when the block raises."""

from __future__ import annotations

import pytest
import torch

from bayes_spheres.torch_context import torch_settings


def test_threads_and_dtype_hold_inside_and_are_restored_after_an_error():
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    other = torch.float64 if dtype is torch.float32 else torch.float32
    with pytest.raises(RuntimeError, match="inside"):
        with torch_settings(threads=1 if threads > 1 else 2, dtype=other):
            assert torch.get_num_threads() != threads
            assert torch.get_default_dtype() is other
            raise RuntimeError("inside")
    assert torch.get_num_threads() == threads
    assert torch.get_default_dtype() is dtype
    with torch_settings():  # None: nothing changes
        assert (torch.get_num_threads(), torch.get_default_dtype()) == (threads, dtype)
