"""The Two-Colors scenario of ViZDoom, written here as text and packed into a WAD on first use.

The WAD holds two UDMF maps (``MAP01``: red pillar, ``MAP02``: green pillar) and a ``DECORATE`` lump with the
pillars, the items and a spawner that scatters items at random places (ZDoom's random generator, which ViZDoom
seeds). Nothing needs ACS or a node builder: ZDoom builds the nodes of a UDMF map that has none when it loads it.
Textures are stock ones of ``freedoom2.wad``, the IWAD the ``vizdoom`` package ships; the pillars' and items' sprites
are drawn here (shaded upright bars in the IWAD's purest red and green, from its palette ``PLAYPAL``).

Timing is in tics (35 per second); the env steps :data:`TICS_PER_STEP` tics per action, so the acid floor's
10 HP every 64 tics drains 10/32 HP per step and the pillar's 90 tics are 45 steps.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

TICS_PER_STEP = 2
ROOM_SIZE = 768  # map units, square
PILLAR_STEPS = 45
ITEM_HEAL, ITEM_DAMAGE = 25, 25
INITIAL_ITEMS = 10  # of each colour
REFILL_TICS = 64  # one item of each colour appears this often
ITEM_LIFETIME_TICS = 700
ACID_DAMAGE, ACID_INTERVAL_TICS = 10, 64
COLORS = ("red", "green")
MAPS = {"red": "MAP01", "green": "MAP02"}
SPRITES = {"red": ("TCRP", "TCRI"), "green": ("TCGP", "TCGI")}  # (pillar, item) sprite of each colour
PILLAR_SIZE, ITEM_SIZE = (32, 96), (14, 20)  # (width, height) in pixels, one map unit each
PURE = {"red": (255, 0, 0), "green": (0, 255, 0)}
SPAWNER_NUMBERS = {"red": 23001, "green": 23002}
PLAYER_START = (96, ROOM_SIZE // 2)  # facing the pillar in the centre


MAPINFO = 'gameinfo\n{\n  playerclasses = "TwoColorsPlayer"\n}\n'


def item_class(color: str, good: bool) -> str:
    """The DECORATE class name of an item of ``color`` that heals (``good``) or hurts."""
    return f"TwoColors{color.title()}{'Heal' if good else 'Hurt'}"


def pillar_class(color: str) -> str:
    return f"TwoColors{color.title()}Pillar"


PLAYER = """actor TwoColorsPlayer : DoomPlayer
{{
  Health {health}
  Player.DamageScreenColor "00 00 00", 0.0
}}
"""  # no red flash when hurt (health stays unseen), and 100 HP left after the acid's first bite at the first tic

PILLAR = """actor {name}
{{
  Radius 16
  Height 96
  +SOLID
  States
  {{
  Spawn:
    {sprite} A {tics} Bright
    Stop
  }}
}}
"""

ITEM = """actor {name} : CustomInventory
{{
  Radius 16
  Height 32
  +INVENTORY.ALWAYSPICKUP
  +INVENTORY.NOSCREENFLASH{count}
  Inventory.PickupMessage ""
  Inventory.PickupSound ""
  States
  {{
  Spawn:
    {sprite} A {tics} Bright
    Stop
  Pickup:
    TNT1 A 0 {action}
    Stop
  }}
}}
"""

SPAWNER = """actor {name} {number}
{{
  +NOINTERACTION
  +NOBLOCKMAP
  States
  {{
  Spawn:
    TNT1 A 0
    TNT1 A 0 A_SpawnItemEx("{pillar}")
{initial}  Refill:
    TNT1 A {refill_tics}
{refill}    Loop
  }}
}}
"""  # the action of an actor's first state is not run when the map loads: hence the empty first state


def decorate() -> str:
    """The ``DECORATE`` lump: the player class, and per colour a pillar, a healing and a hurting item, a spawner.

    Only healing items have ``+COUNTITEM``, so the env rewards a good pickup from the ``ITEMCOUNT`` game variable.
    """
    actors = [PLAYER.format(health=100 + ACID_DAMAGE)]
    for color in COLORS:
        pillar_sprite, item_sprite = SPRITES[color]
        actors.append(PILLAR.format(name=pillar_class(color), sprite=pillar_sprite, tics=PILLAR_STEPS * TICS_PER_STEP))
        for good in (True, False):
            action = f"HealThing({ITEM_HEAL}, 0)" if good else f"A_DamageSelf({ITEM_DAMAGE})"
            count = "\n  +COUNTITEM" if good else ""
            name = item_class(color, good)
            actors.append(
                ITEM.format(name=name, count=count, sprite=item_sprite, tics=ITEM_LIFETIME_TICS, action=action)
            )
        actors.append(_spawner(color))
    return "\n".join(actors)


def _spawner(color: str) -> str:
    """An invisible actor in the room's centre: the pillar, ``INITIAL_ITEMS`` healing items of ``color`` and as
    many hurting items of the other colour, then one more of each every ``REFILL_TICS`` tics, each at a uniformly
    random place at least 48 units from the walls."""
    other = COLORS[1 - COLORS.index(color)]
    reach = ROOM_SIZE // 2 - 48
    where = f"frandom(-{reach}, {reach}), frandom(-{reach}, {reach}), 0, 0, 0, 0, 0, SXF_NOCHECKPOSITION"
    both = "".join(
        f'    TNT1 A 0 A_SpawnItemEx("{item}", {where})\n'
        for item in (item_class(color, True), item_class(other, False))
    )
    return SPAWNER.format(
        name=f"TwoColors{color.title()}Spawner",
        number=SPAWNER_NUMBERS[color],
        pillar=pillar_class(color),
        initial=both * INITIAL_ITEMS,
        refill_tics=REFILL_TICS,
        refill=both,
    )


def textmap(color: str) -> str:
    """The UDMF ``TEXTMAP`` of one map: a square room with an acid floor, the player start and ``color``'s spawner."""
    size, centre = ROOM_SIZE, ROOM_SIZE // 2
    corners = [(0, 0), (0, size), (size, size), (size, 0)]  # clockwise: the room is on each line's right (front)
    lines = ['namespace = "zdoom";']
    lines += [f"vertex {{ x = {x}.0; y = {y}.0; }}" for x, y in corners]
    lines += [f"linedef {{ v1 = {i}; v2 = {(i + 1) % 4}; sidefront = {i}; blocking = true; }}" for i in range(4)]
    lines += ['sidedef { sector = 0; texturemiddle = "GRAY4"; }'] * 4
    lines.append(
        'sector { heightfloor = 0; heightceiling = 160; texturefloor = "NUKAGE1"; textureceiling = "FLAT19"; '
        f"lightlevel = 208; damageamount = {ACID_DAMAGE}; damageinterval = {ACID_INTERVAL_TICS}; }}"
    )
    flags = "skill1 = true; skill2 = true; skill3 = true; skill4 = true; skill5 = true; single = true;"
    lines.append(f"thing {{ x = {PLAYER_START[0]}.0; y = {PLAYER_START[1]}.0; angle = 0; type = 1; {flags} }}")
    lines.append(f"thing {{ x = {centre}.0; y = {centre}.0; angle = 0; type = {SPAWNER_NUMBERS[color]}; {flags} }}")
    return "\n".join(lines) + "\n"


