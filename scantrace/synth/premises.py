"""The synthetic premises registry: `generate_premises(seed, n)` (the package docstring)."""

from __future__ import annotations

import random
from collections.abc import Mapping

from ingest.premises import Premises
from scantrace.synth.province import (
    CATEGORY_SHARE,
    CITY,
    DISTRICT_CENTRE,
    DISTRICT_POPULATION,
    DISTRICTS,
    FLOWERS,
    GIVEN_NAMES,
    LANDMARK_AGENCY,
    LANDMARKS,
    LAT_RANGE,
    LON_RANGE,
    NAME_TEMPLATES,
    PAGODAS,
    PROVINCE,
    SCHOOL_PATRONS,
    STREETS,
    WARDS,
    district_agency,
)

__all__ = ["allocate", "generate_premises"]


def allocate(total: int, weights: Mapping[str, float], minimum: int = 0) -> dict[str, int]:
    """Split `total` into integer parts proportional to `weights` (largest remainder)."""
    keys = list(weights)
    base = {k: minimum for k in keys}
    rest = total - minimum * len(keys)
    if rest < 0:
        raise ValueError(f"cannot give {len(keys)} parts {minimum} each out of {total}")
    weight_sum = sum(weights.values())
    exact = {k: rest * weights[k] / weight_sum for k in keys}
    for k in keys:
        base[k] += int(exact[k])
    left = total - sum(base.values())
    by_remainder = sorted(keys, key=lambda k: (-(exact[k] - int(exact[k])), keys.index(k)))
    for k in by_remainder[:left]:
        base[k] += 1
    return base


def _ward_core(ward: str) -> str:
    for prefix in ("Phường ", "Xã ", "Thị trấn "):
        if ward.startswith(prefix):
            return ward[len(prefix) :]
    return ward


def _district_label(district: str) -> str:
    return "thành phố " + district if district == CITY else "huyện " + district


def _ward_centre(district: str, ward: str) -> tuple[float, float]:
    """A fixed (seed-independent) point near the district centre for each ward."""
    lat, lon = DISTRICT_CENTRE[district]
    place = random.Random(f"ward:{district}:{ward}")  # noqa: S311 - geography, not security
    spread = 0.025 if district == CITY else 0.06
    return lat + place.uniform(-spread, spread), lon + place.uniform(-spread, spread)


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return min(max(value, low + 0.005), high - 0.005)


def generate_premises(seed: int, n: int = 3000) -> list[Premises]:
    """`n` premises of a Ninh Thuan-like province, ids `NT-000001`..., deterministic."""
    if n < 0:
        raise ValueError("n must not be negative")
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    district_counts = allocate(n, DISTRICT_POPULATION)
    category_counts = allocate(n, CATEGORY_SHARE, minimum=1 if n >= len(CATEGORY_SHARE) else 0)
    districts = [d for d, c in district_counts.items() for _ in range(c)]
    categories = [k for k, c in category_counts.items() for _ in range(c)]
    rng.shuffle(districts)
    rng.shuffle(categories)
    # The province's malls are in the city: swap categories so they land there.
    for i, category in enumerate(categories):
        if category == "mall" and districts[i] != CITY:
            for j, district in enumerate(districts):
                if district == CITY and categories[j] != "mall":
                    categories[i], categories[j] = categories[j], categories[i]
                    break

    landmarks = {key: list(names) for key, names in LANDMARKS.items()}
    used: dict[tuple[str, str], int] = {}
    centres = {(d, w): _ward_centre(d, w) for d in DISTRICTS for w in WARDS[d]}
    out: list[Premises] = []
    for i, (district, category) in enumerate(zip(districts, categories, strict=True)):
        ward = rng.choice(WARDS[district])
        pool = landmarks.get((category, district))
        if pool:
            name, agency = pool.pop(0), LANDMARK_AGENCY[category]
        else:
            template, agency = rng.choice(NAME_TEMPLATES[category])
            name = template.format(
                given=rng.choice(GIVEN_NAMES),
                ward=ward,
                wcore=_ward_core(ward),
                dname=_district_label(district),
                patron=rng.choice(SCHOOL_PATRONS),
                flower=rng.choice(FLOWERS),
                pagoda=rng.choice(PAGODAS),
            )
        if agency == "UBND":
            agency = district_agency(district)
        # The same name twice in one ward is a second branch ("cơ sở 2").
        seen = used.get((ward, name), 0) + 1
        used[(ward, name)] = seen
        if seen > 1:
            name = f"{name} - Cơ sở {seen}"
        if ward.startswith("Xã "):
            street = f"Thôn {rng.randint(1, 9)}"
        else:
            street = f"Số {rng.randint(1, 350)} đường {rng.choice(STREETS)}"
        address = f"{street}, {ward}, {_district_label(district)}, tỉnh {PROVINCE}"
        c_lat, c_lon = centres[(district, ward)]
        lat = round(_clamp(rng.gauss(c_lat, 0.008), LAT_RANGE), 6)
        lon = round(_clamp(rng.gauss(c_lon, 0.008), LON_RANGE), 6)
        out.append(
            Premises(
                premises_id=f"NT-{i + 1:06d}",
                name=name,
                category=category,
                district=district,
                ward=ward,
                agency=agency,
                address=address,
                lat=lat,
                lon=lon,
            )
        )
    return out
