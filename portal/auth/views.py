"""Login and logout, and each role's home page."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
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


# Where each role lands after signing in (and on "/"): its own home.
HOMES = {"customer": "orders.index", "vendor": "payouts.dashboard",
         "admin": "admin.payments", "service": "api.docs"}


def home_for(user: User) -> str:
    """The user's home page: customers their orders, vendors their dashboard, admins the
    back office (the payments search), service users the API's documentation."""
    return url_for(HOMES.get(user.role, "orders.index"))


@bp.route("/")
@login_required
def home():
    """The signed-in user's home page."""
    return redirect(home_for(current_user))


@bp.route("/login", methods=["GET", "POST"])
# Per address (trying many accounts); per account, whichever way the password comes: throttle.
@limiter.limit("30 per minute; 300 per hour", methods=["POST"])
def login():
    """Sign in with e-mail and password."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        response = _attempt(form)
        if response is not None:
            return response
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


def _attempt(form: LoginForm) -> Response | None:
    """Try the form's password within the account's attempt budget (throttle): the signed-in
    redirect, the form again with a 429 when the budget is spent, or None (a wrong password:
    the form shows its error)."""
    email = form.email.data
    trusted = throttle.known_device(email)
    wait = throttle.refused(email, trusted=trusted)
    if wait is not None:
        form.password.errors.append(
            f"Too many attempts for this account: try again in {throttle.wait_text(wait)}.")
        return make_response(render_template("auth/login.html", form=form), 429,
                             {"Retry-After": str(wait)})
    user = authenticate(email, form.password.data)
    if user is None:
        throttle.failed(email, trusted=trusted)
        form.password.errors.append("Wrong e-mail or password.")
        return None
    # Rotate: nothing from the anonymous session survives into the signed-in one.
    session.clear()
    login_user(user)
    session.permanent = True
    response = redirect(_safe_next(request.args.get("next")) or home_for(user))
    throttle.remember_device(response, email)
    return response


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out, ending this user's sessions on every device (committed at the request's
    end)."""
    end_sessions(current_user)
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
