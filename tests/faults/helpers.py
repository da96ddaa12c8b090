"""The fault-injection suite's tools: run a real CLI as a subprocess (killed with SIGKILL at a point of its sequence of
writes, or by ``results``' write hook halfway through one file), compare final JSON with the timings removed, and
check that a run folder holds no temp file and no unreadable result.

The subprocesses of one test session share one JAX compilation cache (``JAX_COMPILATION_CACHE_DIR``, set by
``tests/faults/conftest.py``): each compiled program is built once, and a resumed run runs the same program."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEED = 36  # the suite's one RNG seed (kill times and kill points)
# keys whose values are wall-clock measurements (or compile counts), removed before two runs' JSON are compared
TIMING_KEYS = {"timings", "seconds", "wall_s", "wall_seconds", "compute_s", "compiles", "peak_rss_mb", "trained_s",
               "students_s", "teachers_s", "total_s"}
JAX_CACHE: dict[str, Path | None] = {"dir": None}  # the session's compilation cache (conftest)


def cli_env(**extra) -> dict[str, str]:
    """The environment of a CLI under test: one thread, no progress bars, the repository importable, the session's
    JAX compilation cache; no injected fault unless ``extra`` sets one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("SUBLIMINAL_FAULTS", None)
    if JAX_CACHE["dir"] is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(JAX_CACHE["dir"]), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    return {**env, **extra}


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    writes: list[str]  # the atomic writes it made (or began), in order, relative to the test's base folder
    write_times: list[float] = field(default_factory=list)  # when each appeared, seconds after the start (+-0.05)

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


def _relative(path: str, base: Path) -> str:
    return str(Path(path).relative_to(base)) if Path(path).is_relative_to(base) else path


def run_cli(args: list[str], base: Path, *, faults: str | None = None,
            kill_after_write: tuple[str, float] | None = None, timeout: float = 600) -> Run:
    """``python -m ARGS`` from the repository root (``cli_env``); ``faults``: $SUBLIMINAL_FAULTS (``results``);
    ``kill_after_write=(FILE, S)``: SIGKILL S seconds after the run began writing FILE (relative to ``base``), or at
    once when it begins its next write before then."""
    log = base / f".writes_{time.monotonic_ns()}.log"
    env = cli_env(SUBLIMINAL_WRITE_LOG=str(log), **({"SUBLIMINAL_FAULTS": faults} if faults else {}))
    writes: list[str] = []
    times: list[float] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=err, text=True)

        def poll_log() -> None:
            if log.exists():
                lines = log.read_text().split("\n")[:-1]  # whole lines only
                for line in lines[len(writes):]:
                    writes.append(_relative(line, base))
                    times.append(time.perf_counter() - t0)

        while proc.poll() is None:
            poll_log()
            now = time.perf_counter() - t0
            if kill_after_write is not None and kill_after_write[0] in writes:
                i = writes.index(kill_after_write[0])
                if now >= times[i] + kill_after_write[1] or len(writes) > i + 1:
                    proc.send_signal(signal.SIGKILL)
            if now > timeout:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{args} ran past {timeout} s")
            time.sleep(0.05)
        poll_log()
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    log.unlink(missing_ok=True)
    return Run(proc.returncode, stdout, stderr, seconds, writes, times)


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


def temp_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in Path(folder).rglob("*.tmp"))


def assert_clean(*folders: Path) -> None:
    """No temp file of an atomic write is left, and every JSON and array file parses: nothing a later run could
    mistake for a result."""
    for folder in folders:
        temps = temp_files(folder)
        assert temps == [], f"temp files left: {temps}"
        for p in Path(folder).rglob("*.json"):
            json.loads(p.read_text())
        for p in Path(folder).rglob("*.npz"):
            with np.load(p) as z:
                [z[k] for k in z.files]


@dataclass
class Attempt:
    """One run of a chain: what was done to it, the file it was aimed at, what it did, and what it left."""
    what: str
    target: str
    run: Run | None  # None: not tried (its point was already behind the folder's state)
    temps_after: list[str] = field(default_factory=list)
    files_after: set[str] = field(default_factory=set)

    @property
    def landed(self) -> bool:
        return self.run is not None and (self.run.killed if self.what.startswith("SIGKILL") else self.run.rc == 1)


@dataclass
class Chain:
    attempts: list[Attempt]
    final: Run

    @property
    def kills(self) -> int:
        return sum(a.landed for a in self.attempts if a.what.startswith("SIGKILL"))

    def of(self, what: str) -> Attempt:
        [a] = [a for a in self.attempts if a.what.startswith(what)]
        return a

    def __str__(self) -> str:
        return "; ".join([f"{a.what} {a.target}: " + (f"landed ({a.run.seconds:.1f} s)" if a.landed else "missed")
                          for a in self.attempts] + [f"then to the end ({self.final.seconds:.1f} s)"])


