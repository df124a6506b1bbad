"""Command line: single-, multi-crop and ensemble evaluation.

    python -m inception_jax.evaluation --protocol=144crop \\
        --weights=weights/irv2_a,weights/irv2_b,weights/irv2_c,weights/v4 \\
        --data_dir=/data/imagenet                # imagenet_folder: tars or train/ + val/
    python -m inception_jax.evaluation --protocol=10crop \\
        --checkpoint=runs/x/checkpoints/40000    # dataset from the run's config.json

Members are converted weights (`--weights`, comma-separated) and/or training checkpoints
(`--checkpoint`, comma-separated step directories); the ensemble averages their softmax outputs.
Prints one line per member and the ensemble, then the JSON result (also written to `--json`).
Exit codes: 0 done, 2 bad input (the message names it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from inception_jax.evaluation import crops as crops_lib


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m inception_jax.evaluation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--protocol", default="single", help=f"one of {list(crops_lib.PROTOCOLS)}")
    p.add_argument("--weights", default="", help="converted weight directories, comma-separated")
    p.add_argument("--checkpoint", default="", help="run step directories, comma-separated")
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset name (default: imagenet_folder, or the first checkpoint's run dataset)",
    )
    p.add_argument("--data_dir", default=None, help="dataset folder (tars or train/ + val/)")
    p.add_argument("--split", default=None, help="split evaluated (default: validation)")
    p.add_argument("--image_size", type=int, default=None, help="input size (default: member's)")
    p.add_argument("--crop_fraction", type=float, default=None, help="default: the member's")
    p.add_argument("--batch_size", type=int, default=32, help="images per device step")
    p.add_argument("--num_examples", type=int, default=None, help="evaluate the first N only")
    p.add_argument("--threads", type=int, default=None, help="host threads making crops")
    p.add_argument("--json", default=None, help="also write the result here")
    return p


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _data_config(args: argparse.Namespace) -> Any:
    """The data config evaluated on: flags over the first checkpoint's run config."""
    from inception_jax.data import pipeline
    from inception_jax.evaluation.members import run_config

    checkpoints = _split_list(args.checkpoint)
    if checkpoints:
        cfg = run_config(checkpoints[0]).data
    else:
        cfg = pipeline.default_data_config()
        cfg.name, cfg.eval_split = "imagenet_folder", "validation"
    if args.dataset:
        cfg.name = args.dataset
    if args.data_dir:
        cfg.data_dir = args.data_dir
    if args.split:
        cfg.eval_split = args.split
    if cfg.name == "imagenet_folder" and not cfg.get("data_dir"):
        raise ValueError("--data_dir is required for imagenet_folder (the ImageNet tars/folders)")
    return cfg


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses `argv`, evaluates, prints and returns the result (raises on bad input)."""
    args = _parser().parse_args(argv)
    crops_lib.num_crops(args.protocol)  # fail early on an unknown protocol
    if args.batch_size < 1:
        raise ValueError(f"--batch_size={args.batch_size} must be >= 1")
    weights, checkpoints = _split_list(args.weights), _split_list(args.checkpoint)
    if not weights and not checkpoints:
        raise ValueError("no model to evaluate: pass --weights=<dir>[,...] and/or --checkpoint")

    from inception_jax.data import pipeline
    from inception_jax.data.sources import get_dataset_builder, open_source
    from inception_jax.evaluation import members as members_lib
    from inception_jax.evaluation import protocols

    data_cfg = _data_config(args)
    members = [members_lib.from_converted(w) for w in weights]
    members += [members_lib.from_checkpoint(c, data_cfg) for c in checkpoints]
    image_size = args.image_size or members[0].image_size
    crop_fraction = args.crop_fraction or members[0].crop_fraction
    source = open_source(get_dataset_builder(data_cfg), data_cfg.eval_split, data_cfg.image_key)
    ensemble = protocols.Ensemble(members, args.protocol)
    result = protocols.evaluate(
        ensemble,
        source,
        image_size=image_size,
        crop_fraction=crop_fraction,
        images_per_step=args.batch_size,
        num_examples=args.num_examples,
        threads=args.threads,
        decoder=pipeline.decoder_of(data_cfg),
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    result["dataset"] = {"name": data_cfg.name, "data_dir": data_cfg.get("data_dir"),
                         "split": data_cfg.eval_split}  # fmt: skip
    n = result["crops_per_image"]
    crops = f"{args.protocol} ({n} crop{'s' if n > 1 else ''} per image, {image_size} px)"
    for m in result["members"]:
        print(f"{crops}  {m['name']}: top-1 {m['top1']:.4f}  top-5 {m['top5']:.4f}")
    if len(members) > 1:
        print(
            f"{crops}  ensemble of {len(members)}: top-1 {result['top1']:.4f}  "
            f"top-5 {result['top5']:.4f}"
        )
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit 2 with a one-line message on bad input."""
    try:
        run(argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
