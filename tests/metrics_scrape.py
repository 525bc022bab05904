"""Scraping /metrics in tests: through the real view, parsed by prometheus-client's own parser."""

from __future__ import annotations

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "scrape-token-0123456789abcdef"

Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(client: Client | None = None, token: str = TOKEN) -> dict[Sample, float]:
    """Every sample of one scrape: (name, labels in the family's order) -> value."""
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sample.labels.items()))] = sample.value
    return samples


def pick(samples: dict[Sample, float], name: str, **labels: str) -> dict[Sample, float]:
    """The samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return {
        key: value for key, value in samples.items() if key[0] == name and wanted <= set(key[1])
    }


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """The one sample of `name` with exactly these labels."""
    (number,) = [v for (n, key), v in samples.items() if n == name and dict(key) == labels]
    return number


def nonzero(
    samples: dict[Sample, float], name: str, *order: str, **labels: str
) -> dict[tuple[str, ...], float]:
    """The samples of `name` that are not 0, keyed by the values of the labels named in
    `order` (by default every label not given in `labels`, by name)."""
    found: dict[tuple[str, ...], float] = {}
    for (_, key), number in pick(samples, name, **labels).items():
        if number:
            values = dict(key)
            names = order or tuple(sorted(k for k in values if k not in labels))
            found[tuple(values[k] for k in names)] = number
    return found


def counters_and_histograms(samples: dict[Sample, float]) -> dict[Sample, float]:
    """The samples that only ever grow: counters and histograms (not the gauges of now)."""
    return {
        key: number
        for key, number in samples.items()
        if key[0].endswith(("_total", "_bucket", "_count", "_sum"))
    }
