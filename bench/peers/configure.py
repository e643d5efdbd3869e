"""Write the Postfix and Dovecot configuration of the benchmark, and start both.

Like a Daisy deployment: the two bench domains and 100 users, Postfix receiving on
127.0.0.1:3525 and delivering with virtual(8) into Maildirs, Dovecot serving those
Maildirs over POP3 on 127.0.0.1:3110 with a passwd-file holding the same argon2id hashes
Daisy stores. Postfix keeps its default durability (queue files fsync'd before 250).
Only what the load needs is raised, on both sides alike: process and connection limits
for 200 senders and 1,000 + 1,000 idle connections. Nothing under /etc is touched.

    configure.py [--no-start]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DOVECOT_POP3_PORT, MAIL_UID_NAME, POSTFIX_SMTP_PORT, WORK, User, users
from servers import Dovecot, Postfix, mail_ids

# chroot off (Debian turns it on for some services): files outside the queue are not needed.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
proxywrite unix  - - n - 1 proxymap
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
showq      unix  n - n - - showq
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
local      unix  - n n - - local
virtual    unix  - n n - - virtual
lmtp       unix  - - n - - lmtp
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
myhostname = postfix.bench.test
mydestination =
mynetworks = 127.0.0.0/8
inet_protocols = ipv4
alias_maps =
alias_database =
biff = no
queue_directory = {queue}
data_directory = {conf}-data
maillog_file = {conf}/maillog
smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination
virtual_mailbox_domains = {domains}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_mailbox_base = {mail}
virtual_minimum_uid = {uid}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_mailbox_limit = 0
message_size_limit = 52428800
smtpd_tls_cert_file = {tls}/cert.pem
smtpd_tls_key_file = {tls}/key.pem
smtpd_tls_security_level = may
# Raised for the load (Daisy's bench config raises its limits alike):
default_process_limit = 1100
smtpd_client_connection_count_limit = 0
"""

DOVECOT_CONF = """\
instance_name = daisy-bench
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{tls}/cert.pem
ssl_key = <{tls}/key.pem
auth_mechanisms = plain
first_valid_uid = {uid}
mail_location = maildir:{mail}/%n.%d
pop3_uidl_format = %08Xu%08Xv
# Raised for the load (Daisy's bench config raises its limits alike):
default_process_limit = 1100
default_client_limit = 3000
passdb {{
  driver = passwd-file
  args = scheme={scheme} {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%n.%d
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
{login_tuning}}}
{tuning}"""

# Dovecot at its fastest for repeated logins (its performance tuning advice): login and
# pop3 processes reused instead of one per connection, and its auth cache on. The cache
# keeps the passdb entry, so an argon2id hash is still verified on every login; with a
# PLAIN passdb there is nothing left to verify.
BEST_LOGIN = """  service_count = 0
  process_min_avail = {nproc}
"""
BEST = """auth_cache_size = 10M
auth_cache_ttl = 1 hour
service pop3 {{
  service_count = 0
  process_min_avail = {nproc}
}}
"""


def write_tls(tls: Path) -> None:
    if (tls / "cert.pem").exists():
        return
    tls.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=peers.bench.test",
            "-keyout",
            str(tls / "key.pem"),
            "-out",
            str(tls / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )


def write_postfix(work: Path, bench_users: list[User], uid: int, gid: int) -> None:
    conf = work / "peers" / "postfix"
    data = conf.with_name("postfix-data")
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "postfix:", str(data)], check=True)
    conf.mkdir(exist_ok=True)
    queue = work / "fs" / "data" / "postfix-queue"
    queue.mkdir(parents=True, exist_ok=True)
    (conf / "master.cf").write_text(MASTER_CF.format(port=POSTFIX_SMTP_PORT))
    (conf / "main.cf").write_text(
        MAIN_CF.format(
            queue=queue,
            conf=conf,
            domains=", ".join(sorted({u.domain for u in bench_users})),
            mail=work / "peer-mail",
            uid=uid,
            gid=gid,
            tls=work / "tls",
        )
    )
    (conf / "vmailbox").write_text("".join(f"{u.address} {u.mailbox}/\n" for u in bench_users))


def write_dovecot(
    work: Path,
    bench_users: list[User],
    uid: int,
    gid: int,
    *,
    best: bool = False,
    plain: bool = False,
) -> None:
    """Dovecot's defaults, or (best) its tuning for repeated logins; the bench users'
    argon2id hashes, or (plain) their passwords in a PLAIN passdb: no hash cost at all."""
    d = work / "peers" / "dovecot"
    d.mkdir(parents=True, exist_ok=True)
    nproc = os.cpu_count() or 2
    (d / "dovecot.conf").write_text(
        DOVECOT_CONF.format(
            dir=d,
            tls=work / "tls",
            uid=uid,
            gid=gid,
            mail=work / "peer-mail",
            port=DOVECOT_POP3_PORT,
            scheme="PLAIN" if plain else "ARGON2ID",
            login_tuning=BEST_LOGIN.format(nproc=nproc) if best else "",
            tuning=BEST.format(nproc=nproc) if best else "",
        )
    )
    secret = (lambda u: "{PLAIN}" + u.password) if plain else (lambda u: u.password_hash)
    (d / "passwd").write_text("".join(f"{u.address}:{secret(u)}\n" for u in bench_users))
    (d / "passwd").chmod(0o640)
    subprocess.run(["chown", "root:dovecot", str(d / "passwd")], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--no-start", action="store_true")
    args = ap.parse_args()
    bench_users = users(WORK)
    uid, gid = mail_ids()
    write_tls(WORK / "tls")
    link = WORK / "peer-mail"
    if not link.is_symlink():
        target = WORK / "fs" / "data" / "runs" / "peer-idle"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", f"{MAIL_UID_NAME}:", str(target)], check=True)
        link.symlink_to(target)
    postfix, dovecot = Postfix(WORK), Dovecot(WORK)
    postfix.stop()
    dovecot.stop()
    write_postfix(WORK, bench_users, uid, gid)
    write_dovecot(WORK, bench_users, uid, gid)
    check = subprocess.run(
        ["postfix", "-c", str(postfix.conf), "check"], capture_output=True, text=True
    )
    if check.returncode != 0:
        sys.stderr.write(check.stderr)
        return 1
    if not args.no_start:
        postfix.start()
        dovecot.start()
        print(f"postfix SMTP on 127.0.0.1:{postfix.smtp_port}")
        print(f"dovecot POP3 on 127.0.0.1:{dovecot.pop3_port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
