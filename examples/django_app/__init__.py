"""A minimal Django project using the Sankofa middleware (see settings.py and views.py)."""
