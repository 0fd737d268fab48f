"""Where a compiled step spends its time: TensorFlow's profiler around some steps, host op time by op type.

Shared by ``inversion_speed.py --profile`` and ``training_speed.py --profile``.
"""
from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Callable


def op_times(run: Callable[[], None], steps: int, *, tf_op_lines_only: bool = False) -> tuple[list[dict], float]:
    """Profile ``run()`` (which takes ``steps`` steps): rows {op, ms_per_step, share} by op type, largest first, and
    the total op time per step in ms (summed over threads). ``tf_op_lines_only``: count only the trace lines of
    TensorFlow ops (the engine's graph; the trainings' steps have no such line names)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        run()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    by_type, total = defaultdict(float), 0.0
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if tf_op_lines_only and "TF Op" not in line.name and "tf_Compute" not in line.name \
                    and not line.name.startswith("tf_"):
                continue
            for ev in line.events:
                name = plane.event_metadata[ev.metadata_id].name
                if ":" not in name or name.endswith(":Process"):   # ops are "scope/name:Type"; Process: the whole
                    continue                                           # function, which nests the ops
                by_type[name.rsplit(":", 1)[1]] += ev.duration_ps / 1e9
                total += ev.duration_ps / 1e9
    rows = sorted(({"op": k, "ms_per_step": v / steps, "share": v / total} for k, v in by_type.items()),
                  key=lambda r: -r["ms_per_step"])
    return rows, total / steps
