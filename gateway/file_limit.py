"""The process's file-descriptor limit, raised at start to what the caps need.

Every connection holds a descriptor. At the common soft limit of 1,024, 1,100
idle connections took the last one, and then the database, the log and every
other client failed with EMFILE. At start the soft limit is raised to the hard
limit (the most an unprivileged process may take) and compared with what the
listeners' caps, the database pool and the rest need; short of that, a
warning names both numbers.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

from gateway.config import Config

log = logging.getLogger("intake")

# Besides the listeners' connections: the standard streams, the event loop, the
# listening sockets, the outbound SMTP and webhook connections, form uploads
# spooled to temporary files, the parser pool's pipes, log files.
RESERVED_DESCRIPTORS = 128
# A pooled SQLite connection holds the database, its WAL and its shared memory.
SQLITE_FILES_PER_CONNECTION = 3
# LISTEN (PostgreSQL) holds one connection outside the pool.
LISTEN_CONNECTIONS = 1


@dataclass(frozen=True, kw_only=True)
class FileLimit:
    before: int  # the soft limit found at start
    soft: int    # the soft limit now
    hard: int
    needed: int


def descriptors_needed(config: Config) -> int:
    """Descriptors the configured caps can take at once, with room for the rest."""
    listeners = config.smtp.max_connections + config.http.max_connections
    # Each further SMTP-side listener (LMTP, implicit TLS) has caps of its own.
    listeners += config.smtp.max_connections * (
        bool(config.lmtp_address) + bool(config.smtp.tls_listen))
    pool = config.database.pool_size
    if config.database.url.startswith("sqlite"):
        database = pool * SQLITE_FILES_PER_CONNECTION
    else:
        database = pool + LISTEN_CONNECTIONS
    return listeners + database + RESERVED_DESCRIPTORS


def raise_file_limit(needed: int) -> FileLimit:
    """Raise the soft limit to the hard one; warn when it stays below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one (Linux caps it at nr_open,
    # macOS at OPEN_MAX): ask for what is needed, with room, instead.
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 4 * needed)
    now = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            now = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file-descriptor limit from %d to %d: %s",
                        soft, target, exc)
    if now != resource.RLIM_INFINITY and now < needed:
        log.warning(
            "file-descriptor limit %d (hard limit %s) is below the %d the connection caps "
            "need ([smtp] and [http] max_connections, the database pool and %d more); "
            "raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower the caps",
            now, _show(hard), needed, RESERVED_DESCRIPTORS)
    elif now != soft:
        log.info("file-descriptor limit raised from %d to %s (the caps need %d)",
                 soft, _show(now), needed)
    return FileLimit(before=soft, soft=now, hard=hard, needed=needed)


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