def kill_chain(cmd: list[str], base: Path, ref: Run, *, middle: list[str], last: list[str], fixed: tuple = (),
               enospc: bool = False, seed: int = SEED) -> Chain:
    """The same command run on one folder again and again, each run stopped at one point of the uninterrupted
    reference run's sequence of writes, the points in that order, then once to the end; every run after the first
    resumes. The points (``middle``: the reference's intermediate writes; ``last``: its final results and figures),
    drawn from one seeded RNG:

    - SIGKILL during training: a gap between a ``middle`` write and the next write, drawn in proportion to the gap's
      length in the reference, at a time drawn from 30-80% of it (or at once when the next write begins earlier);
    - SIGKILL halfway through writing a file drawn from ``middle``, and each of ``fixed``;
    - with ``enospc``, a full disk while writing another file drawn from ``middle``;
    - SIGKILL halfway through writing a file drawn from ``last``.

    Write targets are distinct files, so each point lies ahead of the folder's state when its turn comes."""
    rng = np.random.default_rng(seed)
    order = {w: i for i, w in reversed(list(enumerate(ref.writes)))}
    gaps = [(i, ref.write_times[i + 1] - ref.write_times[i]) for i, w in enumerate(ref.writes[:-1]) if w in middle]
    lengths = np.array([g for _, g in gaps])
    i_gap, gap = gaps[int(rng.choice(len(gaps), p=lengths / lengths.sum()))]
    delay = float(rng.uniform(0.3, 0.8)) * gap
    points = [(i_gap, 1, f"SIGKILL {delay:.1f} s after writing", ref.writes[i_gap], {"kill_after_write":
                                                                                     (ref.writes[i_gap], delay)})]
    taken = {ref.writes[i_gap + 1], *fixed}
    for kind, action, pool in [("SIGKILL writing", "kill", middle), *([("full disk writing", "enospc", middle)]
                                                                       if enospc else []),
                               *[("SIGKILL writing", "kill", [f]) for f in fixed], ("SIGKILL writing", "kill", last)]:
        free = [w for w in pool if w not in taken] if len(pool) > 1 else pool
        assert free, f"no candidate write for {kind} in {pool}"
        target = free[int(rng.integers(len(free)))]
        taken.add(target)
        points.append((order[target], 0, kind, target, {"faults": f"{action}:*/{target}"}))
    attempts = []
    for _, _, what, target, kw in sorted(points, key=lambda p: p[:2]):
        if (base / target).exists():  # already behind the folder's state: not tried
            attempts.append(Attempt(what, target, None))
            continue
        r = run_cli(cmd, base, **kw)
        files = {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}
        attempts.append(Attempt(what, target, r, temp_files(base), files))
    final = run_cli(cmd, base)
    assert final.rc == 0, final.stderr[-3000:]
    return Chain(attempts, final)


def theory_command(d: Path, archs: str, inputs: str, *flags: str) -> list[str]:
    """``python -m theory`` at its smallest through the CLI (the quick preset, one case per combination) with its run
    folder and figures under ``d``; ``flags``: the grid's (``--optimizers`` for the optimizer axis)."""
    return ["theory", *flags, "--preset", "quick", "--archs", archs, "--inputs", inputs, "--seeds-per-combo", "1",
            "--out", f"{d}/runs", "--figures-dir", f"{d}/fig", "--resume", "--no-progress"]


def theory_reference(d: Path, cmd: list[str], parts: int) -> Run:
    """The uninterrupted run a theory chain is compared with; it keeps one array file per part of its grid."""
    r = run_cli(cmd, d)
    assert r.rc == 0, r.stderr[-3000:]
    assert len([w for w in r.writes if w.endswith(".npz")]) == parts, r.writes
    return r


def theory_kills_then_resume(cmd: list[str], base: Path, ref_dir: Path, ref: Run, figure: str) -> Chain:
    """SIGKILL at three seeded points of a theory run (``kill_chain``: while a part is computed, while one is written,
    while the figure is written), then to the end: the figure JSON (``figure``: its glob in ``fig/``) equals the
    uninterrupted run's, byte for byte after removing timings, and no temp file is left."""
    middle = [w for w in ref.writes if w.startswith("runs/")]
    last = [w for w in ref.writes if w.startswith("fig/")]
    chain = kill_chain(cmd, base, ref, middle=middle, last=last)
    assert chain.kills == 3 and all(a.landed for a in chain.attempts), str(chain)
    [mine], [theirs] = list((base / "fig").glob(figure)), list((ref_dir / "fig").glob(figure))
    assert canonical(mine) == canonical(theirs)
    assert_clean(base)
    return chain
