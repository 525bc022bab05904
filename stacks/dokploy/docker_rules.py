"""Docker's and Swarm's rules for volumes and limits, named once.

Shared by the client (which refuses what Docker would refuse before anything is sent), the
settings (which refuse such limits at start-up) and the simulator (which plays Docker). No
Django here: the simulator and the settings module import it.
"""

from __future__ import annotations

import re
from typing import Final

MIB: Final = 1024 * 1024
NANO_CPUS_PER_CPU: Final = 1_000_000_000

# The daemon's smallest memory limit or reservation for a container (its "6MB").
DOCKER_MIN_MEMORY_BYTES: Final = 6 * MIB
# Swarm's control API refuses smaller non-zero values in a service spec.
SWARM_MIN_MEMORY_BYTES: Final = 4 * MIB
SWARM_MIN_NANO_CPUS: Final = 1_000_000  # 0.001 CPU

# The name of a local volume: the daemon's `RestrictedNamePattern`.
VOLUME_NAME_PATTERN: Final = r"[a-zA-Z0-9][a-zA-Z0-9_.-]+"


def is_volume_name(name: str) -> bool:
    """Whether Docker accepts `name` as a local volume name (at least two characters)."""
    return re.fullmatch(VOLUME_NAME_PATTERN, name) is not None
