"""Tests of the card_reader package."""
