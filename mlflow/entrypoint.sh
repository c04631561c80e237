#!/bin/sh
# Entrypoint of the vlthinker MLflow server image.
#
#   server          (default) compose the store URIs from the environment, render the basic-auth
#                   config and exec `mlflow server`; extra arguments are passed to `mlflow server`
#   db-upgrade      create or upgrade the tracking schema (`mlflow db upgrade`, URI kept off argv)
#   create-bucket   create the artifact bucket when it is missing (waits for the S3 endpoint)
#   print-config    render the configuration, print the command it would run (no secrets), exit
#   anything else   exec'd as is (e.g. `sh`, `mlflow --version`)
#
# Environment (everything else `mlflow server` reads from its own MLFLOW_* variables):
#   MLFLOW_DB_HOST, MLFLOW_DB_PORT (5432), MLFLOW_DB_NAME (mlflow), MLFLOW_DB_USER,
#   MLFLOW_DB_PASSWORD, MLFLOW_DB_SSLMODE   Postgres backend store; the URI is composed here, with
#                                           user and password URL-encoded, and handed to mlflow
#                                           through MLFLOW_BACKEND_STORE_URI (never argv).
#   MLFLOW_BACKEND_STORE_URI                used as is when set (e.g. sqlite for a local try-out).
#   MLFLOW_ARTIFACTS_DESTINATION            s3://bucket/prefix (required).
#   MLFLOW_AUTH_ENABLED (true)              basic-auth: needs MLFLOW_AUTH_ADMIN_PASSWORD and
#                                           MLFLOW_FLASK_SERVER_SECRET_KEY; the user store lives in
#                                           MLFLOW_AUTH_DB_NAME (default: MLFLOW_DB_NAME) on the same
#                                           server, or MLFLOW_AUTH_DATABASE_URI when set.
#   MLFLOW_AUTH_DEFAULT_PERMISSION (READ), MLFLOW_AUTH_ADMIN_USERNAME (admin)
#   MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000), MLFLOW_WORKERS (2), MLFLOW_SERVER_ALLOWED_HOSTS,
#   MLFLOW_SERVER_CORS_ALLOWED_ORIGINS      read by `mlflow server` itself.
set -eu

die() {
    echo "vlthinker-mlflow: $*" >&2
    exit 64
}

: "${MLFLOW_HOST:=0.0.0.0}"
: "${MLFLOW_PORT:=5000}"
: "${MLFLOW_WORKERS:=2}"
: "${MLFLOW_SERVE_ARTIFACTS:=true}"
: "${MLFLOW_AUTH_ENABLED:=true}"
: "${MLFLOW_AUTH_DEFAULT_PERMISSION:=READ}"
: "${MLFLOW_AUTH_ADMIN_USERNAME:=admin}"
: "${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:=false}"
: "${MLFLOW_AUTH_TEMPLATE:=/etc/mlflow/basic_auth.ini.template}"
: "${VLTHINKER_MLFLOW_RUNTIME_DIR:=${TMPDIR:-/tmp}/vlthinker-mlflow}"
export MLFLOW_HOST MLFLOW_PORT MLFLOW_WORKERS MLFLOW_SERVE_ARTIFACTS MLFLOW_AUTH_ADMIN_USERNAME \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION

# postgres_uri DATABASE: postgresql+psycopg://user:password@host:port/DATABASE[?sslmode=...],
# user and password URL-encoded.
postgres_uri() {
    python3 - "$1" <<'PY'
import os
import sys
from urllib.parse import quote

env = os.environ
missing = [k for k in ("MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD") if not env.get(k)]
if missing:
    sys.exit("vlthinker-mlflow: MLFLOW_DB_HOST is set but %s is empty" % ", ".join(missing))
host = env["MLFLOW_DB_HOST"]
if ":" in host and not host.startswith("["):
    host = "[%s]" % host  # IPv6 literal
uri = "postgresql+psycopg://%s:%s@%s:%s/%s" % (
    quote(env["MLFLOW_DB_USER"], safe=""),
    quote(env["MLFLOW_DB_PASSWORD"], safe=""),
    host,
    env.get("MLFLOW_DB_PORT") or "5432",
    quote(sys.argv[1], safe=""),
)
if env.get("MLFLOW_DB_SSLMODE"):
    uri += "?sslmode=" + quote(env["MLFLOW_DB_SSLMODE"], safe="")
print(uri)
PY
}

