"""The device pipeline one batch ahead of the model.

Run in series, the device pipeline (:class:`~mmet.device_pipeline.
DeviceAugmentPreprocessor`: decode, crop, RandAugment, Fourier crop) and
the model step add up: end to end runs at ``1 / (1/model + 1/pipeline)``
(``docs/evidence.md``, the GPU section). :class:`DevicePrefetcher` iterates
the train loader with the pipeline of the *next* batch queued before the
model step of the current one, on a side CUDA stream, so that the two
overlap and end to end approaches the smaller of the two rates.

On a CPU it prepares the next batch in the same way (one batch ahead, no
stream), which gives the same batches as the preprocessor would, so the
code path is the same everywhere.
"""
from typing import Any, Callable, Iterator

import torch


def _record(data: Any, stream: torch.cuda.Stream) -> None:
    """Tell the caching allocator that ``data``'s CUDA tensors, made on a
    side stream, are used on ``stream`` (so their memory is not reused
    early)."""
    if isinstance(data, torch.Tensor):
        if data.is_cuda:
            data.record_stream(stream)
    elif isinstance(data, dict):
        for v in data.values():
            _record(v, stream)
    elif isinstance(data, (list, tuple)):
        for v in data:
            _record(v, stream)


class DevicePrefetcher:
    """A train loader whose batches are prepared one ahead.

    It stands in for the loader during an epoch: ``len``, attribute reads
    and writes (``sampler``, ``batch_sampler``, a worker restart) go to the
    loader.

    Args:
        loader (DataLoader): The train loader.
        prepare (Callable[[dict, int], dict]): Prepares the raw batch of
            index ``i`` of the epoch (e.g. runs the device pipeline on it).
        device (torch.device): Where ``prepare`` computes: a side stream of
            a CUDA device; none elsewhere.
    """

    def __init__(self, loader, prepare: Callable[[Any, int], Any],
                 device: torch.device):
        object.__setattr__(self, 'loader', loader)
        object.__setattr__(self, 'prepare', prepare)
        stream = torch.cuda.Stream(device) if device.type == 'cuda' else None
        object.__setattr__(self, 'stream', stream)

    def _start(self, batch: Any, index: int):
        """Queue the preparation of ``batch``; returns it and its event."""
        if self.stream is None:
            return self.prepare(batch, index), None
        with torch.cuda.stream(self.stream):
            data = self.prepare(batch, index)
            event = torch.cuda.Event()
            event.record(self.stream)
        return data, event

    def _finish(self, started) -> Any:
        data, event = started
        if event is not None:
            current = torch.cuda.current_stream(self.stream.device)
            current.wait_event(event)
            _record(data, current)
        return data

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        try:
            ahead = self._start(next(batches), 0)
        except StopIteration:
            return
        for index, batch in enumerate(batches, 1):
            current, ahead = ahead, self._start(batch, index)
            yield self._finish(current)
        yield self._finish(ahead)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.loader, name, value)
