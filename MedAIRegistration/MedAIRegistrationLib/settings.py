"""Settings of one registration stage, and how they configure SimpleITK's registration method.

A preset (``Resources/Presets/*.json``) is a list of :class:`StageSettings`. Pure functions,
snake_case; transforms follow the ITK resampling convention (LPS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "LINEAR_TRANSFORMS",
    "METRICS",
    "OPTIMIZERS",
    "INITIALIZATIONS",
    "DEFORMABLE_METHODS",
    "StageSettings",
    "StageInputs",
    "configure_method",
]

LINEAR_TRANSFORMS = ("translation", "rigid", "similarity", "affine")
METRICS = ("mse", "ncc", "mi")
OPTIMIZERS = ("gradient-descent", "line-search", "regular-step", "lbfgsb", "powell", "amoeba", "one-plus-one")
INITIALIZATIONS = ("geometry", "moments", "none")
DEFORMABLE_METHODS = ("svf", "demons", "learned")


@dataclass
class StageSettings:
    """One stage of a registration (a preset is a list of them).

    Attributes:
        transform: translation, rigid, similarity, affine, bspline or deformable.
        metric: mse (mean squares), ncc (normalised cross-correlation) or mi (Mattes mutual information).
        optimizer: one of :data:`OPTIMIZERS`.
        iterations: the most iterations per resolution level.
        learning_rate: step of the gradient optimisers (scaled by physical shift, so in mm-like units).
        shrink_factors: one whole-voxel shrink factor per resolution level, coarse to fine.
        smoothing_mm: Gaussian sigma per level, millimetres.
        sampling_percentage: share of fixed voxels the metric samples (0-1], random with a fixed seed.
        histogram_bins: bins of mutual information.
        grid_spacing_mm: B-spline control point spacing, mm (bspline stages only).
        field_smoothing_voxels: Gaussian sigma of the demons displacement field, voxels (deformable only).
        update_smoothing_voxels: Gaussian sigma of each demons update, voxels (deformable only).
        level_iterations: deformable iterations per level (coarse to fine), instead of ``iterations``.
        method: how a deformable stage is solved: "svf" (symmetric local NCC on a stationary velocity
            field, torch), "demons" (SimpleITK diffeomorphic demons, one modality only) or "learned"
            (a trained network predicts the field in one pass, see ``MedAIRegistrationLib.learned``).
        regularization: weight of the diffusion penalty on the velocity field ("svf").
        ncc_radius_voxels: half-width of the local NCC window, voxels of each level ("svf").
        velocity_shrink: the velocity grid is this many times coarser than each level's image ("svf").
        symmetric: "svf" pulls both images halfway (True) or only the moving one all the way.
        exponential_steps: squarings of the velocity field ("svf"; 2**steps scaling).
        device: where "svf" and "learned" run: cpu, cuda, mps or auto.
        model: the registration model id or weights file ("learned").
        instance_optimization_steps: steps refining the predicted field for this pair ("learned"; 0 = none).
    """

    transform: str
    metric: str = "mi"
    optimizer: str = "gradient-descent"
    iterations: int = 200
    learning_rate: float = 1.0
    shrink_factors: list[int] = field(default_factory=lambda: [4, 2, 1])
    smoothing_mm: list[float] = field(default_factory=lambda: [2.0, 1.0, 0.0])
    sampling_percentage: float = 0.2
    histogram_bins: int = 50
    grid_spacing_mm: float = 40.0
    field_smoothing_voxels: float = 1.5
    update_smoothing_voxels: float = 0.0
    level_iterations: list[int] | None = None
    method: str = "svf"
    regularization: float = 1.0
    ncc_radius_voxels: int = 2
    velocity_shrink: float = 2.0
    symmetric: bool = True
    exponential_steps: int = 6
    device: str = "cpu"
    model: str = "BrainRegistrationT1"
    instance_optimization_steps: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise MedAIInputError(f"Unknown metric '{self.metric}'; choose one of {', '.join(METRICS)}.")
        if self.optimizer not in OPTIMIZERS:
            raise MedAIInputError(f"Unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
        if len(self.shrink_factors) != len(self.smoothing_mm) or not self.shrink_factors:
            raise MedAIInputError("Give one smoothing (mm) per shrink factor, and at least one level.")
        if any(int(f) < 1 for f in self.shrink_factors) or any(s < 0 for s in self.smoothing_mm):
            raise MedAIInputError("Shrink factors must be whole numbers >= 1 and smoothing (mm) >= 0.")
        if not 0.0 < self.sampling_percentage <= 1.0:
            raise MedAIInputError(f"The sampling percentage must be in (0, 1], got {self.sampling_percentage}.")
        if self.level_iterations is not None and len(self.level_iterations) != len(self.shrink_factors):
            raise MedAIInputError("Give one number of iterations per level in level_iterations.")
        if self.method not in DEFORMABLE_METHODS:
            raise MedAIInputError(
                f"Unknown deformable method '{self.method}'; choose one of {', '.join(DEFORMABLE_METHODS)}."
            )
        if self.regularization < 0 or int(self.ncc_radius_voxels) < 1 or self.velocity_shrink < 1:
            raise MedAIInputError("Regularization must be >= 0, the NCC radius >= 1 voxel and velocity_shrink >= 1.")
        if int(self.iterations) < 1:
            raise MedAIInputError(f"The number of iterations must be at least 1, got {self.iterations}.")


@dataclass
class StageInputs:
    """What every stage of one registration shares (the stage functions take this one object).

    Attributes:
        fixed, moving: SimpleITK float images of the same dimension (LPS).
        history: the metric per iteration, appended to by every stage (``IterationRecord``).
        fixed_mask, moving_mask: optional UInt8 SimpleITK masks on the images' grids (non-zero inside).
        cancel_token: a :class:`MedAICommonLib.jobs.CancelToken`, or None.
    """

    fixed: Any
    moving: Any
    history: list = field(default_factory=list)
    fixed_mask: Any = None
    moving_mask: Any = None
    cancel_token: Any = None


# Mutual information samples at least this many fixed voxels at random, or takes them all: with fewer, the 50-bin
# histograms of mutual information are too noisy (a 221x257 slice sampled at 20 % locked a 10-degree
# multi-modal rotation at 7.6 degrees; all of its voxels found it within 0.1 mm).
MIN_METRIC_SAMPLES = 100_000


def _set_metric(method: Any, stage: StageSettings, fixed_voxels: int | None = None) -> None:
    if stage.metric == "mse":
        method.SetMetricAsMeanSquares()
    elif stage.metric == "ncc":
        method.SetMetricAsCorrelation()
    else:
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(stage.histogram_bins))
    enough = (
        stage.metric != "mi" or fixed_voxels is None or stage.sampling_percentage * fixed_voxels >= MIN_METRIC_SAMPLES
    )
    if stage.sampling_percentage < 1.0 and enough:
        method.SetMetricSamplingStrategy(method.RANDOM)
        # A fixed seed: the same inputs give the same result every run.
        method.SetMetricSamplingPercentage(float(stage.sampling_percentage), 20261122)


def _set_optimizer(method: Any, stage: StageSettings) -> None:
    iterations = int(stage.iterations)
    rate = float(stage.learning_rate)
    if stage.optimizer == "gradient-descent":
        method.SetOptimizerAsGradientDescent(
            learningRate=rate,
            numberOfIterations=iterations,
            convergenceMinimumValue=1e-7,
            convergenceWindowSize=10,
            estimateLearningRate=method.EachIteration,
        )
    elif stage.optimizer == "line-search":
        method.SetOptimizerAsGradientDescentLineSearch(rate, iterations, convergenceMinimumValue=1e-7)
    elif stage.optimizer == "regular-step":
        method.SetOptimizerAsRegularStepGradientDescent(rate, 1e-4, iterations, relaxationFactor=0.5)
    elif stage.optimizer == "lbfgsb":
        method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations)
    elif stage.optimizer == "powell":
        method.SetOptimizerAsPowell(numberOfIterations=iterations, maximumLineIterations=20, stepLength=rate)
    elif stage.optimizer == "amoeba":
        method.SetOptimizerAsAmoeba(simplexDelta=rate, numberOfIterations=iterations)
    else:
        method.SetOptimizerAsOnePlusOneEvolutionary(numberOfIterations=iterations, initialRadius=rate, seed=20261122)
    if stage.transform != "bspline":
        method.SetOptimizerScalesFromPhysicalShift()


def configure_method(
    stage: StageSettings, fixed_mask: Any = None, moving_mask: Any = None, fixed_voxels: int | None = None
) -> Any:
    """A ``SimpleITK.ImageRegistrationMethod`` set up with the stage's metric, optimiser and pyramid.

    ``fixed_voxels`` (the fixed image's voxel count) turns random sampling off for mutual information
    when it would keep fewer than :data:`MIN_METRIC_SAMPLES` voxels.
    """
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    _set_metric(method, stage, fixed_voxels)
    _set_optimizer(method, stage)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel([int(f) for f in stage.shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in stage.smoothing_mm])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        method.SetMetricMovingMask(moving_mask)
    return method
