"""What the checkpoint store and the object sink share about Cloud Storage.

Both write create-only or under the generation they read, so google-cloud-storage's
conditional retry policy makes every retried write safe: a retry whose first attempt had
landed gets 412, and the caller decides on purpose what that 412 means.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as api_exceptions
from google.api_core.exceptions import PreconditionFailed
from google.auth import exceptions as auth_exceptions
from google.cloud.storage.retry import DEFAULT_RETRY_IF_GENERATION_SPECIFIED

from harness_audit.errors import StorageRejected, StorageUnavailable

__all__ = ["CONDITIONAL_RETRY", "PreconditionFailed", "storage_errors"]

CONDITIONAL_RETRY = DEFAULT_RETRY_IF_GENERATION_SPECIFIED


@contextmanager
def storage_errors(action: str, bucket_name: str) -> Iterator[None]:
    """Turn the library's exceptions into the collector's, naming the fix. 412 passes through."""
    try:
        yield
    except PreconditionFailed:
        raise
    except (api_exceptions.Unauthorized, api_exceptions.Forbidden) as exc:
        raise StorageRejected(
            f"Cloud Storage refused to {action} in bucket {bucket_name} ({exc.code}): grant "
            "the function's service account roles/storage.objectUser on that bucket "
            "(deploy.sh does)"
        ) from None
    except api_exceptions.NotFound as exc:
        raise StorageRejected(
            f"Cloud Storage could not {action}: bucket {bucket_name} was not found ({exc}). "
            "Check GCS_BUCKET, or create the bucket (deploy.sh does)"
        ) from None
    except auth_exceptions.GoogleAuthError as exc:
        raise StorageRejected(
            f"no usable Google credentials to {action} ({type(exc).__name__}). On Cloud Run "
            "the service account provides them; locally run "
            "'gcloud auth application-default login'"
        ) from None
    except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError, OSError) as exc:
        raise StorageUnavailable(
            f"Cloud Storage failed to {action} after retries: {type(exc).__name__}: {exc}"
        ) from None
