"""Small drawings of the workbench, as numbers for an SVG template: a map of premises
from the registry's coordinates (Web Mercator; tiles only when a tile server is set, so
that the page works on a closed network), scans per hour, a day strip of visits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tracing.workbench.localtime import DAY_MS

WIDTH: Final = 480
HEIGHT: Final = 320
PAD: Final = 24
TILE: Final = 256
MAX_TILES: Final = 16


@dataclass(frozen=True, slots=True)
class Place:
    premises_id: str
    name: str
    lat: float
    lon: float
    label: str  # a short mark (the visit's number)
    current: bool = False


@dataclass(frozen=True, slots=True)
class Dot:
    place: Place
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Tile:
    href: str
    x: float
    y: float
    size: float


@dataclass(frozen=True, slots=True)
class Map:
    width: int
    height: int
    dots: list[Dot]
    tiles: list[Tile]


def _mercator(lat: float, lon: float) -> tuple[float, float]:
    """Web Mercator in [0, 1] x [0, 1] (y grows southwards)."""
    lat = max(-85.0, min(85.0, lat))
    s = math.sin(math.radians(lat))
    return (lon + 180.0) / 360.0, 0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)


def draw_map(places: Sequence[Place], tile_url: str = "") -> Map | None:
    """The places fitted into a WIDTH x HEIGHT box; None without any coordinates."""
    if not places:
        return None
    pts = [_mercator(p.lat, p.lon) for p in places]
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    # at least ~1 km across, so that one place or a tight cluster is not a blow-up
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-5)
    scale = min((WIDTH - 2 * PAD) / span, (HEIGHT - 2 * PAD) / span)
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2

    def at(x: float, y: float) -> tuple[float, float]:
        return WIDTH / 2 + (x - cx) * scale, HEIGHT / 2 + (y - cy) * scale

    dots = [Dot(p, *at(x, y)) for p, (x, y) in zip(places, pts, strict=True)]
    return Map(WIDTH, HEIGHT, dots, _tiles(tile_url, scale, cx, cy) if tile_url else [])


def _tiles(url: str, scale: float, cx: float, cy: float) -> list[Tile]:
    """The tiles under the box at the zoom closest to the drawing's scale."""
    z = max(0, min(19, round(math.log2(scale / TILE))))
    n = 2**z
    size = scale / n  # a tile's side in the drawing
    left, top = cx - WIDTH / 2 / scale, cy - HEIGHT / 2 / scale
    right, bottom = cx + WIDTH / 2 / scale, cy + HEIGHT / 2 / scale
    out: list[Tile] = []
    for tx in range(max(0, int(left * n)), min(n - 1, int(right * n)) + 1):
        for ty in range(max(0, int(top * n)), min(n - 1, int(bottom * n)) + 1):
            href = url.replace("{z}", str(z)).replace("{x}", str(tx)).replace("{y}", str(ty))
            out.append(
                Tile(
                    href,
                    WIDTH / 2 + (tx / n - cx) * scale,
                    HEIGHT / 2 + (ty / n - cy) * scale,
                    size,
                )
            )
            if len(out) >= MAX_TILES:
                return out
    return out


@dataclass(frozen=True, slots=True)
class Bar:
    at: int  # epoch ms of the hour
    count: int
    x: float
    height: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bar_width: float
    top: int
    bars: list[Bar]


def hourly_chart(
    counts: Sequence[tuple[int, int]], from_ms: int, to_ms: int, width: int = 720
) -> Chart:
    """Scans per hour over the period, an hour a bar (empty hours included)."""
    hour = 3_600_000
    first = from_ms - from_ms % hour
    hours = max(1, min(24 * 31, (to_ms - first) // hour + 1))
    by_hour = dict(counts)
    top = max([1, *by_hour.values()])
    h = 100
    bw = width / hours
    bars = []
    for i in range(hours):
        at = first + i * hour
        n = by_hour.get(at, 0)
        bars.append(Bar(at, n, i * bw, h * n / top))
    return Chart(width, h, bw, top, bars)


@dataclass(frozen=True, slots=True)
class Span:
    x: float  # percent of the day
    width: float
    label: str


def day_strip(day_ms: int, spans: Sequence[tuple[int, int, str]]) -> list[Span]:
    """The parts of `spans` (from, to, label) inside the local day starting at `day_ms`,
    as percents of the day (a visit at least a thin line)."""
    out = []
    for t0, t1, label in spans:
        lo, hi = max(t0, day_ms), min(t1, day_ms + DAY_MS)
        if lo > hi or (lo == hi and not t0 <= lo <= t1):
            continue
        x = 100.0 * (lo - day_ms) / DAY_MS
        out.append(Span(round(x, 3), round(max(0.4, 100.0 * (hi - lo) / DAY_MS), 3), label))
    return out
