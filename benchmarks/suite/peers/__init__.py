"""Peers built from the same weights through their own Python APIs:
ONNX Runtime (graphs made with ``onnx.helper``), CTranslate2 (``ctranslate2.specs``)
and PyTorch. Each module imports its peer lazily, so that the suite runs with
whichever peers are installed."""
