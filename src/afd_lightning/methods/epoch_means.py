"""Training metrics accumulated on the device and logged once per epoch, with the epoch values ``self.log`` gives."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch


class EpochMeans:
    """Batch-size-weighted epoch means of named scalars, kept as running tensor sums.

    ``self.log(key, value, on_step=False, on_epoch=True, batch_size=n)`` once per value and step
    costs a pass through Lightning's result collection each time (about 1 ms per call on the CPU,
    the largest part of Lightning's fixed cost per AFD batch, see docs/performance.md). Here one
    group of values costs one ``torch.stack`` and one in-place add per step, with no host-device
    synchronisation; the means are logged once per epoch.

    The epoch values are those Lightning computes: ``sum_b(value_b * n_b) / sum_b(n_b)`` in float32
    for means (:meth:`add_means`), and ``correct / seen`` for accuracies (:meth:`add_counts`, as
    torchmetrics' micro accuracy). Groups marked ``sync`` are summed over processes before dividing
    (torchmetrics syncs its states under DDP); the others stay per-process, as ``self.log`` without
    ``sync_dist`` logs rank 0's own mean.
    """

    def __init__(self) -> None:
        # keys -> [running sums (float32 tensor), samples seen, sync over processes]
        self._groups: dict[tuple[str, ...], list] = {}

    def __bool__(self) -> bool:
        return bool(self._groups)

    def add_means(self, values: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """Batch means (scalar tensors) of ``batch_size`` samples."""
        sums = torch.stack([v.detach().float() for v in values.values()]) * batch_size
        self._add(tuple(values), sums, batch_size, sync=False)

    def add_counts(self, counts: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """Counts (e.g. correct predictions) out of ``batch_size`` samples; their epoch value is sum / seen."""
        self._add(tuple(counts), torch.stack([c.detach().float() for c in counts.values()]), batch_size, sync=True)

    def _add(self, keys: tuple[str, ...], sums: torch.Tensor, n: int, sync: bool) -> None:
        group = self._groups.get(keys)
        if group is None:
            self._groups[keys] = [sums, n, sync]  # a fresh tensor: later adds may go in place
        else:
            group[0] += sums
            group[1] += n

    def compute(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The epoch means; ``reduce_sum`` sums a tensor over processes (for the ``sync`` groups)."""
        out: dict[str, torch.Tensor] = {}
        for keys, (sums, n, sync) in self._groups.items():
            seen = torch.tensor(float(n), device=sums.device)
            if sync and reduce_sum is not None:
                both = reduce_sum(torch.cat([sums, seen.view(1)]))
                sums, seen = both[:-1], both[-1]
            out.update(zip(keys, sums / seen))
        return out

    def reset(self) -> None:
        self._groups.clear()
