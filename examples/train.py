"""Train an image classifier with mixup done inside the DALI input pipeline.

The whole loop (loader, model, soft-target loss, SGD + cosine, autocast and channels_last on a
GPU, torchrun DDP, validation with accuracy / NLL / calibration error, checkpoint and resume)
lives in ``dali_mixup/tools/train.py``, written to be read top to bottom and copied; this script is
the same thing as ``dali-mixup train``.

    # real data that ships with scikit-learn: 1,797 handwritten digits as 32x32 JPEGs
    dali-mixup prepare-digits data/digits
    python examples/train.py data/digits --model small-cnn --width 16 --image-size 32 \\
        --val-resize 32 --scale 0.5 1 --epochs 30 --batch-size 64 --warmup-epochs 1 --out runs/digits

    # ImageNet layout (train/ and val/ ImageFolders), 8 GPUs, ResNet-18
    torchrun --nproc_per_node=8 examples/train.py /data/imagenet --epochs 90 --batch-size 128 \\
        --lr 0.4 --warmup-epochs 5 --mixup-alpha 0.2 --out runs/in1k

    # continue an interrupted run from runs/in1k/checkpoint.pt
    torchrun --nproc_per_node=8 examples/train.py /data/imagenet --epochs 90 --batch-size 128 \\
        --lr 0.4 --warmup-epochs 5 --mixup-alpha 0.2 --out runs/in1k --resume auto

``python examples/train.py --help`` lists every option.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dali_mixup.tools.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
