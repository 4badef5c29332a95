"""A Telltale collector written in Python, built with componentize-py from sdk/wit only.

It reads /proc/loadavg and /proc/meminfo through the host's `files` capability (so its
config entry must grant `files: [/proc]`) and emits, with PREFIX from its config
(default `python`):

    PREFIX_loadavg_1m / _5m / _15m      load averages
    PREFIX_processes_running            runnable scheduling entities (/proc/loadavg)
    PREFIX_processes_total              scheduling entities that exist (/proc/loadavg)
    PREFIX_memory_total_bytes           MemTotal
    PREFIX_memory_available_bytes       MemAvailable
    PREFIX_memory_used_percent          100 * (1 - MemAvailable / MemTotal)
    PREFIX_collect_calls_total          how often collect() ran in this instance

Every sample carries `source="/proc/..."` (the file it came from, `self` for the counter)
plus the `labels` of the config.

Config (JSON, every key optional):

    {"prefix": "python", "labels": {"team": "ops"}}

A wrong config makes `init` fail with the WIT error `plugin-error.invalid-config`,
which the engine reports with the instance's name.
"""

import json
import re

from componentize_py_types import Err
import wit_world
from wit_world.imports import files, host
from wit_world.imports.types import (
    PluginError_Failed,
    PluginError_InvalidConfig,
    PluginError_Unavailable,
    SampleBatch,
)

# Prometheus naming rules, as the host checks them.
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_KNOWN_KEYS = {"prefix", "labels"}

LOADAVG = "/proc/loadavg"
MEMINFO = "/proc/meminfo"


class Config:
    """The parsed, validated `config` section."""

    def __init__(self, prefix: str, labels: dict):
        self.prefix = prefix
        self.labels = labels


def parse_config(text: str) -> Config:
    """Parses the JSON config; raises ValueError with a readable message."""
    try:
        raw = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as e:
        raise ValueError(f"config is not JSON: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"config must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise ValueError(
            f"unknown config key `{unknown[0]}` (known: {', '.join(sorted(_KNOWN_KEYS))})"
        )
    prefix = raw.get("prefix", "python")
    if not isinstance(prefix, str) or not _METRIC_NAME.match(prefix):
        raise ValueError(
            f"`prefix` must be a metric name prefix like `python`, got {prefix!r}"
        )
    labels = raw.get("labels", {})
    if not isinstance(labels, dict):
        raise ValueError("`labels` must be a mapping of label names to strings")
    for name, value in labels.items():
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"`labels`: `{name}` is not a valid label name")
        if not isinstance(value, str):
            raise ValueError(f"`labels.{name}` must be a string, got {value!r}")
        if name == "source":
            raise ValueError("`labels.source` is set by the plugin itself")
    return Config(prefix, dict(labels))


def parse_loadavg(text: str) -> dict:
    """`0.52 0.58 0.59 2/1234 5678` -> load averages and process counts."""
    fields = text.split()
    if len(fields) < 4 or "/" not in fields[3]:
        raise ValueError(f"unexpected {LOADAVG} format: {text.strip()!r}")
    running, total = fields[3].split("/", 1)
    return {
        "loadavg_1m": float(fields[0]),
        "loadavg_5m": float(fields[1]),
        "loadavg_15m": float(fields[2]),
        "processes_running": float(running),
        "processes_total": float(total),
    }


def parse_meminfo(text: str) -> dict:
    """`MemTotal:  16318412 kB` lines -> bytes per key."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
        try:
            values[key.strip()] = float(parts[0]) * scale
        except ValueError:
            continue
    return values


class Batch:
    """Builds the `sample-batch` that `collect` returns (contract 0.3).

    Every metric name, label name and label value goes into one text, back to back,
    addressed by byte offsets (start and length in UTF-8 bytes, not characters). The rest
    is columns of numbers: four per sample in `samples` (name start, name length, first
    label, label count), one per sample in `values` and `timestamps`, and four per label
    in `labels` (name start, name length, value start, value length). A string written
    once may be pointed at many times: `span()` remembers what it wrote.
    """

    def __init__(self, timestamp_ms: int):
        self.timestamp_ms = timestamp_ms
        self._parts = []
        self._size = 0
        self._spans = {}
        self.samples = []
        self.values = []
        self.timestamps = []
        self.labels = []

    def span(self, text: str) -> tuple:
        """(start, len) of `text` in the batch, writing it the first time."""
        span = self._spans.get(text)
        if span is None:
            data = text.encode("utf-8")
            span = (self._size, len(data))
            self._parts.append(text)
            self._size += len(data)
            self._spans[text] = span
        return span

    def add(self, name: str, value: float, labels: dict) -> None:
        """Adds the sample `name{labels} value`, timestamped with the batch's time."""
        first = len(self.labels) // 4
        for k, v in labels.items():
            self.labels.extend(self.span(k) + self.span(v))
        self.samples.extend(self.span(name) + (first, len(labels)))
        self.values.append(value)
        self.timestamps.append(self.timestamp_ms)

    def finish(self) -> SampleBatch:
        return SampleBatch(
            "".join(self._parts), self.samples, self.values, self.timestamps, self.labels
        )


def read_text(path: str) -> str:
    """Reads a file through the `files` capability, as text."""
    try:
        return files.read(path).decode("utf-8", errors="replace")
    except Err as e:
        # The host's message says why (not granted, missing, too large).
        raise Err(PluginError_Unavailable(f"cannot read {path}: {e.value}")) from None


# The instance's state lives at module level: componentize-py keeps the module alive for
# the whole life of the component instance, whereas the export class below may be
# instantiated for each call. A re-instantiated plugin (after a failure) starts afresh.
_config = Config("python", {})
_calls = 0


class WitWorld(wit_world.WitWorld):
    """Implements the exports of the `collector` world (`init`, `collect`)."""

    def init(self, config: str) -> None:
        global _config
        try:
            _config = parse_config(config)
        except ValueError as e:
            raise Err(PluginError_InvalidConfig(str(e))) from None
        host.log(host.Level.INFO, f"python collector ready, prefix `{_config.prefix}`")

    def collect(self) -> SampleBatch:
        global _calls
        _calls += 1
        batch = Batch(host.now_ms())

        def emit(name: str, value: float, source: str) -> None:
            labels = dict(sorted(_config.labels.items()))
            labels["source"] = source
            batch.add(f"{_config.prefix}_{name}", value, labels)

        try:
            for name, value in parse_loadavg(read_text(LOADAVG)).items():
                emit(name, value, LOADAVG)
            mem = parse_meminfo(read_text(MEMINFO))
        except ValueError as e:
            raise Err(PluginError_Failed(str(e))) from None
        total, available = mem.get("MemTotal"), mem.get("MemAvailable")
        if total:
            emit("memory_total_bytes", total, MEMINFO)
            if available is not None:
                emit("memory_available_bytes", available, MEMINFO)
                emit("memory_used_percent", 100.0 * (1.0 - available / total), MEMINFO)
        emit("collect_calls_total", float(_calls), "self")
        return batch.finish()
