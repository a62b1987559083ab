"""Saliency heatmaps with ``monai.visualize``: Grad-CAM, Grad-CAM++, occlusion sensitivity and SmoothGrad.

Works on tensors in the model's space, (1, C, *spatial). A classifier explains its logit of one class.
A segmentation network is wrapped by :class:`RegionScore` so that it looks like a classifier: the
score of class ``c`` is the mean logit of ``c`` over a region (a mask on the model grid; default:
where the network predicts ``c``), so that Grad-CAM & co explain "why this label here".

Every heatmap is (*spatial), non-negative, scaled to a maximum of 1 (all zero if the method finds
no evidence). Grad-CAM reads the activations of one layer (default: the last convolution at the
coarsest resolution, found by :func:`defaultTargetLayer`) and is as coarse as that layer.
Occlusion sensitivity is the drop of the class probability when a box around a voxel is blurred
away; SmoothGrad averages the input gradient over noisy copies of the image.
"""

from __future__ import annotations

from typing import Any

from MedAICommonLib.errors import MedAIInputError

__all__ = ["SALIENCY_METHODS", "RegionScore", "defaultTargetLayer", "computeHeatmap"]

SALIENCY_METHODS = ("gradcam", "gradcampp", "occlusion", "smoothgrad")


def _torch():
    import torch

    return torch


def RegionScore(network: Any, region: Any = None) -> Any:
    """A module mapping (B, C, *spatial) to (B, L): each class's mean logit over ``region`` (B or 1, 1, *spatial).

    With ``region`` None, each class is averaged over the voxels where the network predicts it (its
    argmax), fixed at the first call so that every method explains the same decision.
    """
    torch = _torch()

    class _RegionScore(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.region = region

        def forward(self, x: Any) -> Any:
            logits = self.network(x)
            if self.region is not None:
                weights = self.region.to(logits.dtype).expand(logits.shape[0], 1, *logits.shape[2:])
                return (logits * weights).flatten(2).sum(-1) / weights.flatten(2).sum(-1).clamp_min(1)
            if not hasattr(self, "_masks"):
                self._masks = (
                    torch.nn.functional.one_hot(logits.detach().argmax(1), logits.shape[1])
                    .movedim(-1, 1)
                    .to(logits.dtype)
                )
            masks = self._masks[: logits.shape[0]].expand_as(logits)
            return (logits * masks).flatten(2).sum(-1) / masks.flatten(2).sum(-1).clamp_min(1)

    return _RegionScore()


def defaultTargetLayer(network: Any, example: Any) -> str:
    """Name of the last layer that runs at the coarsest resolution (its rectified output: the classic Grad-CAM layer).

    Leaf modules whose output keeps the image's dimensions are watched during one forward pass of
    ``example``; of those at the smallest spatial size, the last to run is taken (for conv-norm-activation
    blocks, the activation).

    Raises:
        MedAIInputError: no layer keeps a spatial output (no Grad-CAM possible).
    """
    torch = _torch()

    seen: list[tuple[str, int]] = []
    handles = []
    for name, module in network.named_modules():
        if name and not list(module.children()):

            def hook(_module, _inputs, output, name=name):
                if torch.is_tensor(output) and output.dim() == example.dim():
                    seen.append((name, output[0, 0].numel()))

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    seen = [(name, size) for name, size in seen if size > 1]
    if not seen:
        raise MedAIInputError("The network has no spatial layer for Grad-CAM; use occlusion or smoothgrad.")
    smallest = min(size for _name, size in seen)
    return [name for name, size in seen if size == smallest][-1]


def _normalised(values: Any) -> Any:
    torch = _torch()

    values = torch.nan_to_num(values.detach().float()).clamp_min(0)
    top = values.max()
    return values / top if top > 0 else values


def computeHeatmap(
    scoreModel: Any,
    x: Any,
    classIndex: int,
    method: str = "gradcam",
    targetLayer: str | None = None,
    occlusionMaskPx: int = 8,
    smoothGradSamples: int = 16,
    seed: int = 0,
) -> Any:
    """Heatmap of ``classIndex`` for input ``x`` (1, C, *spatial), as a (*spatial) tensor in 0-1.

    Args:
        scoreModel: a module mapping (B, C, *spatial) to (B, classes): a classifier or :func:`RegionScore`.
        x: the model-space input.
        classIndex: the output class explained.
        method: one of :data:`SALIENCY_METHODS`.
        targetLayer: for Grad-CAM, the module name inside ``scoreModel`` (default :func:`defaultTargetLayer`).
        occlusionMaskPx: side of the occluded box, in voxels of the model grid.
        smoothGradSamples: noisy copies averaged by SmoothGrad.
        seed: seed of SmoothGrad's noise.

    Raises:
        MedAIInputError: unknown method.
    """
    torch = _torch()
    from monai.visualize import GradCAM, GradCAMpp, OcclusionSensitivity, SmoothGrad

    if method not in SALIENCY_METHODS:
        raise MedAIInputError(f"Unknown saliency method '{method}'; choose one of {', '.join(SALIENCY_METHODS)}.")
    modes = [(module, module.training) for module in scoreModel.modules()]
    scoreModel.eval()
    try:
        if method in ("gradcam", "gradcampp"):
            layer = targetLayer or defaultTargetLayer(scoreModel, x)
            cam = (GradCAM if method == "gradcam" else GradCAMpp)(
                scoreModel, target_layers=layer, postprocessing=lambda v: v
            )
            values = cam(x.clone().requires_grad_(False), class_idx=classIndex)[0, 0]
        elif method == "occlusion":
            with torch.no_grad():
                baseline = torch.softmax(scoreModel(x), dim=1)[0, classIndex]
            occlusion = OcclusionSensitivity(
                scoreModel, mask_size=occlusionMaskPx, n_batch=8, verbose=False, mode="gaussian"
            )
            with torch.no_grad():
                occluded, _best = occlusion(x)
            values = baseline - occluded[0, 0, ..., classIndex]
        else:
            torch.manual_seed(seed)
            values = (
                SmoothGrad(scoreModel, n_samples=smoothGradSamples, verbose=False)(x, index=classIndex)[0].abs().sum(0)
            )
    finally:
        for module, training in modes:
            module.training = training
        scoreModel.zero_grad(set_to_none=True)
    return _normalised(values)
