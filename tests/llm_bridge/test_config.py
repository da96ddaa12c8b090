"""The LLM configs: validation, the paper presets' student recipe, and fingerprints that keep published names valid."""

import pytest

from llm_bridge.config import NEUTRAL, PAPER_MAX_EXAMPLES, PAPER_PASS_RATE, LLMConfig, StudyConfig, run_name


def test_paper_preset_has_the_authors_student_recipe_and_enough_prompts():
    c = LLMConfig.paper()
    assert (c.warmup_steps, c.max_grad_norm, c.max_examples) == (5, 1.0, 10_000)
    assert (c.student_lr, c.student_epochs, c.batch_size, c.sampler) == (2e-4, 3, 66, "free")
    # the prompt count is sized from the measured pass rate so that the cap is reached on average
    assert c.number_prompts * PAPER_PASS_RATE >= PAPER_MAX_EXAMPLES
    study = StudyConfig.paper()
    assert study.llm.number_prompts == c.number_prompts >= max(study.sizes) / PAPER_PASS_RATE


def test_quick_preset_samples_the_authors_contains_rate():
    c = LLMConfig.quick()
    assert c.trait_samples >= 20 and c.trait_sample_questions is not None
    assert (c.warmup_steps, c.max_grad_norm, c.max_examples) == (0, None, None)  # the quick recipe is unchanged
    assert LLMConfig.quick(trait_questions=4).trait_sample_questions == 4  # never more than the questions asked


def test_published_study_name_stays_valid():
    """New settings at their neutral values stay out of the fingerprint: the committed quick study figure's name is
    still what the code gives (its numbers do not depend on the first step or the trait sampling)."""
    assert StudyConfig.quick().name() == "llm_study_quick_smollm2-135m_constrained_seeds5_01691500c7"
    assert set(NEUTRAL) <= set(LLMConfig().to_dict())
    assert LLMConfig(warmup_steps=5).fingerprint() != LLMConfig().fingerprint()
    assert run_name(LLMConfig.quick()).startswith("llm_quick_smollm2-135m_constrained_seeds3_")


def test_bf16_is_an_opt_in_with_its_own_fingerprint():
    """bf16 autocast changes a run's numbers: off by default (out of the fingerprint, so every published name
    stays), and a run with it gets its own fingerprint; the training commands offer --bf16."""
    from typer.testing import CliRunner

    from llm_bridge.__main__ import app

    assert not LLMConfig.quick().bf16 and "bf16" not in LLMConfig.quick().science_dict()
    assert LLMConfig.quick(bf16=True).fingerprint() != LLMConfig.quick().fingerprint()
    for command in ("run", "study", "ladder", "students"):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert out.exit_code == 0 and "--bf16" in out.output, command


@pytest.mark.parametrize("bad,match", [
    ({"warmup_steps": -1}, "warmup_steps"), ({"max_grad_norm": 0.0}, "max_grad_norm"),
    ({"max_examples": 0}, "max_examples"), ({"trait_samples": -1}, "trait_samples"),
    ({"trait_questions": 51}, "trait_questions"), ({"trait_sample_questions": 60}, "trait_sample_questions"),
    ({"sampler": "greedy"}, "sampler"), ({"seeds": ()}, "seeds")])
def test_bad_settings_are_refused_with_the_field_named(bad, match):
    with pytest.raises(ValueError, match=match):
        LLMConfig(**bad)
