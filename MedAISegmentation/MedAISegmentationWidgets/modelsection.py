"""The Model section of the Segmentation panel (Qt): model choice, the user's own model, input channels.

The model selector lists the registry's segmentation models (``ModelRegistry``, task
"segmentation") and "Your own model"; the choice is kept on the parameter node by the logic
(``extraParameter("modelId")``). For the user's own model, a file or folder and an optional model card.
The card's ``inputChannels`` give one volume selector per channel after the first (the input volume),
kept as ``extraNode("inputChannel<N>")``, in the card's order.
"""

import qt
import slicer
from slicer.i18n import tr as _

from MedAICommonLib.errors import MedAIInputError

from .modeljob import OWN_MODEL, segmentationModelCards

__all__ = ["ModelSection"]


class ModelSection:
    """Fills and follows the Model section; ``onChanged()`` is called after each choice the logic keeps."""

    def __init__(self, ui, logic, onChanged) -> None:
        self.ui, self.logic, self.onChanged = ui, logic, onChanged
        self._channelWidgets, self._channelNames, self._updating = [], None, False
        try:
            cards, self._registryError = segmentationModelCards(), ""
        except MedAIInputError as error:
            cards, self._registryError = [], str(error)
        for card in cards:
            self.ui.modelComboBox.addItem(card.title, card.id)
        self.ui.modelComboBox.addItem(_("Your own model (file or folder)"), OWN_MODEL)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChosen)
        self.ui.modelFileButton.connect("clicked(bool)", self.onModelFileButton)
        self.ui.modelFolderButton.connect("clicked(bool)", self.onModelFolderButton)
        self.ui.modelCardButton.connect("clicked(bool)", self.onModelCardButton)

    def onModelChosen(self, index: int) -> None:
        """Called when the user picks a model: the logic keeps its id (or "your own model")."""
        if not self._updating:
            self.logic.setExtraParameter("modelId", self.ui.modelComboBox.itemData(index))
            self.onChanged()

    def _browse(self, lineEdit, folder: bool, caption: str, filters: str = "") -> None:
        start = lineEdit.text or ""
        if folder:
            path = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), caption, start)
        else:
            path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), caption, start, filters)
        if path:
            lineEdit.text = path  # textChanged: the parameter node follows

    def onModelFileButton(self) -> None:
        """Called when the user clicks File... beside the model path."""
        filters = _("Models (*.pt *.pth *.ts *.ckpt *.bin);;All files (*)")
        self._browse(self.ui.modelPathLineEdit, False, _("Choose your model file"), filters)

    def onModelFolderButton(self) -> None:
        """Called when the user clicks Folder... beside the model path."""
        self._browse(self.ui.modelPathLineEdit, True, _("Choose your model folder (MONAI bundle, nnU-Net v2 results)"))

    def onModelCardButton(self) -> None:
        """Called when the user clicks File... beside the model card."""
        self._browse(self.ui.modelCardLineEdit, False, _("Choose the model card"), _("Model cards (*.json)"))

    def update(self, parameters) -> None:
        """Show the chosen model, its card and one selector per extra input channel."""
        self._updating = True
        try:
            chosen = self.logic.extraParameter("modelId")
            index = self.ui.modelComboBox.findData(chosen) if chosen else 0
            if index < 0 or not chosen:  # nothing chosen yet, or a model no longer in the registry
                index = 0
                self.logic.setExtraParameter("modelId", self.ui.modelComboBox.itemData(0))
            self.ui.modelComboBox.currentIndex = index
            own = self.ui.modelComboBox.itemData(index) == OWN_MODEL
            for name in ("modelPathLabel", "modelPathRow", "modelCardLabel", "modelCardRow"):
                getattr(self.ui, name).visible = own
            try:
                card, problem = self.logic.modelCard(parameters), ""
            except MedAIInputError as error:
                card, problem = None, str(error)
            self.ui.modelInfoLabel.text = self._describe(card) if card is not None else problem or self._registryError
            names = [channel["name"] for channel in card.inputChannels] if card is not None else []
            self._showChannels(names or [_("image")])
        finally:
            self._updating = False

    @staticmethod
    def _describe(card) -> str:
        labels = ", ".join(label.name for label in card.labels) or _("none listed")
        text = _("{title}. Labels: {labels}.").format(title=card.title, labels=labels)
        if card.inputSpacingMm:
            text += " " + _("Spacing {spacing} mm.").format(spacing=" x ".join(f"{s:g}" for s in card.inputSpacingMm))
        for accuracy in (card.measuredAccuracy or [])[:2]:
            if isinstance(accuracy, dict) and "metric" in accuracy:
                text += " " + _("{metric} {value} on {data}.").format(
                    metric=accuracy["metric"], value=accuracy.get("value"), data=accuracy.get("data", "?")
                )
        return text

    def _showChannels(self, names: list) -> None:
        """One row per input channel: the first is the input volume, the others get a volume selector."""
        if names != self._channelNames:
            for widget in self._channelWidgets:
                widget.setParent(None)
            self._channelWidgets, self._channelNames = [], names
            layout = self.ui.channelsWidget.layout()
            layout.addRow(qt.QLabel(f"1. {names[0]}:"), qt.QLabel(_("the input volume")))
            for index, name in enumerate(names[1:], start=1):
                selector = slicer.qMRMLNodeComboBox()
                selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
                selector.noneEnabled, selector.addEnabled, selector.showChildNodeTypes = True, False, False
                selector.setMRMLScene(slicer.mrmlScene)
                selector.toolTip = _("The volume of input channel {number} ({name}).").format(
                    number=index + 1, name=name
                )
                selector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node, i=index: self._keepChannel(i, node))
                layout.addRow(qt.QLabel(f"{index + 1}. {name}:"), selector)
            self._channelWidgets = [layout.itemAt(i).widget() for i in range(layout.count())]
        selectors = [w for w in self._channelWidgets if hasattr(w, "setCurrentNode")]
        for index, selector in enumerate(selectors, start=1):
            selector.setCurrentNode(self.logic.extraNode(f"inputChannel{index}"))
        self.ui.channelsLabel.visible = self.ui.channelsWidget.visible = len(names) > 1

    def _keepChannel(self, index: int, node) -> None:
        if not self._updating:
            self.logic.setExtraNode(f"inputChannel{index}", node)
            self.onChanged()
