"""Reading a deployment from outside: offsets, the customer table, reports.

Where each lives: docs/design.md "Layout".
"""
