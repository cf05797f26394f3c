"""Feeding the input topics: samples, history in time order, the producer, time arguments.

Where each lives: docs/design.md "Layout".
"""
