"""Files uploaded from the browser: size limit, known suffix, readable image, then loaded into the scene.

An upload arrives in the trame state as a dict (``name``, ``size``, ``content`` as bytes or a list of
chunks). It is refused before anything is written when it is too big or has an unknown suffix; it is
then written to a private temporary folder, and refused again (with nothing added to the scene)
when SimpleITK or Slicer cannot read it as a 2D or 3D single-channel image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

__all__ = ["MAX_UPLOAD_MB", "IMAGE_SUFFIXES", "loadUploadedVolume", "uploadedBytes"]

MAX_UPLOAD_MB = 512
IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".tif", ".tiff", ".png", ".dcm", ".seg.nrrd")


def _suffix(name: str) -> str:
    lower = name.lower()
    for double in (".seg.nrrd", ".nii.gz"):
        if lower.endswith(double):
            return double
    return Path(lower).suffix


def uploadedBytes(upload: Any, maxMb: float = MAX_UPLOAD_MB) -> tuple[str, bytes]:
    """The file name and content of one upload, checked for size and suffix.

    Args:
        upload: the dict trame puts into the state for a file input (or a one-item list of it).
        maxMb: largest accepted file, in MB (10^6 bytes).

    Returns:
        ``(fileName, content)``; the name has no folder part.

    Raises:
        MedAIInputError: no file, too big, empty, or not an image suffix that MedAI reads.
    """
    from MedAICommonLib.errors import MedAIInputError

    if isinstance(upload, list):
        upload = upload[0] if upload else None
    if not isinstance(upload, dict) or not upload.get("name"):
        raise MedAIInputError("No file was uploaded.")
    name = Path(str(upload["name"])).name
    size = int(upload.get("size") or 0)
    if size > maxMb * 1e6:
        raise MedAIInputError(f"The file {name} has {size / 1e6:.0f} MB; the limit is {maxMb:g} MB.")
    if _suffix(name) not in IMAGE_SUFFIXES:
        raise MedAIInputError(f"The file {name} is not an image MedAI reads ({', '.join(IMAGE_SUFFIXES)}).")
    content = upload.get("content")
    if isinstance(content, list):
        content = b"".join(bytes(chunk) for chunk in content)
    content = bytes(content or b"")
    if not content:
        raise MedAIInputError(f"The file {name} is empty.")
    if len(content) > maxMb * 1e6:
        raise MedAIInputError(f"The file {name} has {len(content) / 1e6:.0f} MB; the limit is {maxMb:g} MB.")
    return name, content


def loadUploadedVolume(scene: Any, upload: Any, labelmap: bool = False, maxMb: float = MAX_UPLOAD_MB) -> Any:
    """Check an upload and load it as a volume (or, for ``.seg.nrrd``, a segmentation).

    Args:
        scene: the ``vtkMRMLScene``.
        upload: see :func:`uploadedBytes`.
        labelmap: load an image as a label map volume (references for evaluation).
        maxMb: largest accepted file, in MB.

    Returns:
        The new node, named after the file.

    Raises:
        MedAIInputError: see :func:`uploadedBytes`, or the file is not a readable single-channel
            2D/3D image; nothing is added to the scene then.
    """
    import SimpleITK as sitk

    from MedAICommonLib import sceneio
    from MedAICommonLib.errors import MedAIInputError

    name, content = uploadedBytes(upload, maxMb)
    suffix = _suffix(name)
    with tempfile.TemporaryDirectory(prefix="medai-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(content)
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
        except RuntimeError:
            raise MedAIInputError(f"The file {name} is not a readable image.") from None
        if reader.GetDimension() not in (2, 3) or (reader.GetNumberOfComponents() != 1 and suffix != ".seg.nrrd"):
            raise MedAIInputError(
                f"The file {name} holds a {reader.GetDimension()}D image with {reader.GetNumberOfComponents()} "
                "values per pixel; MedAI needs a 2D or 3D image with one value per voxel."
            )
        nodeName = name[: -len(suffix)] if name.lower().endswith(suffix) else name
        if suffix == ".seg.nrrd":
            node = sceneio.loadSegmentation(scene, path)
            node.SetName(nodeName)
        else:
            node = sceneio.loadVolume(scene, path, name=nodeName, labelmap=labelmap, allowNaN=False)
        # The node must not point at the deleted temporary file.
        for index in range(node.GetNumberOfStorageNodes() if hasattr(node, "GetNumberOfStorageNodes") else 0):
            storage = node.GetNthStorageNode(index)
            if storage is not None:
                storage.SetFileName("")
    return node