configure_backend() {
    if [ -z "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
        [ -n "${MLFLOW_DB_HOST:-}" ] || die "set MLFLOW_DB_HOST (and MLFLOW_DB_USER/MLFLOW_DB_PASSWORD) or MLFLOW_BACKEND_STORE_URI"
        MLFLOW_BACKEND_STORE_URI="$(postgres_uri "${MLFLOW_DB_NAME:-mlflow}")" || exit 64
    fi
    export MLFLOW_BACKEND_STORE_URI
}

# Renders basic_auth.ini (mode 0600) from the template; the admin user/password are read by MLflow
# from MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD and never written to disk.
configure_auth() {
    [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ] || die "basic-auth needs MLFLOW_AUTH_ADMIN_PASSWORD"
    [ -n "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ] || die "basic-auth needs MLFLOW_FLASK_SERVER_SECRET_KEY"
    if [ -z "${MLFLOW_AUTH_DATABASE_URI:-}" ]; then
        [ -n "${MLFLOW_DB_HOST:-}" ] || die "basic-auth needs MLFLOW_DB_HOST or MLFLOW_AUTH_DATABASE_URI"
        MLFLOW_AUTH_DATABASE_URI="$(postgres_uri "${MLFLOW_AUTH_DB_NAME:-${MLFLOW_DB_NAME:-mlflow}}")" || exit 64
    fi
    export MLFLOW_AUTH_DATABASE_URI MLFLOW_AUTH_DEFAULT_PERMISSION
    mkdir -p "$VLTHINKER_MLFLOW_RUNTIME_DIR"
    chmod 0700 "$VLTHINKER_MLFLOW_RUNTIME_DIR"
    MLFLOW_AUTH_CONFIG_PATH="$VLTHINKER_MLFLOW_RUNTIME_DIR/basic_auth.ini"
    export MLFLOW_AUTH_CONFIG_PATH
    python3 - "$MLFLOW_AUTH_TEMPLATE" "$MLFLOW_AUTH_CONFIG_PATH" <<'PY'
import os
import string
import sys

template, target = sys.argv[1], sys.argv[2]
permission = os.environ["MLFLOW_AUTH_DEFAULT_PERMISSION"]
if permission not in {"READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS"}:
    sys.exit("vlthinker-mlflow: MLFLOW_AUTH_DEFAULT_PERMISSION=%r is not a permission" % permission)
with open(template, encoding="utf-8") as fh:
    text = string.Template(fh.read()).substitute(
        # configparser interpolates '%': the URL-encoded password must be escaped.
        MLFLOW_AUTH_DATABASE_URI=os.environ["MLFLOW_AUTH_DATABASE_URI"].replace("%", "%%"),
        MLFLOW_AUTH_DEFAULT_PERMISSION=permission,
    )
fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as fh:
    fh.write(text)
PY
    unset MLFLOW_AUTH_DATABASE_URI
}

# Validates the environment and renders the configuration; sets AUTH_APP=1 when basic-auth is on.
prepare_server() {
    [ -n "${MLFLOW_ARTIFACTS_DESTINATION:-}" ] || die "set MLFLOW_ARTIFACTS_DESTINATION (e.g. s3://bucket/artifacts)"
    export MLFLOW_ARTIFACTS_DESTINATION
    configure_backend
    case "$MLFLOW_AUTH_ENABLED" in
        true | 1 | yes)
            configure_auth
            AUTH_APP=1
            ;;
        false | 0 | no) AUTH_APP=0 ;;
        *) die "MLFLOW_AUTH_ENABLED must be true or false, got '$MLFLOW_AUTH_ENABLED'" ;;
    esac
}

cmd="${1:-server}"
[ "$#" -gt 0 ] && shift

case "$cmd" in
    server)
        prepare_server
        [ "$AUTH_APP" = 1 ] && set -- "$@" --app-name basic-auth
        exec mlflow server "$@"
        ;;
    print-config)
        prepare_server
        [ "$AUTH_APP" = 1 ] && set -- "$@" --app-name basic-auth
        echo "command: mlflow server${*:+ $*}"
        echo "host: $MLFLOW_HOST port: $MLFLOW_PORT workers: $MLFLOW_WORKERS"
        echo "allowed hosts: ${MLFLOW_SERVER_ALLOWED_HOSTS:-<mlflow default: localhost and private IPs>}"
        echo "artifacts: $MLFLOW_ARTIFACTS_DESTINATION"
        echo "auth config: ${MLFLOW_AUTH_CONFIG_PATH:-<auth off>}"
        ;;
    db-upgrade)
        configure_backend
        exec python3 -c '
import os
from mlflow.store.db import utils

engine = utils.create_sqlalchemy_engine_with_retry(os.environ["MLFLOW_BACKEND_STORE_URI"])
if utils._is_empty_database(engine):
    utils._initialize_tables(engine)
else:
    utils._upgrade_db(engine)
print("vlthinker-mlflow: tracking schema is up to date")
'
        ;;
    create-bucket)
        [ -n "${VLTHINKER_S3_BUCKET:-}" ] || die "set VLTHINKER_S3_BUCKET"
        exec python3 -c '
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

bucket = os.environ["VLTHINKER_S3_BUCKET"]
deadline = time.monotonic() + float(os.environ.get("VLTHINKER_S3_WAIT_SECONDS", "300"))
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None,
    verify=os.environ.get("MLFLOW_S3_IGNORE_TLS", "false").lower() != "true",
    config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10),
)
while True:
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"vlthinker-mlflow: bucket {bucket} exists")
        break
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            region = os.environ.get("AWS_DEFAULT_REGION", "")
            if region and region != "us-east-1" and not os.environ.get("MLFLOW_S3_ENDPOINT_URL"):
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            else:
                s3.create_bucket(Bucket=bucket)
            print(f"vlthinker-mlflow: created bucket {bucket}")
            break
        error = exc
    except EndpointConnectionError as exc:
        error = exc
    if time.monotonic() > deadline:
        sys.exit(f"vlthinker-mlflow: bucket {bucket} unreachable: {error}")
    time.sleep(3)
'
        ;;
    *)
        exec "$cmd" "$@"
        ;;
esac
