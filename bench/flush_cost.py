"""What one durable message costs on a filesystem, by intake design (issue 15, item 1).

Threads stand for SMTP sessions; each writes messages as fast as its durable point
allows and the figure is messages made durable per second. Designs:

* ``maildir``: today's path: tmp/ file written and fsync'd, linked into new/, new/
  fsync'd (the directory fsync shared by concurrent callers, as store/durable.py does).
* ``syncfs``: the file written and linked without a flush, then one syncfs(2) of the
  filesystem shared by every thread waiting (group commit without a journal).
* ``batch``: the file written and linked, then one committer fsyncs every pending
  file and each touched directory once for every thread waiting.
* ``journal``: the message appended to one intake journal (its blocks written once
  beforehand, so an append changes no metadata) and one fdatasync shared by every
  thread waiting; the Maildir copy is not made (that is the work moved off the
  client's clock).
* ``journal+copy``: the journal, plus each thread writing its Maildir copy without a
  flush after its durable point and a syncfs every 200 ms: the total work, to see
  what the copies cost the intake when they share the disk.

    flock /tmp/bench.lock .venv/bin/python bench/flush_cost.py --dir /mnt/x --threads 1 10
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import threading
import time
from collections.abc import Callable

from daisymail.store.durable import fsync_dir

_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(fd: int) -> None:
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Group:
    """Callers that finished their writes share the next flush (one running at a time)."""

    def __init__(self, flush: Callable[[list[object]], None]) -> None:
        self.flush = flush
        self.cond = threading.Condition()
        self.pending: list[object] = []
        self.running = False
        self.epoch = 0  # flushes finished

    def wait(self, item: object) -> None:
        with self.cond:
            self.pending.append(item)
            target = self.epoch + (2 if self.running else 1)
            while self.epoch < target:
                if not self.running:
                    self.running = True
                    batch, self.pending = self.pending, []
                    self.cond.release()
                    try:
                        self.flush(batch)
                    finally:
                        self.cond.acquire()
                        self.running = False
                        self.epoch += 1
                        self.cond.notify_all()
                else:
                    self.cond.wait()


def run(design: str, root: str, threads: int, size: int, seconds: float) -> float:
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, "box", sub))
    os.sync()
    body = os.urandom(size // 2).hex().encode()
    box = os.path.join(root, "box")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    counter = iter(range(10**9))
    lock = threading.Lock()
    done = [0] * threads

    def write_copy(n: int) -> tuple[int, str]:
        name = f"{n}.bench,S={len(body)}"
        tmp = os.path.join(box, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, body)
        return fd, tmp

    def publish(tmp: str) -> None:
        os.link(tmp, os.path.join(box, "new", os.path.basename(tmp)))
        os.unlink(tmp)

    dir_group = Group(lambda _: fsync_dir(os.path.join(box, "new")))
    fs_group = Group(lambda _: syncfs(root_fd))

    def batch_flush(items: list[object]) -> None:
        for fd in items:
            assert isinstance(fd, int)
            os.fdatasync(fd)
        fsync_dir(os.path.join(box, "new"))

    batch_group = Group(batch_flush)
    journal_path = os.path.join(root, "journal")
    jfd = os.open(journal_path, os.O_RDWR | os.O_CREAT, 0o600)
    if design.startswith("journal"):
        chunk = b"\0" * (1 << 20)
        for _ in range(64):
            os.write(jfd, chunk)
        os.fsync(jfd)
        fsync_dir(root)
    offset = [0]
    journal_group = Group(lambda _: os.fdatasync(jfd))
    copies: list[str] = []
    copy_stop = threading.Event()

    def copier() -> None:
        while not copy_stop.wait(0.2):
            syncfs(root_fd)

    stop = 0.0

    def session(i: int) -> None:
        while time.monotonic() < stop:
            n = next(counter)
            if design == "maildir":
                fd, tmp = write_copy(n)
                os.fsync(fd)
                os.close(fd)
                publish(tmp)
                dir_group.wait(None)
            elif design == "syncfs":
                fd, tmp = write_copy(n)
                os.close(fd)
                publish(tmp)
                fs_group.wait(None)
            elif design == "batch":
                fd, tmp = write_copy(n)
                publish(os.path.join(box, "tmp", os.path.basename(tmp)))
                batch_group.wait(fd)
                os.close(fd)
            else:
                with lock:
                    at = offset[0]
                    offset[0] += len(body) + 64
                    if offset[0] > (64 << 20) - len(body) - 64:
                        offset[0], at = len(body) + 64, 0
                os.pwrite(jfd, body, at)
                journal_group.wait(None)
                if design == "journal+copy":
                    fd, tmp = write_copy(n)
                    os.close(fd)
                    publish(tmp)
                    copies.append(tmp)
            done[i] += 1

    workers = [threading.Thread(target=session, args=(i,)) for i in range(threads)]
    bg = threading.Thread(target=copier)
    if design == "journal+copy":
        bg.start()
    started = time.monotonic()
    stop = started + seconds
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - started
    copy_stop.set()
    if bg.is_alive():
        bg.join()
    os.close(jfd)
    os.close(root_fd)
    shutil.rmtree(root, ignore_errors=True)
    return sum(done) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="a scratch folder on the filesystem to test")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--size", type=int, nargs="+", default=[4096, 102400])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument(
        "--designs", nargs="+", default=["maildir", "syncfs", "batch", "journal", "journal+copy"]
    )
    args = ap.parse_args()
    for size in args.size:
        for threads in args.threads:
            row = []
            for design in args.designs:
                figures = [
                    run(design, os.path.join(args.dir, "flush-cost"), threads, size, args.seconds)
                    for _ in range(args.reps)
                ]
                row.append(f"{design} {'/'.join(f'{f:,.0f}' for f in figures)}")
            print(f"{size // 1024} KiB x{threads}: " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
