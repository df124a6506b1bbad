"""Command line: convert released weights, and classify images with converted weights.

    python -m inception_jax.interop.cli convert --model inception_resnet_v2_release \\
        --src inception_resnet_v2.safetensors --out /tmp/irv2
    python -m inception_jax.interop.cli predict --weights /tmp/irv2 cat.jpg dog.png

The commands are thin wrappers around :func:`convert` and :func:`predict`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError

from inception_jax.interop import checkpoint, labels, preprocess, timm_names
from inception_jax.interop.convert import convert_timm_state_dict
from inception_jax.interop.loaders import load_state_dict


def convert(
    model_name: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    num_classes: int | None = None,
    scan_blocks: bool = True,
    aux_logits: bool | None = None,
    normalisation: str = "inception",
    overwrite: bool = False,
) -> str:
    """Converts a timm weights file into a checkpoint directory; returns its absolute path.

    Args:
      model_name: one of :data:`inception_jax.interop.timm_names.MODELS`.
      src: ``.pth`` / ``.pt`` / ``.safetensors`` file with a timm state dict.
      out: new directory (``model.json`` + orbax ``variables``).
      num_classes: ``None`` keeps the file's; 1000 from a 1001-class file drops the background.
      scan_blocks: parameter layout of the repeated stages (see ``create_model``).
      aux_logits: Inception-v3 ``AuxLogits`` head; ``None``: converted when the file has it.
      normalisation: ``inception`` ([-1, 1]; TF and torchvision weights) or ``imagenet`` (gluon).
      overwrite: replace an existing converted checkpoint at ``out``.
    """
    timm_names.check_model(model_name)
    prep = preprocess.default_preprocessing(model_name, normalisation)
    checkpoint.check_output_dir(os.path.abspath(os.fspath(out)), overwrite)  # fail before the work
    variables = convert_timm_state_dict(
        load_state_dict(src),
        model_name,
        scan_blocks=scan_blocks,
        num_classes=num_classes,
        aux_logits=aux_logits,
    )
    return checkpoint.save_converted(
        out,
        variables,
        model_name,
        num_classes=int(variables["params"]["logits"]["kernel"].shape[-1]),
        scan_blocks=scan_blocks,
        aux_logits="aux_logits" in variables["params"],
        preprocessing=prep,
        source=os.path.basename(os.fspath(src)),
        overwrite=overwrite,
    )


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image as a viewer shows `image` (PIL's own `convert("RGB")` is not that).

    16-bit greyscale is scaled to 8 bits (PIL clips it: all white); alpha, including a palette's
    or greyscale's transparency, is composited over white (PIL drops it, showing whatever colour
    transparent pixels hold); palette and CMYK images are converted by PIL.

    Raises:
      ValueError: a mode with no defined mapping to 8 bits (32-bit float).
    """
    if image.mode in _SIXTEEN_BIT:
        grey = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(grey / 257.0), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        raise ValueError("32-bit float images have no defined 8-bit range; save as 8/16-bit PNG")
    if image.mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike, prep: preprocess.Preprocessing) -> np.ndarray:
    """Reads one image file (any PIL mode, see `to_rgb`) and preprocesses it.

    Raises:
      ValueError: the file is missing, not an image PIL can read, or of an unsupported mode.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            return preprocess.transform(to_rgb(image), prep)
    except FileNotFoundError as e:
        raise ValueError(f"image file not found: {path}") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image file {path}: {e}") from e
    except ValueError as e:
        raise ValueError(f"cannot convert image file {path}: {e}") from e


def predict(
    weights: str | os.PathLike, images: Sequence[str | os.PathLike], top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """Top-``top_k`` ``(label, probability)`` per image, with the checkpoint's preprocessing.

    Images of any common mode are read as a viewer shows them (`to_rgb`).

    Raises:
      ValueError: an unreadable image (named), ``top_k < 1``, or a directory that is not a
        converted checkpoint.
    """
    if top_k < 1:
        raise ValueError(f"top_k={top_k}: must be >= 1")
    prep = preprocess.Preprocessing.from_dict(checkpoint.read_model_json(weights)["preprocessing"])
    batch = np.stack([load_image(p, prep) for p in images])  # every file checked first
    model, variables = checkpoint.load_converted(weights)
    names = labels.label_names(model.num_classes)
    k = min(top_k, model.num_classes)

    @jax.jit
    def probabilities(variables: dict, x: jnp.ndarray) -> jnp.ndarray:
        logits, _ = model.apply(variables, x, train=False)
        return jax.nn.softmax(logits, axis=-1)

    results = []
    for x in batch:  # one image at a time: one compiled shape, bounded memory
        p = np.asarray(probabilities(variables, x[None]))[0]
        top = np.argsort(-p)[:k]
        results.append([(names[i], float(p[i])) for i in top])
    return results


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inception_jax.interop.cli", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="timm .pth/.safetensors -> orbax checkpoint directory")
    c.add_argument("--model", required=True, choices=timm_names.MODELS)
    c.add_argument("--src", required=True, help="timm weights file (.pth, .pt, .safetensors)")
    c.add_argument("--out", required=True, help="new output directory")
    c.add_argument(
        "--num-classes", type=_at_least(1), default=None, help="default: the file's (>= 1)"
    )
    c.add_argument("--no-scan", action="store_true", help="unrolled block_{i} parameter layout")
    c.add_argument("--no-aux", action="store_true", help="Inception-v3: drop the AuxLogits head")
    c.add_argument(
        "--normalisation",
        choices=sorted(preprocess.NORMALISATIONS),
        default="inception",
        help="input statistics: inception (TF / torchvision weights) or imagenet (gluon)",
    )
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p = sub.add_parser("predict", help="top-k ImageNet labels of image files")
    p.add_argument("--weights", required=True, help="directory written by convert")
    p.add_argument("--top-k", type=_at_least(1), default=5, help="labels per image (>= 1)")
    p.add_argument("images", nargs="+")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status: 0, or 2 for a user error (printed in one line).

    Argument errors exit 2 from argparse itself; `--help` exits 0.
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "convert":
            out = convert(
                args.model,
                args.src,
                args.out,
                num_classes=args.num_classes,
                scan_blocks=not args.no_scan,
                aux_logits=False if args.no_aux else None,
                normalisation=args.normalisation,
                overwrite=args.overwrite,
            )
            print(f"wrote {out}")
        else:
            for path, top in zip(
                args.images, predict(args.weights, args.images, args.top_k), strict=True
            ):
                print(path)
                for name, prob in top:
                    print(f"  {prob:7.4f}  {name}")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
