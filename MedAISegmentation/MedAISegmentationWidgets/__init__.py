"""What the MedAISegmentation panel needs beside its module file (Slicer side, not part of the Lib).

A package, not ``.py`` files beside ``MedAISegmentation.py``: Slicer's module factory manager registers
every file directly in a module folder as a module (``qSlicerAbstractModuleFactoryManager::registerModules``
lists ``QDir::Files``, not subfolders), so a helper file there needs a hidden module class (as
``MedAICommon/MedAICommonDependencies.py`` has), while a subfolder is never scanned. The module folder is
on ``sys.path`` in Slicer, so ``import MedAISegmentationWidgets`` works as ``import MedAISegmentationLib`` does.

- :mod:`.modeljob`, :mod:`.promptjob`: the model run and the prompt as three-step jobs (inputs read on the
  main thread, computed in a background thread, results written on the main thread), Qt-free, so they
  also run, and are tested, in plain Python on slicer-core;
- :mod:`.panelstate`: what the panel shows for the parameter node, and the status lines (Slicer side, no Qt
  import);
- :mod:`.modelsection`, :mod:`.promptsection`: the Model and Prompt sections of the panel (Qt).
"""
