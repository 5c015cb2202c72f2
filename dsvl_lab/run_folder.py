"""Run folders: one owner at a time, a resume that matches what ran, and what Ctrl-C leaves.

A *run folder* is where a long command writes: a pipeline's ``--out``, a stage folder, a
``dsvl-lab fit`` root, a foundation ``pretrain --out``, a sweep's study root and its run folders.
Sweeps run many processes over shared folders for hours, so three rules keep work from being lost:

1. **One owner.** :func:`owned` takes an exclusive lock on ``<folder>/.lock`` (``flock``: the kernel
   drops it when the process dies, however it dies) and writes who holds it (pid, host, start time,
   command). A second process is refused at once with that holder in the message. A lock file
   left non-empty by a dead process no longer blocks anyone: the next owner takes it over and says
   so. The file is emptied, never deleted, on release (deleting it would let two processes lock two
   different files of the same name).
2. **A resume continues the same run.** :func:`check_resume` compares what a checkpoint was trained
   with (the preset, the stage spec, the start) with what is asked now, and refuses with the keys
   that differ. More steps cannot simply continue either: the learning-rate schedule and the data
   plan of a stage are functions of its total steps, so the first 40 steps of a 60-step run are not
   the 40 steps that ran.
3. **A damaged checkpoint is found before training.** :func:`check_checkpoint` tests the zip
   container's checksums (a ``torch.save`` file is a zip) and reads the step, in well under a second,
   and the message names the file to delete. Checkpoints themselves are written atomically by
   :class:`dsvl_lab.checkpoint_io.AtomicCheckpointIO`.

In distributed runs only global rank 0 takes the lock (the other ranks are its own processes).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import RunFolderError

LOCK = ".lock"
_HELD: dict[Path, list] = {}  # folder -> [fd, depth]: a process may re-enter a folder it owns


# ============================================================================ one owner
def is_global_rank_zero() -> bool:
    """False in the extra processes of a distributed run (torchrun / Lightning set these)."""
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
    return rank == "0" and os.environ.get("NODE_RANK", "0") == "0"


def holder_record(command: str | None) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()),
            "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def describe_holder(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
            f" ({holder.get('command', '?')})")


def read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:  # a record cut short by a crash: somebody held it, we do not know who
        return {"pid": "?", "host": "?", "started": "?", "command": "unreadable lock record"}


@contextmanager
def owned(folder: str | os.PathLike, command: str | None = None, say=print) -> Iterator[Path]:
    """Hold ``folder`` for the duration of the block; refuse at once if another process holds it.

        >>> with owned("runs/demo"):        # doctest: +SKIP
        ...     train()                     # nobody else can write runs/demo meanwhile
    """
    folder = Path(folder).resolve()
    if folder in _HELD:  # the pipeline owns runs/demo and then runs a stage in it: same owner
        _HELD[folder][1] += 1
        try:
            yield folder
        finally:
            _HELD[folder][1] -= 1
        return
    if not is_global_rank_zero():
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = acquire(folder, command, say)
    _HELD[folder] = [fd, 1]
    try:
        yield folder
    finally:
        del _HELD[folder]
        release(fd)


def acquire(folder: Path, command: str | None, say) -> int:
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(fd) or {}
        os.close(fd)
        raise RunFolderError(
            f"is being written by another process: {describe_holder(holder)}. Wait for it to finish, "
            f"stop it (kill {holder.get('pid', 'PID')}), or write to another folder", source=folder) from None
    left = read_holder(fd)
    if left is not None:  # non-empty, yet nobody holds the lock: its owner died without releasing it
        say(f"{folder}: taking over the lock left by {describe_holder(left)}, which is no longer running")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder_record(command)).encode())
    os.fsync(fd)
    return fd


def release(fd: int) -> None:
    os.ftruncate(fd, 0)  # an empty lock file means "released cleanly"
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holder_of(folder: str | os.PathLike) -> dict[str, Any] | None:
    """Who holds ``folder`` now (None if nobody): for status lines and tests."""
    path = Path(folder) / LOCK
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(fd)
        os.close(fd)
        return holder or {}
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None


# ============================================================================ checkpoints: intact, and the same run
def check_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The step and hyper-parameters of a ``last.ckpt``; a damaged file is refused with the fix."""
    import zipfile

    import torch

    path = Path(path)
    fix = f"delete it to restart this stage from its beginning (rm {path})"
    try:
        with zipfile.ZipFile(path) as archive:  # torch.save writes a zip: its CRCs find a cut or flipped byte
            bad = archive.testzip()
        if bad is not None:
            raise RunFolderError(f"the checkpoint is damaged (member {bad} fails its checksum); {fix}", source=path)
        checkpoint = torch.load(path, map_location="cpu", mmap=True)  # Lightning's own (weights-only) loader
    except RunFolderError:
        raise
    except Exception as error:  # zipfile.BadZipFile, EOFError, pickle refusals, RuntimeError from torch
        raise RunFolderError(f"the checkpoint cannot be read ({type(error).__name__}: {error}); {fix}",
                             source=path) from None
    return {"step": int(checkpoint.get("global_step", 0)), "hyper_parameters": checkpoint.get("hyper_parameters") or {}}


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (lists compared whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [key for k in keys for key in differing_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def check_resume(checkpoint: str | os.PathLike, asked: dict[str, Any], fresh_hint: str,
                 normalise: dict[str, Callable[[Any], Any]] | None = None) -> int:
    """Refuse to resume ``checkpoint`` with hyper-parameters other than those it was trained with.

    ``asked`` is what the run would save as hyper-parameters now (preset, stage spec, start);
    ``normalise`` maps a top-level key to a function applied to the saved value first (e.g. a
    relative start path made absolute). Returns the checkpoint's step; ``fresh_hint`` says how
    to start afresh instead.
    """
    found = check_checkpoint(checkpoint)
    trained, asked = plain(found["hyper_parameters"]), plain(asked)
    for key, function in (normalise or {}).items():
        if key in trained:
            trained[key] = function(trained[key])
    differ = differing_keys(trained, asked) if trained else []
    if differ:
        shown = ", ".join(f"{key} ({lookup(trained, key)!r} -> {lookup(asked, key)!r})" for key in differ[:6])
        more = f" and {len(differ) - 6} more" if len(differ) > 6 else ""
        why = (" (a stage's schedule and data plan depend on its total steps, so a longer run is a "
               "different run, not a continuation)" if any(key.endswith(".steps") for key in differ) else "")
        raise RunFolderError(
            f"holds a checkpoint at step {found['step']} trained with a different recipe: {shown}{more}{why}. "
            f"Resume with the recipe it was trained with, or {fresh_hint}", source=Path(checkpoint).parent.parent)
    return found["step"]


def plain(tree: Any) -> Any:
    """Tuples -> lists, mappings -> dicts, so a spec compares equal to its saved copy."""
    if hasattr(tree, "items"):
        return {key: plain(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [plain(value) for value in tree]
    return tree


def lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


# ============================================================================ what a stop leaves
def kept_summary(folder: str | os.PathLike) -> str:
    """One line for Ctrl-C: the finished hand-offs and last checkpoints under ``folder``."""
    folder = Path(folder)
    finished = sorted(p.parent.parent.name if p.parent.name == "model" else p.parent.name
                      for p in folder.glob("**/model/stage.json"))
    partial = []
    for checkpoint in sorted(folder.glob("**/checkpoints/last.ckpt")):
        if (checkpoint.parent.parent / "model" / "stage.json").is_file():
            continue
        try:
            partial.append(f"{checkpoint.parent.parent.name} at step {check_checkpoint(checkpoint)['step']}")
        except RunFolderError:
            partial.append(f"{checkpoint.parent.parent.name} (damaged checkpoint)")
    parts = ([f"finished: {', '.join(finished)}"] if finished else []) + \
            ([f"checkpoints: {', '.join(partial)}"] if partial else [])
    return "; ".join(parts) if parts else "nothing finished yet"
