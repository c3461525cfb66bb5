"""Flask extensions, created without an app and bound in :func:`app.create_app`."""

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
# No default limits: only the routes that send letters or check passwords are
# limited, each with its own configured rate.
limiter = Limiter(key_func=get_remote_address)
babel = Babel()
