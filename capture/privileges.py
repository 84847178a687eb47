"""Give up root and capabilities once the capture sockets are open.

Opening an AF_PACKET socket needs CAP_NET_RAW; reading from one that is already open needs
nothing. So the worker opens its sockets first, then calls ``drop_privileges`` before it parses a
single byte of attacker-controlled traffic.

Two ways a worker starts (see docs/live-capture.md):
- as root with ``--user``: switch groups and uid; leaving uid 0 makes the kernel clear the
  permitted, effective and ambient capability sets (capabilities(7), "Effect of user ID changes");
- as an unprivileged user given CAP_NET_RAW by systemd (AmbientCapabilities): no uid to change,
  so the capabilities are cleared explicitly with capset(2) and the ambient set emptied.
Either way ``PR_SET_NO_NEW_PRIVS`` then keeps an exec from regaining anything.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
from dataclasses import dataclass

__all__ = ["PrivilegeError", "ProcessIdentity", "current_identity", "drop_privileges"]

# <linux/prctl.h>
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
# <linux/capability.h>: version 3 takes two 32-bit data structs (64 capability bits).
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(RuntimeError):
    """The switch to the unprivileged user or the capability drop failed."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class ProcessIdentity:
    """Who this process is after the drop, as the kernel reports it (for logs and tests)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    cap_effective: int
    cap_permitted: int
    cap_ambient: int


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def current_identity() -> ProcessIdentity:
    caps = {"CapEff": 0, "CapPrm": 0, "CapAmb": 0}
    with open("/proc/self/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in caps:
                caps[name] = int(value.strip(), 16)
    return ProcessIdentity(
        uid=os.getuid(),
        gid=os.getgid(),
        groups=tuple(os.getgroups()),
        cap_effective=caps["CapEff"],
        cap_permitted=caps["CapPrm"],
        cap_ambient=caps["CapAmb"],
    )


def _clear_capabilities(libc: ctypes.CDLL) -> None:
    # Ambient first: capset cannot lower permitted below what ambient still holds.
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"capset: {os.strerror(err)}")


def drop_privileges(user: str | None) -> ProcessIdentity:
    """Switch to ``user`` (name or numeric uid) if given, then clear every capability.

    Raises PrivilegeError when the user does not exist, the switch is not allowed, or anything
    is left afterwards (a silent partial drop would be worse than not starting).
    """
    libc = _libc()
    if user:
        try:
            entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            raise PrivilegeError(f"no such user: {user}") from None
        uid, gid = entry.pw_uid, entry.pw_gid
        try:
            if os.getuid() != uid or os.geteuid() != uid:
                # Groups before the uid: afterwards we no longer may change them.
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
        except PermissionError as exc:
            raise PrivilegeError(f"cannot switch to user {user}: {exc.strerror}") from None
        # Anything set to the old user's home would now point somewhere unreadable.
        os.environ["HOME"] = entry.pw_dir
        os.environ["USER"] = os.environ["LOGNAME"] = entry.pw_name
    _clear_capabilities(libc)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    me = current_identity()
    if me.cap_effective or me.cap_permitted or me.cap_ambient:
        raise PrivilegeError(f"capabilities left after the drop: {me}")
    if user and (me.uid == 0 or os.geteuid() == 0):
        raise PrivilegeError("still root after the switch")
    return me
