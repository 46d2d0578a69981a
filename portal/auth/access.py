"""Who may open a page: one decorator for every role check of the web views (the JSON API
checks roles in api.openapi.operation)."""

from __future__ import annotations

import functools

from flask import abort
from flask_login import current_user, login_required


def roles_required(*roles: str, hidden: bool = False):
    """Sign-in required (else the login page), then 403 unless the user has one of
    ``roles``; 404 with ``hidden``, for pages whose existence is not for other roles to
    learn (the back office)."""
    def decorate(view):
        @functools.wraps(view)
        @login_required
        def guarded(*args, **kwargs):
            if current_user.role not in roles:
                abort(404 if hidden else 403)
            return view(*args, **kwargs)
        return guarded
    return decorate
