"""Whether each model a job will load can be found, checked before the job creates anything.

A model field holds a Hugging Face hub id or a local folder (spaCy: an installed package or a
folder). Loading a hub id that is neither cached nor reachable fails only once a worker loads it,
after retries, deep in a run; `check_models` finds that in the launcher, in one request per
uncached id, and says how to fix it in one line (`ModelUnavailable`). Random-weight builds
(`tiny`, `random-*`) need nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

HUB_TIMEOUT_S = 10.0
OFFLINE_HINT = "or run offline with --config tiny (random weights)"


class ModelUnavailable(Exception):
    """A model of the config cannot be loaded here; the message names it and how to fix it."""


@dataclass(frozen=True)
class ModelRef:
    """One model a job loads: `field` is its config key (e.g. "grounding.model"), `name` its hub id
    or local folder, `kind` "hub" (transformers `from_pretrained`) or "spacy"."""

    field: str
    name: str
    revision: Optional[str] = None
    kind: str = "hub"


def is_random_build(name: str) -> bool:
    return name == "tiny" or name.startswith("random-")


def pipeline_models(config) -> list[ModelRef]:
    """The models a `PipelineConfig` loads (random-weight builds left out)."""
    refs = [ModelRef("phrases.spacy_model", config.phrases.spacy_model, kind="spacy"),
            ModelRef("grounding.model", config.grounding.model, config.grounding.revision),
            ModelRef("segmentation.model", config.segmentation.model, config.segmentation.revision)]
    if config.scores.enabled:
        refs.append(ModelRef("scores.model", config.scores.model, config.scores.revision))
    if config.entities.model_id:  # entities.source mllm / llm
        refs.append(ModelRef("entities.model", config.entities.model_id, config.entities.revision))
    return [ref for ref in refs if not is_random_build(ref.name)]


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else is meant as a folder."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def _network_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises when the hub cannot be reached or refuses a request (its HTTP
    client is httpx or its fork httpx2, depending on the release)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    errors: list[type[BaseException]] = [HfHubHTTPError, OfflineModeIsEnabled, OSError]
    for client in ("httpx", "httpx2", "requests"):
        if importlib.util.find_spec(client) is not None:
            module = importlib.import_module(client)
            errors.append(getattr(module, "HTTPError", None) or getattr(module, "RequestException"))
    return tuple(errors)


def _check_spacy(ref: ModelRef) -> None:
    if Path(ref.name).expanduser().is_dir() or importlib.util.find_spec(ref.name) is not None:
        return
    raise ModelUnavailable(
        f"spaCy model {ref.name!r} ({ref.field}) is not installed: `python -m spacy download {ref.name}`, "
        f"or --set {ref.field}=/path/to/model, {OFFLINE_HINT}")


def _check_hub(ref: ModelRef, timeout_s: float) -> None:
    folder = Path(ref.name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(f"{ref.field}: folder {ref.name!r} holds no config.json (not a saved "
                                   f"transformers model)")
        return
    if _looks_like_path(ref.name):
        raise ModelUnavailable(f"{ref.field}: no such model folder {ref.name!r}")
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(try_to_load_from_cache(ref.name, "config.json", revision=ref.revision), str):
        return
    fixes = (f"download it where there is a network (`hf download {ref.name}`, it lands in the Hugging Face "
             f"cache), or --set {ref.field}=/path/to/local/folder, {OFFLINE_HINT}")
    if constants.HF_HUB_OFFLINE:
        raise ModelUnavailable(f"model {ref.name!r} ({ref.field}) is not in the Hugging Face cache and "
                               f"HF_HUB_OFFLINE is set: {fixes}")
    try:
        HfApi().model_info(ref.name, revision=ref.revision, timeout=timeout_s)
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        what = "revision" if isinstance(err, RevisionNotFoundError) else "model"
        raise ModelUnavailable(f"{ref.field}: no {what} {ref.name!r}{'@' + ref.revision if ref.revision else ''} "
                               f"on the Hugging Face hub (check the id, or pass a local folder)") from None
    except _network_errors() as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise ModelUnavailable(f"model {ref.name!r} ({ref.field}) is not in the Hugging Face cache and the hub "
                               f"cannot be reached ({type(err).__name__}: {first}): {fixes}") from None


def check_models(refs: Iterable[ModelRef], timeout_s: float = HUB_TIMEOUT_S) -> None:
    """Raise `ModelUnavailable` for the first model that cannot be loaded here."""
    for ref in refs:
        if ref.kind == "spacy":
            _check_spacy(ref)
        else:
            _check_hub(ref, timeout_s)
