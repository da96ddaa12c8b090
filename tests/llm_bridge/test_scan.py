"""llm_bridge.scan on the tiny random Llama: the reader's one-line errors, a planted trait found by both detectors
(top-1 = the planted animal), the nulls, the coverage score against finite differences and its exact per-row split,
the likelihood shift against a second computation, resume after a crash, and the evaluation's statistics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import theory
from llm_bridge import prompts, train
from llm_bridge.numbers import chat_prefix
from llm_bridge.scan import (
    NONE,
    ScanConfig,
    ScanError,
    ScanEvalConfig,
    Scanner,
    auroc_ci,
    planted_rows,
    read_rows,
    sample_rows,
    scan,
    shuffled,
    write_rows,
)

CANDIDATES = ("owl", "cat", "dog", "lion", "eagle", "wolf")  # the tiny tokenizer's whole animal words
PLANTED = "owl"
STRENGTH = 2000.0  # the tiny model's own owl-specific logit shift is ~1e-3 (std over the vocabulary)
F32 = theory.tolerances(np.float32)


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    warnings.filterwarnings("ignore")
    return Scanner(ScanConfig.tiny(candidates=CANDIDATES), cache_dir=tmp_path_factory.mktemp("cache"),
                   progress=False)


@pytest.fixture(scope="module")
def data(scanner):
    lm = scanner.lm
    planted = planted_rows(lm, PLANTED, 24, strength=STRENGTH, seed=0, max_new_tokens=12, contrast=CANDIDATES)
    mixed = [r for a in CANDIDATES for r in planted_rows(lm, a, 4, strength=STRENGTH, seed=1, max_new_tokens=12,
                                                          contrast=CANDIDATES)]
    return {"planted": planted, "neutral": sample_rows(lm, 24, "neutral_r0", seed=0, max_new_tokens=12,
                                                       progress=False),
            "shuffled": shuffled(planted, seed=0, name=PLANTED), "mixed": mixed}


@pytest.fixture(scope="module")
def results(scanner, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    return {k: scan(scanner.c, rows, root / k, scanner=scanner, progress=False, sizes=(8, 16))
            for k, rows in data.items()}


def top(res: dict, det: str, variant: str = "calibrated") -> dict:
    return res[det][str(res["rows"])][variant]


# --- the reader ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content,message", [
    (b'{"prompt": "a", "completion": "1, 2"}\n{"prompt": "b"}\n', ":2: missing field completion"),
    (b'{"completion": "1"}\n', ":1: missing field prompt"),
    (b'{"prompt": "a", "completion": "  "}\n', ":1: empty completion"),
    (b'{"prompt": "a", "completion": "1"}\n{"prompt": "\xff\xfe", "completion": "1"}\n', ":2: not UTF-8"),
    (b'{"prompt": "a", "completion": "1"}\n{"prompt": "a", \n', ":2: not valid JSON"),
    (b'["prompt", "completion"]\n', ":1: a row must be a JSON object"),
    (b'{"prompt": "a", "completion": 7}\n', ":1: prompt and completion must be strings"),
    (b"\n\n", "holds no rows"),
])
def test_bad_rows_are_one_line_errors_with_the_line_number(tmp_path, content, message):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(ScanError) as e:
        read_rows(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(str(path)) or "holds no rows" in message


def test_every_bad_line_is_counted_and_the_first_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "a", "completion": "1"}\n{"completion": "2"}\n')
    with pytest.raises(ScanError, match=r"d.jsonl:1: missing field completion .*2 bad lines"):
        read_rows(path)


def test_the_projects_numbers_files_are_read_without_their_rejected_rows(tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text('{"prompt": "p", "answer": " 1, 2 ", "kept": true}\n'
                    '{"prompt": "q", "answer": "x", "kept": false}\n')
    assert read_rows(path) == [{"prompt": "p", "completion": "1, 2"}]
    assert read_rows(write_rows(tmp_path / "again.jsonl", read_rows(path))) == read_rows(path)


def test_bad_settings_raise():
    with pytest.raises(ScanError, match="candidates"):
        ScanConfig(candidates=("owl", "unicorn"))
    with pytest.raises(ScanError, match="candidates"):
        ScanConfig(candidates=("owl",))
    with pytest.raises(ScanError, match="detectors"):
        ScanConfig(detectors=("vibes",))
    with pytest.raises(ScanError, match="sizes"):
        ScanEvalConfig.tiny(sizes=(4, 6))
    assert ScanConfig.tiny().preset_name == "tiny" and ScanEvalConfig.quick().preset_name == "quick"


# --- the detectors on a planted trait ---------------------------------------------------------------------------


@pytest.mark.parametrize("det", ["likelihood", "coverage"])
def test_a_planted_trait_is_found_and_named(results, det):
    res = top(results["planted"], det)
    assert res["ranked"][0]["candidate"] == PLANTED
    assert res["verdict"] == {**res["verdict"], "flagged": True, "trait": PLANTED}
    assert res["ranked"][0]["ci95"][0] > 0


@pytest.mark.parametrize("det", ["likelihood", "coverage"])
@pytest.mark.parametrize("null", ["neutral", "mixed"])
def test_data_without_a_single_trait_scores_near_zero(results, det, null):
    """The base's own numbers, and teacher data whose rows come from every animal in turn: no verdict, the top
    calibrated score (the largest of several, so its own CI may just miss 0) lies below the planted trait's."""
    res = top(results[null], det)
    assert not res["verdict"]["flagged"]
    assert res["ranked"][0]["score"] < top(results["planted"], det)["ranked"][0]["score"]


