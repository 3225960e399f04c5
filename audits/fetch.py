"""The audit's input stage from Twilio: list call recordings, download each once, link it to its
call, audit it (`holdguard recordings fetch [--since DATE] [--call-sid SID]`).

Credentials come from the environment (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN); TWILIO_API_BASE
points the client at another API host (a local fake in the tests). Each recording is downloaded
as WAV from its media URL into `<data dir>/recordings/<RecordingSid>.wav`, written to a temporary
file and renamed into place only once it is complete and readable, so a file there is always
whole. A failed download is retried with backoff, then reported; nothing is half-stored.

The `recordings` table remembers what was fetched (a recording is never downloaded twice) and
links each file to its call (CallSid -> the webhook's `calls` row: caller, queue, play log) and
to its audit. The audit runs with that caller's products and the issues open at the time of the
call as context, and a sidecar `<RecordingSid>.context.json` holding the CallSid lets a later `holdguard audit` of the
file find the same context.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from app.core.audit import Context
from app.core.files import file_sha256
from app.core.times import format_utc
from app.storage import audits as audit_store, catalog, playlog, recordings
from audits import context as audit_context, pipeline

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
DOWNLOAD_ATTEMPTS = 4
BACKOFF_S = 1.0  # waits 1 s, 2 s, 4 s between attempts
RETRYABLE_HTTP = {408, 429, 500, 502, 503, 504}
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 10, 60
CHUNK_BYTES = 1 << 16

# recordings.status: downloaded (file stored, not audited) | audited | audit_failed | download_failed


class FetchError(Exception):
    """Twilio could not be asked for recordings at all; the message says why, in one line."""


class DownloadError(Exception):
    """A recording could not be downloaded; the message says why, in one line."""


class RetryableError(DownloadError):
    """A failure worth another try: a server error, a dropped connection, a cut-off file."""


@dataclass
class Outcome:
    """What happened to one recording in a fetch run."""
    sid: str
    call_sid: str | None
    status: str  # downloaded | audited | audit_failed | download_failed | skipped
    detail: str = ""
    audit_id: int | None = None

    @property
    def failed(self) -> bool:
        return self.status.endswith("_failed")


# ---- Twilio -------------------------------------------------------------------------------------

def twilio_client(account_sid: str, auth_token: str, api_base: str | None = None):
    """A twilio REST client; `api_base` replaces https://api.twilio.com (e.g. a local fake)."""
    from twilio.rest import Client

    client = Client(account_sid, auth_token)
    if api_base:
        client.api.base_url = api_base.rstrip("/")  # every v2010 URL and next-page URL is built on it
    return client


def list_recordings(client, since: datetime | None = None, call_sid: str | None = None) -> list:
    """Twilio's recordings created at/after `since` and/or of one call (all pages)."""
    import requests
    from twilio.base import values
    from twilio.base.exceptions import TwilioException

    try:
        return client.recordings.list(date_created_after=since or values.unset,
                                      call_sid=call_sid or values.unset)
    except TwilioException as error:
        raise FetchError(f"cannot list recordings from Twilio: {_twilio_reason(error)}") from None
    except requests.RequestException as error:
        raise FetchError(f"cannot reach Twilio at {client.api.base_url}: {type(error).__name__}") from None


def _twilio_reason(error) -> str:
    """ "HTTP 401, ..." from a TwilioRestException or the page response a TwilioException carries."""
    status = getattr(error, "status", None)
    body = getattr(error, "msg", "")
    for part in error.args:
        if hasattr(part, "status_code"):  # twilio.http.response.Response
            status, body = part.status_code, part.text
    if status == 401:
        return "HTTP 401, the account SID or auth token is wrong"
    if status:
        return f"HTTP {status}: {' '.join(str(body).split())[:200]}"
    return str(error)


def media_url(client, account_sid: str, recording_sid: str) -> str:
    """The recording's audio as WAV: /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.wav."""
    return client.api.absolute_url(f"{API_VERSION}/Accounts/{account_sid}/Recordings/{recording_sid}.wav")


