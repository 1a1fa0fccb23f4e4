"""Tests of the transit service: fares, GTFS import, the network graph, the quote API."""
