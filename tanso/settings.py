"""Settings: every value read from the environment here, and only here.

``TANSO_ENV`` selects the posture: ``production`` (the default) refuses to
start without a real ``SECRET_KEY`` or with ``DEBUG`` on; ``development`` and
``test`` (set by ``make run`` / ``make test``) allow a throwaway key.
Bad values fail loudly at start-up rather than later at request time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"{name} must be set")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


TANSO_ENV = env_str("TANSO_ENV", "production")
if TANSO_ENV not in {"production", "development", "test"}:
    raise ImproperlyConfigured(
        f"TANSO_ENV must be production, development or test, got {TANSO_ENV!r}"
    )
PRODUCTION = TANSO_ENV == "production"

DEBUG = env_bool("DEBUG", TANSO_ENV == "development")
_INSECURE_KEY = "insecure-development-key-never-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY") or ("" if PRODUCTION else _INSECURE_KEY)
if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off when TANSO_ENV=production")
    if len(SECRET_KEY) < 32 or SECRET_KEY == _INSECURE_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a random value of at least 32 characters in production"
        )

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://localhost:8080").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.sites",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "apps.core",
    "apps.accounts",
    "apps.customers",
    "apps.features",
    "apps.apikeys",
    "apps.pricing",
    "apps.events",
    "apps.analytics",
    "apps.recommendations",
    "apps.plans",
    "apps.subscriptions",
    "apps.credits",
    "apps.entitlements",
    "apps.billing",
    "apps.simulations",
    "apps.onboarding",
    "apps.dashboard",
    "apps.demo",
    "apps.mcp",
    "djstripe",
    "apps.stripe_sync",
    "apps.stripe_meters",
    "apps.stripe_import",
    "apps.alerts",
]

# The ingestion pipeline's steps beyond the ledger's own (apps/events/pipeline.py), in the
# order they run; each is idle (and free) in environments it has no work in.
INGESTION_STEPS = [
    # Plan revenue, usage caps, reservations, credits, usage counters.
    "apps.entitlements.ingestion.EntitlementsStep",
    # Stripe-driven environments: the units credits did not cover, to the meter outbox
    # (reads the entitlements step's credit charges).
    "apps.stripe_meters.ingestion.MeterEventsStep",
    # Alerts: a key budget rule is evaluated as the key spends (debounced task).
    "apps.alerts.ingestion.AlertsStep",
]

MIDDLEWARE = [
    # /api/ calls leave here for API_MIDDLEWARE (below); pages go on down this list.
    "tanso.chains.ApiChainMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    # The JSON envelope for errors under /api/ (here: the schema and docs pages).
    "apps.core.api.errorpages.ApiErrorEnvelopeMiddleware",
    # NUL characters, body sizes, chunked bodies: before anything reads the request.
    "apps.core.request_limits.RequestLimitsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "apps.accounts.middleware.TenantMiddleware",
]
# Key-authenticated API calls (tanso/chains.py): no sessions, CSRF, messages, allauth,
# CSP, htmx or static files; the same request ids, security headers and host checks as
# pages. Idempotency-Key is honoured by the API views (apps/apikeys/idempotency.py),
# after the key is authenticated and its scope checked.
API_MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.api.errorpages.ApiErrorEnvelopeMiddleware",
    "apps.core.request_limits.RequestLimitsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tanso.urls"
WSGI_APPLICATION = "tanso.wsgi.application"
ASGI_APPLICATION = "tanso.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "apps.accounts.context_processors.tenant",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tanso")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
if _db["ENGINE"] not in {"django.db.backends.postgresql"}:
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...)")
_db["CONN_HEALTH_CHECKS"] = True
_db.setdefault("OPTIONS", {})
# PostgreSQL's JIT compiles a plan once it is estimated expensive: for the dashboard's
# rollup reads (tens of ms) compiling costs more than it saves (45 ms of an 260 ms
# customer page at 10M events). Off for our connections unless PG_JIT says otherwise
# ("" leaves the server's setting: e.g. behind a pooler that refuses startup options).
if env_str("PG_JIT", "off"):
    _db["OPTIONS"].setdefault("options", f"-c jit={env_str('PG_JIT', 'off')}")
_db["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_tanso")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Seconds: every Redis connection of web and worker processes (apps/core/redis.py, the
# cache, the Celery broker) gives up after these, so a hung Redis cannot hold a request.
REDIS_CONNECT_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 0.5)
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 0.5)
# After a failed connect, new connections to that Redis fail at once for this long.
REDIS_DOWN_SECONDS = env_float("REDIS_DOWN_SECONDS", 2.0)
if min(REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT) <= 0 or REDIS_DOWN_SECONDS < 0:
    raise ImproperlyConfigured(
        "REDIS_CONNECT_TIMEOUT and REDIS_SOCKET_TIMEOUT must be > 0, REDIS_DOWN_SECONDS >= 0"
    )


def _test_worker_redis_url(url: str, worker: str, dbs: list[str]) -> str:
    """The Redis URL of pytest-xdist worker ``worker`` (``gw0``, ``gw1``, ...).

    Each worker flushes its Redis database before every test and runs Celery with it as
    the broker, so workers sharing one server must each have a database of their own:
    the ``N``-th of ``TEST_REDIS_DBS`` (e.g. ``5,9,10,11``) when that is set, else the
    URL's database plus ``N``. Read here, before the cache, the broker and
    ``apps.core.redis`` see ``REDIS_URL``."""
    if not worker.startswith("gw") or not worker[2:].isdigit():
        raise ImproperlyConfigured(f"PYTEST_XDIST_WORKER must look like gw0, got {worker!r}")
    index = int(worker[2:])
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(
            f"pytest-xdist workers need a redis:// or rediss:// REDIS_URL, got {url!r}"
        )
    if dbs:
        if index >= len(dbs) or not all(db.isdigit() for db in dbs):
            raise ImproperlyConfigured(
                f"TEST_REDIS_DBS must list a Redis database number for each pytest-xdist "
                f"worker; {worker} has none in {','.join(dbs)!r}"
            )
        db = int(dbs[index])
    else:
        base = parts.path.lstrip("/") or "0"
        if not base.isdigit():
            raise ImproperlyConfigured(f"REDIS_URL must name a database number, got {url!r}")
        db = int(base) + index
    return urlunsplit(parts._replace(path=f"/{db}"))


if TANSO_ENV == "test" and os.environ.get("PYTEST_XDIST_WORKER"):
    REDIS_URL = _test_worker_redis_url(
        REDIS_URL, os.environ["PYTEST_XDIST_WORKER"], env_list("TEST_REDIS_DBS", [])
    )
CACHES = {
    "default": {
        # Django's RedisCache with the timeouts above and an in-process stand-in while
        # Redis fails (apps/core/cache.py).
        "BACKEND": "apps.core.cache.ResilientRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "tanso-cache",
        "TIMEOUT": 300,
    }
}

# --- Auth and accounts ---------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The test suite signs in thousands of users: a fast hasher there alone (1.2 M PBKDF2
# iterations per user cost the suite ~40 % of its time). Never outside TANSO_ENV=test.
if TANSO_ENV == "test":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SITE_ID = 1
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard:home"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_ADAPTER = "apps.accounts.adapters.AccountAdapter"
ACCOUNT_RATE_LIMITS = {
    # "key" is the account and the client address together (accounts/adapters.py): a
    # stranger's failures do not lock the owner out; 30 per address over all accounts.
    "login_failed": env_str("LOGIN_RATE_LIMIT", "30/5m/ip,5/5m/key"),
    # Sign-in attempts of any outcome per client address (allauth's default).
    "login": env_str("LOGIN_ATTEMPT_RATE_LIMIT", "30/m/ip"),
    "signup": "20/h/ip",
    "reset_password": "5/h/ip,3/h/key",
    "confirm_email": "1/3m/key",
}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Tanso] "

# --- Email ---------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Tanso <noreply@localhost>")

# --- Security --------------------------------------------------------------------
SECURE_BEHIND_TLS = env_bool("SECURE_BEHIND_TLS", PRODUCTION)
SESSION_COOKIE_SECURE = SECURE_BEHIND_TLS
CSRF_COOKIE_SECURE = SECURE_BEHIND_TLS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if SECURE_BEHIND_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# Content security policy (Django 6 built-in): only our own static assets.
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
}
# Client IPs come from REMOTE_ADDR unless a trusted proxy sets X-Forwarded-For.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)

# --- Internationalisation and time --------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "/static/"
# collectstatic target (the Procfile release step); unset outside production, where
# WhiteNoise serves straight from the finders.
STATIC_ROOT = BASE_DIR / "staticfiles" if PRODUCTION else None
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# --- API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.apikeys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.apikeys.permissions.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.api.parsers.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["apps.core.api.renderers.DecimalJSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["apps.apikeys.throttling.ApiKeyRateThrottle"],
    "EXCEPTION_HANDLER": "apps.core.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.schema.TansoAutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_VERSIONING_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tanso API",
    "DESCRIPTION": (
        "Per-request cost, revenue and margin for AI products. Authenticate with "
        "`Authorization: Bearer <key>` or `X-API-Key: <key>`."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api",
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    },
    # Choice sets that share a field name ("status") get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "ReservationStatusEnum": ["held", "settled", "released", "expired"],
        "ApiKeyStatusEnum": ["active", "expired", "revoked"],
        "MemberRoleEnum": ["owner", "admin", "member", "viewer"],
        "GrantableRoleEnum": ["admin", "member", "viewer"],
        "PlanChangeStatusEnum": ["PENDING", "COMPLETED", "CANCELLED"],
        "InvoiceStatusEnum": ["PENDING", "DUE", "PAST_DUE", "PAID", "VOID"],
        "PlanStatusEnum": ["DRAFT", "ACTIVE", "ARCHIVED"],
        "GrantStatusEnum": ["active", "spent", "expired", "closed"],
        "GrantTypeEnum": ["plan", "purchased", "promotional", "refund", "manual", "rollover"],
        "GrantInputTypeEnum": ["plan", "purchased", "promotional", "refund", "manual"],
        "InvoiceLineKindEnum": [
            "BASE",
            "USAGE",
            "OVERAGE",
            "CREDITS",
            "PRORATION",
            "LATE_USAGE",
            "CANCELLATION",
            "CHARGE",
        ],
        "ApiKeyKindEnum": ["sk", "obs", "ck"],
        "BudgetPeriodEnum": ["day", "month"],
        # apps.apikeys.scopes: every scope, then the customer-key ones.
        "ApiKeyScopeEnum": "apps.apikeys.api.KEY_SCOPES",
        "CustomerKeyScopeEnum": ["read", "purchase"],
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Request bodies (docs/api.md, "Limits"): the largest body, in bytes, a path accepts (an
# exact path, or a prefix ending in "/"; the first match wins); larger is 413 before
# anything reads it (apps.core.request_limits). A full batch is 1000 events with 16 KB of
# meta each plus the envelope; Stripe's own events are a few KB (dj-stripe stores each
# delivery, verified or not, so a forged one must stay small).
_MiB = 1024 * 1024
REQUEST_BODY_LIMITS: list[tuple[str, int]] = [
    ("/api/events/ingest", 20 * _MiB),
    ("/stripe/webhook/", 1 * _MiB),
    ("/api/", 1 * _MiB),
]
REQUEST_BODY_LIMIT_DEFAULT = 2_621_440  # dashboard pages and forms: Django's default (2.5 MiB)
# Django's own ceiling for request.body and form data must admit the largest limit above
# (the idempotency middleware hashes request.body); the per-path limits are the real ones.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(
    REQUEST_BODY_LIMIT_DEFAULT, *(limit for _, limit in REQUEST_BODY_LIMITS)
)
# JSON bodies nested deeper than this (arrays and objects) are 400 malformed_body.
JSON_MAX_DEPTH = 64

# Requests per second allowed per API key (a fixed one-second window in Redis).
API_RATE_LIMIT_PER_SECOND = env_int("API_RATE_LIMIT_PER_SECOND", 2000)
# Programmatic signups allowed per client IP in any 60 minutes (a sliding window).
SIGNUP_RATE_LIMIT_PER_HOUR = env_int("SIGNUP_RATE_LIMIT_PER_HOUR", 3)
# Idempotency-Key replays are kept this long.
IDEMPOTENCY_TTL = timedelta(hours=24)
# A verified key is cached in-process this long; revocation is immediate in the
# process that revoked it and takes at most this long elsewhere.
APIKEY_CACHE_SECONDS = env_int("APIKEY_CACHE_SECONDS", 2)
# A key that matched nothing is remembered in-process this long (no query when it is
# sent again).
APIKEY_NEGATIVE_CACHE_SECONDS = env_int("APIKEY_NEGATIVE_CACHE_SECONDS", 10)
# Failed API key authentications allowed per client IP in any 60 seconds; beyond that,
# 429 rate_limited until the oldest failure leaves the window.
API_AUTH_FAILURES_PER_MINUTE = env_int("API_AUTH_FAILURES_PER_MINUTE", 20)
# While PostgreSQL is unreachable, a key verified in this process at most this long ago
# (counted from the end of its APIKEY_CACHE_SECONDS) is still trusted; others cannot be
# verified (docs/api.md, "Outages"). 0: never trust an unverifiable key.
APIKEY_STALE_SECONDS = env_int("APIKEY_STALE_SECONDS", 300)

# --- Model prices ---------------------------------------------------------------------
# Where the price catalog is loaded from: empty = the data bundled with genai-prices;
# else a local JSON file (path or file:// URL) in the shape genai-prices publishes.
MODEL_PRICES_SOURCE = env_str("MODEL_PRICES_SOURCE", "")

# --- Dashboard ----------------------------------------------------------------------------
# Margin bands are set per environment (its target margin, default 70 %: the settings
# page and GET/PATCH /api/analytics/settings), not here.

# --- Celery ----------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Web requests publish tasks (on commit): with the broker down or hung, a publish gives
# up within about two REDIS_CONNECT_TIMEOUTs / REDIS_SOCKET_TIMEOUTs (one retry) instead
# of kombu's defaults (no socket timeout, three retries); the caller logs and goes on.
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_CONNECT_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.1,
}
# The one beat schedule. Each entry names a task that is idempotent.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "evaluate-alerts": {"task": "apps.alerts.tasks.evaluate_alerts", "schedule": 60.0},
    "purge-idempotency-records": {
        "task": "apps.apikeys.tasks.purge_idempotency_records",
        "schedule": crontab(minute=17),
    },
    "expire-invitations": {
        "task": "apps.accounts.tasks.expire_invitations",
        "schedule": crontab(minute=5, hour="*/6"),
    },
    "sync-model-prices": {
        "task": "apps.pricing.tasks.sync_model_prices",
        "schedule": crontab(minute=23, hour=3),
    },
    "ensure-event-partitions": {
        "task": "apps.events.tasks.ensure_event_partitions",
        "schedule": crontab(minute=41, hour=2),
    },
    "recost-unpriced-events": {
        "task": "apps.events.tasks.recost_unpriced_events",
        "schedule": crontab(minute=35),
    },
    "advance-subscription-periods": {
        "task": "apps.subscriptions.tasks.advance_subscription_periods",
        "schedule": crontab(minute="*/15"),
    },
    "expire-credit-grants": {
        "task": "apps.credits.tasks.expire_credit_grants",
        "schedule": crontab(minute="*/15"),
    },
    "roll-over-credit-pools": {
        "task": "apps.credits.tasks.roll_over_credit_pools",
        "schedule": crontab(minute="7-59/15"),
    },
    "run-billing-cycle": {
        "task": "apps.billing.tasks.run_billing_cycle",
        "schedule": crontab(minute="*/5"),
    },
    "expire-reservations": {
        "task": "apps.entitlements.tasks.expire_reservations",
        "schedule": crontab(minute="*/10"),
    },
    "stripe-meter-events": {
        "task": "apps.stripe_meters.tasks.sweep_meter_events",
        "schedule": crontab(),
    },
    "stripe-driven-provisioning": {
        "task": "apps.stripe_meters.tasks.sweep_provisioning",
        "schedule": crontab(minute="3-59/15"),
    },
    "compute-recommendations": {
        "task": "apps.recommendations.tasks.compute_all_recommendations",
        "schedule": crontab(minute=47, hour=4),
    },
    "stripe-pass-through-push": {
        "task": "apps.stripe_sync.tasks.push_pending_invoices",
        "schedule": crontab(minute="4-59/10"),
    },
}

# --- Stripe (apps/stripe_sync, docs/stripe.md) ------------------------------------------
# Keys are per environment (StripeConnection, encrypted), never global settings.
# Where the stripe SDK sends API calls; tests point it at a local localstripe peer.
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
# Fernet key (urlsafe base64 of 32 bytes) for secrets at rest; derived from SECRET_KEY when unset.
TANSO_ENCRYPTION_KEY = env_str("TANSO_ENCRYPTION_KEY", "")
# Where Stripe delivers webhooks: SITE_URL + /stripe/webhook/<uuid>/ unless set.
STRIPE_WEBHOOK_BASE_URL = env_str("STRIPE_WEBHOOK_BASE_URL", SITE_URL).rstrip("/")
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
# Webhook deliveries (apps/stripe_sync/views.py; bodies over 1 MiB: REQUEST_BODY_LIMITS):
# per endpoint per second (429 beyond; Stripe retries), and unverified ones per client IP
# in a window, after which that IP is refused (429) until the window ends.
STRIPE_WEBHOOK_RATE_LIMIT_PER_SECOND = env_int("STRIPE_WEBHOOK_RATE_LIMIT_PER_SECOND", 100)
STRIPE_WEBHOOK_INVALID_LIMIT = env_int("STRIPE_WEBHOOK_INVALID_LIMIT", 20)
STRIPE_WEBHOOK_INVALID_WINDOW_SECONDS = env_int("STRIPE_WEBHOOK_INVALID_WINDOW_SECONDS", 600)
# Verified events reach apps.stripe_sync.webhooks through dj-stripe's webhook_pre_process
# signal (recorded once, dispatched once); dj-stripe's own processing then has nothing to
# do (it would call Stripe with a global key).

# --- Logging -----------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
