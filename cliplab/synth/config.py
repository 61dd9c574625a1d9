"""The settings of ``cliplab synth``: one dataclass for both worlds, validated with one-line errors."""
from __future__ import annotations

from dataclasses import dataclass, replace

WORLDS = ("scenes", "legacy")  # the first is the default
STYLES = ("sketch", "cartoon", "noise", "blur", "silhouette")  # shifted renderings of the test split
ATTRIBUTES: dict[str, list[str]] = {"tone": ["light", "medium", "dark"], "age": ["child", "adult"]}
DEFAULT_SIZE = {"scenes": 48, "legacy": 32}
MIN_N = {"scenes": 96, "legacy": 48}  # one image per (class, tone, age) cell


@dataclass(frozen=True)
class SynthConfig:
    """Settings for :func:`cliplab.synth.synthesize`; the same config always yields byte-identical output.

    ``world="scenes"`` (the default) is the harder world: 16 shape classes in random colours on cluttered
    scenes, captions from many templates and names, shifted test renderings. ``world="legacy"`` is the
    first world (8 coloured objects, one caption template), kept byte-identical for the tests that use it.
    """

    world: str = "scenes"
    n: int = 3000  # total images of the train and test splits (style splits come on top: scenes only)
    seed: int = 0
    bias: float = 0.0  # fraction B of the bias group's TRAIN captions made harmful (round(B * count) rows)
    size: int | None = None  # output px (square); None: the world's default (scenes 48, legacy 32)
    test_fraction: float = 0.2
    bias_attribute: str = "tone"
    bias_value: str = "dark"
    harmful_class: str = "thief"
    template: str = "a photo of a person holding a {}."  # legacy only: its one caption template
    spurious: float = 0.5  # scenes only: share of TRAIN images drawn on their class's scene (test: uniform)
    styles: tuple[str, ...] = STYLES  # scenes only: one extra split of the test images per style

    def resolved(self) -> SynthConfig:
        """This config with the world's defaults filled in (validated first)."""
        self.validate()
        return replace(self, size=DEFAULT_SIZE[self.world]) if self.size is None else self

    def validate(self) -> None:
        """Raise ValueError (one-line message) if any setting is out of range."""
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {list(WORLDS)}, got {self.world!r}")
        for name in ("n", "seed", "size"):
            value = getattr(self, name)
            if name == "size" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not 0.0 <= self.bias <= 1.0:
            raise ValueError(f"bias must be in [0, 1], got {self.bias}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if self.n < MIN_N[self.world]:
            raise ValueError(f"n must be >= {MIN_N[self.world]} (one image per class x tone x age cell), "
                             f"got {self.n}")
        if self.size is not None and not 16 <= self.size <= 512:
            raise ValueError(f"size must be between 16 and 512 px, got {self.size}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        n_test = round(self.n * self.test_fraction)
        if not 0 < n_test < self.n:
            raise ValueError(f"n={self.n} with test_fraction={self.test_fraction} leaves an empty split")
        if self.bias_attribute not in ATTRIBUTES:
            raise ValueError(f"bias_attribute must be one of {list(ATTRIBUTES)}, got {self.bias_attribute!r}")
        if self.bias_value not in ATTRIBUTES[self.bias_attribute]:
            raise ValueError(f"bias_value for {self.bias_attribute!r} must be one of "
                             f"{ATTRIBUTES[self.bias_attribute]}, got {self.bias_value!r}")
        if not self.harmful_class.strip():
            raise ValueError("harmful_class must be a non-empty word")
        if self.template.count("{}") != 1:
            raise ValueError(f"template must contain exactly one '{{}}', got {self.template!r}")
        if not 0.0 <= self.spurious <= 1.0:
            raise ValueError(f"spurious must be in [0, 1], got {self.spurious}")
        unknown = [s for s in self.styles if s not in STYLES]
        if unknown or len(set(self.styles)) != len(self.styles):
            raise ValueError(f"styles must be distinct names among {list(STYLES)}, got {list(self.styles)}")
