"""One writer per destination prefix: two jobs never write under the same prefix at once (issue 11).

A submitted export or batch records its *destination key*: the account and container with the
path prefix (Blob), or the URL up to the first per-file placeholder with the job's labels filled
in (HTTP PUT). A new job whose key is a prefix of an unfinished job's key, or the other way
round, is refused with 409 naming the field, unless its `options.share_destination` says it may
share (one user's job overwrote another's files under the same prefix). Session jobs write under
their own `{app}/{session}/` and record no key.

The check reads the unfinished jobs of the listing index and their records: cost grows with the
jobs under way, not with all jobs. Two submissions in the same instant can both pass (there is no
lock); that window is a request's length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shared.contracts import BlobDestinationSpec
from shared.deps import Deps
from shared.destinations.http_put import PutDestinationSpec
from shared.destinations.url_template import expand, placeholders
from shared.errors import ValidationError
from shared.storage_policy import DestinationRefused, account_of

__all__ = ["KEY_FIELD", "conflicting_job", "destination_key"]

KEY_FIELD: Final = "destination_key"  # in the job record
MAX_ACTIVE_CHECKED: Final = 2000


def destination_key(destination: Any, secret_value: str | None, labels: Mapping[str, str]) -> str:
    if isinstance(destination, BlobDestinationSpec):
        account = "own"
        if secret_value:
            try:
                account = account_of(secret_value).key
            except DestinationRefused:
                account = "unknown"
        prefix = destination.path_prefix.strip("/")
        return f"blob:{account}/{destination.container}/{prefix + '/' if prefix else ''}"
    if isinstance(destination, PutDestinationSpec):
        return "put:" + _static_url(destination, labels)
    return f"other:{type(destination).__name__}"


def _static_url(spec: PutDestinationSpec, labels: Mapping[str, str]) -> str:
    """The template's URL up to its first placeholder that is not `base` or a label."""
    template = spec.url_template
    for name in placeholders(template):
        if name != "base" and name not in labels:
            template = template[: template.index("{" + name + "}")]
            break
    cut = template.rstrip("/")
    try:
        url = expand(cut, {**labels, "base": spec.base_url})
    except ValidationError:  # a cut that is no longer a whole template: compare it as written
        url = cut.replace("{base}", spec.base_url.rstrip("/"))
    return url + ("/" if template.endswith("/") else "")


def conflicting_job(deps: Deps, key: str) -> str | None:
    """The id of an unfinished job writing under an overlapping prefix, if any."""
    from shared.job_api import active_jobs  # job_api calls this at submission

    for job_id in active_jobs(deps, MAX_ACTIVE_CHECKED):
        record = deps.jobs.get_record(job_id)
        other = (record or {}).get(KEY_FIELD)
        if isinstance(other, str) and (other.startswith(key) or key.startswith(other)):
            return job_id
    return None
