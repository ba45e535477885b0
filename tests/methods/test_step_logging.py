"""The train/ metrics are summed on the device and logged once per epoch (methods/epoch_means.py).

They must reach the loggers and ``callback_metrics`` with the epoch values the previous per-step
``self.log`` + torchmetrics logging gave, at the moment callbacks (DiscriminatorHealth) read them.
"""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from afd_lightning.methods.epoch_means import EpochMeans
from afd_lightning.train import bare_trainer, build

from helpers.compose import compose_train

N, BATCH = 70, 32  # batches of 32, 32 and 6: batch-size weighting matters
METHODS = ["nt", "at", "trades", "match", "afd"]


class PerStepLogging:
    """The logging before epoch_means.py: one self.log per value and step, torchmetrics for accuracy."""

    def log_accuracy(self, stage, kind, logits, y):
        if not hasattr(self, "old_metrics"):
            self.old_metrics = nn.ModuleDict(
                {k: MulticlassAccuracy(num_classes=10, average="micro") for k in ("acc_clean", "acc_adv")}
            )
        metric = self.old_metrics[kind]
        metric(logits.detach(), y)
        self.log(f"{stage}/{kind}", metric, on_step=False, on_epoch=True, batch_size=y.shape[0])

    def log_scalars(self, stage, values, batch_size):
        for key, value in values.items():
            self.log(f"{stage}/{key}", value.detach(), on_step=False, on_epoch=True, batch_size=batch_size)


class EpochReader(pl.Callback):
    """Reads train/ metrics in on_train_epoch_end, where DiscriminatorHealth reads them."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand((N, 1, 8, 8), generator=g), torch.randint(0, 10, (N,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def fit(tmp_path, method_name: str, old: bool = False, record: list | None = None, **trainer_kwargs):
    cfg = compose_train([f"method={method_name}", "dataset.meta.train_attack_steps=1"], tmp_path / "cfg")
    _, method, _ = build(cfg)
    if old:
        method.__class__ = type(f"Old{type(method).__name__}", (PerStepLogging, type(method)), {})
    if record is not None:  # every value the step hands to the logging, with its batch size
        log_scalars, log_accuracy = method.log_scalars, method.log_accuracy

        def scalars(stage, values, n):
            record.append((method.current_epoch, {k: float(v) for k, v in values.items()}, n))
            log_scalars(stage, values, n)

        def accuracy(stage, kind, logits, y):
            record.append((method.current_epoch, {kind: float((logits.argmax(1) == y).float().mean())}, len(y)))
            log_accuracy(stage, kind, logits, y)

        method.log_scalars, method.log_accuracy = scalars, accuracy
    reader = EpochReader()
    trainer = bare_trainer(
        max_epochs=2,
        logger=CSVLogger(tmp_path / ("old" if old else "new"), name="", version=""),
        callbacks=[reader],
        **trainer_kwargs,
    )
    pl.seed_everything(0)
    trainer.fit(method, train_dataloaders=loader())
    return reader.epochs, csv_epochs(trainer.logger.log_dir)


def csv_epochs(log_dir) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    with open(f"{log_dir}/metrics.csv") as f:
        for row in csv.DictReader(f):
            values = {k: float(v) for k, v in row.items() if k.startswith("train/") and v != ""}
            out.setdefault(int(row["epoch"]), {}).update(values)
    return out


@pytest.mark.parametrize("method_name", METHODS)
@pytest.mark.slow
def test_epoch_values_match_per_step_logging_and_direct_means(tmp_path, method_name):
    record: list = []
    new_read, new_csv = fit(tmp_path, method_name, record=record)
    old_read, old_csv = fit(tmp_path, method_name, old=True)

    # direct computation: batch-size-weighted means of what each step computed
    want: list[dict[str, float]] = [{}, {}]
    for epoch in (0, 1):
        rows = [(values, n) for e, values, n in record if e == epoch]
        for key in {k for values, _ in rows for k in values}:
            pairs = [(values[key], n) for values, n in rows if key in values]
            assert [n for _, n in pairs] == [32, 32, 6]
            want[epoch][f"train/{key}"] = sum(v * n for v, n in pairs) / sum(n for _, n in pairs)

    assert len(new_read) == len(old_read) == 2
    for epoch in (0, 1):
        assert set(new_read[epoch]) == set(old_read[epoch]) == set(want[epoch]) == set(new_csv[epoch])
        assert set(old_csv[epoch]) == set(new_csv[epoch])
        for key, value in want[epoch].items():
            # the value callbacks see at epoch end is this epoch's, as with per-step logging
            assert new_read[epoch][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (epoch, key)
            assert new_read[epoch][key] == pytest.approx(old_read[epoch][key], rel=1e-5, abs=1e-6), (epoch, key)
            assert new_csv[epoch][key] == pytest.approx(old_csv[epoch][key], rel=1e-5, abs=1e-6), (epoch, key)
    accuracies = [k for k in want[0] if "/acc_" in k]
    assert accuracies, "no accuracy was logged"


@pytest.mark.slow
def test_epoch_cut_short_by_max_steps_still_logs(tmp_path):
    record: list = []
    # AFD advances global_step three times a batch: max_steps=6 stops after two of the three batches
    _, logged = fit(tmp_path, "afd", record=record, max_steps=6)
    assert len(record) > 0 and {n for _, _, n in record} == {32}
    losses = [values["loss_cls"] for _, values, _ in record if "loss_cls" in values]
    assert len(losses) == 2
    assert logged[0]["train/loss_cls"] == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert {"train/acc_clean", "train/acc_adv", "train/loss_enc"} <= set(logged[0])


def test_counts_are_summed_over_processes_and_means_stay_local():
    means = EpochMeans()
    means.add_counts({"acc": torch.tensor(3)}, 4)
    means.add_counts({"acc": torch.tensor(1)}, 2)
    means.add_means({"loss": torch.tensor(2.0)}, 4)
    means.add_means({"loss": torch.tensor(5.0)}, 2)
    assert means.compute()["acc"].item() == pytest.approx(4 / 6)
    assert means.compute()["loss"].item() == pytest.approx((2 * 4 + 5 * 2) / 6)

    # a second process that counted 0 of 6 correct: global accuracy 4 / 12; the loss is this process's own
    other = torch.tensor([0.0, 6.0])
    both = means.compute(reduce_sum=lambda t: t + other)
    assert both["acc"].item() == pytest.approx(4 / 12)
    assert both["loss"].item() == pytest.approx(3.0)
    means.reset()
    assert not means and means.compute() == {}
