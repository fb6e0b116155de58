"""Representative subsets: --subjects / --prompts-per-subject / --sample spread over subjects and
templates, seeded, so that a quick run estimates the full one (where --limit takes one subject)."""

from collections import Counter
from pathlib import Path

import pytest

from unimo_g.usage import UsageError
from unimo_g_apps.evaluation.cases import BenchEntity, Case
from unimo_g_apps.evaluation.evaluate import parse_args
from unimo_g_apps.evaluation.subsets import select_cases


def _dreambench_like() -> list[Case]:
    """DreamBench's shape: 21 objects then 9 live subjects, 25 prompts each, one list per kind."""
    cases = []
    for index in range(30):
        live = index >= 21
        entity = BenchEntity(f"s{index:02d}", "dog" if live else "toy", (Path("x.jpg"),))
        for prompt in range(25):
            template = f"{'live' if live else 'object'} prompt {prompt}"
            cases.append(Case(f"s{index:02d}-{prompt:03d}", entity.name, "a {0}", (entity,), template))
    return cases


def _multibench_like() -> list[Case]:
    """MultiBench's shape: 10 subjects (the living slot) x 5 templates x 10 or 100 combinations."""
    cases = []
    for template, combinations in enumerate((10, 10, 10, 100, 100)):
        for subject in range(10):
            entity = BenchEntity(f"living/{subject}", "dog", (Path("x.jpg"),))
            for combination in range(combinations):
                cases.append(Case(f"t{template}-{subject}-{combination}", entity.name, "a {0}", (entity,),
                                  f"template {template}"))
    return cases


def test_subjects_keep_the_live_to_object_ratio_and_prompts_spread():
    cases = _dreambench_like()
    chosen = select_cases(cases, subjects=10, seed=0)
    subjects = Counter(c.subject for c in chosen)
    assert len(subjects) == 10 and set(subjects.values()) == {25}
    assert sum(int(s[1:]) >= 21 for s in subjects) in (2, 3, 4)  # 9 of 30 live: 3 of 10, to within one
    per = select_cases(cases, subjects=10, per_subject=5, seed=0)
    assert len(per) == 50 and set(Counter(c.subject for c in per).values()) == {5}
    assert {c.subject for c in per} == set(subjects)
    assert [c.key for c in per] == sorted(c.key for c in per)  # benchmark order
    assert select_cases(cases, subjects=10, per_subject=5, seed=0) == per  # seeded
    assert select_cases(cases, subjects=10, per_subject=5, seed=1) != per


def test_a_sample_spreads_over_subjects_and_templates():
    cases = _multibench_like()
    assert len(cases) == 2300
    sample = select_cases(cases, sample=50, seed=3)
    assert set(Counter(c.subject for c in sample).values()) == {5}  # 10 subjects, 5 each
    # templates in proportion to their prompts: 2,000 of 2,300 are 3-subject prompts (43.5 of 50)
    three = sum(c.template_name in ("template 3", "template 4") for c in sample)
    assert 40 <= three <= 47 and len({c.template_name for c in sample}) >= 4
    for seed in range(5):  # each subject's prompts spread over its templates
        picked = select_cases(cases, subjects=2, per_subject=23, seed=seed)
        assert all(n in (1, 2) for n in Counter((c.subject, c.template_name) for c in picked
                                                 if c.template_name < "template 3").values())
    dream = select_cases(_dreambench_like(), sample=60, seed=0)
    assert set(Counter(c.subject for c in dream).values()) == {2}


def test_a_spread_sample_estimates_the_full_mean_where_the_first_n_do_not():
    """A score that depends on the subject (as DINO does): the sample's mean is near the full mean."""
    cases = _dreambench_like()
    score = {c.key: int(c.subject[1:]) / 30 + (int(c.key[-3:]) % 5) / 100 for c in cases}
    full = sum(score.values()) / len(score)
    spread = [score[c.key] for c in select_cases(cases, sample=60, seed=0)]
    first = [score[c.key] for c in cases[:60]]
    assert abs(sum(spread) / 60 - full) < 0.02 < abs(sum(first) / 60 - full)


def test_subset_flags_are_checked_before_anything_loads():
    base = ["--model", "m", "--bench", "b", "--out", "o"]
    args = parse_args(base + ["--subjects", "5", "--prompts-per-subject", "4", "--sample", "10", "--seed", "2"])
    assert (args.subjects, args.prompts_per_subject, args.sample, args.seed) == (5, 4, 10, 2)
    for bad, message in ((["--sample", "0"], "--sample must be >= 1"), (["--seed", "-1"], "--seed must be >= 0"),
                         (["--prompts-per-subject", "0"], "--prompts-per-subject must be >= 1")):
        with pytest.raises(UsageError, match=message):
            parse_args(base + bad)
