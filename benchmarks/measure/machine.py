"""The machine a measurement ran on, and CPU lists as the make variables spell them."""

from __future__ import annotations

import os
import platform
from importlib import metadata as package_metadata
from pathlib import Path

import psutil

# The libraries whose versions belong with every result: they decide what the servers cost.
LIBRARIES = ("flask", "gunicorn", "grpcio", "protobuf", "scikit-learn", "numpy", "locust", "psutil")


def machine_info() -> dict:
    """CPU model, cores, memory, OS, Python and library versions (results.json `run.machine`)."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return {
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count() or 0,
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libraries,
    }


def parse_cpus(text: str) -> list[int]:
    """ "0", "0,2" or "0-3" -> CPU numbers."""
    cpus: list[int] = []
    for part in text.replace(" ", "").split(","):
        if "-" in part:
            low, high = part.split("-")
            cpus.extend(range(int(low), int(high) + 1))
        elif part:
            cpus.append(int(part))
    return cpus
