"""Short descriptive names of the 26 multistyle styles, chosen by looking at a contact sheet.

The network ships only numbered styles; names make lists and specs readable
(`multistyle:starry-swirls` is `multistyle:19`). Order matters: position = style id.
"""

NUM_MULTISTYLE = 26

MULTISTYLE_NAMES: tuple[str, ...] = (
    "pastel-sketch",  # 0
    "bold-comic",  # 1
    "ink-wash",  # 2
    "ribbon-abstract",  # 3
    "warm-pastel",  # 4
    "autumn-canvas",  # 5
    "blue-cells",  # 6
    "dark-expressionist",  # 7
    "watercolor-pop",  # 8
    "tapestry",  # 9
    "sepia-oil",  # 10
    "gold-etching",  # 11
    "lilac-haze",  # 12
    "lime-cubist",  # 13
    "pale-fresco",  # 14
    "stained-glass",  # 15
    "blue-brushwork",  # 16
    "red-blocks",  # 17
    "parchment-sketch",  # 18
    "starry-swirls",  # 19
    "red-fauve",  # 20
    "pop-collage",  # 21
    "blue-gouache",  # 22
    "forest-dusk",  # 23
    "cream-linocut",  # 24
    "mosaic",  # 25
)

assert len(MULTISTYLE_NAMES) == NUM_MULTISTYLE


def multistyle_label(index: int) -> str:
    """'19 starry-swirls': how lists and contact sheets show a style."""
    return f"{index} {MULTISTYLE_NAMES[index]}"
