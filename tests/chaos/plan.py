"""The chaos campaign's plan: which runs it starts, of which shapes, when, and
what each must end as. A run that another planned run starts (an invoked
child, a distributed map's items) is planned too (`parent` set): the driver
does not start it, but every check applies to it as to the others.

The workflows (tests/chaos/workflows.py) build their large values with
`large_value`, so the plan knows the output they must end with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.model import child_run_id

if TYPE_CHECKING:
    from .campaign import Config


@dataclass
class Planned:
    id: str
    shape: str
    name: str
    input: dict[str, Any]
    at: float  # seconds after the campaign starts
    status: str  # the terminal status it must reach
    output: Any = None  # for completed
    error_type: str | None = None  # for failed
    signal_at: float | None = None
    cancel_at: float | None = None
    complete_at: list[float] = field(default_factory=list)  # callback completions (duplicates)
    accepted: bool = False  # the API answered 202 to one of them
    parent: str | None = None  # started by this planned run, not by the driver


SHAPES = {
    "steps": 4,
    "sleepy": 2,
    "signal": 2,
    "signal_timeout": 1,
    "callback": 2,
    "callback_timeout": 2,
    "retry": 2,
    "exhaust": 1,
    "crash": 1,
    "cancel": 2,
    "gather": 2,
    "batch": 1,
    "invoke": 1,
    "distributed": 1,
    "large": 3,
    "generations": 1,
    "s3map": 1,
    "once": 1,
}
# Sizes (bytes of JSON text) of the large shape's values: above the campaign's
# offload threshold (Config.offload_bytes), so each is an object in S3.
LARGE_SIZES = (1500, 3000, 6000)


def large_value(tag: int, size: int) -> dict[str, Any]:
    """A JSON value of about `size` bytes, the same for the same (tag, size): runs
    that draw the same pair share one object (content addressing)."""
    unit = f"{tag}:abcdefghijklmnopqrstuvwxyz;"
    return {"tag": tag, "pad": (unit * (size // len(unit) + 1))[:size]}


def child(parent: Planned, op_id: str, n: int) -> Planned:
    """The child run `chaos.steps` of `n` steps that `parent` starts at `op_id`."""
    rid = f"{parent.id}-{op_id}"
    p = Planned(rid, "child", "chaos.steps", {"n": n}, parent.at, "completed", parent=parent.id)
    p.output = list(range(n))
    return p


def make_plan(cfg: Config, rng: random.Random) -> list[Planned]:
    shapes = [s for s, w in SHAPES.items() for _ in range(w)]
    out = []
    for i in range(cfg.runs):
        shape = shapes[i % len(shapes)] if i < len(shapes) else rng.choice(shapes)
        at = rng.uniform(0, cfg.start_seconds)
        rid = f"chaos-{cfg.seed}-{i:04d}-{shape.replace('_', '-')}"
        p: Planned
        if shape == "steps":
            n = rng.randint(2, 6)
            pause = rng.choice([0.0, 0.0, rng.uniform(0.3, 2.0)])
            p = Planned(rid, shape, "chaos.steps", {"n": n, "pause": pause}, at, "completed")
            p.output = list(range(n))
        elif shape == "sleepy":
            p = Planned(
                rid, shape, "chaos.sleepy", {"seconds": rng.uniform(0.3, 4)}, at, "completed"
            )
            p.output = "awake"
        elif shape == "signal":
            p = Planned(rid, shape, "chaos.signal", {"timeout": None}, at, "completed")
            p.output = {"v": i}
            p.signal_at = at + rng.uniform(0.0, 6.0)
        elif shape == "signal_timeout":
            t = rng.uniform(0.5, 3.0)
            p = Planned(rid, shape, "chaos.signal", {"timeout": t}, at, "completed")
            p.output = "timed out"
        elif shape == "callback":
            # Completed twice (a duplicate, as an outside system retrying), around the park.
            p = Planned(rid, shape, "chaos.callback", {"timeout": None}, at, "completed")
            p.output = {"v": i}
            first = at + rng.uniform(0.0, 6.0)
            p.complete_at = [first, first + rng.uniform(0.0, 0.5)]
        elif shape == "callback_timeout":
            # Completed around its timeout: it ends either way, but a 202 must win.
            t = rng.uniform(0.5, 3.0)
            p = Planned(rid, shape, "chaos.callback", {"timeout": t}, at, "completed")
            p.output = {"v": i}
            p.complete_at = [at + t + rng.uniform(-1.0, 1.0)]
        elif shape == "retry":
            p = Planned(
                rid, shape, "chaos.retry", {"fail_times": rng.randint(1, 2)}, at, "completed"
            )
            p.output = "ok"
        elif shape == "once":
            pause = rng.uniform(0.2, 1.5)
            p = Planned(rid, shape, "chaos.once", {"pause": pause}, at, "completed")
            p.output = "charge done"
        elif shape == "exhaust":
            p = Planned(rid, shape, "chaos.exhaust", {}, at, "failed", error_type="StepFailedError")
        elif shape == "crash":
            p = Planned(rid, shape, "chaos.crash", {}, at, "failed", error_type="RuntimeError")
        elif shape == "gather":
            p = Planned(
                rid,
                shape,
                "chaos.gather",
                {"pause": rng.uniform(0.0, 1.0), "sleep": rng.uniform(0.3, 2.0)},
                at,
                "completed",
            )
            p.output = ["a", "b"]
        elif shape == "batch":
            p = Planned(
                rid, shape, "chaos.batch", {"sleep": rng.uniform(0.3, 2.0)}, at, "completed"
            )
            p.output = [0, 1, 2]
        elif shape == "invoke":
            p = Planned(rid, shape, "chaos.invoke", {}, at, "completed")
            p.output = [0, 1]
            out.append(child(p, "0", 2))
        elif shape == "distributed":
            # Four children polled by the parent, two at a time; then a replay
            # (after the sleep) that rebuilds the batch from its record.
            sizes = [rng.randint(1, 3) for _ in range(4)]
            p = Planned(
                rid,
                shape,
                "chaos.distributed",
                {"sizes": sizes, "sleep": rng.uniform(0.3, 2.0)},
                at,
                "completed",
            )
            p.output = [list(range(n)) for n in sizes]
            out += [child(p, f"0.{k}", n) for k, n in enumerate(sizes)]
        elif shape == "large":
            # Three step values above the offload threshold, the last one the first
            # again (one object); the sleep between them makes the last step's claim
            # read the first two back from S3; the output (all three) is offloaded
            # too. Every other one records its steps in batches (one item).
            values = [(rng.randrange(2), rng.choice(LARGE_SIZES)) for _ in range(2)]
            batched = sum(q.shape == "large" for q in out) % 2 == 1
            p = Planned(
                rid,
                shape,
                "chaos.large_batched" if batched else "chaos.large",
                {"values": values, "sleep": rng.uniform(0.3, 2.0)},
                at,
                "completed",
            )
            p.output = [large_value(*values[k]) for k in (0, 1, 0)]
        elif shape == "s3map":
            # A map over S3 items in batches: the items object written by a step,
            # each batch a child (chaos.s3batch) that sums it, the results read
            # back lazily after a replay.
            items, batch = rng.randint(4, 9), rng.randint(2, 3)
            inp = {"items": items, "batch": batch, "sleep": rng.uniform(0.3, 1.5)}
            p = Planned(rid, shape, "chaos.s3map", inp, at, "completed")
            sums = [sum(range(at_, min(at_ + batch, items))) for at_ in range(0, items, batch)]
            p.output = sums
            for k, total in enumerate(sums):
                c = Planned(
                    child_run_id(rid, f"1.{k}"), "s3batch", "chaos.s3batch", {}, at, "completed"
                )
                c.parent, c.output = rid, total
                out.append(c)
        elif shape == "generations":
            # Continue-as-new: 2 to 4 generations of a step and a sleep each.
            n = rng.randint(2, 4)
            inp = {"gen": 0, "of": n, "acc": [], "sleep": rng.uniform(0.3, 1.5)}
            p = Planned(rid, shape, "chaos.generations", inp, at, "completed")
            p.output = list(range(n))
        else:
            p = Planned(
                rid, shape, "chaos.cancel", {"pause": rng.uniform(0.5, 2.0)}, at, "cancelled"
            )
            p.cancel_at = at + rng.uniform(0.0, 5.0)
        out.append(p)
    return out
