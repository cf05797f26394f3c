"""The worker's own web views (``streams.web.views``) and dashboard files (``static/``)."""
