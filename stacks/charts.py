"""Chart geometry for the staff dashboard: coordinates computed here, drawn as SVG by templates.

Nothing here queries or formats for a page: a chart takes labelled numbers and gives back the
positions of its lines, bars, ticks and labels in a fixed viewBox, which the template scales to
the page's width. Colours are CSS classes (static/css/staff.css), so the light and the dark
scheme each pick their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

Format = Callable[[float], str]

WIDTH = 640
HEIGHT = 210
LEFT = 56
RIGHT = 14
TOP = 14
BOTTOM = 34
BAR_LABELS = 200  # room for endpoint names left of horizontal bars
ROW = 22
MAX_X_LABELS = 8
MIN_BAND = 4.0


def plain(value: float) -> str:
    return f"{value:g}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = math.pow(10, math.floor(math.log10(value)))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def whole_ceiling(value: float) -> float:
    """A top for counts: four equal whole steps (1, 2, 5, 10, 20, 25, 50, 100, ...)."""
    power = 1.0
    while True:
        for factor in (1.0, 2.0, 2.5, 5.0):
            step = factor * power
            if step == int(step) and step * 4 >= value:
                return step * 4
        power *= 10


@dataclass(frozen=True)
class Tick:
    at: float  # x or y in the viewBox
    label: str


def _value_ticks(top: float, fmt: Format, to_position: Callable[[float], float]) -> list[Tick]:
    return [Tick(to_position(top * i / 4), fmt(top * i / 4)) for i in range(5)]


# --- Lines over time --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str  # the tooltip: label and value


@dataclass(frozen=True)
class Line:
    name: str
    css: str  # series-a, series-ok, ...
    runs: list[str]  # polyline "x,y x,y" for each stretch without a gap
    dots: list[Dot]


@dataclass(frozen=True)
class LineChart:
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    top: int = TOP
    bottom_edge: int = HEIGHT - BOTTOM

    @property
    def view_box(self) -> str:
        return f"0 0 {self.width} {self.height}"

    @property
    def x_label_y(self) -> int:
        return self.bottom_edge + 18


@dataclass(frozen=True)
class Series:
    name: str
    css: str
    values: Sequence[float | None]  # None: nothing to show for that slot (a gap)


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    top: float | None = None,
    fmt: Format = plain,
    whole: bool = False,
) -> LineChart:
    """One point per label, left to right; the value axis from 0 to a round `top` (with
    `whole`, for counts, in whole steps)."""
    count = max(len(labels), 1)
    highest = max((v for s in series for v in s.values if v is not None), default=0.0)
    if top is None:
        top = whole_ceiling(highest) if whole else nice_ceiling(highest)
    plot_width = WIDTH - RIGHT - LEFT
    plot_height = HEIGHT - BOTTOM - TOP

    def x(index: int) -> float:
        return round(LEFT + (index + 0.5) * plot_width / count, 1)

    def y(value: float) -> float:
        return round(HEIGHT - BOTTOM - min(value, top) / top * plot_height, 1)

    lines = []
    for s in series:
        runs: list[str] = []
        current: list[str] = []
        dots = []
        for index, value in enumerate(s.values):
            if value is None:
                if current:
                    runs.append(" ".join(current))
                current = []
                continue
            current.append(f"{x(index)},{y(value)}")
            dots.append(Dot(x(index), y(value), f"{labels[index]}: {s.name} {fmt(value)}"))
        if current:
            runs.append(" ".join(current))
        lines.append(Line(s.name, s.css, runs, dots))
    every = max(1, math.ceil(count / MAX_X_LABELS))
    x_ticks = [Tick(x(i), label) for i, label in enumerate(labels) if i % every == 0]
    return LineChart(lines, _value_ticks(top, fmt, y), x_ticks)


# --- Horizontal bars --------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    value: float
    css: str
    title: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class BarRow:
    label: str
    label_y: float
    bars: list[Bar]
    total: str  # the row's value, written after its bar
    total_x: float


@dataclass(frozen=True)
class BarChart:
    rows: list[BarRow]
    x_ticks: list[Tick]
    height: int
    width: int = WIDTH
    left: int = BAR_LABELS
    right_edge: int = WIDTH - RIGHT - 44
    top: int = TOP

    @property
    def view_box(self) -> str:
        return f"0 0 {self.width} {self.height}"

    @property
    def bottom_edge(self) -> int:
        return self.height - BOTTOM

    @property
    def x_label_y(self) -> int:
        return self.bottom_edge + 18

    @property
    def label_x(self) -> int:
        return self.left - 8


def bar_chart(
    rows: Sequence[tuple[str, Sequence[Piece]]],
    *,
    grouped: bool = False,
    fmt: Format = plain,
    whole: bool = True,
) -> BarChart:
    """A row per label. Its pieces are stacked end to end, or with `grouped` drawn one under
    the other (p50, p95, p99 of one endpoint). Counts (`whole`) get whole steps on the axis."""
    right_edge = WIDTH - RIGHT - 44
    plot_width = right_edge - BAR_LABELS
    sizes = [
        max((p.value for p in pieces), default=0.0) if grouped else sum(p.value for p in pieces)
        for _, pieces in rows
    ]
    top = (whole_ceiling if whole else nice_ceiling)(max(sizes, default=0.0))
    row_height = ROW + (8 * (max((len(p) for _, p in rows), default=1) - 1) if grouped else 0)
    height = TOP + row_height * max(len(rows), 1) + BOTTOM

    def width(value: float) -> float:
        return round(value / top * plot_width, 1)

    drawn = []
    for index, (label, pieces) in enumerate(rows):
        y0 = TOP + index * row_height
        bars = []
        x = float(BAR_LABELS)
        slot = (row_height - 6) / max(len(pieces), 1)
        for number, piece in enumerate(pieces):
            if grouped:
                bars.append(
                    Bar(BAR_LABELS, round(y0 + 3 + number * slot, 1), width(piece.value),
                        round(slot - 1, 1), piece.css, piece.title)
                )  # fmt: skip
            else:
                bars.append(
                    Bar(x, y0 + 3, width(piece.value), row_height - 6, piece.css, piece.title)
                )
                x += width(piece.value)
        end = max((b.x + b.width for b in bars), default=float(BAR_LABELS))
        drawn.append(
            BarRow(label, y0 + row_height / 2 + 4, bars, fmt(sizes[index]), round(end + 6, 1))
        )
    ticks = [Tick(round(BAR_LABELS + plot_width * i / 4, 1), fmt(top * i / 4)) for i in range(5)]
    return BarChart(drawn, ticks, height)


# --- A state over time ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stretch:
    start: datetime
    end: datetime
    state: str


@dataclass(frozen=True)
class Band:
    x: float
    width: float
    css: str
    title: str


@dataclass(frozen=True)
class Timeline:
    bands: list[Band]
    x_ticks: list[Tick]
    width: int = WIDTH
    height: int = 70
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    top: int = TOP
    band_height: int = 26

    @property
    def view_box(self) -> str:
        return f"0 0 {self.width} {self.height}"

    @property
    def x_label_y(self) -> int:
        return self.top + self.band_height + 20


def timeline(
    stretches: Sequence[Stretch],
    start: datetime,
    end: datetime,
    ticks: Sequence[tuple[datetime, str]],
    describe: Callable[[Stretch], str],
) -> Timeline:
    span = (end - start).total_seconds() or 1.0
    plot_width = WIDTH - RIGHT - LEFT

    def x(moment: datetime) -> float:
        return round(LEFT + (moment - start).total_seconds() / span * plot_width, 1)

    # A minute's outage in a month would be narrower than a pixel: it gets MIN_BAND.
    bands = [
        Band(
            x(s.start),
            max(round(x(s.end) - x(s.start), 1), 1.0 if s.state == "closed" else MIN_BAND),
            f"state-{s.state}",
            describe(s),
        )
        for s in stretches
    ]
    # A label centred on the right edge would be cut in half.
    shown = [Tick(x(moment), label) for moment, label in ticks if x(moment) <= WIDTH - RIGHT - 18]
    return Timeline(bands, shown)
