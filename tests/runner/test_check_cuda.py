"""`multitalk-runner check` names the CUDA libraries mapped into the process (pure part)."""

from __future__ import annotations

from multitalk.runner.check import CUDA_LIBRARIES, _loaded_cuda_libraries

MAPS = """\
7f0000000000-7f0000001000 r-xp 00000000 08:01 1 /opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib/libcudart.so.13
7f0000001000-7f0000002000 r-xp 00000000 08:01 2 /opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib/libcublasLt.so.13
7f0000002000-7f0000003000 r-xp 00000000 08:01 3 /opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib/libcublas.so.13
7f0000003000-7f0000004000 r-xp 00000000 08:01 4 /opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn.so.9
7f0000004000-7f0000005000 rw-p 00000000 00:00 0 [heap]
"""


def test_each_library_is_named_by_its_loaded_file_or_none() -> None:
    found = _loaded_cuda_libraries(MAPS)
    assert set(found) == set(CUDA_LIBRARIES)
    assert found["cudart"] == "libcudart.so.13" and found["cudnn"] == "libcudnn.so.9"
    assert found["cublas"] == "libcublas.so.13"  # not libcublasLt
    assert found["nccl"] is None


def test_a_cpu_process_maps_none() -> None:
    assert set(_loaded_cuda_libraries("7f00-7f01 r-xp 0 0:0 0 /usr/lib/libc.so.6\n").values()) == {None}
