"""gunicorn entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from citizen_card import create_app

app = create_app()
