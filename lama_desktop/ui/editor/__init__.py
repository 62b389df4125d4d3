"""The inpainting editor: canvas with a painted mask, undoable rounds, model choice."""

from lama_desktop.ui.editor.editor import EditorWidget

__all__ = ["EditorWidget"]
