#!/usr/bin/env python3
"""W&B sidecar for defectkit: feeds our metric lines to the official Weights & Biases SDK.

defectkit (src/logging/wandb.rs) starts this script as a child process and writes one JSON
object per line on its stdin:

    {"type": "config", "config": {...}}          -> run.config.update(...)
    {"type": "log", "step": N, "data": {...}}    -> run.log(data, step=N)   (null -> NaN)
    {"type": "image", "key": K, "path": P}       -> run.log({K: wandb.Image(P)}, step=<last>)
    {"type": "summary", "data": {...}}           -> run.summary.update(...)
    {"type": "finish"}                           -> run.finish(); exit 0

Our answers go to stdout, one JSON object per line (everything else the SDK prints is
redirected to stderr, so stdout stays a clean protocol channel):

    {"type": "ready", "mode": ..., "run_id": ..., "run_dir": ..., "sync_dir": ..., "url": ...}
    {"type": "warning", "message": ...}          (a message could not be logged; we go on)
    {"type": "error", "message": ...}            (init failed; exit 1)
    {"type": "finished", "mode": ..., "run_id": ..., "run_dir": ..., "sync_dir": ...,
     "sync_file": ..., "url": ..., "aborted": bool}

Mode: --mode, but `online` only when WANDB_API_KEY is set; otherwise forced to `offline`
with a note on stderr (sync later with `wandb sync <sync_dir>`). End of input without a
`finish` message (defectkit crashed or was interrupted) finishes the run with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import traceback

# Keep the protocol channel private: a duplicate of the original stdout (not inherited by
# children such as wandb-core), and fd 1 pointed at stderr for everything else.
_PROTO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr


def send(obj: dict) -> None:
    """Write one protocol line to defectkit."""
    _PROTO.write(json.dumps(obj, allow_nan=False, default=str) + "\n")
    _PROTO.flush()


def note(msg: str) -> None:
    """A human-readable note on stderr (defectkit forwards it)."""
    print(f"note: {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", required=True)
    p.add_argument("--mode", default="offline", help="online | offline | disabled")
    p.add_argument("--dir", required=True, help="run dir; W&B writes <dir>/wandb/")
    p.add_argument("--name", default=None)
    p.add_argument("--entity", default=None)
    p.add_argument("--group", default=None)
    p.add_argument(
        "--tags", action="append", default=[], help="one tag (repeat; use --tags=VALUE)"
    )
    p.add_argument(
        "--stats-pid",
        type=int,
        default=None,
        help="process whose tree W&B's system metrics follow (the trainer)",
    )
    return p.parse_args(argv)


def effective_mode(requested: str) -> str:
    mode = (requested or "offline").strip().lower()
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        note(
            "WANDB_API_KEY is not set: logging offline instead "
            "(sync later with `wandb sync <run dir>/wandb/offline-run-*`)"
        )
        return "offline"
    return mode


def nan_for_null(data: dict) -> dict:
    """JSON has no NaN: defectkit sends non-finite values as null."""
    return {k: (math.nan if v is None else v) for k, v in data.items()}


def run_info(run, mode: str) -> dict:
    info = {"run_id": None, "run_dir": None, "sync_dir": None, "sync_file": None, "url": None}
    getters = [
        ("run_id", lambda: run.id),
        ("run_dir", lambda: run.dir),
        ("sync_dir", lambda: run.settings.sync_dir),
        ("sync_file", lambda: run.settings.sync_file),
    ]
    if mode == "online":  # offline runs have no URL (asking prints a W&B warning)
        getters.append(("url", lambda: run.url))
    for key, get in getters:
        try:
            value = get()
            info[key] = None if value is None else str(value)
        except Exception:  # an attribute renamed in some SDK version: leave it out
            pass
    return info


_PILLOW_NOTED = False


def log_image(wandb, run, msg: dict, last_step) -> None:
    """Log a PNG/JPEG as a W&B image panel; without Pillow, save it as a run file instead."""
    global _PILLOW_NOTED
    key, path = msg["key"], msg["path"]
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    try:
        import PIL.Image  # noqa: F401 -- wandb.Image needs Pillow
    except ImportError:
        step = "none" if last_step is None else str(last_step)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        dest_dir = os.path.join(run.dir, "media", "defectkit", safe)
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, f"{step}{os.path.splitext(path)[1] or '.png'}")
        shutil.copyfile(path, dest)
        run.save(dest, base_path=run.dir, policy="now")
        if not _PILLOW_NOTED:
            _PILLOW_NOTED = True
            send(
                {
                    "type": "warning",
                    "message": "Pillow is not installed next to wandb: images are saved "
                    "as run files (media/defectkit/...), not image panels "
                    "(pip install pillow)",
                }
            )
        return
    image = wandb.Image(path, caption=msg.get("caption"))
    if last_step is not None:
        run.log({key: image}, step=last_step)
    else:
        run.log({key: image})


def make_settings(wandb, stats_pid):
    """No console capture (the trainer's console is not ours); system metrics follow the
    trainer's process tree when the SDK knows `x_stats_pid`."""
    if stats_pid:
        try:
            return wandb.Settings(console="off", x_stats_pid=stats_pid)
        except Exception:  # noqa: BLE001 -- an SDK without that setting
            pass
    return wandb.Settings(console="off")


def main(argv: list[str]) -> int:
    # Ctrl-C in the terminal is for the trainer: we finish when our stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = parse_args(argv)
    mode = effective_mode(args.mode)
    try:
        import wandb
    except Exception as e:  # noqa: BLE001 -- any import failure means "no W&B here"
        send({"type": "error", "message": f"cannot import wandb: {e!r}"})
        return 1

    os.makedirs(args.dir, exist_ok=True)
    try:
        run = wandb.init(
            project=args.project,
            entity=args.entity or None,
            name=args.name or None,
            group=args.group or None,
            tags=args.tags or None,
            dir=args.dir,
            mode=mode,
            save_code=False,
            settings=make_settings(wandb, args.stats_pid),
        )
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        send({"type": "error", "message": f"wandb.init failed: {e!r}"})
        return 1
    ready = {"type": "ready", "mode": mode, "wandb_version": wandb.__version__}
    send({**ready, **run_info(run, mode)})

    last_step = None
    finished_cleanly = False
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        try:
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "config":
                run.config.update(msg.get("config") or {}, allow_val_change=True)
            elif kind == "log":
                step = msg.get("step")
                data = nan_for_null(msg.get("data") or {})
                if step is not None and last_step is not None and step < last_step:
                    send(
                        {
                            "type": "warning",
                            "message": f"step {step} < last logged step {last_step}: "
                            "W&B steps must not decrease; logged without a step",
                        }
                    )
                    run.log(data)
                else:
                    run.log(data, step=step)
                    if step is not None:
                        last_step = step
            elif kind == "image":
                log_image(wandb, run, msg, last_step)
            elif kind == "summary":
                run.summary.update(nan_for_null(msg.get("data") or {}))
            elif kind == "finish":
                finished_cleanly = True
                break
            else:
                send({"type": "warning", "message": f"unknown message type {kind!r}"})
        except Exception as e:  # noqa: BLE001 -- one bad message must not end the run
            send({"type": "warning", "message": f"could not log {raw[:200]!r}: {e!r}"})

    info = run_info(run, mode)
    try:
        run.finish(exit_code=0 if finished_cleanly else 1)
    except Exception as e:  # noqa: BLE001
        send({"type": "warning", "message": f"run.finish failed: {e!r}"})
    send({"type": "finished", "mode": mode, "aborted": not finished_cleanly, **info})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
