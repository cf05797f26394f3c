"""The worker: the Faust shell around the pure core (docs/design.md "Layout")."""