def pack_wad(lumps: list[tuple[str, bytes]]) -> bytes:
    """A PWAD: the 12-byte header, the lumps' data, then the directory (offset, size, 8-byte name per lump)."""
    data, directory, offset = b"", b"", 12
    for name, content in lumps:
        if len(name) > 8 or not name.isascii():
            raise ValueError(f"WAD lump name {name!r} must be at most 8 ASCII characters")
        directory += struct.pack("<ii8s", offset, len(content), name.encode("ascii"))
        data += content
        offset += len(content)
    return struct.pack("<4sii", b"PWAD", len(lumps), offset) + data + directory


def iwad_path() -> Path:
    """``freedoom2.wad`` of the installed ``vizdoom`` package."""
    import vizdoom

    return Path(vizdoom.__file__).parent / "freedoom2.wad"


def read_lump(wad: Path, name: str) -> bytes:
    """The first lump called ``name`` in the WAD file ``wad``."""
    data = wad.read_bytes()
    count, directory = struct.unpack_from("<ii", data, 4)
    for index in range(count):
        offset, size, raw = struct.unpack_from("<ii8s", data, directory + 16 * index)
        if raw.rstrip(b"\0").decode("ascii", "replace") == name:
            return data[offset : offset + size]
    raise ValueError(f"{wad} has no lump {name!r}: reinstall vizdoom (pip install 'rate_sb3[vizdoom]')")


