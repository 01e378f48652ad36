"""Vision perception: text in the scene (PP-OCRv4 text detector, PP-OCR and Tesseract
readers → script → language → countries, phone / domain / currency / postcode clues,
gazetteer place names). Importing registers "ocr"."""

from avgeo.perception.vision.engine import TextEngine

__all__ = ["TextEngine"]