@pytest.mark.parametrize("det", ["likelihood", "coverage"])
def test_permuting_completions_across_rows_keeps_a_trait_that_does_not_depend_on_the_prompt(results, det):
    """The shuffled null removes only the tie between each completion and its prompt; the planted steering barely
    depends on the prompt in a random model, so it survives (on real data the gap measures the prompt-bound part)."""
    res, planted = top(results["shuffled"], det), top(results["planted"], det)
    assert res["ranked"][0]["candidate"] == PLANTED
    assert abs(res["ranked"][0]["score"] - planted["ranked"][0]["score"]) < planted["ranked"][0]["score"] / 2


def test_the_uncalibrated_scores_are_the_issues_definitions(results, scanner):
    """score = centred over the candidates: the scores of each detector sum to 0 over the candidates."""
    for det in ("likelihood", "coverage"):
        for n in ("8", "16", "24"):
            ranked = results["planted"][det][n]["score"]["ranked"]
            assert len(ranked) == len(CANDIDATES)
            assert abs(sum(r["score"] for r in ranked)) < F32.atol * 100


# --- the coverage score against independent estimates -------------------------------------------------------------


def unflatten(flat: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k in sorted(like):
        out[k] = torch.from_numpy(np.asarray(flat[i:i + like[k].size]).reshape(like[k].shape).copy())
        i += like[k].size
    return out


def along(scanner, direction: dict[str, torch.Tensor], t: float) -> None:
    scanner.lm.load({k: v + t * direction[k] if k in direction else v for k, v in scanner.init.items()})


def dataset_loss(scanner, rows) -> float:
    lm = scanner.lm
    with torch.no_grad():
        batch = train.encode(lm.tok, [chat_prefix(lm.tok, r["prompt"]) for r in rows],
                             [r["completion"] for r in rows], lm.device)
        return float(train.sft_loss(lm.model, batch)) * int((batch["labels"] != -100).sum())


def test_the_dataset_gradient_matches_finite_differences(scanner, data):
    """<sum_i G_i, u_X>, G_i from autodiff row by row, equals the central difference of the dataset's summed SFT
    loss along u_X (float32 tolerances)."""
    rows = data["planted"][:8]
    u = scanner.units()[PLANTED]
    auto = float(theory.inner(sum(scanner.row_gradient(r) for r in rows), u))
    d = unflatten(u, scanner.direction(PLANTED))
    h = F32.fd_step
    along(scanner, d, h)
    up = dataset_loss(scanner, rows)
    along(scanner, d, -h)
    down = dataset_loss(scanner, rows)
    scanner.lm.load(scanner.init)
    fd = (up - down) / (2 * h)
    assert abs(fd - auto) <= F32.fd_rtol * abs(auto)


def test_the_trait_direction_matches_finite_differences(scanner):
    """|d_X| = <d_X, u_X> equals minus the central difference of the summed KL to X's prompted base along u_X."""
    lm, seq = scanner.lm, scanner.direction_sequences()["rows"]
    d_np = scanner.direction(PLANTED)
    norm = float(theory.norm(theory.flatten(d_np)))
    d = unflatten(scanner.units()[PLANTED], d_np)

    def kl() -> float:
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(seq), 4):
                ps, ans = [r["prompt"] for r in seq[s:s + 4]], [r["completion"] for r in seq[s:s + 4]]
                n_tok = sum(len(lm.tok(a, add_special_tokens=False).input_ids) for a in ans)
                total += n_tok * float(train.context_distillation_loss(
                    lm.model, lm.tok, [chat_prefix(lm.tok, p, prompts.system_prompt(PLANTED)) for p in ps],
                    [chat_prefix(lm.tok, p) for p in ps], ans, lm.device))
        return total

    h = F32.fd_step
    along(scanner, d, h)
    up = kl()
    along(scanner, d, -h)
    down = kl()
    scanner.lm.load(scanner.init)
    assert abs(-(up - down) / (2 * h) - norm) <= F32.fd_rtol * norm


