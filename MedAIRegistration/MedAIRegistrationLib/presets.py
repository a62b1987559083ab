"""Registration presets: chains of stages kept as data in ``MedAIRegistration/Resources/Presets/*.json``.

Each file holds ``{"description": ..., "stages": [{<StageSettings fields>}, ...]}``. The preset of a
transform type runs the stages users expect before it (``bspline`` and ``deformable`` start with
rigid and affine stages).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from MedAICommonLib.errors import MedAIInputError

from .settings import LINEAR_TRANSFORMS, StageSettings

__all__ = ["TRANSFORM_TYPES", "NON_LINEAR", "presets_dir", "preset_names", "load_preset", "stages_from_dicts"]

TRANSFORM_TYPES = (*LINEAR_TRANSFORMS, "projective", "bspline", "deformable")
NON_LINEAR = ("projective", "bspline", "deformable")


def presets_dir() -> Path:
    """The folder of the preset files."""
    return Path(__file__).resolve().parents[1] / "Resources" / "Presets"


def preset_names() -> list[str]:
    """The names of the presets shipped with the module (file names without ``.json``)."""
    return sorted(path.stem for path in presets_dir().glob("*.json"))


def stages_from_dicts(stages: list[dict]) -> list[StageSettings]:
    """Build and check stage settings from preset data.

    Raises:
        MedAIInputError: an unknown key or transform, or a bad value.
    """
    known = {f.name for f in dataclasses.fields(StageSettings)}
    result = []
    for index, stage in enumerate(stages):
        unknown = sorted(set(stage) - known)
        if unknown:
            raise MedAIInputError(f"Stage {index + 1} of the preset has unknown setting(s): {', '.join(unknown)}.")
        if stage.get("transform") not in TRANSFORM_TYPES:
            raise MedAIInputError(
                f"Stage {index + 1} has transform {stage.get('transform')!r}; choose one of {', '.join(TRANSFORM_TYPES)}."
            )
        result.append(StageSettings(**stage))
    if not result:
        raise MedAIInputError("The preset has no stages.")
    return result


def load_preset(
    name: str, metric: str | None = None, linear_stages: bool = True, preset_file: str | Path | None = None
) -> list[StageSettings]:
    """The stages of a preset.

    Args:
        name: a transform type (``rigid``, ``deformable``...), the name of a shipped preset.
        metric: if given, replaces the metric of every stage that uses one (demons compares
            intensities directly and has no metric choice).
        linear_stages: False drops the rigid/affine stages that precede a projective, bspline or
            deformable stage.
        preset_file: a user's own preset file, or the name of another shipped preset (such as
            ``deformable-lncc``), used instead of the preset of ``name``.

    Returns:
        The list of :class:`StageSettings`, first stage first.

    Raises:
        MedAIInputError: no such preset, an unreadable file, or bad settings in it.
    """
    if preset_file and not Path(preset_file).is_file() and str(preset_file) in preset_names():
        preset_file = presets_dir() / f"{preset_file}.json"
    path = Path(preset_file) if preset_file else presets_dir() / f"{name}.json"
    if not path.is_file():
        raise MedAIInputError(f"No registration preset '{name}'; choose one of {', '.join(preset_names())}.")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise MedAIInputError(f"The preset file {path} cannot be read: {error}.") from error
    stages = stages_from_dicts(data.get("stages", []))
    if not linear_stages and stages[-1].transform in NON_LINEAR:
        stages = [stages[-1]]
    if metric is not None:
        stages = [dataclasses.replace(s, metric=metric) if s.transform != "deformable" else s for s in stages]
    return stages
