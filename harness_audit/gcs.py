"""What the checkpoint store and the object sink share about Cloud Storage. Every write is
create-only or under the generation read, so the library's retry is safe for all of them:
a retry whose first attempt had landed gets 412, which the caller interprets."""

from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as api_exceptions
from google.api_core.exceptions import NotFound, PreconditionFailed
from google.auth import exceptions as auth_exceptions
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from harness_audit.errors import StorageRejected, StorageUnavailable

ATTEMPT_SECONDS = 60.0  # one attempt's connect and read timeout: the library's default
MIN_CALL_SECONDS = 1.0  # so that a run at its very end still gets an answer


def call_options(seconds: float | None) -> dict:
    """``timeout`` and ``retry`` for a call to end within ``seconds`` (None: the library's
    defaults). The last attempt may start as the retry gives up: the retry gets what it leaves."""
    if seconds is None:
        return {"retry": DEFAULT_RETRY}
    seconds = max(seconds, MIN_CALL_SECONDS)
    attempt = min(ATTEMPT_SECONDS, seconds / 2)
    return {"timeout": attempt, "retry": DEFAULT_RETRY.with_timeout(seconds - attempt)}


@contextmanager
def storage_errors(action: str, bucket_name: str) -> Iterator[None]:
    """Turn the library's exceptions into the collector's, naming the fix. 412 passes through."""
    try:
        yield
    except PreconditionFailed:
        raise
    except (api_exceptions.Unauthorized, api_exceptions.Forbidden) as exc:
        raise StorageRejected(
            f"Cloud Storage refused to {action} in bucket {bucket_name} ({exc.code}): grant the "
            "function's service account roles/storage.objectUser on that bucket (deploy.sh does)"
        ) from None
    except NotFound as exc:
        raise StorageRejected(
            f"Cloud Storage could not {action}: bucket {bucket_name} was not found ({exc}). "
            "Check GCS_BUCKET, or create the bucket (deploy.sh does)"
        ) from None
    except auth_exceptions.GoogleAuthError as exc:
        raise StorageRejected(
            f"no usable Google credentials to {action} ({type(exc).__name__}). On Cloud Run the "
            "service account provides them; locally run 'gcloud auth application-default login'"
        ) from None
    except api_exceptions.GoogleAPICallError as exc:  # one the library does not retry
        raise StorageUnavailable(
            f"Cloud Storage failed to {action} in the time the run had left: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    except (api_exceptions.RetryError, OSError) as exc:
        cause = getattr(exc, "cause", None) or exc  # a RetryError's last failure
        raise StorageUnavailable(
            f"Cloud Storage did not answer in time to {action} in bucket {bucket_name} "
            f"({type(cause).__name__}); check the network, then try again"
        ) from None


def open_bucket(name: str):
    """Google's ADC; storage.Client() itself goes anonymous when STORAGE_EMULATOR_HOST is set."""
    with storage_errors("read the bucket", name):
        return storage.Client().bucket(name)
