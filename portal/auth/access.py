"""Who may open a page: one decorator for every role check of the web views (the JSON API
checks roles in api.openapi.operation)."""

from __future__ import annotations

import functools

from flask import abort
from flask_login import current_user, login_required

from ..errors import Forbidden

# How the error page names the people a page is for ("This page is for vendors.").
_PLURAL = {"customer": "customers", "vendor": "vendors", "admin": "admins",
           "service": "services"}


def _for(roles: tuple[str, ...]) -> str:
    names = [_PLURAL.get(r, r) for r in roles]
    return f"This page is for {' and '.join(names)}."


def roles_required(*roles: str, hidden: bool = False):
    """Sign-in required (else the login page), then 403 unless the user has one of
    ``roles`` (its page says whom the page is for); 404 with ``hidden``, for pages whose
    existence is not for other roles to learn (the back office)."""
    def decorate(view):
        @functools.wraps(view)
        @login_required
        def guarded(*args, **kwargs):
            if current_user.role not in roles:
                if hidden:
                    abort(404)
                raise Forbidden(_for(roles))
            return view(*args, **kwargs)
        return guarded
    return decorate
