"""Splitting the LLM grids (``llm_bridge.ladder``, ``llm_bridge.study``) over processes and hosts.

An existing launcher starts the processes; each takes its share of the grid's cells by rank, writes its own cell files
atomically, and rank 0 merges them into the one result a single process would write::

    torchrun --nproc_per_node 2 -m llm_bridge ladder --preset quick --out runs/ladder_quick
    torchrun --nproc_per_node 4 -m llm_bridge study --preset paper --out runs/study_paper
    # M hosts, on host i (0 .. M-1); HOST:PORT is host 0's address and a free port:
    torchrun --nnodes M --node_rank i --nproc_per_node N --rdzv_endpoint HOST:PORT \\
        -m llm_bridge ladder --preset paper --out /shared/runs/ladder_full

The output folder (and ``--teachers-dir``) must be one folder that every rank sees (a shared file system): the ranks
meet only through its files and two barriers. Without torchrun (no ``WORLD_SIZE`` in the environment) a run is one
process, exactly as before.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from results import load_json, save_json

# Ranks wait at a barrier until the slowest one has trained its share: hours apart on a real grid. The default
# (30 min) would kill a healthy run; a crashed rank does not leave the others waiting this long, since torchrun
# stops every worker of the group when one fails.
BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` among ``world`` processes working on one grid."""

    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank must be in [0, world={self.world}), got {self.rank}")

    @classmethod
    def from_env(cls) -> Ranks:
        """The ranks torchrun sets (``RANK``, ``WORLD_SIZE``; one process without them). With more than one, joins
        the gloo process group (CPU, so it works beside GPUs and on machines without them) and, on a GPU host, takes
        the GPU of its local rank (``device="auto"`` then means that one)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        ranks = cls(int(os.environ.get("RANK", "0")), world)
        if world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return ranks

    @property
    def main(self) -> bool:
        """Rank 0: it computes what the ranks share, and merges."""
        return self.rank == 0

    def mine(self, i: int) -> bool:
        """Is item ``i`` of a grid (its index in a fixed order every rank computes) this rank's to do?"""
        return i % self.world == self.rank

    def share(self, items) -> list:
        """This rank's items of ``items`` (every ``world``-th, from its rank)."""
        return [x for i, x in enumerate(items) if self.mine(i)]

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def record(self, out, fp: str, **info) -> None:
        """With several ranks: this rank's account of its share (``info``: what it did, how long) in
        ``out/ranks/rank{R}.json``, for the merged result's timings."""
        if self.world > 1:
            save_json(Path(out) / "ranks" / f"rank{self.rank}.json", {"rank": self.rank, "world": self.world,
                                                                         "fingerprint": fp, **info})

    def records(self, out, fp: str) -> list[dict] | None:
        """Every rank's ``record`` (rank 0, after the last barrier); None in one process."""
        if self.world == 1:
            return None
        return [{k: v for k, v in collect(Path(out) / "ranks" / f"rank{r}.json", fp, what=f"rank {r}'s record").items()
                 if k != "fingerprint"} for r in range(self.world)]


def collect(path, fp: str, *, what: str, read=None):
    """An artifact that another rank wrote, checked: present, and made with fingerprint ``fp``. ``read(path)`` gives
    (value, its metadata) for files that keep the fingerprint beside the value (default: a JSON file, which holds its
    own)."""
    path = Path(path)
    if not path.exists():
        raise RuntimeError(f"{what}: {path} is missing; do all ranks see one output folder (a shared file "
                           "system)?")
    value, meta = read(path) if read else (load_json(path),) * 2
    if meta.get("fingerprint") != fp:
        raise RuntimeError(f"{what}: {path} has fingerprint {meta.get('fingerprint')!r}, this run {fp!r}; did the "
                           "ranks run different configs or code versions?")
    return value
