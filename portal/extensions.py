"""Flask extensions, created unbound here and initialised in create_app()."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# A fixed naming convention keeps constraint names identical on SQLite and PostgreSQL, so
# Alembic migrations are stable and `flask db check` reports no drift.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Objects keep their loaded values after commit: a request that commits and then renders does
# not re-select every row it holds. Rows that may race are re-read under a lock anyway
# (payments.services._locked uses populate_existing).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


# Database errors are logged and kept (a failed webhook event's error): without the values
# they were about. The engines hide their SQL parameters (config.py); PostgreSQL's DETAIL
# quotes the row or the key ("Failing row contains (jane@example.com, ...)", values with
# their newlines), so it is cut out here, in the driver's exception and in SQLAlchemy's.
# The error's diagnostics (exc.orig.diag) still hold it for code that needs it.
@event.listens_for(Engine, "handle_error")
def _hide_detail(context) -> None:
    detail = getattr(getattr(context.original_exception, "diag", None), "message_detail", None)
    if not detail:
        return
    for exc in (context.original_exception, context.sqlalchemy_exception):
        if exc is not None and exc.args and isinstance(exc.args[0], str) and (
                detail in exc.args[0]):
            exc.args = (exc.args[0].replace(detail, "(not shown: it can quote customers' data)"),
                        *exc.args[1:])
