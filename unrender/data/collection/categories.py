"""Parametric object categories: chair-, table-, airplane-, lamp-, car- and sofa-like part assemblies.

Each category is a function ``rng -> list[Part]`` (see :mod:`.part_sdf`) that draws the proportions of
a fixed set of parts (with a few discrete variants: round or square legs, solid or slatted back,
pedestal or four-legged table, straight or arm lamp, swept wings with or without engines, ...) and
gives every part a colour from the category's palette, jittered per object. Parts overlap so that
their union is one connected solid. Object frame: y up, the object's front facing +z (an airplane's
nose points to +z), floor at ``y = 0`` before :func:`.part_sdf.mesh_parts` centres and rescales it.

Category folders are named by ShapeNet synset ids, as DVR's ShapeNet layout expects:

==========  =========  ======================================================================
name        synset     parts
==========  =========  ======================================================================
chair       03001627   seat, 4 legs, back (panel or posts + rail), optional arm rests
table       04379243   top (rectangular or round), 4 legs or pedestal + foot, optional shelf
airplane    02691156   fuselage, swept wings, tailplane, fin, optional engines
lamp        03636649   base, pole, shade (upright frustum) or arm + hanging shade
car         02958343   body, cabin, 4 wheels
sofa        04256520   base, back, 2 arms, optional feet
==========  =========  ======================================================================

Example:
    >>> import numpy as np
    >>> parts = build_parts("chair", np.random.default_rng(0))
    >>> len(parts) >= 6
    True
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...errors import InputError
from .part_sdf import Box, Cylinder, Ellipsoid, Frustum, Part, rotation_x, rotation_y


@dataclass(frozen=True)
class Category:
    """One procedural category: its ``name``, ShapeNet ``synset`` id and the part ``builder(rng)``."""

    name: str
    synset: str
    builder: Callable[[np.random.Generator], list[Part]]


def _color(rng: np.random.Generator, hue: float, sat: float, val: float, jitter: float = 0.04) -> tuple:
    """Linear RGB from HSV with a little per-object jitter (values in [0,1])."""
    h = (hue + rng.uniform(-jitter, jitter)) % 1.0
    s = float(np.clip(sat + rng.uniform(-0.1, 0.1), 0.0, 1.0))
    v = float(np.clip(val + rng.uniform(-0.1, 0.1), 0.05, 1.0))
    return tuple(c ** 2.2 for c in colorsys.hsv_to_rgb(h, s, v))  # HSV is picked in display (sRGB) terms


def _leg(rng, x, z, top, radius, round_leg) -> Box | Cylinder:
    if round_leg:
        return Cylinder(a=(x, 0.0, z), b=(x, top, z), radius=radius)
    return Box(center=(x, top / 2, z), half=(radius, top / 2, radius))


def _chair(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(0.40, 0.55), rng.uniform(0.40, 0.55)
    seat_h, seat_t = rng.uniform(0.40, 0.50), rng.uniform(0.04, 0.08)
    leg_r, round_legs = rng.uniform(0.02, 0.035), bool(rng.random() < 0.5)
    back_h, back_t, tilt = rng.uniform(0.35, 0.60), rng.uniform(0.03, 0.06), rng.uniform(0.0, 0.2)
    wood = _color(rng, rng.choice([0.07, 0.58, 0.0]), 0.6, 0.6)
    legs_c = _color(rng, 0.08, 0.3, 0.25)
    back_c = wood if rng.random() < 0.5 else _color(rng, 0.6, 0.5, 0.5, jitter=0.3)
    seat_top = seat_h
    parts = [Part(Box((0.0, seat_top - seat_t / 2, 0.0), (w / 2, seat_t / 2, d / 2), rounding=seat_t / 5), wood)]
    inset = leg_r + rng.uniform(0.0, 0.03)
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(Part(_leg(rng, sx * (w / 2 - inset), sz * (d / 2 - inset), seat_top - seat_t / 2, leg_r,
                                   round_legs), legs_c))
    # The back leans back by `tilt` about its bottom edge and reaches into the seat so the union connects.
    rot = rotation_x(-tilt)
    half_h = (back_h + seat_t) / 2
    root = np.array([0.0, seat_top - seat_t, -d / 2 + back_t / 2])
    def back_box(offset, half, rounding=0.0):  # a box of the back, placed in the back's tilted frame
        return Part(Box(tuple(root + rot @ np.asarray(offset)), half, rot, rounding), back_c)

    if rng.random() < 0.6:
        parts.append(back_box([0, half_h, 0], (w / 2, half_h, back_t / 2), back_t / 5))
    else:
        post = max(leg_r, 0.02)
        for sx in (-1, 1):
            parts.append(back_box([sx * (w / 2 - post), half_h, 0], (post, half_h, back_t / 2)))
        rail_h = rng.uniform(0.06, 0.12)
        parts.append(back_box([0, 2 * half_h - rail_h / 2, 0], (w / 2, rail_h / 2, back_t / 2)))
    if rng.random() < 0.35:
        arm_y = seat_top + rng.uniform(0.18, 0.25)
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.025)
            parts.append(Part(Box((x, arm_y, 0.0), (0.025, 0.02, d / 2)), legs_c))
            parts.append(Part(Cylinder((x, seat_top - seat_t / 2, d / 2 - 0.04), (x, arm_y, d / 2 - 0.04), 0.018),
                              legs_c))
    return parts


def _table(rng: np.random.Generator) -> list[Part]:
    h, top_t = rng.uniform(0.55, 0.80), rng.uniform(0.03, 0.06)
    top_c = _color(rng, rng.choice([0.09, 0.12, 0.0]), rng.choice([0.5, 0.05]), 0.8)
    leg_c = _color(rng, 0.6, 0.1, 0.3, jitter=0.2)
    if rng.random() < 0.3:
        radius = rng.uniform(0.35, 0.60)
        foot_r, foot_t = rng.uniform(0.18, 0.32), rng.uniform(0.03, 0.05)
        return [Part(Cylinder((0.0, h - top_t, 0.0), (0.0, h, 0.0), radius), top_c),
                Part(Cylinder((0.0, 0.0, 0.0), (0.0, h - top_t / 2, 0.0), rng.uniform(0.03, 0.06)), leg_c),
                Part(Cylinder((0.0, 0.0, 0.0), (0.0, foot_t, 0.0), foot_r), leg_c)]
    w, d = rng.uniform(0.8, 1.4), rng.uniform(0.5, 0.8)
    leg_r, round_legs = rng.uniform(0.025, 0.045), bool(rng.random() < 0.5)
    parts = [Part(Box((0.0, h - top_t / 2, 0.0), (w / 2, top_t / 2, d / 2), rounding=top_t / 4), top_c)]
    inset = leg_r + rng.uniform(0.0, 0.08)
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(Part(_leg(rng, sx * (w / 2 - inset), sz * (d / 2 - inset), h - top_t / 2, leg_r, round_legs),
                              leg_c))
    if rng.random() < 0.4:
        shelf_y = h * rng.uniform(0.2, 0.35)
        parts.append(Part(Box((0.0, shelf_y, 0.0), (w / 2 - inset, 0.015, d / 2 - inset)), top_c))
    return parts


def _airplane(rng: np.random.Generator) -> list[Part]:
    length, fr = rng.uniform(0.9, 1.2), rng.uniform(0.05, 0.08)
    span, chord = rng.uniform(0.8, 1.2), rng.uniform(0.12, 0.22)
    thick, sweep = rng.uniform(0.016, 0.022), rng.uniform(0.0, math.radians(35))
    body_c = _color(rng, 0.6, 0.05, 0.9)
    wing_c = _color(rng, 0.6, 0.1, 0.75)
    tail_c = _color(rng, rng.choice([0.0, 0.6, 0.33]), 0.8, 0.7)
    wy, wz = rng.uniform(-0.5, 0.3) * fr, rng.uniform(-0.1, 0.1)
    parts = [Part(Ellipsoid((0.0, 0.0, 0.0), (fr, fr * rng.uniform(1.0, 1.2), length / 2)), body_c)]

    def wing_pair(y, z, half_span, c, color):
        out = []
        for sx in (-1, 1):
            rot = rotation_y(sx * sweep)
            center = np.array([0.0, y, z]) + rot @ [sx * half_span / 2, 0.0, 0.0]
            out.append(Part(Box(tuple(center), (half_span / 2, thick, c / 2), rot, thick * 0.6), color))
        return out

    parts += wing_pair(wy, wz, span / 2, chord, wing_c)
    tail_z = -length / 2 * 0.8
    parts += wing_pair(0.0, tail_z, span / 2 * rng.uniform(0.3, 0.45), chord * rng.uniform(0.5, 0.8), tail_c)
    fin_h, fin_c = rng.uniform(0.1, 0.18), chord * rng.uniform(0.6, 0.9)
    fin_rot = rotation_x(-rng.uniform(0.1, 0.5))
    fin_root = np.array([0.0, fr * 0.5, tail_z])
    parts.append(Part(Box(tuple(fin_root + fin_rot @ [0.0, fin_h / 2, 0.0]), (thick, fin_h / 2, fin_c / 2), fin_rot,
                          thick * 0.6), tail_c))
    if rng.random() < 0.5:
        er, el = rng.uniform(0.03, 0.045), rng.uniform(0.15, 0.25)
        for sx in (-1, 1):
            x = sx * span / 2 * rng.uniform(0.3, 0.55)
            z = wz - abs(x) * math.tan(sweep) + chord * 0.2
            y = wy - er * 0.8
            parts.append(Part(Cylinder((x, y, z - el / 2), (x, y, z + el / 2), er), body_c))
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    base_r, base_t = rng.uniform(0.10, 0.18), rng.uniform(0.025, 0.05)
    pole_h, pole_r = rng.uniform(0.5, 0.9), rng.uniform(0.015, 0.025)
    metal = _color(rng, 0.1, 0.15, 0.45, jitter=0.5)
    shade_c = _color(rng, rng.choice([0.12, 0.0, 0.55]), 0.5, 0.9)
    parts = [Part(Cylinder((0.0, 0.0, 0.0), (0.0, base_t, 0.0), base_r), metal),
             Part(Cylinder((0.0, 0.0, 0.0), (0.0, pole_h, 0.0), pole_r), metal)]
    if rng.random() < 0.5:
        shade_h, r_bot = rng.uniform(0.18, 0.30), rng.uniform(0.14, 0.25)
        parts.append(Part(Frustum((0.0, pole_h - 0.6 * shade_h, 0.0), shade_h, r_bot, r_bot * rng.uniform(0.4, 0.8)),
                          shade_c))
        return parts
    arm_len, angle = rng.uniform(0.25, 0.45), rng.uniform(math.radians(10), math.radians(40))
    end = np.array([0.0, pole_h + arm_len * math.sin(angle), arm_len * math.cos(angle)])
    parts.append(Part(Cylinder((0.0, pole_h - pole_r, 0.0), tuple(end), pole_r), metal))
    shade_h = rng.uniform(0.12, 0.2)
    parts.append(Part(Frustum((end[0], end[1] - shade_h + pole_r, end[2]), shade_h, rng.uniform(0.08, 0.14),
                              rng.uniform(0.025, 0.04)), shade_c))
    return parts


def _car(rng: np.random.Generator) -> list[Part]:
    length = rng.uniform(0.9, 1.2)
    width, body_h = length * rng.uniform(0.40, 0.50), rng.uniform(0.15, 0.25)
    wheel_r, wheel_w = rng.uniform(0.08, 0.12), rng.uniform(0.05, 0.08)
    clearance = wheel_r * 0.6
    cabin_h = rng.uniform(0.12, 0.20)
    paint = _color(rng, rng.uniform(0.0, 1.0), 0.8, 0.75, jitter=0.0)
    glass = _color(rng, 0.58, 0.3, 0.3)
    tyre = _color(rng, 0.0, 0.0, 0.12, jitter=0.0)
    parts = [Part(Box((0.0, clearance + body_h / 2, 0.0), (width / 2, body_h / 2, length / 2), rounding=0.03), paint),
             Part(Box((0.0, clearance + body_h + cabin_h / 2 - 0.02, rng.uniform(-0.1, 0.05) * length),
                      (width / 2 * rng.uniform(0.8, 0.95), cabin_h / 2 + 0.02, length * rng.uniform(0.22, 0.32)),
                      rounding=0.04), glass)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            x0, x1 = sx * (width / 2 - 0.7 * wheel_w), sx * (width / 2 + 0.3 * wheel_w)
            z = sz * length * 0.32
            parts.append(Part(Cylinder((x0, wheel_r, z), (x1, wheel_r, z), wheel_r), tyre))
    return parts


def _sofa(rng: np.random.Generator) -> list[Part]:
    width, depth = rng.uniform(1.2, 1.8), rng.uniform(0.6, 0.8)
    seat_h, feet = rng.uniform(0.35, 0.45), (rng.uniform(0.04, 0.07) if rng.random() < 0.5 else 0.0)
    back_h, back_t = rng.uniform(0.30, 0.45), rng.uniform(0.12, 0.20)
    arm_w, arm_h = rng.uniform(0.10, 0.18), rng.uniform(0.12, 0.22)
    fabric = _color(rng, rng.choice([0.6, 0.33, 0.0, 0.08]), 0.35, 0.55, jitter=0.05)
    wood = _color(rng, 0.08, 0.5, 0.3)
    body_h = seat_h - feet
    parts = [Part(Box((0.0, feet + body_h / 2, 0.0), (width / 2, body_h / 2, depth / 2), rounding=0.03), fabric),
             Part(Box((0.0, seat_h + back_h / 2 - 0.05, -depth / 2 + back_t / 2), (width / 2, back_h / 2 + 0.05,
                      back_t / 2), rounding=0.04), fabric)]
    for sx in (-1, 1):
        parts.append(Part(Box((sx * (width / 2 - arm_w / 2), feet + (body_h + arm_h) / 2, 0.0),
                              (arm_w / 2, (body_h + arm_h) / 2, depth / 2), rounding=0.04), fabric))
    if feet > 0:
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (width / 2 - 0.06), sz * (depth / 2 - 0.06)
                parts.append(Part(Cylinder((x, 0.0, z), (x, feet + 0.02, z), 0.025), wood))
    return parts


#: The categories in the order ``--categories K`` takes them (the first K).
CATEGORIES: tuple[Category, ...] = (
    Category("chair", "03001627", _chair),
    Category("table", "04379243", _table),
    Category("airplane", "02691156", _airplane),
    Category("lamp", "03636649", _lamp),
    Category("car", "02958343", _car),
    Category("sofa", "04256520", _sofa),
)


def category_by_name(name: str) -> Category:
    """The :class:`Category` called ``name`` (or with that synset id).

    Example:
        >>> category_by_name("lamp").synset
        '03636649'
    """
    for c in CATEGORIES:
        if name in (c.name, c.synset):
            return c
    raise InputError(f"unknown category {name!r}; choose one of {', '.join(c.name for c in CATEGORIES)}.")


def build_parts(category: str, rng: np.random.Generator) -> list[Part]:
    """Draw one object of ``category`` (name or synset): its list of coloured parts.

    Example:
        >>> [type(p.shape).__name__ for p in build_parts("car", np.random.default_rng(1))][:2]
        ['Box', 'Box']
    """
    return category_by_name(category).builder(rng)
