"""docs/performance.md and its chart, from one bench/run results document."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHART = "performance-throughput.png"

Row = dict[str, Any]

METHOD = """\
## How it is measured

`bench/run` runs every load against Daisy and against Postfix + Dovecot in turn (Daisy,
peer, Daisy, peer, ...), {reps} times each, and reports medians; **ratio** is Daisy / peer
(above 1 is better for Daisy for rates, below 1 is better for latencies, CPU and memory),
and **ratio range** the lowest and highest ratio of a single repetition's pair.
The load generators (`bench/smtp_load.py`, `bench/pop3_load.py`, `bench/idle.py`) run on
the same cores as the servers.

* **SMTP**: each sender holds one connection and sends messages back to back with
  PIPELINING for {smtp_s} s, each to one of the {users} users in turn. A message counts
  when its file is in the recipient's Maildir: Daisy answers 250 after the file and its
  directory are fsync'd; Postfix answers 250 once its queue file is fsync'd and delivers
  with virtual(8) afterwards, so the run waits until every accepted message is in its
  Maildir. msg/s = messages stored / time from the first connection to the last file.
  Latency is one transaction (MAIL to the 250 after the data). Every run writes into
  fresh mailbox folders. The SMTP loads run on the data folder's filesystem and again on
  a new journaled ext4 image, loop-mounted, that holds the whole Daisy data dir and the
  Postfix queue and mailboxes.
* **CPU**: user + system seconds of each server's whole process tree (all Postfix
  daemons; Daisy's one process) during the run, reaped children included, per 1,000
  stored messages.
* **POP3**: {pop3_users} mailboxes of 100 messages of 4 KiB; each client takes its own
  share of the mailboxes and, for {pop3_s} s, logs in (USER/PASS), and for retrieval RETRs
  every message, then QUITs. Both sides check the very same argon2id hashes (argon2-cffi
  defaults, t=3, m=64 MiB, p=4; Dovecot verifies them with libsodium as `{{ARGON2ID}}`), so
  retrieval MB/s includes one login per 400 KB. One warm-up session per mailbox first.
  Daisy's login cache is on (its default), so after the warm-up its logins skip argon2.
* **POP3 logins, polling pattern** (`bench/logins.py`): 20 accounts, each logging in
  (USER/PASS/QUIT) again and again, by 1 client or 20 clients cycling over them, {pop3_s} s
  per figure after one warm-up login per account. Daisy with its login cache on and off
  (`[auth] cache_ttl = 0`); Dovecot with its defaults (a pop3-login process per
  connection, no auth cache) and at its best for this load (`service_count = 0` and
  `process_min_avail` for pop3-login and pop3, `auth_cache_size = 10M`), each with the
  same argon2id hashes and with a PLAIN passdb (cleartext: no hash cost at all).
* **Memory**: after a restart, {idle} idle SMTP and {idle} idle POP3 connections are
  opened (each waits for its greeting) and held; RSS is summed over every process of the
  server trees (Postfix's master, one smtpd per connection and its other daemons;
  Dovecot's master, one pop3-login per connection in its default high-security mode, auth,
  anvil, log, config). PSS splits shared pages between processes and is the fairer sum
  for forking servers.
* **Mail authentication** (`bench/mailauth_cost.py`, Daisy alone): two servers side by
  side, the feature off and on, measured in turn, medians of {reps} runs of 5 s at 10 and
  at 50 senders, on each filesystem. Inbound: port 25, 4 KiB mail with an RSA-2048
  DKIM signature, SPF + DKIM + DMARC + ARC against a DNS server on loopback (answers
  cached, as on a busy MX). Outbound: 4 KiB mail relayed through the queue to an SMTP
  sink on loopback, msg/s from the first submission to the last arrival, without and
  with an RSA-2048 + Ed25519 key pair for the sender's domain. At 10 senders part of the
  CPU is idle and each sender waits for its last reply, so added latency shows; at 50
  the server is busy throughout, and the target (cost under 15 %) is judged there.

