"""An import whose teapop spool is not /var/spool/mail: one mailbox per spool file, mail
by SMTP reaches the POP3 reader; the spool permission report and its fix."""

from __future__ import annotations

import grp
import json
import os
import poplib
import smtplib
import stat
from pathlib import Path

from tests.conftest import Daisy
from tests.unit.test_legacy_spool import moved_tree

OLD = b"From old@example.net  Mon Jan  5 10:00:00 2004\nSubject: old\n\nold mail\n\n"


def test_moved_teapop_spool_is_one_mailbox_for_smtp_and_pop3(
    daisy_dir: Daisy, tmp_path: Path
) -> None:
    tree, teapop_spool = moved_tree(tmp_path / "legacy")
    (teapop_spool / "bob").write_bytes(OLD)
    args = ["import", "legacy", "--sendmail-dir", str(tree.mail)]
    args += ["--teapop-passwd", str(tree.etc / "teapop.passwd")]
    report = json.loads(daisy_dir.cli(*args, "--json").stdout)
    messages = [f["message"] for f in report["findings"]]
    assert (
        f"spool directory taken from teapop.passwd: {teapop_spool} (not /var/spool/mail); "
        "give --spool-dir to choose another"
    ) in messages
    assert not [m for m in messages if "drift" in m]
    boxes = json.loads(daisy_dir.cli("mailbox", "list", "--json").stdout)
    assert sorted((b["name"], b["path"]) for b in boxes) == [
        ("ann", f"{teapop_spool}/ann"),
        ("bob", f"{teapop_spool}/bob"),
    ]

    daisy_dir.start()
    with smtplib.SMTP("127.0.0.1", daisy_dir.ports["smtp"], timeout=10) as s:
        # through virtusertable, and through sendmail's local-user rule
        s.sendmail("s@example.net", ["info@acme.com"], b"Subject: via alias\r\n\r\none\r\n")
        s.sendmail("s@example.net", ["bob@acme.com"], b"Subject: via name\r\n\r\ntwo\r\n")
    pop = poplib.POP3("127.0.0.1", daisy_dir.ports["pop3"], timeout=10)
    try:
        pop.user("bob@acme.com")
        pop.pass_("pw")
        assert pop.stat()[0] == 3
        subjects = [pop.top(i, 0)[1] for i in (1, 2, 3)]
    finally:
        pop.quit()
    assert [next(line for line in lines if line.startswith(b"Subject:")) for lines in subjects] == [
        b"Subject: old",
        b"Subject: via alias",
        b"Subject: via name",
    ]


def test_permission_report_and_fix(daisy_dir: Daisy, tmp_path: Path) -> None:
    tree, teapop_spool = moved_tree(tmp_path / "legacy")
    box = teapop_spool / "bob"
    box.write_bytes(OLD)
    box.chmod(0o600)
    teapop_spool.chmod(0o755)
    group = grp.getgrgid(os.getgid()).gr_name
    other_gid = next(g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid())
    if os.geteuid() == 0:
        os.chown(box, -1, other_gid)
    text = daisy_dir.config.read_text().replace('user = ""', 'user = "daisymail"', 1)
    daisy_dir.config.write_text(text)
    args = ["import", "legacy", "--sendmail-dir", str(tree.mail), "--spool-group", group]
    args += ["--teapop-passwd", str(tree.etc / "teapop.passwd")]
    dry = daisy_dir.cli(*args, "--dry-run")
    assert f"{box}:0: warning: mailbox bob:" in dry.stdout
    assert "mode 600: Daisy's service user" in dry.stdout
    assert f"{teapop_spool}:0: warning: spool directory:" in dry.stdout
    assert stat.S_IMODE(box.stat().st_mode) == 0o600  # a dry run changes nothing
    fixed = daisy_dir.cli(*args, "--fix-permissions")
    assert f"fixed: {box} is now usable by group {group}" in fixed.stdout
    st = box.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, os.getgid())
    assert stat.S_IMODE(teapop_spool.stat().st_mode) == 0o2775
    again = daisy_dir.cli(*args, "--dry-run")
    assert "Daisy's service user" not in again.stdout
