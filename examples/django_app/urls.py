from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("pricing", views.pricing),
    path("login", views.login),
    path("upgrade", views.upgrade),
    path("logout", views.logout),
    path("status", views.status),
]
