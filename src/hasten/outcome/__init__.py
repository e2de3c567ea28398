"""What a search found, as types: candidate records (`records`) and results.json (`results`).

Below the search and the report: the search writes results.json through these types and the report (and
anything reading OUT/) reads it back through the same ones, without importing hasten.search.
"""
