"""Login and logout."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import db, limiter, login_manager
from ..models_base import parse_uuid
from . import throttle
from .forms import LoginForm
from .models import User
from .services import authenticate, end_sessions

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """Load the session's user; a stale session token (revoked session) loads nobody."""
    user_id, _, token = session_id.partition(":")
    uid = parse_uuid(user_id)
    user = db.session.get(User, uid) if uid else None
    return user if user is not None and user.session_token == token else None


def _safe_next(target: str | None) -> str | None:
    # Only local paths: "//evil.example" and "https://..." would be open redirects.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def home_for(user: User) -> str:
    return url_for("orders.index")


@bp.route("/login", methods=["GET", "POST"])
# Per address (trying many accounts); per account, whichever way the password comes: throttle.
@limiter.limit("30 per minute; 300 per hour", methods=["POST"])
def login():
    """Sign in with e-mail and password."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data
        trusted = throttle.known_device(email)
        wait = throttle.refused(email, trusted=trusted)
        if wait is not None:
            form.password.errors.append(
                f"Too many attempts for this account: try again in {throttle.wait_text(wait)}.")
            response = make_response(render_template("auth/login.html", form=form), 429)
            response.headers["Retry-After"] = str(wait)
            return response
        user = authenticate(email, form.password.data)
        if user is None:
            throttle.failed(email, trusted=trusted)
            form.password.errors.append("Wrong e-mail or password.")
        else:
            # Rotate: nothing from the anonymous session survives into the signed-in one.
            session.clear()
            login_user(user)
            session.permanent = True
            response = redirect(_safe_next(request.args.get("next")) or home_for(user))
            throttle.remember_device(response, email)
            return response
    status = 400 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out, ending this user's sessions on every device."""
    end_sessions(current_user)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
