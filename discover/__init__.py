"""discover: test-time reinforcement learning on open problems."""

# First, before any module starts torch's or numpy's thread pools: the wait policy and core count
# every process of a run uses (discover/threads.py).
from discover.threads import CHOICE

__all__ = ["CHOICE"]
