"""Known third-party noise is dropped at its logger; everything else, and the noise itself at
--log-level DEBUG, still shows."""

from __future__ import annotations

import logging

import pytest

from unimo_g.quiet_logs import KNOWN_NOISE, WithoutTraceback, install


@pytest.fixture
def records():
    """What reaches a handler on each noisy logger itself (libraries such as diffusers stop their
    records' propagation to the root logger once imported)."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            if not any(record is other for other in seen):  # a record reaches the root logger too
                seen.append(record)

    handler = Keep()
    loggers = {name: logging.getLogger(name) for name, _, _ in KNOWN_NOISE}
    levels = {name: logger.level for name, logger in loggers.items()}
    for logger in loggers.values():
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    yield seen
    for name, logger in loggers.items():
        logger.removeHandler(handler)
        logger.setLevel(levels[name])
    install(False)


def test_known_noise_is_dropped_and_other_messages_of_those_loggers_pass(records):
    install(True)
    for name, fragment, _ in KNOWN_NOISE:
        logging.getLogger(name).warning("prefix %s suffix", fragment)
        logging.getLogger(name).warning("something else entirely")
    assert sorted({r.getMessage() for r in records}) == ["something else entirely"]
    assert sorted({r.name for r in records}) == sorted({name for name, _, _ in KNOWN_NOISE})
    install(False)  # --log-level DEBUG
    records.clear()
    name, fragment, _ = KNOWN_NOISE[0]
    logging.getLogger(name).warning(fragment)
    assert len(records) == 1


def test_the_float32_notice_is_dropped_only_for_an_empty_list(records):
    install(True)
    logger = logging.getLogger("diffusers.models.modeling_utils")
    logger.warning("There are modules in UNet2DConditionModel that should be kept in float32: []. Casting ...")
    logger.warning("There are modules in UNet2DConditionModel that should be kept in float32: ['norm']. ...")
    assert [r.getMessage().split(": ")[1][:8] for r in records] == ["['norm']"]


def test_library_tracebacks_are_dropped_but_their_line_kept():
    keep = WithoutTraceback()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        beam = logging.LogRecord("apache_beam.runners.common", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
        ours = logging.LogRecord("pipelines.prompts.job", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert keep.filter(beam) and beam.exc_info is None and beam.getMessage() == "boom"
    assert keep.filter(ours) and ours.exc_info is not None
