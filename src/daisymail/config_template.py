"""The commented config file that `daisymail init` writes."""

from __future__ import annotations

import secrets

TEMPLATE = """\
# Daisy configuration. Every key has a default; remove a line to use it.
# Relative paths are relative to data_dir, itself relative to this file.

hostname = "{hostname}"          # this server's name: SMTP greeting, Received headers
data_dir = "."                   # database, mail, queue and certificates live here
user = "{user}"                  # when started as root: drop privileges to this user ("" = stay)

[listen]                         # "ADDR:PORT" lists; [] turns a service off
smtp = [{smtp}]                  # MX: mail for hosted domains
submission = [{submission}]      # STARTTLS + AUTH for users sending mail
submissions = [{submissions}]    # implicit TLS + AUTH
pop3 = [{pop3}]                  # STLS
pop3s = [{pop3s}]                # implicit TLS
imap = [{imap}]                  # STARTTLS
imaps = [{imaps}]                # implicit TLS

[directory]
backend = "sql"                  # "sql": SQLite or PostgreSQL
url = "sqlite:///daisymail.db"   # or "postgresql+psycopg://user@host/dbname"

[directory.legacy]               # read when backend = "legacy", and by `daisymail import legacy`
sendmail_dir = "/etc/mail"
teapop_passwd = "/etc/teapop.passwd"
spool_dir = "/var/spool/mail"      # where procmail delivered: bare virtusertable targets live here

[storage]
mail_dir = "mail"                # where new mailboxes go
default_format = "maildir"       # "maildir" or "mbox"
spool_dir = "spool"              # messages being received
intake_journal = false           # true: Maildir copies share one flush (docs/design.md)

[tls]
cert = "tls/cert.pem"            # a self-signed one is made by `daisymail init`
key = "tls/key.pem"
# [tls.sni]                      # per-domain certificates: folder holding cert.pem and key.pem
# "example.org" = "tls/example.org"

[relay]                          # who may relay without logging in (sendmail's relay-domains)
networks = ["127.0.0.1/32", "::1/128"]
hosts_only = false               # true: relay domains match exactly, not their subdomains

[rewrite]
masquerade_envelope = false      # apply sender rules (genericstable) to the envelope sender too

[queue]
dir = "queue"
lifetime = 432000                # give up (and bounce) after 5 days
retry_schedule = [300, 600, 1200, 2400, 4000]
delay_warning = 14400            # NOTIFY=DELAY: one delay notice after 4 hours (0 = never)
smarthost = ""                   # "host:port" to send everything through (587: STARTTLS, 465: TLS)
smarthost_user = ""              # AUTH at the smarthost
smarthost_password = ""
destination_concurrency = 5      # connections at once to one destination
idle_connection_seconds = 2      # a connection stays open this long for the next message
tls_required_domains = []        # no plaintext fallback when STARTTLS fails for these
[queue.routes]                   # static routes: "example.net" = "127.0.0.1:2526"

[smtp]
mx_auth = false                  # also offer AUTH on the MX port (users send only as themselves)

[auth]
default_domain = ""              # domain for logins given without one (SMTP AUTH, POP3)
cache_ttl = 3600                 # seconds a good login skips the hash check again; 0 = off

[pop3]
use_x_uidl = false               # teapop -u: take UIDLs from X-UIDL headers
hide_imap_control_message = false  # teapop -i: hide the UW-IMAP control message
allow_plaintext_auth = false     # allow USER/PASS without TLS from non-loopback clients
apop = false                     # needs clear-text secrets; legacy only
delete_after_retr = false        # teapop -d
delete_after_top = false         # teapop -D: also messages sent in full by TOP
expire_days = 0                  # teapop -e; 0 = never
login_delay = 0                  # seconds announced in CAPA LOGIN-DELAY; 0 = not announced

[limits]
max_message_size = 52428800
max_recipients = 100
max_line_length = 2048
max_errors = 10
max_hops = 50                    # more Received: headers than this is a mail loop (554)
command_timeout = 300
data_timeout = 600
pop3_timeout = 600
write_timeout = 300              # seconds a client may take no data we send before it is cut off
max_connections = 2000
max_connections_per_ip = 50
auth_failure_delay = 2.0

[log]
level = "info"

[dns]
nameservers = []                 # ["HOST:PORT", ...]; [] = the system resolver
timeout = 5.0                    # seconds for one lookup

[dkim]                           # signing keys: `daisymail dkim keygen DOMAIN`
dir = "dkim"                     # DIR/DOMAIN/SELECTOR.ALGORITHM.pem (mode 600)
rotate_delay = 259200            # `dkim rotate`: the new key signs after this many seconds

[verify]                         # SPF, DKIM and DMARC for mail from outside on port 25
enabled = {verify}
authserv_id = ""                 # in Authentication-Results; "" = hostname
dmarc_reject = true              # DMARC fails under p=reject: 550 5.7.1 (false: mark only)
dmarc_quarantine = true          # DMARC fails under p=quarantine: the recipient's Junk folder
spf_fail_without_dmarc = "mark"  # SPF fail, no DMARC record: "mark", "junk" or "reject"
temperror = "mark"               # DNS failure: "mark" and accept, or "defer" (451)
trusted_arc_sealers = []         # e.g. ["lists.example"]: their ARC pass overrides a DMARC fail
workers = -1                     # verdict processes beside the server: -1 = cores - 1, 0 = none

[http]                           # metrics, health checks, client autoconfig, MTA-STS, admin API
listen = [{http}]                # plain HTTP "ADDR:PORT" list; [] = off
listen_tls = []                  # HTTPS with the [tls] certificates (and SNI), e.g. "0.0.0.0:443"
metrics_networks = ["127.0.0.1/32", "::1/128"]   # who may read /metrics
api = false                      # admin API under /api/v1 (daisymail token create); never on a
                                 # non-loopback address without TLS
client_host = ""                 # host mail clients are told to use; default: certificate's name
[http.mta_sts]                   # served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
mode = ""                        # "enforce", "testing" or "none"; "" = not served
mx = []                          # default: [hostname]
max_age = 604800
[filter]                         # spam filtering of mail from outside on port 25
rspamd_url = ""                  # the rspamd worker, e.g. "http://127.0.0.1:11333"; "" = off
timeout = 10.0                   # seconds; rspamd slower or down: accepted, marked unchecked

[srs]                            # forwarded mail leaves as SRS0=...@forwarding.domain
secret = "{srs_secret}"   # made by init; changing it breaks bounces of recent forwards
"""


def render(*, hostname: str, dev: bool, user: str | None = None) -> str:
    """The config text; development configs stay on loopback and keep the current user."""
    if user is None:
        user = "" if dev else "daisymail"

    def addrs(port: int, dev_port: int) -> str:
        return f'"127.0.0.1:{dev_port}"' if dev else f'"0.0.0.0:{port}"'

    return TEMPLATE.format(
        srs_secret=secrets.token_hex(24),
        hostname=hostname,
        user=user,
        smtp=addrs(25, 2525),
        submission=addrs(587, 2587),
        submissions=addrs(465, 2465),
        pop3=addrs(110, 2110),
        pop3s=addrs(995, 2995),
        imap=addrs(143, 2143),
        imaps=addrs(993, 2993),
        verify="false                  # on loopback there is no DNS to check against"
        if dev
        else "true",
        http='"127.0.0.1:2080"' if dev else "",
    )
