"""Offscreen OpenGL for :mod:`MedAICommonLib.rendering`: which render window works here, and the view base.

Package-internal, except :class:`OffscreenRenderingError` (also importable from ``rendering``).

- The render window class is probed once per process: EGL first (a GPU, or Mesa's llvmpipe
  software driver without one), OSMesa when EGL fails; ``VTK_DEFAULT_OPENGL_WINDOW`` set in the
  environment puts VTK's own default first.
- Libraries that bundle their own LLVM (triton) are loaded before Mesa's llvmpipe can load
  libLLVM, which would otherwise crash them later in the same process.
- :class:`_OffscreenView` is one offscreen render window with its renderer, interactor and
  Slicer displayable managers, the base of the slice and 3D views in :mod:`~MedAICommonLib.sliceviews`.

Nothing here imports slicer or VTK at import time: ``medai`` imports ``rendering`` (for its error
class) before it knows whether it will render anything.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

__all__ = ["OffscreenRenderingError", "offscreenRenderWindowClass"]

_BUNDLED_LLVM_MODULES = ("triton._C.libtriton",)
_renderWindowClass: Any = None


class OffscreenRenderingError(RuntimeError):
    """Neither EGL nor OSMesa could open an OpenGL context (missing system libraries)."""


def offscreenRenderWindowClass():
    """The render window class that opens an OpenGL context here: EGL, else OSMesa (probed once).

    Returns:
        A ``vtkRenderWindow`` subclass whose offscreen windows support OpenGL.

    Raises:
        OffscreenRenderingError: no candidate class opens a context.
    """
    global _renderWindowClass
    if _renderWindowClass is not None:
        return _renderWindowClass
    import vtk
    from vtkmodules import vtkRenderingOpenGL2 as opengl

    # nodeio imports slicer at import time; this module must stay light (see above).
    from .nodeio import _quietVtk

    _loadBundledLlvmFirst()
    candidates = [vtk.vtkRenderWindow] if os.environ.get("VTK_DEFAULT_OPENGL_WINDOW") else []
    if sys.platform.startswith("linux"):
        candidates += [
            getattr(opengl, name) for name in ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow") if hasattr(opengl, name)
        ]
    else:
        candidates.append(vtk.vtkRenderWindow)
    for windowClass in candidates:
        # A failing candidate reports why; the next one is tried silently.
        with _quietVtk():
            window = windowClass()
            window.SetOffScreenRendering(1)
            window.SetSize(8, 8)
            works = bool(window.SupportsOpenGL())
            window.Finalize()
        if works:
            _renderWindowClass = windowClass
            return windowClass
    raise OffscreenRenderingError(
        "No offscreen OpenGL: neither EGL nor OSMesa works. On Debian/Ubuntu install libegl1, libegl-mesa0, "
        "libgl1-mesa-dri (EGL, also without a GPU) or libosmesa6 (OSMesa)."
    )


def _loadBundledLlvmFirst() -> None:
    """Load libraries that bundle their own LLVM before Mesa's software OpenGL loads libLLVM.

    Mesa's llvmpipe (EGL or OSMesa without a GPU) puts libLLVM's symbols in the global scope;
    triton's extension (imported by torch, torchvision and so MONAI) loaded after that binds to
    them and crashes the process. Loaded first, it keeps its own LLVM.
    """
    import importlib
    import importlib.util

    for moduleName in _BUNDLED_LLVM_MODULES:
        try:
            if moduleName.split(".")[0] in sys.modules or importlib.util.find_spec(moduleName.split(".")[0]):
                importlib.import_module(moduleName)
        except Exception:  # noqa: BLE001 - a broken optional package must not stop rendering
            continue


class _OffscreenView:
    """An offscreen render window, its renderer and displayable managers (cf. trame-slicer's AbstractView)."""

    def __init__(self, windowClass, sizePx: int, factory, firstProp=None):
        """Open a square window of ``sizePx`` pixels; ``firstProp`` goes first among the renderer's props."""
        import slicer
        import vtk

        self.renderWindow = windowClass()
        self.renderWindow.SetOffScreenRendering(1)
        self.renderWindow.SetSize(sizePx, sizePx)
        self.renderer = vtk.vtkRenderer()
        self.renderWindow.AddRenderer(self.renderer)
        if firstProp is not None:
            self.renderer.AddViewProp(firstProp)
        # Displayable managers reach the interactor while they are created.
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.renderWindow)
        self.interactor.Initialize()
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)

    def grab(self) -> np.ndarray:
        """Render and return the RGB pixels, shape ``(height, width, 3)`` uint8, row 0 at the top."""
        import vtk
        from vtkmodules.util.numpy_support import vtk_to_numpy

        self.renderWindow.Render()
        grabber = vtk.vtkWindowToImageFilter()
        grabber.SetInput(self.renderWindow)
        grabber.SetInputBufferTypeToRGB()
        grabber.ReadFrontBufferOff()
        grabber.Update()
        image = grabber.GetOutput()
        width, height, _ = image.GetDimensions()
        return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3].copy()

    def close(self) -> None:
        """Detach the displayable managers and release the OpenGL context."""
        self.managers.SetMRMLDisplayableNode(None)
        self.renderWindow.Finalize()
