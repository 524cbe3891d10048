"""Train an image classifier with PyTorch Lightning on the mixup DALI loaders.

``MixupDataModule`` builds the training loader (decode, random-resized crop, flip, normalise and
mixup/CutMix in the DALI pipeline) and the validation loader, each process reading its own shard
(rank and world size from the Trainer's strategy), and puts the loaders' resume state into
Lightning's checkpoints: a run stopped mid-epoch continues on the batch that follows.

    # real data that ships with scikit-learn: 1,797 handwritten digits as 32x32 JPEGs
    dali-mixup prepare-digits data/digits
    python examples/lightning_train.py data/digits --model small-cnn --image-size 32 --max-epochs 10

    # 8 GPUs, a timm model, timm's mixup + CutMix recipe, mixup off for the last 10 epochs
    python examples/lightning_train.py /data/imagenet --model resnet50 --devices 8 --batch-size 128 \\
        --mixup 0.8 --cutmix 1.0 --smoothing 0.1 --max-epochs 100 --mixup-off-epoch 90 --ckpt-every 1000

    # continue from a checkpoint (mid-epoch is fine)
    python examples/lightning_train.py data/digits --model small-cnn --image-size 32 --max-epochs 10 \\
        --resume runs/lightning/ckpt/last.ckpt

DATA holds ``train/<class>/*`` and ``val/<class>/*`` (or ``test/``) with the same class folders.
Needs ``pip install "dali-mixup[cpu,lightning]"`` (or ``cuda12``/``cuda13``; ``timm`` for timm models).
"""

import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import lightning as L  # noqa: E402

from dali_mixup.integrations.lightning import MixupDataModule  # noqa: E402
from dali_mixup.integrations.timm import mixup_config  # noqa: E402
from dali_mixup.tools.train import build_model, soft_target_cross_entropy, warmup_cosine  # noqa: E402


class Classifier(L.LightningModule):
    """Any model from ``build_model`` (resnet18, small-cnn, a timm name), soft-target cross-entropy
    on the loader's mixed targets, SGD with a per-step cosine schedule."""

    def __init__(self, model: str, num_classes: int, lr: float, channels_last: bool):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_model(model, num_classes)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def _input(self, batch):
        x = batch["data"]
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def training_step(self, batch, batch_idx):
        loss = soft_target_cross_entropy(self.net(self._input(batch)), batch["label"])  # (N, C) mixed targets
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["data"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self.net(self._input(batch))
        labels = batch["label_index"].view(-1)
        n = labels.numel()
        self.log("val_loss", torch.nn.functional.cross_entropy(logits.float(), labels), sync_dist=True, batch_size=n)
        self.log("val_acc", (logits.argmax(1) == labels).float().mean(), sync_dist=True, prog_bar=True, batch_size=n)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        # the loaders are built by now: Lightning knows the steps of the whole run from len(loader)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(int(self.trainer.estimated_stepping_batches)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/lightning"))
    p.add_argument("--model", default="resnet18", help="resnet18, small-cnn or a timm model name")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--devices", default="auto")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--strategy", default="auto", help="e.g. ddp; several nodes: --num-nodes")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--precision", default=None, help="e.g. bf16-mixed on a GPU")
    # timm's flags and defaults (dali_mixup.integrations.timm.mixup_config takes timm's Mixup arguments)
    p.add_argument("--mixup", type=float, default=0.2)
    p.add_argument("--cutmix", type=float, default=0.0)
    p.add_argument("--cutmix-minmax", type=float, nargs=2, default=None)
    p.add_argument("--mixup-prob", type=float, default=1.0)
    p.add_argument("--mixup-switch-prob", type=float, default=0.5)
    p.add_argument("--mixup-mode", default="batch")
    p.add_argument("--smoothing", type=float, default=0.0)
    p.add_argument("--mixup-off-epoch", type=int, default=0, help="mixup off from this epoch on (0: never)")
    p.add_argument("--ckpt-every", type=int, default=0, help="also checkpoint every N training steps")
    p.add_argument("--resume", default=None, help="a checkpoint to continue from")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    val_root = next((args.data / d for d in ("val", "test") if (args.data / d).is_dir()), None)
    num_classes = sum(1 for d in (args.data / "train").iterdir() if d.is_dir())
    mixup = mixup_config(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                         prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                         label_smoothing=args.smoothing, num_classes=num_classes)
    dm = MixupDataModule(
        "image",
        train=dict(root=args.data / "train", mixup=mixup),
        val=dict(root=val_root) if val_root is not None else None,
        batch_size=args.batch_size, image_size=args.image_size, seed=args.seed,
        mixup_off_epoch=args.mixup_off_epoch or None,
    )
    callbacks = [L.pytorch.callbacks.ModelCheckpoint(dirpath=args.out / "ckpt", save_last=True,
                                                     every_n_train_steps=args.ckpt_every or None)]
    trainer = L.Trainer(accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                        num_nodes=args.num_nodes, precision=args.precision, max_epochs=args.max_epochs,
                        callbacks=callbacks, default_root_dir=args.out)
    model = Classifier(args.model, num_classes, args.lr, channels_last=trainer.strategy.root_device.type == "cuda")
    trainer.fit(model, datamodule=dm, ckpt_path=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
