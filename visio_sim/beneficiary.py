"""Beneficiary numbers that a service's pattern accepts, for simulated citizens."""

from __future__ import annotations

import random
import re

from signaling.messages import ServiceInfo

__all__ = ["beneficiary_for"]

_CLASS_REPEAT = re.compile(
    r"\^(?:\[(?P<cls>[^\]]+)\]|(?P<digit>\\d))\{(?P<lo>\d+)(?:,(?P<hi>\d+))?\}\$"
)
"""The shapes of pattern this generator understands: ``^[0-9A-Z]{7}$``, ``^\\d{8,10}$``..."""


def _expand_class(body: str) -> str:
    alphabet: list[str] = []
    index = 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            alphabet.extend(chr(c) for c in range(ord(body[index]), ord(body[index + 2]) + 1))
            index += 3
        elif body.startswith("\\d", index):
            alphabet.extend("0123456789")
            index += 2
        else:
            alphabet.append(body[index])
            index += 1
    return "".join(alphabet)


def beneficiary_for(service: ServiceInfo, rng: random.Random) -> str:
    """A beneficiary number the service's ``beneficiary_pattern`` accepts."""
    pattern = service.beneficiary_pattern
    if pattern is None:
        return f"SIM{rng.randrange(1_000_000):06d}"
    shape = _CLASS_REPEAT.fullmatch(pattern)
    if shape is not None:
        alphabet = "0123456789" if shape["digit"] else _expand_class(shape["cls"])
        low = int(shape["lo"])
        length = rng.randint(low, int(shape["hi"])) if shape["hi"] else low
        candidate = "".join(rng.choice(alphabet) for _ in range(length))
        if re.fullmatch(pattern, candidate):
            return candidate
    if service.beneficiary_hint and re.fullmatch(pattern, service.beneficiary_hint):
        return service.beneficiary_hint
    raise ValueError(f"no beneficiary number for {service.id}: pattern {pattern!r} not understood")
