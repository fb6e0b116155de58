"""`unimo-g evaluate --bench coco`: zero-shot FID on MS-COCO captions, beside the paper's Table 1.

Sample N captions (`--sample`, default 30,000; seeded by `--seed`), generate one image per caption
at the model's size into OUT/images/coco-<caption id>/0.png (resumable like every evaluation), then
FID at `fid.size` (256) against the real images (`unimo_g_apps.evaluation.fid`, `unimo_g_apps.evaluation.coco_captions`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from unimo_g.usage import UsageError


def _batches(paths, size):
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def fid_of_folders(generated: list[Path], real: list[Path], fid_config, device, extractor=None) -> tuple[float, dict]:
    """FID of the `generated` PNGs against the `real` photos, both resized to `fid_config.size`;
    (value, the extractor's description). `extractor` replaces the one `fid_config.inception` names."""
    from PIL import Image

    from unimo_g.inference import load_entity_image
    from unimo_g_apps.evaluation.fid import FidAccumulator, fid_pixels, load_feature_extractor

    about = {"features": type(extractor).__name__, "sha256": None, "published_weights": False}
    if extractor is None:
        extractor, about = load_feature_extractor(fid_config.inception, device)
    accumulator = FidAccumulator(extractor, device)
    for batch in _batches(real, fid_config.batch_size):  # decoded as inputs are: upright, RGB on white
        accumulator.add([fid_pixels(load_entity_image(path), fid_config.size) for path in batch], real=True)
    for batch in _batches(generated, fid_config.batch_size):
        accumulator.add([fid_pixels(Image.open(path), fid_config.size) for path in batch], real=False)
    return accumulator.compute(), about


def run_fid(args, config, settings: dict, device) -> str:
    from unimo_g_apps.evaluation.cases import BenchmarkError
    from unimo_g_apps.evaluation.coco_captions import read_captions, real_images, sample_captions
    from unimo_g_apps.evaluation.evaluate import FID_CAPTIONS, RESULTS_MD, _generate, _write_results
    from unimo_g_apps.evaluation.fid import implementation
    from unimo_g_apps.evaluation.paper_results import paper_tables
    from unimo_g_apps.evaluation.report import fid_markdown

    count = args.sample or FID_CAPTIONS
    try:
        captions = read_captions(args.captions)
        sampled = sample_captions(captions, count, args.seed)[: args.limit]
        real = real_images(captions, sampled, args.images, config.fid.reference)
    except BenchmarkError as err:
        raise UsageError(str(err)) from None
    config = dataclasses.replace(config, images_per_prompt=1)  # the protocol: one image per caption
    settings = {**settings, "images_per_prompt": 1, "layout": "coco", "bench": str(Path(args.captions).resolve())}
    made, weights = _generate(args, [c.case() for c in sampled], config, settings, device)
    out = Path(args.out)
    generated = [out / "images" / c.case().key / "0.png" for c in sampled]
    from unimo_g.inference import PromptError

    try:
        value, about = fid_of_folders(generated, real, config.fid, device)
    except (OSError, PromptError) as err:  # the Inception file; a real image that does not decode
        raise UsageError(str(err).strip().splitlines()[0]) from None
    paper = paper_tables()["coco"]
    fid = {"fid": value, "generated": len(generated), "real": len(real), "of": len(captions), "seed": args.seed,
           "size": config.fid.size, "generated_size": config.resolution or _model_resolution(args.model),
           "captions_file": args.captions, "images_dir": args.images, "reference": config.fid.reference,
           "implementation": f"{implementation()}; features: {about['features']}", "extractor": about}
    results = {"layout": "coco", "model": args.model, "weights": weights, "settings": settings, "fid": fid,
               "captions": {c.case().key: c.caption for c in sampled}, "paper": paper.to_dict()}
    _write_results(out, results, fid_markdown(results))
    return (f"FID-{len(generated)} {value:.2f} against {len(real)} real images ({made} images generated now; "
            f"paper: {paper.reference.values['fid']:.2f} at 30,000); see {out / RESULTS_MD}")


def _model_resolution(model: str) -> int:
    from unimo_g.inference import read_spec

    return read_spec(model).resolution