def shades(palette: bytes, color: str) -> list[int]:
    """Palette indices of ``color`` from bright to dark: the nearest entries to 100%, 80%, 60% and 45% of it."""
    entries = [palette[3 * i : 3 * i + 3] for i in range(256)]
    indices = []
    for level in (1.0, 0.8, 0.6, 0.45):
        target = [level * channel for channel in PURE[color]]
        indices.append(min(range(256), key=lambda i: sum((a - b) ** 2 for a, b in zip(entries[i], target))))
    return indices


def picture(width: int, height: int, ramp: list[int]) -> bytes:
    """A sprite in Doom's picture format: an upright bar, brightest in the middle column, its feet on the floor.

    Each column is one post of ``height`` pixels (top delta, length, pad, pixels, pad), then the 0xFF end mark.
    """
    columns = []
    for x in range(width):
        shade = ramp[min(len(ramp) - 1, int(len(ramp) * abs(2 * x + 1 - width) / (width + 1)))]
        columns.append(bytes([0, height, 0]) + bytes([shade]) * height + bytes([0, 255]))
    header = struct.pack("<HHhh", width, height, width // 2, height)
    offsets, position = [], len(header) + 4 * width
    for column in columns:
        offsets.append(position)
        position += len(column)
    return header + struct.pack(f"<{width}I", *offsets) + b"".join(columns)


def sprite_lumps() -> list[tuple[str, bytes]]:
    """The four sprites (frame A, seen the same from every side) between the ``S_START`` and ``S_END`` markers."""
    palette = read_lump(iwad_path(), "PLAYPAL")[:768]
    lumps: list[tuple[str, bytes]] = [("S_START", b"")]
    for color in COLORS:
        ramp = shades(palette, color)
        for name, size in zip(SPRITES[color], (PILLAR_SIZE, ITEM_SIZE)):
            lumps.append((f"{name}A0", picture(*size, ramp)))
    return lumps + [("S_END", b"")]


def scenario_wad() -> bytes:
    """The whole scenario as WAD bytes: ``DECORATE``, the sprites, then each map (marker, ``TEXTMAP``, ``ENDMAP``)."""
    lumps = [("MAPINFO", MAPINFO.encode("ascii")), ("DECORATE", decorate().encode("ascii")), *sprite_lumps()]
    for color in COLORS:
        lumps += [(MAPS[color], b""), ("TEXTMAP", textmap(color).encode("ascii")), ("ENDMAP", b"")]
    return pack_wad(lumps)


def cache_dir() -> Path:
    """``$RATE_SB3_CACHE`` or ``~/.cache/rate_sb3``."""
    return Path(os.environ.get("RATE_SB3_CACHE") or Path.home() / ".cache" / "rate_sb3")


def scenario_path() -> Path:
    """The WAD in the cache, written on first use (named by its content's hash, so an edit here makes a new one)."""
    content = scenario_wad()
    path = cache_dir() / f"two_colors_{hashlib.sha256(content).hexdigest()[:12]}.wad"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
    return path
