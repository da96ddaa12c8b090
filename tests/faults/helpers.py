"""The fault-injection suite's tools: run a real CLI as a subprocess (optionally killed with SIGKILL after a delay, or
by ``results``' write hook halfway through one file), compare final JSON with the timings removed, and check that a
run folder holds no temp file and no unreadable result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEED = 36  # the suite's one RNG seed (kill times and kill points)
# keys whose values are wall-clock measurements (or compile counts), removed before two runs' JSON are compared
TIMING_KEYS = {"timings", "seconds", "wall_s", "wall_seconds", "compute_s", "compiles", "peak_rss_mb", "trained_s",
               "students_s", "teachers_s", "total_s"}


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    writes: list[str]  # the atomic writes it made (or began), in order, relative to the test's base folder

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL

    def one_line_error(self) -> str:
        """The error line a failed run printed; asserts it failed cleanly (no traceback)."""
        assert self.rc == 1, f"rc {self.rc}\n{self.stderr[-3000:]}"
        assert "Traceback" not in self.stderr, self.stderr[-3000:]
        errors = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, self.stderr[-3000:]
        return errors[0]


def run_cli(args: list[str], base: Path, *, faults: str | None = None, kill_after: float | None = None,
            timeout: float = 600) -> Run:
    """``python -m ARGS`` from the repository root, one thread, no progress bars; ``faults``: $SUBLIMINAL_FAULTS
    (``results``); ``kill_after``: SIGKILL after that many seconds, if it still runs."""
    log = base / f".writes_{time.monotonic_ns()}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "SUBLIMINAL_WRITE_LOG": str(log),
           "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("SUBLIMINAL_FAULTS", None)
    if faults:
        env["SUBLIMINAL_FAULTS"] = faults
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        if kill_after is None:
            proc.kill()
            raise
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
    writes = []
    if log.exists():
        writes = [str(Path(p).relative_to(base)) if Path(p).is_relative_to(base) else p
                  for p in log.read_text().splitlines()]
        log.unlink()
    return Run(proc.returncode, out, err, time.perf_counter() - t0, writes)


def strip_timings(obj):
    """A copy of JSON data without its timing entries (``TIMING_KEYS``, at any depth)."""
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


def canonical(path: Path) -> bytes:
    """The JSON file's bytes after removing its timings (sorted keys, Python's exact float repr)."""
    return json.dumps(strip_timings(json.loads(Path(path).read_text())), sort_keys=True).encode()


def assert_clean(*folders: Path) -> None:
    """No temp file of an atomic write is left, and every JSON and array file parses: nothing a later run could
    mistake for a result."""
    for folder in folders:
        temps = sorted(str(p) for p in Path(folder).rglob("*.tmp"))
        assert temps == [], f"temp files left: {temps}"
        for p in Path(folder).rglob("*.json"):
            json.loads(p.read_text())
        for p in Path(folder).rglob("*.npz"):
            with np.load(p) as z:
                [z[k] for k in z.files]


def pick(rng: np.random.Generator, paths: list[str]) -> str:
    """One of ``paths``, drawn by ``rng``, as a glob for $SUBLIMINAL_FAULTS (any base folder)."""
    assert paths, "no candidate write to kill in"
    return "*/" + paths[int(rng.integers(len(paths)))]


@dataclass
class Chain:
    """What a kill chain did: each attempt's kind and whether it was killed."""
    attempts: list[tuple[str, bool]]
    final: Run

    @property
    def kills(self) -> int:
        return sum(k for _, k in self.attempts)


def kill_chain(cmd: list[str], base: Path, ref: Run, *, middle: list[str], last: list[str], seed: int = SEED
               ) -> Chain:
    """The same command three times killed, then once to the end: SIGKILL halfway through writing a file drawn from
    ``middle`` (the reference run's intermediate writes), after a time drawn from the middle of the reference's
    wall time (during training), halfway through writing a file drawn from ``last`` (its final results and
    figures); then a run to completion. Every run after the first resumes."""
    rng = np.random.default_rng(seed)
    attempts = []
    where = pick(rng, middle)
    r = run_cli(cmd, base, faults=f"kill:{where}")
    attempts.append((f"writing {where[2:]}", r.killed))
    after = float(rng.uniform(0.3, 0.8)) * ref.seconds
    r = run_cli(cmd, base, kill_after=after)
    attempts.append((f"after {after:.0f} s", r.killed))
    where = pick(rng, last)
    r = run_cli(cmd, base, faults=f"kill:{where}")
    attempts.append((f"writing {where[2:]}", r.killed))
    final = run_cli(cmd, base)
    assert final.rc == 0, final.stderr[-3000:]
    return Chain(attempts, final)