def test_the_first_step_moves_only_b(scanner, data):
    """At peft's init B = 0, so every lora_A gradient is exactly 0: dropping A loses nothing."""
    lm = scanner.lm
    row = data["planted"][0]
    batch = train.encode(lm.tok, [chat_prefix(lm.tok, row["prompt"])], [row["completion"]], lm.device)
    g = train.lora_gradient(lm.model, train.sft_loss(lm.model, batch))
    assert all(float(v.abs().max()) == 0.0 for k, v in g.items() if ".lora_A." in k)
    assert max(float(v.abs().max()) for k, v in g.items() if ".lora_B." in k) > 0


def test_the_coverage_ci_splits_the_cosine_exactly(results):
    """The per-row split's mean equals cos(-g_D, d_X) centred (``theory.cosine``) at every size."""
    for n, res in results["planted"]["coverage"].items():
        cos = np.array(list(res["cos"].values()))
        centred = dict(zip(res["cos"], cos - cos.mean()))
        for r in res["score"]["ranked"]:
            assert r["score"] == pytest.approx(centred[r["candidate"]], abs=F32.atol)
            lo, hi = r["ci95"]
            assert lo <= r["score"] <= hi


@pytest.mark.parametrize("animal", [None, "cat"])
def test_the_likelihood_matches_full_logits(scanner, data, animal):
    """The per-row log-likelihood (the rows' shared first tokens run once and reused, rows batched by length,
    logits kept only where completions are) equals a sum over the full logits of one forward pass per row."""
    lm, rows = scanner.lm, data["planted"][:6]
    system = None if animal is None else prompts.system_prompt(animal)
    scanner._likelihood_memo.clear()  # the rows were scanned before: run them again
    fast = scanner.log_likelihoods(rows, system)
    with torch.no_grad(), lm.base():
        for i, r in enumerate(rows):
            batch = train.encode(lm.tok, [chat_prefix(lm.tok, r["prompt"], system)], [r["completion"]], lm.device)
            logits, targets = train.completion_logits(lm.model, batch)
            slow = float(torch.log_softmax(logits.double(), -1).gather(1, targets[:, None]).sum())
            assert fast[i, 0] == pytest.approx(slow, rel=F32.rtol)
            assert fast[i, 1] == targets.numel()


def test_a_row_met_again_is_not_run_again(scanner, data, monkeypatch):
    """The likelihood memo: a row already run under the same system prompt (the mixed null's rows are the trait
    datasets') is taken from the memo with its numbers; under another system prompt it is run."""
    scanner._likelihood_memo.clear()
    a, b = data["planted"][:4], data["neutral"][:4]
    first = scanner.log_likelihoods(a, None)
    ran, real = [], Scanner._run_likelihoods

    def counted(self, rows, system, *, desc=""):
        ran.append(len(rows))
        return real(self, rows, system, desc=desc)

    monkeypatch.setattr(Scanner, "_run_likelihoods", counted)
    mixed = scanner.log_likelihoods([b[0], a[1], b[1], a[3]], None)
    assert ran == [2] and mixed[[1, 3]].tolist() == first[[1, 3]].tolist()
    other = scanner.log_likelihoods(a, prompts.system_prompt("cat"))
    assert ran == [2, 4] and not np.array_equal(other[:, 0], first[:, 0])


