"""Train the UNIMO-G denoiser on prompt shards: stage 1 (text-to-image) or stage 2 (multimodal prompts).

    python -m trainers.train --config configs/train_tiny.yaml --stage 1 --data DIR_OR_GLOB --output DIR
        [--init-from CHECKPOINT] [--init-weights ema|raw] [--max-steps N] [--resume] [--set key=value ...]
        [--report-to tensorboard,wandb]
    torchrun --nproc-per-node 8 -m trainers.train ...        (DDP, one process per GPU)

Stage 1 conditions on the caption alone and trains on ε-MSE; stage 2 conditions on multimodal
prompts and adds lambda_attn · L_attn. Stage 1 also trains from a feature run (`unimo_g.features`:
pre-computed VAE posteriors and caption encodings, --data FEATURE_DIR), computed with this
config's encoder, VAE and resolution; then neither the encoder nor the VAE is loaded.
--init-from starts from another run's checkpoint (a checkpoint directory or a training output;
its EMA weights unless --init-weights raw) with a fresh optimizer. --resume continues OUTPUT's
latest checkpoint exactly (it starts at step 0 when there is none). Writes OUTPUT/metrics.jsonl
and OUTPUT/checkpoints/ (see unimo_g.checkpoint_format); --report-to adds TensorBoard or W&B
(`trainers.reporting`), with sample images every `sample_every` steps. Unusable arguments, configs or inputs
exit with code 2 and a one-line message.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trainers import command_line
from trainers.checkpoint import check_resumable, load_checkpoint, prune_checkpoints, save_checkpoint
from trainers.config import TrainConfig
from trainers.data import FEATURES, Batch, ShardError, ShardStream, entity_image_config, list_shards, make_loader
from trainers.distributed import DistInfo, cleanup_distributed, mean_over_ranks, min_over_ranks, setup_distributed
from trainers.ema import EMA
from trainers.feature_data import feature_run_dir, read_unconditional
from trainers.metrics import MetricsLog, Throughput
from trainers.optim import build_lr_scheduler, build_optimizer
from trainers.reporting import (
    ReporterUnavailable,
    Reporters,
    build_reporters,
    check_available,
    sample_images,
)
from trainers.step import LOSS_KEYS, MIX_KEYS, TrainState, train_step
from unimo_g.checkpoint_format import (
    CHECKPOINTS_DIR,
    METRICS_FILE,
    CheckpointError,
    build_vae,
    denoiser_weights,
    read_latest,
    read_model_spec,
    resolve_checkpoint,
)
from unimo_g.config_tools import ConfigError, load_config, to_dict
from unimo_g.diffusion.schedule import make_train_scheduler
from unimo_g.features import FeatureFormatError, FeatureSpec, spec_from_train_config
from unimo_g.inference import encode_unconditional
from unimo_g.models.attention import AttentionStore, install_attention_capture
from unimo_g.models.denoiser import Denoiser, build_denoiser
from unimo_g.models.encoder import EncoderConfig, MultimodalEncoder, build_encoder
from unimo_g.pipeline_config import EntityImageConfig
from unimo_g.presets import PresetNotFound, resolve_preset
from unimo_g.schema import SchemaVersionError
from unimo_g.usage import UsageError, job_parser, parse, run_job

ENCODER_IDENTITY = ("family", "model", "revision", "layer", "seed")  # what the conditions mean
# FeatureSpec settings by their training-config names (the encoder's keep theirs: encoder.*)
FEATURE_SPEC_KEYS = {
    "vae": "denoiser.vae",
    "vae_subfolder": "denoiser.vae_subfolder",
    "vae_seed": "denoiser.seed",
    "resolution": "data.resolution",
}

OnBatch = Callable[[int, Batch], None]


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """One training run as asked for.

    config: training YAML path or preset name; overrides: its `key=value` overrides.
    max_steps: optimizer steps to train to, in place of the config's.
    init_from: a checkpoint (or training output) whose denoiser the run starts from, its EMA
      weights when `use_ema`, with a fresh optimizer.
    resume: continue `output`'s latest checkpoint.
    report_to: reporters beside `output`/metrics.jsonl (`trainers.reporting`).
    """

    config: str
    stage: int
    data: str
    output: str
    overrides: tuple[str, ...] = ()
    max_steps: Optional[int] = None
    init_from: Optional[str] = None
    use_ema: bool = True
    resume: bool = False
    report_to: tuple[str, ...] = ()


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainRequest:
    """The request of a `python -m trainers.train` command line (for callers in Python)."""
    return command_line.train_request(parse(job_parser(command_line.PROG, command_line.add_arguments), argv))


def load_train_config(request: TrainRequest) -> TrainConfig:
    """The preset with its overrides and max_steps."""
    try:
        path = resolve_preset(request.config)
    except PresetNotFound as err:
        raise UsageError(str(err)) from None
    try:
        config = load_config(TrainConfig, path, request.overrides)
        if request.max_steps is not None:
            config = dataclasses.replace(config, max_steps=request.max_steps)
    except (ConfigError, ValueError) as err:
        raise UsageError(str(err)) from None
    return config


# ---------------------------------------------------------------------------------------------
# Building the run


def build_frozen(
    config: TrainConfig, device: torch.device, encoder: Optional[MultimodalEncoder] = None
) -> tuple[MultimodalEncoder, torch.nn.Module]:
    """The frozen encoder (the config's, unless one is given) and VAE on `device`."""
    try:
        encoder = encoder if encoder is not None else build_encoder(config.encoder, device)
    except (OSError, ValueError) as err:  # not found on the hub or on disk, or a bad layer index
        raise UsageError(f"encoder {config.encoder.model!r}: {_first_line(err)}") from None
    try:
        vae = build_vae(config.denoiser)
    except OSError as err:
        raise UsageError(f"vae {config.denoiser.vae!r}: {_first_line(err)}") from None
    return encoder, vae.to(device)


def build_trainable(
    config: TrainConfig, stage: int, encoder_width: int, device: torch.device, init_from: Optional[str] = None,
    use_ema: bool = True,
) -> tuple[Denoiser, Optional[AttentionStore]]:
    """The denoiser for conditions of width `encoder_width` (from checkpoint `init_from`, its EMA
    weights when `use_ema`) on `device`, with cross-attention capture when the attention loss is on
    (stage 2, lambda_attn > 0)."""
    denoiser = build_denoiser(config.denoiser, encoder_width)
    if init_from is not None:
        kind = load_init_weights(denoiser, init_from, use_ema, config.encoder)
        _say(f"initialised the denoiser from the {kind} weights of {init_from}")
    denoiser.to(device).train()
    store = None
    if stage == 2 and config.lambda_attn > 0:
        try:
            store = install_attention_capture(denoiser.unet, config.denoiser.capture_resolutions)
        except ValueError as err:
            raise UsageError(f"denoiser.capture_resolutions: {err}") from None
    return denoiser, store


def load_init_weights(denoiser: Denoiser, path: str, use_ema: bool, encoder: EncoderConfig) -> str:
    """Load another run's denoiser weights into `denoiser`; returns "ema" or "raw"."""
    try:
        directory = resolve_checkpoint(path)
        spec = read_model_spec(directory)
        state, kind = denoiser_weights(directory, use_ema)
    except (CheckpointError, OSError) as err:
        raise UsageError(f"--init-from: {err}") from None
    differs = [k for k in ENCODER_IDENTITY if getattr(spec.encoder, k) != getattr(encoder, k)]
    if differs:
        raise UsageError(f"--init-from {directory} was trained on another encoder ({', '.join(differs)} differ)")
    try:
        denoiser.load_state_dict(state)
    except RuntimeError as err:
        detail = _first_line(err)
        raise UsageError(f"--init-from {directory}: its denoiser does not fit this config: {detail}") from None
    return kind


def build_stream(data: str, config: TrainConfig, stage: int, dist: DistInfo) -> ShardStream:
    """This rank's shard stream; unreadable or foreign shards are usage errors naming the file."""
    try:
        stream = ShardStream(list_shards(data), config.data, stage, seed=config.seed, rank=dist.rank,
                             world_size=dist.world_size)
    except (FileNotFoundError, ShardError, SchemaVersionError, FeatureFormatError) as err:
        raise UsageError(str(err)) from None
    if stream.steps_per_epoch(config.batch_size) < 1:
        raise UsageError(
            f"{data}: {stream.num_rows} rows do not make one batch of {config.batch_size} per rank and worker "
            f"({dist.world_size} rank(s) x {stream.workers} worker(s))"
        )
    return stream


@dataclasses.dataclass(frozen=True)
class FeatureConditions:
    """What a feature run gives in place of the encoder: the width D of its hidden states and the
    empty prompt's encoding, `(1, T_u, D)` float32 and `(1, T_u)` bool."""

    hidden_size: int
    uncond: tuple[torch.Tensor, torch.Tensor]


def feature_mismatches(spec: FeatureSpec, config: TrainConfig) -> list[str]:
    """'key (features X, config Y)' for every setting of `spec` (a feature run's) that differs
    from `config`'s, keys named as in the training config; [] when the features fit."""
    wanted = spec_from_train_config(to_dict(config), spec.storage_dtype)
    have, want = to_dict(spec), to_dict(wanted)

    def value(values: dict, key: str):
        for part in key.split("."):
            values = values[part]
        return values

    return [
        f"{FEATURE_SPEC_KEYS.get(key, key)} (features {value(have, key)!r}, config {value(want, key)!r})"
        for key in spec.mismatches(wanted)
    ]


def open_features(stream: ShardStream, config: TrainConfig, data: str) -> FeatureConditions:
    """The conditions of a feature stream's run, after checking that its features were computed
    as `config` says (encoder, VAE, resolution). The stream refused stage 2 already."""
    differs = feature_mismatches(stream.feature_spec, config)
    if differs:
        detail = "; ".join(differs)
        raise UsageError(f"{data}: the features were computed with other settings than the config: {detail}")
    try:
        uncond = read_unconditional(feature_run_dir(stream.files), (stream.feature_spec, stream.feature_layout))
    except (FileNotFoundError, ValueError) as err:  # FeatureFormatError is a ValueError
        raise UsageError(f"{data}: {err}") from None
    return FeatureConditions(stream.feature_layout.hidden_size, uncond)


def build_state(
    request: TrainRequest,
    config: TrainConfig,
    dist: DistInfo,
    encoder: Optional[MultimodalEncoder] = None,
    features: Optional[FeatureConditions] = None,
    stream: Optional[ShardStream] = None,
) -> TrainState:
    """Frozen parts, trainable denoiser (with capture in stage 2), EMA, optimizer and schedule, for
    `request`'s stage and starting weights (`init_from`).

    `encoder` (on `dist.device`) replaces the config's, e.g. a random full-size layout in benchmarks.
    With `features` (training from a feature run) neither the encoder nor the VAE is built. The
    entity-image preparation recorded in checkpoints is read from `stream`'s first shard."""
    if features is None:
        encoder, vae = build_frozen(config, dist.device, encoder)
        width, uncond = encoder.hidden_size, encode_unconditional(encoder)
    elif encoder is not None:
        raise ValueError("an encoder and pre-computed features exclude each other")
    else:
        vae, width = None, features.hidden_size
        uncond = tuple(tensor.to(dist.device) for tensor in features.uncond)
    stage = request.stage
    denoiser, store = build_trainable(config, stage, width, dist.device, request.init_from, request.use_ema)
    from_shards = stream is not None and stream.kind != FEATURES
    entity_image = entity_image_config(stream.files[0]) if from_shards else EntityImageConfig()
    ema = EMA(denoiser, config.ema.decay, config.ema.warmup) if config.ema.enabled else None
    optimizer = build_optimizer(denoiser.parameters(), config.optim, stage)
    return TrainState(
        config=config,
        stage=stage,
        dist=dist,
        encoder=encoder,
        vae=vae,
        denoiser=denoiser,
        model=denoiser,
        store=store,
        noise_scheduler=make_train_scheduler(config.noise),
        uncond=uncond,
        optimizer=optimizer,
        lr_scheduler=build_lr_scheduler(optimizer, config.optim.warmup_steps),
        ema=ema,
        entity_image=entity_image,
    )


def prepare_output(output: Path, resume: bool, dist: DistInfo) -> Optional[Path]:
    """The checkpoint to resume from (None: start at step 0); a fresh run refuses an output that
    already holds checkpoints."""
    try:
        latest = read_latest(output)
    except CheckpointError as err:
        raise UsageError(str(err)) from None
    if latest is not None and not resume:
        raise UsageError(
            f"{output} already holds checkpoints (latest {latest.name}); pass --resume or another --output"
        )
    if resume and latest is None:
        _say(f"--resume: no checkpoint in {output}; starting at step 0")
    if dist.is_main:
        output.mkdir(parents=True, exist_ok=True)
    return latest if resume else None


def resume(directory: Path, state: TrainState, stream: ShardStream, dist: DistInfo) -> tuple[int, int]:
    """Load `directory` into the state and the stream; return (steps done, batches of the
    current epoch consumed)."""
    try:
        check_resumable(directory, state.config, state.stage, dist)
        trainer_state = load_checkpoint(directory, state)
        stream.load_state_dict(trainer_state["data"])
    except (CheckpointError, ValueError) as err:
        raise UsageError(f"--resume: {err}") from None
    _say(f"resumed from {directory} at step {trainer_state['step']}")
    return trainer_state["step"], trainer_state["data"]["batches_consumed"]


def wrap_ddp(state: TrainState) -> None:
    if state.dist.distributed:
        device_ids = [state.dist.device.index] if state.dist.device.type == "cuda" else None
        state.model = DistributedDataParallel(state.denoiser, device_ids=device_ids)


# ---------------------------------------------------------------------------------------------
# The loop


# What a rank reports before each micro-batch; all ranks act on the smallest (`min_over_ranks`).
HAVE_BATCH, EPOCH_ENDED, READ_FAILED = 1, 0, -1


class BatchFeed:
    """Batches across epochs, `steps_per_epoch` per epoch, with the position for checkpoints.

    Ranks agree on every batch: each reports whether it has one, and all ranks act alike. When rows
    skipped as corrupt (`data.skip_corrupt`) end some rank's epoch early, every rank moves on to the
    next epoch together (DDP needs the same number of steps everywhere; a rank left waiting in an
    all-reduce would wait forever). When a rank cannot read a row, every rank raises `ShardError`.
    """

    def __init__(self, stream: ShardStream, batch_size: int, consumed: int = 0, dist: Optional[DistInfo] = None):
        self.stream, self.batch_size = stream, batch_size
        self.dist = dist or DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
        self.per_epoch = stream.steps_per_epoch(batch_size)
        self.epoch, self.consumed = stream.epoch, consumed
        self._batches: Optional[Iterator[Batch]] = None

    def position(self) -> dict:
        """The stream position after the batches handed out so far (`ShardStream.state_dict`)."""
        return self.stream.state_dict(self.consumed, self.batch_size)

    def _next_epoch(self) -> None:
        self.epoch, self.consumed, self._batches = self.epoch + 1, 0, None

    def __next__(self) -> Batch:
        while True:
            if self.consumed >= self.per_epoch:
                self._next_epoch()
            if self._batches is None:
                self.stream.set_epoch(self.epoch)
                self._batches = iter(make_loader(self.stream, self.batch_size))
            try:
                batch = next(self._batches, None)
            except ShardError:
                min_over_ranks(self.dist, READ_FAILED)  # the other ranks stop too
                raise
            status = min_over_ranks(self.dist, EPOCH_ENDED if batch is None else HAVE_BATCH)
            if status == READ_FAILED:
                raise ShardError("another rank could not read a row (its message names it)")
            if status == HAVE_BATCH:
                self.consumed += 1
                return batch
            if not self.stream.config.skip_corrupt:
                raise RuntimeError(f"epoch {self.epoch} ended after {self.consumed} of {self.per_epoch} batches")
            _say(f"epoch {self.epoch} ended after {self.consumed} of {self.per_epoch} batches on some rank (rows "
                 "skipped as corrupt); every rank goes on with the next epoch")
            self._next_epoch()


def train_loop(
    state: TrainState,
    feed: BatchFeed,
    start: int,
    output: Path,
    on_batch: Optional[OnBatch] = None,
    reporters: Optional[Reporters] = None,
) -> int:
    """Optimizer steps `start`..max_steps, logging every log_every (to the JSONL log and the
    `reporters`) and checkpointing every checkpoint_every steps; returns the step of the last
    checkpoint written (`start` if none)."""
    reporters = reporters or Reporters()
    config, dist = state.config, state.dist
    metrics = MetricsLog(output / METRICS_FILE, start) if dist.is_main else None
    meter = Throughput()
    mix = torch.zeros(len(MIX_KEYS))  # MIX_KEYS counts since the last record
    saved = start
    # The context closes the bar on an error too, so that a message after it starts on its own line.
    with tqdm(total=config.max_steps, initial=start, disable=not dist.is_main, unit="step",
              dynamic_ncols=True) as progress:
        for step in range(start, config.max_steps):
            batches = [next(feed) for _ in range(config.optim.grad_accum)]
            if on_batch is not None:
                for batch in batches:
                    on_batch(step, batch)
            result = train_step(state, batches, step)
            done = step + 1
            meter.add(sum(len(batch.ids) for batch in batches) * dist.world_size)
            mix += result.mix
            progress.update(1)
            if done % config.log_every == 0 or done == config.max_steps:
                local = torch.cat([result.losses, result.grad_norm.float().reshape(1), mix.to(result.losses.device)])
                values = mean_over_ranks(dist, local).tolist()
                losses, grad_norm, counts = values[: len(LOSS_KEYS)], values[len(LOSS_KEYS)], values[-len(MIX_KEYS):]
                record = {"step": done, **dict(zip(LOSS_KEYS, losses)), "lr": result.lr, "grad_norm": grad_norm,
                          "images_per_s": meter.rate(), "epoch": feed.epoch, **mix_record(counts)}
                mix.zero_()
                if metrics is not None:
                    metrics.write(record)
                reporters.write(done, record)
                progress.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.1f}")
            if reporters and config.sample_every and done % config.sample_every == 0 and state.encoder is not None:
                images = sample_images(state, config.sample_prompts, config.sample_steps, config.sample_guidance,
                                       config.seed)
                reporters.images(done, images)
            if done % config.checkpoint_every == 0:
                checkpoint(state, feed, done, output)
                saved = done
    return saved


