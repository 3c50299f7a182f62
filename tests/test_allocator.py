"""The serving process keeps asyncio's 256 KiB socket reads off mmap (see edge_agent/allocator.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from edge_agent.allocator import MemoryReturn

# Reads one 48 KiB frame the way asyncio does, recv(256 KiB), and prints how many mmapped blocks that
# left behind, from glibc's own accounting (mallinfo2).
READ_ONE_FRAME = """
import ctypes, socket, sys
from edge_agent.allocator import keep_reads_on_heap
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert keep_reads_on_heap()
a, b = socket.socketpair()
a.sendall(b"x" * 49152)
before = libc.mallinfo2().hblks
data = b.recv(262144)
print(len(data), libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.parametrize(("mode", "mmapped"), [("default", 1), ("tuned", 0)])
def test_socket_reads_stay_on_the_heap(mode: str, mmapped: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", READ_ONE_FRAME, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["49152", str(mmapped)]


async def test_memory_return_trims_once_per_burst_and_not_more_often_than_its_period() -> None:
    memory = MemoryReturn(delay=0.01, period=0.3)
    loop = asyncio.get_running_loop()
    for _ in range(50):  # fifty peers leave at once
        memory.soon()
    start = loop.time()
    while memory.trims < 1:
        assert loop.time() - start < 5, "no trim ran"
        await asyncio.sleep(0.01)
    memory.soon()  # another leaves right after: it waits for the period
    assert memory.trims == 1
    while memory.trims < 2:
        await asyncio.sleep(0.01)
    assert loop.time() - start >= 0.3 - 0.02
