"""Vision perception: text in the scene (OCR → script → language → countries, phone /
domain / currency / postcode clues, gazetteer place names). Importing registers "ocr"."""

from avgeo.perception.vision.engine import TextEngine

__all__ = ["TextEngine"]