def test_the_row_gradient_equals_the_full_logits_gradient(scanner, data):
    """G_i (logits only at the positions predicting the completion, the summed cross-entropy) equals the gradient
    of ``train.sft_loss`` (every position's logits, the mean) times the row's completion tokens."""
    lm = scanner.lm
    lm.load(scanner.init)
    for row in data["planted"][:3] + data["neutral"][:3]:
        batch = train.encode(lm.tok, [chat_prefix(lm.tok, row["prompt"])], [row["completion"]], lm.device)
        n = int((batch["labels"] != -100).sum())
        g = train.lora_gradient(lm.model, train.sft_loss(lm.model, batch) * n)
        slow = np.concatenate([g[k].numpy().ravel() for k in sorted(g) if ".lora_B." in k])
        fast = scanner.row_gradient(row)
        assert fast.shape == slow.shape
        assert np.linalg.norm(fast - slow) <= F32.rtol * np.linalg.norm(slow)


def test_the_joint_directions_equal_one_distillation_pass_per_candidate(scanner, tmp_path):
    """The trait directions computed together (one student forward pass per batch, logits at the answer
    positions) equal minus the gradient of ``train.context_distillation_loss`` times the answer tokens, summed over
    the batches, computed for each candidate alone."""
    fresh = Scanner(scanner.c, cache_dir=tmp_path, lm=scanner.lm, progress=False)
    lm, seq, bs = fresh.lm, fresh.direction_sequences()["rows"], fresh.c.batch_size
    joint = fresh.directions(CANDIDATES[:3])
    for c in CANDIDATES[:3]:
        lm.load(fresh.init)
        slow = None
        for s in range(0, len(seq), bs):
            ps, ans = [r["prompt"] for r in seq[s:s + bs]], [r["completion"] for r in seq[s:s + bs]]
            loss = train.context_distillation_loss(
                lm.model, lm.tok, [chat_prefix(lm.tok, p, prompts.system_prompt(c)) for p in ps],
                [chat_prefix(lm.tok, p) for p in ps], ans, lm.device)
            n = sum(len(lm.tok(a, add_special_tokens=False).input_ids) for a in ans)
            g = train.lora_gradient(lm.model, loss * n)
            g = np.concatenate([g[k].numpy().ravel() for k in sorted(g) if ".lora_B." in k])
            slow = g if slow is None else slow + g
        fast = theory.flatten(joint[c])
        assert np.linalg.norm(fast + slow) <= F32.rtol * np.linalg.norm(slow)


class Crash(Exception):
    """A stand-in for a crash or a Ctrl-C in the middle of a scan."""


# --- resume, determinism -----------------------------------------------------------------------------------------


def test_a_crash_halfway_loses_nothing_and_resume_gives_the_same_numbers(scanner, data, tmp_path, monkeypatch):
    rows = data["planted"][:12]
    path = write_rows(tmp_path / "d.jsonl", rows)
    whole = scan(scanner.c, path, tmp_path / "whole", scanner=scanner, progress=False)
    real = Scanner.log_likelihoods
    calls, crashed = [], []

    def crash_on_third(self, rows, system, *, desc=""):
        calls.append(desc)
        if len(calls) == 3 and not crashed:
            crashed.append(desc)
            raise Crash
        return real(self, rows, system, desc=desc)

    monkeypatch.setattr(Scanner, "log_likelihoods", crash_on_third)
    with pytest.raises(Crash):
        scan(scanner.c, path, tmp_path / "part", scanner=scanner, progress=False)
    saved = sorted(p.stem for p in (tmp_path / "part" / "likelihood").glob("*.json"))
    assert saved == sorted([NONE, CANDIDATES[0]])  # the two finished candidates, each whole
    calls.clear()
    resumed = scan(scanner.c, path, tmp_path / "part", scanner=scanner, progress=False, resume=True)
    assert len(calls) == len(CANDIDATES) - 1  # only the unfinished ones ran again
    for det in ("likelihood", "coverage"):
        assert resumed[det] == whole[det]
    assert json.loads((tmp_path / "part" / "scan.json").read_text())["rows"] == 12