# ---- downloading --------------------------------------------------------------------------------

def download_wav(url: str, destination: Path, auth: tuple[str, str], *, attempts: int = DOWNLOAD_ATTEMPTS,
                 backoff_s: float = BACKOFF_S, session=None) -> int:
    """Download a WAV to `destination` atomically, retrying failures that may pass; returns its bytes.

    Raises DownloadError when it gives up; `destination` is then untouched.
    """
    import requests

    session = session or requests.Session()
    for attempt in range(1, attempts + 1):
        try:
            return _download_once(url, destination, auth, session)
        except RetryableError as error:
            if attempt == attempts:
                raise DownloadError(f"gave up after {attempts} attempts: {error}") from None
            wait_s = backoff_s * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s); retrying in %.1f s", destination.name, error, wait_s)
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def _download_once(url: str, destination: Path, auth: tuple[str, str], session) -> int:
    import requests

    partial = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    try:
        try:
            with session.get(url, auth=auth, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
                if response.status_code in RETRYABLE_HTTP:
                    raise RetryableError(f"HTTP {response.status_code} from {url}")
                if response.status_code != 200:
                    raise DownloadError(f"HTTP {response.status_code} from {url}")
                with open(partial, "wb") as out:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        out.write(chunk)
        except requests.RequestException as error:  # refused, reset, timed out, cut short
            raise RetryableError(f"{type(error).__name__}: {error}") from None
        check_wav(partial)
        os.replace(partial, destination)  # atomic on one filesystem: the file appears whole or not at all
        return destination.stat().st_size
    finally:
        partial.unlink(missing_ok=True)


def check_wav(path: Path) -> None:
    """Raise RetryableError unless `path` is a complete, readable WAV file."""
    import soundfile

    size = path.stat().st_size
    with open(path, "rb") as wav:
        header = wav.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise RetryableError(f"not a WAV file ({size} bytes starting {header[:12]!r})")
    declared = int.from_bytes(header[4:8], "little") + 8
    if declared > size:
        raise RetryableError(f"cut off: the WAV header says {declared} bytes, got {size}")
    try:
        soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise RetryableError(f"unreadable WAV: {error}") from None


# ---- linking and auditing -----------------------------------------------------------------------

def write_sidecar(recording_path: Path, call_sid: str | None) -> None:
    """`<RecordingSid>.context.json` with the CallSid, so `holdguard audit` of the file finds its caller."""
    if not call_sid:
        return
    sidecar = audit_context.sidecar_path(recording_path)
    partial = sidecar.with_name(sidecar.name + ".part")
    partial.write_text(json.dumps({"call_sid": call_sid}) + "\n", encoding="utf-8")
    os.replace(partial, sidecar)


def audit_recording(db, path: Path, call_sid: str | None, transcriber, library=None) -> int:
    """Audit a stored recording with its caller's products and the issues open at the time of the call;
    returns the audit id. With a message `library` (audits.library) speech heard before is not heard
    again, and what was new joins the library."""
    context = audit_context.from_database(db, call_sid=call_sid) if call_sid else None
    try:
        result = pipeline.audit_file(path, context or Context(), transcriber,
                                     known_products=catalog.catalog_products(db), library=library)
        audit_id = audit_store.save(db, result, sha256=file_sha256(path), call_sid=call_sid)
    except BaseException:
        if library is not None:
            library.take_news()  # a failed audit adds nothing
        raise
    if library is not None:
        from audits import library as message_library

        message_library.record(db, audit_id, result, library.take_news())
    return audit_id


# ---- one fetch run ------------------------------------------------------------------------------

def _utc_text(moment: datetime | None) -> str | None:
    return format_utc(moment) if moment is not None else None


def fetch(db, client, data_dir: str | Path, *, since: datetime | None = None, call_sid: str | None = None,
          audit: bool = True, transcriber=None, load_transcriber=None, attempts: int = DOWNLOAD_ATTEMPTS,
          backoff_s: float = BACKOFF_S, progress=None, library=None) -> list[Outcome]:
    """List, download, link and audit recordings; one Outcome per recording, in Twilio's order.

    A recording already stored is not downloaded again (only audited, if it was not). The speech
    engine is `transcriber`, or `load_transcriber()` called once, when the first audit needs it.
    `progress(outcome)` is called after each recording. `library`: the message library the audits
    match speech against (audits.library.load), or None.
    """
    folder = Path(data_dir).resolve() / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for recording in list_recordings(client, since=since, call_sid=call_sid):
        outcome = _fetch_one(db, client, recording, folder, attempts, backoff_s)
        if audit and outcome.status == "downloaded":
            if transcriber is None:
                transcriber = load_transcriber()
            outcome = _audit_one(db, outcome, folder, transcriber, library)
        outcomes.append(outcome)
        if progress:
            progress(outcome)
    return outcomes


def _fetch_one(db, client, recording, folder: Path, attempts: int, backoff_s: float) -> Outcome:
    sid, call_sid = recording.sid or "", recording.call_sid
    if not RECORDING_SID.match(sid):  # it becomes a file name: never trust it blindly
        return Outcome(sid, call_sid, "download_failed", f"unexpected recording SID {sid!r}")
    path = folder / f"{sid}.wav"
    existing = recordings.get(db, sid)
    if existing and existing["status"] != "download_failed" and path.is_file():
        if existing["status"] == "audited":
            return Outcome(sid, call_sid, "skipped", f"already fetched and audited (audit {existing['audit_id']})",
                           existing["audit_id"])
        return Outcome(sid, call_sid, "downloaded", "already fetched")
    row = {"call_sid": call_sid, "date_created": _utc_text(recording.date_created),
           "duration_s": float(recording.duration) if recording.duration not in (None, "") else None}
    try:
        size = download_wav(media_url(client, client.account_sid, sid), path, client.auth,
                            attempts=attempts, backoff_s=backoff_s)
    except DownloadError as error:
        recordings.save(db, sid, **row, path=None, fetched_at=None, audit_id=None, status="download_failed",
                  error=str(error))
        return Outcome(sid, call_sid, "download_failed", str(error))
    write_sidecar(path, call_sid)
    recordings.save(db, sid, **row, path=str(path), fetched_at=_utc_text(datetime.now(timezone.utc)),
              audit_id=None, status="downloaded", error=None)
    return Outcome(sid, call_sid, "downloaded", f"{size / 1024:.0f} kB")


def _audit_one(db, outcome: Outcome, folder: Path, transcriber, library=None) -> Outcome:
    path = folder / f"{outcome.sid}.wav"
    try:
        audit_id = audit_recording(db, path, outcome.call_sid, transcriber, library)
    except Exception as error:  # one bad recording must not stop the batch; say what went wrong
        log.debug("audit of %s failed", path, exc_info=True)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        recordings.save(db, outcome.sid, status="audit_failed", error=reason)
        return Outcome(outcome.sid, outcome.call_sid, "audit_failed", f"{outcome.detail}; audit failed: {reason}")
    recordings.save(db, outcome.sid, status="audited", audit_id=audit_id, error=None)
    findings = audit_store.audit_findings_count(db, audit_id)
    return Outcome(outcome.sid, outcome.call_sid, "audited",
                   f"{outcome.detail}; audit {audit_id}: {findings} finding{'s' * (findings != 1)}", audit_id)


def describe(db, outcome: Outcome) -> str:
    """One line for a person: the recording, its call and caller, and what happened."""
    link = playlog.call_link(db, outcome.call_sid)
    if link:
        who = (f"call {outcome.call_sid} from {link['caller'] or 'unknown'}, queue {link['queue'] or '?'}, "
               f"{link['plays']} answer{'s' * (link['plays'] != 1)} logged")
    else:
        who = f"call {outcome.call_sid or '?'} (not in the play log)"
    return f"{outcome.sid} ({who}): {outcome.status}: {outcome.detail}"