def mix_record(counts: Sequence[float]) -> dict:
    """The stage-2 mix of a log interval from its MIX_KEYS counts (any common scale): share of
    text-only samples, entity images per sample, share of samples whose attention loss was active."""
    samples, text_only, images, active = counts
    samples = max(samples, 1e-12)
    return {"text_only_share": text_only / samples, "entity_images_per_sample": images / samples,
            "attn_active_share": active / samples}


def checkpoint(state: TrainState, feed: BatchFeed, step: int, output: Path) -> None:
    """Write the checkpoint of `step` (every rank calls; rank 0 writes), then prune old ones."""
    save_checkpoint(output, step, state, feed.position())
    if state.dist.is_main:
        prune_checkpoints(output, state.config.keep_last)


# ---------------------------------------------------------------------------------------------
# Entry points


def run(request: TrainRequest, on_batch: Optional[OnBatch] = None) -> TrainState:
    """Train as `request` says; returns the final state. `on_batch(step, batch)` sees every
    micro-batch before its step."""
    config = load_train_config(request)
    try:
        check_available(request.report_to)  # before any model loads
    except ReporterUnavailable as err:
        raise UsageError(str(err)) from None
    try:
        dist = setup_distributed(config.device)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"device: {err}") from None
    try:
        output = Path(request.output)
        resume_from = prepare_output(output, request.resume, dist)
        stream = build_stream(request.data, config, request.stage, dist)
        features = open_features(stream, config, request.data) if stream.kind == FEATURES else None
        if features is not None:
            _say(f"training from the pre-computed features of {request.data}: no encoder or VAE is loaded")
        state = build_state(request, config, dist, features=features, stream=stream)  # frozen, denoiser, EMA, optimizer
        start, consumed = resume(resume_from, state, stream, dist) if resume_from is not None else (0, 0)
        wrap_ddp(state)
        _warn_random_weights(config)
        if start >= config.max_steps:
            _say(f"already at step {start} of {config.max_steps}; nothing to do")
            return state
        feed = BatchFeed(stream, config.batch_size, consumed, dist)
        try:
            reporters = build_reporters(request.report_to, output, to_dict(config), request.stage, dist.is_main)
        except ReporterUnavailable as err:
            raise UsageError(str(err)) from None
        if reporters and config.sample_every and features is not None:
            _say("sample_every: no sample images from pre-computed features (no encoder or VAE is loaded)")
        try:
            if train_loop(state, feed, start, output, on_batch, reporters) != config.max_steps:
                checkpoint(state, feed, config.max_steps, output)  # the final one
        finally:
            reporters.close()
        _say(f"finished at step {config.max_steps}; checkpoints in {output / CHECKPOINTS_DIR}")
        return state
    finally:
        cleanup_distributed(dist)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m trainers.train`: the job of `trainers.command_line` on its own."""
    return run_job(command_line.PROG, command_line.add_arguments, command_line.run, argv, command_line.DESCRIPTION)


def shard_error_line(err: ShardError) -> str:
    """The message of a ShardError, also when a DataLoader worker raised it (the loader then wraps
    the worker's traceback into the message; its last line holds the original message)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    prefix = f"{ShardError.__module__}.{ShardError.__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def _say(message: str) -> None:
    """A status line on stderr, from rank 0 only."""
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _warn_random_weights(config: TrainConfig) -> None:
    models = {"encoder": config.encoder.model, "vae": config.denoiser.vae}
    tiny = [name for name, value in models.items() if value == "tiny"]
    if tiny:
        _say(f"WARNING: random-weight {' and '.join(tiny)}: the trained model is for tests and smoke runs only")


if __name__ == "__main__":
    from unimo_g.quiet_logs import install

    install()  # known third-party noise of the libraries it loads
    sys.exit(main())