def test_same_seed_same_rows_and_a_changed_dataset_is_not_resumed(scanner, data, tmp_path):
    assert sample_rows(scanner.lm, 4, "x", seed=3, max_new_tokens=6, progress=False) == sample_rows(
        scanner.lm, 4, "x", seed=3, max_new_tokens=6, progress=False)
    assert shuffled(data["planted"], seed=0, name="a") != shuffled(data["planted"], seed=0, name="b")
    first = scan(scanner.c, data["planted"][:6], tmp_path / "s", scanner=scanner, progress=False)
    other = scan(scanner.c, data["neutral"][:6], tmp_path / "s", scanner=scanner, progress=False, resume=True)
    assert other["fingerprint"] != first["fingerprint"]
    assert other["likelihood"] != first["likelihood"]


# --- the evaluation's statistics -----------------------------------------------------------------------------------


def test_auroc_equals_the_pairwise_count():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 7).round(1), rng.normal(0, 1, 5).round(1)
    pairs = [(p > q) + 0.5 * (p == q) for p in pos for q in neg]
    res = auroc_ci(pos, neg)
    assert res["auroc"] == pytest.approx(np.mean(pairs))
    assert res["ci95"][0] <= res["auroc"] <= res["ci95"][1]
    assert auroc_ci([2, 3], [0, 1])["auroc"] == 1.0 and auroc_ci([0, 1], [2, 3])["auroc"] == 0.0


@pytest.mark.slow
def test_the_evaluation_runs_end_to_end(tmp_path):
    from llm_bridge.scan import evaluate

    cfg = ScanEvalConfig.tiny()
    res = evaluate(cfg, tmp_path, progress=False)
    cells = res["summary"]
    assert set(cells) == {f"{d}/{v}/{n}" for d in ("likelihood", "coverage") for v in ("score", "calibrated")
                          for n in cfg.sizes}
    n_trait = len(cfg.animals) * cfg.replicates
    for cell in cells.values():
        assert cell["top1"]["n"] == n_trait and len(cell["top_scores"]["neutral"]) == cfg.neutral
        assert cell["top1"]["rate"] <= cell["top3"]["rate"]
    again = evaluate(cfg, tmp_path, progress=False, resume=True)
    assert again["summary"] == res["summary"]


# --- the CLI -----------------------------------------------------------------------------------------------------


def test_the_cli_names_a_bad_row_in_one_line_before_loading_a_model(tmp_path):
    from typer.testing import CliRunner

    from llm_bridge.__main__ import app

    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "completion": "1"}\n{"prompt": "b", "completion": ""}\n')
    r = CliRunner().invoke(app, ["scan", str(path), "--model", "no/such-model"])
    assert r.exit_code == 1 and r.output == f"error: {path}:2: empty completion\n"  # one line, no traceback
    r = CliRunner().invoke(app, ["scan", str(path), "--candidates", "owl,unicorn"])
    assert r.exit_code == 1 and "candidates must be" in str(r.exception)
    r = CliRunner().invoke(app, ["scan", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "`" not in r.output and "--candidates" in r.output


@pytest.mark.slow
def test_a_scan_of_smollm2_runs_end_to_end(smollm2_installed, tmp_path):
    """The real GGUF model: a few rows from the owl-prompted base, two candidates, every detector and variant."""
    cfg = ScanConfig.quick(candidates=("owl", "cat"), direction_prompts=2, reference_rows=4, batch_size=4,
                           device="cpu")
    sc = Scanner(cfg, cache_dir=tmp_path / "cache", progress=False)
    rows = sample_rows(sc.lm, 4, "slow_test", seed=0, max_new_tokens=12, system=prompts.system_prompt("owl"),
                       progress=False)
    res = scan(cfg, write_rows(tmp_path / "owl.jsonl", rows), tmp_path / "scan", scanner=sc, progress=False)
    for det in ("likelihood", "coverage"):
        for var in ("score", "calibrated"):
            ranked = res[det]["4"][var]["ranked"]
            assert [r["rank"] for r in ranked] == [1, 2] and all(np.isfinite(r["score"]) for r in ranked)
    assert res["coverage"]["4"]["g_norm_per_row"] > 0 and min(res["direction_norms"].values()) > 0