Settings: production defaults on every side, except the limits the load itself needs,
raised alike: Daisy `[limits] max_connections = 5000`, `max_connections_per_ip = 5000`
(the default 50 per address would refuse 200 senders from 127.0.0.1); Postfix
`default_process_limit = 1100`, `smtpd_client_connection_count_limit = 0`; Dovecot
`default_process_limit = 1100`, `default_client_limit = 3000`. Postfix keeps its default
durability (queue files fsync'd before 250) and flow control; its services run without
chroot. The peers are configured by `bench/peers/setup` under `$DAISY_BENCH_DIR`
(default `/var/tmp/daisy-bench`), never in `/etc`.
"""


def _median(rows: list[Row], key: str) -> float | None:
    vals = [float(r[key]) for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"**{a / b:.2f}**"


def _pick(rows: list[Row], **match: Any) -> list[Row]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _spread(d: list[Row], p: list[Row], key: str) -> str:
    """The lowest and highest ratio of one repetition's pair (Daisy and the peer run
    back to back in each repetition), so a reader sees how far one run can move it."""
    peer = {r.get("rep"): r.get(key) for r in p}
    ratios = [
        float(r[key]) / float(peer[r.get("rep")])
        for r in d
        if r.get(key) is not None and peer.get(r.get("rep"))
    ]
    if len(ratios) < 2:
        return "–"
    return f"{min(ratios):.2f}–{max(ratios):.2f}"


def smtp_tables(res: Row) -> list[str]:
    out = []
    rows = res["smtp"]
    for fs in dict.fromkeys(r["fs"] for r in rows):
        out += [
            f"### SMTP on `{fs}` ({res['filesystems'].get(fs, '')})",
            "",
            "| size | senders | Daisy msg/s | Postfix msg/s | ratio | ratio range "
            "| Daisy p50 / p99 ms "
            "| Postfix p50 / p99 ms | p99 ratio | Daisy CPU s/1000 | Postfix CPU s/1000 "
            "| CPU ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size in dict.fromkeys(r["size"] for r in rows):
            for conc in dict.fromkeys(r["concurrency"] for r in rows):
                d = _pick(rows, fs=fs, size=size, concurrency=conc, server="daisy")
                p = _pick(rows, fs=fs, size=size, concurrency=conc, server="postfix")
                if not d:
                    continue
                m: Callable[[list[Row], str], float | None] = _median
                out.append(
                    f"| {size // 1024} KiB | {conc} | {_fmt(m(d, 'msg_per_s'))} "
                    f"| {_fmt(m(p, 'msg_per_s'))} | {_ratio(m(d, 'msg_per_s'), m(p, 'msg_per_s'))} "
                    f"| {_spread(d, p, 'msg_per_s')} "
                    f"| {_fmt(m(d, 'p50_ms'))} / {_fmt(m(d, 'p99_ms'))} "
                    f"| {_fmt(m(p, 'p50_ms'))} / {_fmt(m(p, 'p99_ms'))} "
                    f"| {_ratio(m(d, 'p99_ms'), m(p, 'p99_ms'))} "
                    f"| {_fmt(m(d, 'cpu_s_per_1000'), 2)} | {_fmt(m(p, 'cpu_s_per_1000'), 2)} "
                    f"| {_ratio(m(d, 'cpu_s_per_1000'), m(p, 'cpu_s_per_1000'))} |"
                )
        out.append("")
    return out


def pop3_table(res: Row) -> list[str]:
    rows = res["pop3"]
    out = [
        "### POP3",
        "",
        "| load | clients | Daisy | Dovecot | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, key, unit in (
        ("logins", "logins_per_s", "logins/s"),
        ("retrieve", "mb_per_s", "MB/s"),
    ):
        for conc in dict.fromkeys(r["concurrency"] for r in rows):
            d = _median(_pick(rows, mode=mode, concurrency=conc, server="daisy"), key)
            p = _median(_pick(rows, mode=mode, concurrency=conc, server="dovecot"), key)
            out.append(
                f"| {mode} ({unit}) | {conc} | {_fmt(d, 2)} | {_fmt(p, 2)} | {_ratio(d, p)} |"
            )
    return [*out, ""]


def login_table(res: Row) -> list[str]:
    """The polling pattern (bench/logins.py): logins/s of each configuration."""
    rows = res.get("logins") or []
    if not rows:
        return []
    concs = list(dict.fromkeys(r["concurrency"] for r in rows))
    out = [
        "### POP3 logins, polling pattern (20 accounts, each logging in again and again)",
        "",
        "| server | configuration | passwords | "
        + " | ".join(f"{c} client(s)" for c in concs)
        + " |",
        "|---|---|---|" + "---:|" * len(concs),
    ]
    for server, variant, scheme in dict.fromkeys(
        (r["server"], r["variant"], r["hash"]) for r in rows
    ):
        sel = _pick(rows, server=server, variant=variant, hash=scheme)
        cells = " | ".join(
            _fmt(_median(_pick(sel, concurrency=c), "logins_per_s"), 1) for c in concs
        )
        out.append(f"| {server} | {variant} | {scheme} | {cells} |")
    return [*out, ""]


def _login_ratio(res: Row, variant: str, peer_variant: str, scheme: str, conc: int) -> float | None:
    rows = res.get("logins") or []
    d = _median(_pick(rows, server="daisy", variant=variant, concurrency=conc), "logins_per_s")
    p = _median(
        _pick(rows, server="dovecot", variant=peer_variant, hash=scheme, concurrency=conc),
        "logins_per_s",
    )
    return None if d is None or not p else d / p


MAILAUTH_FIGURES = (
    ("inbound", "checks", "port 25 in, SPF + DKIM + DMARC + ARC checks"),
    ("outbound", "dkim", "relayed out, DKIM-signed (RSA-2048 + Ed25519)"),
)


MAILAUTH_FS = {
    "data": "data folder's filesystem",
    "ext4": "journaled ext4 image",
}


def _mailauth_rows(res: Row, fs: str | None = None, senders: int | None = None) -> list[Row]:
    """The rows of one filesystem and sender count (rows from before they named them:
    the data folder, 10 senders)."""
    rows: list[Row] = res.get("mailauth") or []
    return [
        r
        for r in rows
        if (fs is None or r.get("fs", "data") == fs)
        and (senders is None or r.get("senders", 10) == senders)
    ]


def mailauth_filesystems(res: Row) -> list[str]:
    return list(dict.fromkeys(str(r.get("fs", "data")) for r in _mailauth_rows(res)))


def mailauth_levels(res: Row) -> list[int]:
    return sorted({int(r.get("senders", 10)) for r in _mailauth_rows(res)})


def mailauth_cost(
    res: Row, figure: str, fs: str = "data", senders: int | None = None
) -> float | None:
    """The share of throughput the feature costs (off minus on, over off), at
    ``senders`` (None: the most measured, where the server is busiest)."""
    levels = mailauth_levels(res)
    if senders is None and levels:
        senders = levels[-1]
    rows = _mailauth_rows(res, fs, senders)
    key = dict((f, k) for f, k, _ in MAILAUTH_FIGURES)[figure]
    off = _median(_pick(rows, figure=figure, **{key: False}), "msg_per_s")
    on = _median(_pick(rows, figure=figure, **{key: True}), "msg_per_s")
    return None if off is None or on is None or not off else (off - on) / off


def mailauth_table(res: Row) -> list[str]:
    """bench/mailauth_cost.py: each feature off and on, Daisy alone, per filesystem and
    sender count."""
    if not _mailauth_rows(res):
        return []
    out = [
        "### Mail authentication: what checking and signing cost (Daisy alone)",
        "",
        "| figure | filesystem | senders | off msg/s | on msg/s | cost "
        "| CPU ms/msg off / on | runs off / on |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for figure, key, text in MAILAUTH_FIGURES:
        for fs in mailauth_filesystems(res):
            for senders in mailauth_levels(res):
                rows = _mailauth_rows(res, fs, senders)
                off = _pick(rows, figure=figure, **{key: False})
                on = _pick(rows, figure=figure, **{key: True})
                if not off or not on:
                    continue
                cost = mailauth_cost(res, figure, fs, senders)
                cpu = " / ".join(_fmt(_median(r, "cpu_ms_per_msg"), 2) for r in (off, on))
                runs = " / ".join(
                    ", ".join(str(v) for v in r[0].get("runs", [])) for r in (off, on)
                )
                out.append(
                    f"| {text} | {MAILAUTH_FS.get(fs, fs)} | {senders} "
                    f"| {_fmt(_median(off, 'msg_per_s'))} | {_fmt(_median(on, 'msg_per_s'))} "
                    f"| {_fmt(None if cost is None else cost * 100)} % | {cpu} | {runs} |"
                )
    return [*out, ""]


def memory_table(res: Row) -> list[str]:
    rows = res["memory"]
    if not rows:
        return []
    idle = rows[0]["idle_each"]
    out = [
        f"### Memory with {idle} idle SMTP + {idle} idle POP3 connections",
        "",
        "| server | accepted (SMTP + POP3) | processes | RSS before, MB | RSS held, MB "
        "| PSS held, MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["server"] for r in rows):
        sel = _pick(rows, server=name)
        acc = " / ".join(f"{r['smtp_accepted']} + {r['pop3_accepted']}" for r in sel)
        out.append(
            f"| {name} | {acc} | {_fmt(_median([r['held'] for r in sel], 'processes'), 0)} "
            f"| {_fmt(_median([r['before'] for r in sel], 'rss_mb'))} "
            f"| {_fmt(_median([r['held'] for r in sel], 'rss_mb'))} "
            f"| {_fmt(_median([r['held'] for r in sel], 'pss_mb'))} |"
        )
    for r in rows:
        for part, m in r.get("per_server", {}).items():
            out.append(
                f"| &nbsp; {part} part (rep {r['rep']}) | | {m['processes']} | "
                f"| {m['rss_mb']} | {m['pss_mb']} |"
            )
    return [*out, ""]


def imap_table(res: Row) -> list[str]:
    """IMAP next to Dovecot (bench/imap_load.py): medians of the repetitions."""
    imap = res.get("imap")
    if not imap:
        return []
    rows = imap["rows"]
    out = [
        f"### IMAP ({imap['messages']} messages in INBOX)",
        "",
        "| figure | Daisy | Dovecot | ratio |",
        "|---|---:|---:|---:|",
    ]
    for figure, key, label in (
        (
            "open_folder",
            "sessions_per_s",
            "LOGIN + SELECT + FETCH 1:* (FLAGS ENVELOPE), sessions/s",
        ),
        ("fetch_bodies", "mb_per_s", "UID FETCH 1:* BODY.PEEK[] of 100 KiB messages, MB/s"),
        (
            "fetch_bodies_lf",
            "mb_per_s",
            "the same, messages stored with LF line ends (as delivered), MB/s",
        ),
    ):
        d = _median(_pick(rows, figure=figure, server="daisy"), key)
        p = _median(_pick(rows, figure=figure, server="dovecot"), key)
        out.append(f"| {label} | {_fmt(d, 2)} | {_fmt(p, 2)} | {_ratio(d, p)} |")
    idle = {r["server"]: r for r in _pick(rows, figure="idle")}
    if "daisy" in idle:
        d, p = idle["daisy"], idle.get("dovecot")
        out.append(
            f"| RSS with {d['held']} of {d['idle']} idle IDLE sessions on "
            f"{d.get('folder', 'INBOX')}, MB (Daisy before them: {d['before_rss_mb']}) "
            f"| {_fmt(d['rss_mb'])} | {_fmt(p['rss_mb'] if p else None)} "
            f"| {_ratio(d['rss_mb'], p['rss_mb'] if p else None)} |"
        )
    return [*out, ""]


def targets(res: Row) -> list[str]:
    """The issue's targets, each checked against this run's medians."""
    smtp, pop3 = res["smtp"], res["pop3"]
    checks: list[tuple[str, float | None, float]] = []

    def ratio(rows: list[Row], key: str, peer: str, **match: Any) -> float | None:
        d = _median(_pick(rows, server="daisy", **match), key)
        p = _median(_pick(rows, server=peer, **match), key)
        return None if d is None or not p else d / p

    for fs in dict.fromkeys(r["fs"] for r in smtp):
        for conc in (10, 50, 200):
            checks.append(
                (
                    f"SMTP 4 KiB, {conc} senders, {fs}: msg/s ratio >= 1.5",
                    ratio(smtp, "msg_per_s", "postfix", fs=fs, size=4096, concurrency=conc),
                    1.5,
                )
            )
        for size, conc in ((4096, 1), (102400, 1), (102400, 10), (102400, 50), (102400, 200)):
            checks.append(
                (
                    f"SMTP {size // 1024} KiB, {conc} senders, {fs}: msg/s ratio >= 1.0",
                    ratio(smtp, "msg_per_s", "postfix", fs=fs, size=size, concurrency=conc),
                    1.0,
                )
            )
        p99 = ratio(smtp, "p99_ms", "postfix", fs=fs, size=4096, concurrency=10)
        checks.append(
            (f"SMTP p99 at 10 senders, {fs}: no worse than Postfix", p99 and 1 / p99, 1.0)
        )
    for mode, key in (("retrieve", "mb_per_s"), ("logins", "logins_per_s")):
        for conc in (1, 20):
            checks.append(
                (
                    f"POP3 {mode} at {conc} clients: ratio >= 1.0",
                    ratio(pop3, key, "dovecot", mode=mode, concurrency=conc),
                    1.0,
                )
            )
    for conc in (1, 20):
        checks.append(
            (
                f"POP3 polling logins, {conc} client(s), Daisy cache on / Dovecot best PLAIN"
                " >= 1.0",
                _login_ratio(res, "cache on", "best", "PLAIN", conc),
                1.0,
            )
        )
        checks.append(
            (
                f"POP3 polling logins, {conc} client(s), Daisy cache off / Dovecot best"
                " argon2id >= 1.5",
                _login_ratio(res, "cache off", "best", "argon2id", conc),
                1.5,
            )
        )
    out = ["### Targets", "", "| target | measured | met |", "|---|---:|---|"]
    for text, value, want in checks:
        met = "–" if value is None else ("yes" if value >= want else "**no**")
        out.append(f"| {text} | {_fmt(value, 2)} | {met} |")
    for figure, _key, text in MAILAUTH_FIGURES:
        for fs in mailauth_filesystems(res):
            cost = mailauth_cost(res, figure, fs)  # where the server is busiest
            if cost is not None:
                met = "yes" if cost < 0.15 else "**no**"
                where = f"{MAILAUTH_FS.get(fs, fs)}, {mailauth_levels(res)[-1]} senders"
                out.append(
                    f"| Mail auth, {text}, {where}: cost < 15 % | {_fmt(cost * 100)} % | {met} |"
                )
    daisy_mem = [r for r in res["memory"] if r["server"] == "daisy"]
    if daisy_mem:
        rss = _median([r["held"] for r in daisy_mem], "rss_mb")
        idle = daisy_mem[0]["idle_each"]
        met = "–" if idle < 1000 else ("yes" if rss is not None and rss < 150 else "**no**")
        out.append(
            f"| Daisy RSS with 1,000 + 1,000 idle connections < 150 MB "
            f"| {_fmt(rss)} MB at {idle} + {idle} | {met} |"
        )
    return [*out, ""]


def chart(res: Row, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["smtp"]
    fss = list(dict.fromkeys(r["fs"] for r in rows))
    fig, axes = plt.subplots(1, len(fss), figsize=(6 * len(fss), 4.2), squeeze=False)
    for ax, fs in zip(axes[0], fss, strict=True):
        for server, style in (("daisy", "-o"), ("postfix", "--s")):
            for size in dict.fromkeys(r["size"] for r in rows):
                concs = sorted({r["concurrency"] for r in rows})
                ys = [
                    _median(
                        _pick(rows, fs=fs, size=size, concurrency=c, server=server), "msg_per_s"
                    )
                    for c in concs
                ]
                if any(y is not None for y in ys):
                    ax.plot(concs, ys, style, label=f"{server} {size // 1024} KiB")
        ax.set_xscale("log")
        ax.set_xlabel("concurrent senders")
        ax.set_ylabel("messages stored per second")
        ax.set_title(f"SMTP, durable delivery ({fs})")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def analysis() -> list[str]:
    """The hand-written reading of the figures (bench/analysis.md), kept across runs."""
    path = Path(__file__).with_name("analysis.md")
    if not path.exists():
        return []
    return [path.read_text().rstrip(), ""]


def markdown(res: Row) -> str:
    mach = res["machine"]
    pop3_users = len({r["concurrency"] for r in res["pop3"]}) and (
        "the 100" if res["mode"] == "full" else "20"
    )
    lines = ["# Performance: Daisy next to Postfix and Dovecot", ""]
    if res["mode"] == "quick":
        lines += [
            "> **Quick validation run on a busy machine** (`--quick`: short runs, "
            f"{res['reps']} repetitions, {res['memory'][0]['idle_each'] if res['memory'] else 0} "
            "idle connections per protocol, other test suites running on the same 2 cores). "
            "It shows that the harness works end to end; its figures are not the benchmark. "
            "The full run (`bench/run`) on a quiet machine replaces this page.",
            "",
        ]
    lines += [
        f"Run {res['started']}, {res['duration_s']:.0f} s, with:",
        "",
        "    sudo make bench          # = bench/run (installs the peers on first use)",
        f"    {res['command']}".rstrip(),
        "",
        "Machine: "
        f"{mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gb']} GB RAM, Linux "
        f"{mach['kernel']}, Python {mach['python']}, Postfix {mach['postfix']}, Dovecot "
        f"{mach['dovecot']}; load average at start {' '.join(mach['loadavg_at_start'])}.",
        "Filesystems: " + "; ".join(f"`{k}`: {v}" for k, v in res["filesystems"].items()) + ".",
        "",
        "## Results",
        "",
        f"![SMTP throughput against concurrency]({CHART})",
        "",
        *smtp_tables(res),
        *pop3_table(res),
        *login_table(res),
        *memory_table(res),
        *imap_table(res),
        *mailauth_table(res),
        *targets(res),
        *analysis(),
        METHOD.format(
            reps=res["reps"],
            smtp_s="0.5" if res["mode"] == "quick" else "2.5",
            pop3_s="0.5" if res["mode"] == "quick" else "3",
            users="20" if res["mode"] == "quick" else "100",
            pop3_users=pop3_users,
            idle=res["memory"][0]["idle_each"] if res["memory"] else 1000,
        ),
        "Raw figures: the JSON file `bench/run` wrote in `bench/results/` (not kept in git).",
        "",
    ]
    return "\n".join(lines)


def write(res: Row, docs: Path) -> None:
    chart(res, docs / CHART)
    (docs / "performance.md").write_text(markdown(res))
