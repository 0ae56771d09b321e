"""Checkpoint directories: where a preemptible job saves what it needs to resume here.

Every job the agent starts, where checkpoints can work, gets
``$CNET_CHECKPOINT_DIR`` = ``<root>/<job id>``: a directory the agent makes
(0700, the job's own), the same one for every attempt of that job at this
center. When the control plane stops a job for preemption (heartbeat reply
``preempt``, scheduler/preemption.py) the directory is kept, and the job's next
attempt here — the control plane pins it to this center — finds its checkpoint
there. When a job ends here for good (reported, not stopped for preemption) its
directory is removed, so the disk holds only the checkpoints of jobs that may
come back; what is left by jobs that never come back (cancelled while waiting,
requeued elsewhere) goes after `KEEP_S`.

The root is the agent's ``checkpoint_dir`` (default ``<state dir>/checkpoints``).
Checkpoints work — and the agent registers ``preempt`` — where a job can reach
its directory (`supports_preempt`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from pathlib import Path

from computenet.errors import ValidationError
from computenet.protocol.datapaths import name_problem

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "CNET_CHECKPOINT_DIR"
# Checkpoints of jobs the agent no longer holds are removed this long after their last change.
KEEP_S = 7 * 24 * 3600.0
# Backends that hand the job to another control plane (a region): nothing of ours reaches it.
_ELSEWHERE = ("network", "uplink")
# Directories `remove` set aside to delete in the background (no job id starts with '.').
_ASIDE = ".removing-"
_MAX_NAME = 255  # bytes in one path component (NAME_MAX)


def supports_preempt(backend: object, explicit_dir: bool) -> bool:
    """Whether jobs of this center can reach their checkpoint directory (register `preempt`).

    The local backend runs jobs on the agent's host: always (when jobs run as uids of
    their own, its supervisor hands the directory to each attempt's uid and takes it
    back when the attempt ends, backends/_supervisor.py). Slurm, Ray and Kubernetes may run a job
    on another node: only when the operator pointed ``checkpoint_dir`` at a filesystem
    those nodes share (`explicit_dir`). A region's backend never.
    """
    kind = str(getattr(backend, "kind", ""))
    if kind in _ELSEWHERE:
        return False
    return kind == "local" or explicit_dir


def job_owner(backend: object) -> tuple[int, int] | None:
    """The uid and gid the backend runs every job as, when that is not the agent's user.

    Slurm's ``run_as`` (``--uid``/``--gid``), Kubernetes' ``run_as_user``/``run_as_group``;
    None: the agent's own user, or unknown, or the local backend (whose supervisor hands
    the directory to the job's uid itself).
    """
    if getattr(backend, "kind", "") == "local":
        return None
    run_as = getattr(backend, "run_as", None)
    ids: tuple[object, object] = (None, None)
    if isinstance(run_as, tuple) and len(run_as) == 2:
        ids = (run_as[0], run_as[1])
    else:
        ids = (getattr(backend, "run_as_user", None), getattr(backend, "run_as_group", None))
    uid, gid = ids
    if isinstance(uid, int) and isinstance(gid, int) and uid != os.geteuid():
        return uid, gid
    return None


def job_dir_problem(job_id: str) -> str | None:
    """Why `job_id` cannot name a checkpoint directory (unsafe as a path part), or None.

    `name_problem` refuses separators, control characters and a leading ``.`` (so
    ``.`` and ``..`` too); a file name is also at most `_MAX_NAME` bytes.
    """
    if len(job_id.encode("utf-8", "surrogatepass")) > _MAX_NAME:
        return f"is longer than {_MAX_NAME} bytes"
    return name_problem(job_id)


class Checkpoints:
    """The checkpoint directories under `root` (see module doc).

    `owner` (uid, gid): who jobs run as when that is not the agent's user (`job_owner`):
    each directory is handed to them.
    """

    def __init__(self, root: Path, owner: tuple[int, int] | None = None) -> None:
        self.root = root
        self.owner = owner

    def path(self, job_id: str) -> Path:
        """The directory of `job_id` (not created); a job id unsafe as a path is refused."""
        problem = job_dir_problem(job_id)
        if problem is not None:
            raise ValidationError(
                f"job id {job_id[:80]!r} {problem}: it cannot name a checkpoint directory",
                field="job_id",
            )
        return self.root / job_id

    def prepare(self, job_id: str) -> Path:
        """Create (or keep) the directory of `job_id`, 0700 and the job's; its path.

        An existing directory is kept with what is in it (an earlier attempt's
        checkpoint); anything else at that path (a symlink, a file) is refused.
        """
        path = self.path(job_id)
        if not self.root.exists():
            # As root, jobs run as other uids and pass through to their own directory.
            self.root.mkdir(parents=True)
            os.chmod(self.root, 0o711 if os.geteuid() == 0 else 0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise ValidationError(
                f"{path} is not a directory: it cannot be the job's checkpoint directory",
                field="checkpoint_dir",
                hint=f"remove {path}",
            )
        if self.owner is not None and (st.st_uid, st.st_gid) != self.owner:
            try:
                os.chown(path, *self.owner, follow_symlinks=False)
            except PermissionError:  # an agent that is not root: the operator's modes rule
                logger.warning(
                    "cannot hand %s to uid %d: jobs may not write their checkpoints",
                    path,
                    self.owner[0],
                )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(path, 0o700)
        return path

    def remove(self, job_id: str, background: bool = False) -> bool:
        """Remove the directory of `job_id` and all in it; True when one was removed.

        Only a real directory right under the root: a symlink at that path is not
        followed (nor is any inside: `shutil.rmtree` removes links, not their targets).
        `background`: the directory is renamed aside at once (a later `prepare` of the
        job makes a fresh one) and deleted by a thread, so a large checkpoint does not
        hold up the agent's loop; what a crash leaves aside goes with the next `sweep`.
        """
        try:
            path = self.path(job_id)
            st = os.lstat(path)
        except (ValidationError, OSError):
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        try:
            if background:
                aside = self.root / f"{_ASIDE}{secrets.token_hex(8)}"
                os.rename(path, aside)  # names with a leading '.' are no job's (job_dir_problem)
                threading.Thread(
                    target=shutil.rmtree, args=(aside, True), name="checkpoint-rm", daemon=True
                ).start()
            else:
                shutil.rmtree(path)
        except OSError as exc:
            logger.warning("could not remove the checkpoint directory %s: %s", path, exc)
            return False
        logger.debug("removed the checkpoint directory of %s", job_id)
        return True

    def sweep(self, held: set[str], now: float | None = None) -> list[str]:
        """Remove the directories of jobs not `held` unchanged for `KEEP_S`; their job ids."""
        now = time.time() if now is None else now
        gone: list[str] = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return gone
        for entry in entries:
            if entry.name in held:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if entry.name.startswith(_ASIDE):  # set aside by `remove`, left by a crash
                shutil.rmtree(entry.path, ignore_errors=True)
            elif now - st.st_mtime > KEEP_S and self.remove(entry.name):
                gone.append(entry.name)
        return gone
