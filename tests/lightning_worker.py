"""One Lightning fit on the mixup DataModule, run as its own process by tests/test_lightning.py.

Lightning's DDP launcher starts the other ranks by running this script again, so it is a script,
not a pytest test. Each rank appends one JSON line per training and validation batch to
``OUT/records-rank<r>.jsonl`` (step, epoch, the samples' class ids, λ, the loss) and rank 0
writes the final weights to ``OUT/weights.pt``.
"""

import argparse
import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--max-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--mixup-off-epoch", type=int, default=None)
    p.add_argument("--save-every", type=int, default=0, help="ModelCheckpoint every N training steps into OUT/ckpt")
    p.add_argument("--resume", default=None, help="a Lightning checkpoint to continue from")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    import lightning as L

    from dali_mixup import MixupConfig
    from dali_mixup.integrations.lightning import MixupDataModule

    args.out.mkdir(parents=True, exist_ok=True)
    num_classes = len([d for d in pathlib.Path(args.data).iterdir() if d.is_dir()])

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(3 * args.image_size * args.image_size, num_classes)

        def _record(self, kind, batch, loss):
            line = {"kind": kind, "step": int(self.global_step), "epoch": int(self.current_epoch),
                    "rank": int(self.global_rank), "labels": batch["label_index"].view(-1).tolist(),
                    "lam": batch["lam"].tolist(), "loss": float(loss)}
            with open(args.out / f"records-rank{self.global_rank}.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")

        def training_step(self, batch, batch_idx):
            logits = self.net(batch["data"].flatten(1))
            loss = torch.sum(-batch["label"] * logits.log_softmax(-1), dim=-1).mean()
            self._record("train", batch, loss.detach())
            return loss

        def validation_step(self, batch, batch_idx):
            logits = self.net(batch["data"].flatten(1))
            loss = torch.nn.functional.cross_entropy(logits, batch["label_index"].view(-1))
            if not self.trainer.sanity_checking:
                self._record("val", batch, loss)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)

        def on_train_end(self):
            if self.global_rank == 0:
                torch.save(self.net.state_dict(), args.out / "weights.pt")

    dm = MixupDataModule(
        "image",
        train=dict(root=args.data, mixup=MixupConfig(alpha=0.4, mode="elem", label_smoothing=0.1)),
        val=dict(root=args.data),
        batch_size=args.batch_size, image_size=args.image_size, num_threads=1, seed=7,
        mixup_off_epoch=args.mixup_off_epoch,
    )
    callbacks = []
    if args.save_every:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=args.out / "ckpt", filename="{step}",
                                                             every_n_train_steps=args.save_every, save_top_k=-1))
    trainer = L.Trainer(accelerator="cpu", devices=args.devices, strategy=args.strategy, max_epochs=args.max_epochs,
                        callbacks=callbacks, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=bool(callbacks), deterministic=True)
    trainer.fit(Tiny(), datamodule=dm, ckpt_path=args.resume)
    if trainer.global_rank == 0:
        (args.out / "done.json").write_text(json.dumps({"world_size": trainer.world_size,
                                                        "global_step": trainer.global_step}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
