"""Resource sizes as people read them: bytes in binary units, nano-CPUs as CPUs."""

from __future__ import annotations

NANOS_PER_CPU = 1_000_000_000
_BINARY_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def format_bytes(value: int | None) -> str:
    """2147483648 -> "2 GiB", 1610612736 -> "1.5 GiB"; None -> "no limit"."""
    if value is None:
        return "no limit"
    for unit, size in _BINARY_UNITS:
        if value >= size:
            return f"{value / size:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{value} bytes"


def format_cpus(nanos: int | None) -> str:
    """1500000000 -> "1.5 CPUs", 1000000000 -> "1 CPU"; None -> "no limit"."""
    if nanos is None:
        return "no limit"
    cpus = f"{nanos / NANOS_PER_CPU:.3f}".rstrip("0").rstrip(".")
    return f"{cpus} CPU" if cpus == "1" else f"{cpus} CPUs"
