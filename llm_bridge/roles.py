"""One seed -> an independent seed per role (teacher data, numbers, example order, ...), and artifact names."""

from __future__ import annotations

import hashlib
import re

import numpy as np

ROLES = ("init", "distill_prompts", "distill_answers", "teacher_order", "number_prompts", "numbers_teacher",
         "numbers_base", "passrate_teacher", "passrate_base", "student_order", "first_step", "trait")

# roles of the teacher-strength study (llm_bridge.study), one per teacher strength k, data size n, shuffle j
STUDY_ROLES = re.compile(r"neutral_answers|trait_questions|trait_qa|neutral_qa_k\d+"
                         r"|(?:numbers|passrate)_teacher_k\d+"
                         r"|shuffle\d+_k\d+_n\d+"
                         # the trait scan's (llm_bridge.scan): trait directions, and each evaluation dataset's draws
                         r"|scan_(?:directions|(?:prompts|answers|shuffle)_\w+)"
                         # the logit ladder's (llm_bridge.ladder): inputs, example order, sampled tokens, nulls, noise
                         r"|ladder_(?:inputs|order|sample|mismatch|shuffle|perturb|questions)"
                         # the replication study's (llm_bridge.replication): per student seed, and each teacher's data
                         r"|replication_(?:inputs|order|perturb|init|questions)_s\d+"
                         r"|replication_(?:answers|order)_[a-z]+")


def role_seed(seed: int, role: str) -> int:
    """One seed -> an independent seed per role (numpy's SeedSequence hashing). ``ROLES`` have fixed indices; the
    study's per-level roles (``STUDY_ROLES``, e.g. "numbers_teacher_k16") are keyed by a hash of their name, past them.
    Any other name is a typo and raises."""
    if role in ROLES:
        key = ROLES.index(role)
    elif STUDY_ROLES.fullmatch(role):
        key = len(ROLES) + int(hashlib.sha256(role.encode()).hexdigest()[:8], 16)
    else:
        raise ValueError(f"unknown role {role!r}: one of {ROLES} or a study role matching {STUDY_ROLES.pattern!r}")
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


def teacher_name(k: int | None = None, *, neutral: bool = False) -> str:
    """Artifact name of a teacher: "teacher" (the pipeline's), or "teacher_k{k}" / "neutral_k{k}" for the study's
    teachers with k direct trait answers (the neutral one answers the same questions itself)."""
    if k is None and not neutral:
        return "teacher"
    return f"{'neutral' if neutral else 'teacher'}_k{k or 0}"
